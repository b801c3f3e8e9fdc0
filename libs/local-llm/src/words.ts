/**
 * How the brain reads the user's words: which ones carry the topic, whether they ask a question, and how to say
 * them back (in the other person, as a short phrase).
 */

/** Words that carry no topic: function words, question words, fillers, politeness, time words. */
const STOP_WORDS = new Set(
  (
    'a an the and or but so if then than that this these those there here of to in on at by for with from into ' +
    'about as up down out over under again very just really actually also too quite please thanks thank ' +
    'what whats which who whom whose when where why how is are was were am be been being do does did doing ' +
    'can could would will should shall may might must have has had having i me my mine myself you your yours ' +
    "we us our they them their he him his she her it its i'm i've i'd i'll you're what's it's let's don't " +
    'tell explain know think wonder wondering want wanted like need help give show say said get got go ' +
    'hey hi hello okay ok well um uh yeah yes no not some any much many more most something anything ' +
    'nearby around today tomorrow yesterday now tonight later soon next last week weekend month year morning evening night'
  ).split(' '),
);

export function splitWords(text: string): string[] {
  return text.trim().split(/\s+/).filter(Boolean);
}

/** A word without its surrounding punctuation, in its original spelling. */
function bare(word: string): string {
  return word.replace(/^[^\p{L}\p{N}'’]+|[^\p{L}\p{N}'’]+$/gu, '');
}

/** The form looked up in word lists: bare, lower case, straight apostrophe. */
export function normalizeWord(word: string): string {
  return bare(word).toLowerCase().replace(/’/g, "'");
}

export function isContentWord(word: string): boolean {
  return bare(word).length >= 3 && !STOP_WORDS.has(normalizeWord(word));
}

/** Words that open a noun phrase and belong to the topic ("the capital", "your password"). */
const DETERMINERS = new Set(['the', 'a', 'an', 'this', 'that', 'my', 'your', 'our', 'their', 'his', 'her', 'its']);

/**
 * The topic head: the last content word, which usually ends the phrase ("reset my password" → password,
 * "capital of France" → France), with its determiner when it has one ("your password").
 */
export function keyPhrase(words: readonly string[]): string | undefined {
  const candidates = words.flatMap((word, i) => (isContentWord(word) ? [i] : []));
  // A trailing adverb ("purr so loudly") makes a poor topic: prefer the word before it.
  const head = candidates.findLast((i) => !/^[a-z]+[^i]ly$/.test(bare(words[i]!))) ?? candidates.at(-1);
  if (head === undefined) return undefined;
  const word = bare(words[head]!);
  const before = normalizeWord(words[head - 1] ?? '');
  if (before === 'a' || before === 'an') return `the ${word}`;
  return DETERMINERS.has(before) ? `${before} ${word}` : word;
}

const QUESTION_START = new Set(
  "what whats what's which who whom whose when where why how is are was were am do does did can could would will should shall may might have has".split(
    ' ',
  ),
);

export function isQuestion(text: string): boolean {
  const first = normalizeWord(splitWords(text)[0] ?? '');
  return text.trim().endsWith('?') || QUESTION_START.has(first);
}

/**
 * The question minus its lead-in: "Can you tell me about the history of Rome" → "about the history of Rome",
 * "How do I reset my password" → "how to reset your password", "Could you book a table" → "me to book a table".
 */
export function questionTopic(words: readonly string[]): string {
  const start = Math.max(
    0,
    words.findIndex((word) => isContentWord(word) || DETERMINERS.has(normalizeWord(word))),
  );
  const leadIn = words.slice(0, start).map(normalizeWord).join(' ');
  const topic = phrase(swapPerson(words.slice(start)), 10);
  if (/^how (do|can|should|could|would) (i|we)$/.test(leadIn)) return `how to ${topic}`;
  // "Could you recommend a restaurant": a request, and the topic starts with its verb.
  if (/^(can|could|would|will) you( please)?$/.test(leadIn)) return `me to ${topic}`;
  return `about ${topic}`;
}

/** The first `maxWords` words as a phrase, without trailing punctuation. */
export function phrase(words: readonly string[], maxWords: number): string {
  return words
    .slice(0, maxWords)
    .join(' ')
    .replace(/[.!?,;:]+$/, '');
}

const PERSON_SWAP: Record<string, string> = {
  i: 'you',
  me: 'you',
  my: 'your',
  mine: 'yours',
  myself: 'yourself',
  am: 'are',
  "i'm": "you're",
  "i've": "you've",
  "i'd": "you'd",
  "i'll": "you'll",
  you: 'me',
  your: 'my',
  yours: 'mine',
  yourself: 'myself',
};

/** Mirrors the speaker: what the user says about "my password" is "your password" when said back. */
export function swapPerson(words: readonly string[]): string[] {
  return words.map((word) => {
    const swapped = PERSON_SWAP[normalizeWord(word)];
    if (!swapped) return word;
    const trailing = /[^\p{L}\p{N}']+$/u.exec(word)?.[0] ?? '';
    return swapped + trailing;
  });
}

/** Word-ish tokens with their leading space, the way LLM deltas look (" there", " world."). */
export function wordTokens(text: string): string[] {
  return text.match(/\s*\S+/g) ?? [];
}
