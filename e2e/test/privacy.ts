import type { RunningStage } from '@va/e2e';
import type { ReceivedSpan } from '@va/testkit';

/** Lower case, letters and digits only, single spaces: how text is compared wherever it was embedded. */
export function normalise(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^\p{L}\p{N}]+/gu, ' ')
    .trim();
}

/**
 * What of a conversation must never appear in logs or spans (unless VA_TRACE_TEXT=1): each sentence of at
 * least three words, and each word of six letters or more of what the user said (short common words would
 * match log text by chance; the agent's answers restate the user's words, so theirs are covered too).
 */
export function privateFragments(user: readonly string[], agent: readonly string[]): string[] {
  const sentences = [...user, ...agent]
    .flatMap((t) => t.split(/[.!?;:]+/))
    .map(normalise)
    .filter((s) => s.split(' ').length >= 3);
  const words = user.flatMap((t) => normalise(t).split(' ')).filter((w) => /^\p{L}{6,}$/u.test(w));
  return [...new Set([...sentences, ...words])];
}

export interface Leak {
  where: string;
  what: string;
  excerpt: string;
}

/**
 * Every place a private fragment (compared normalised, as whole words) or a secret (compared verbatim) shows up:
 * each stage's log lines (stdout and stderr) and each span (name, attributes, events, status).
 */
export function findLeaks(opts: {
  fragments: readonly string[];
  secrets?: readonly string[];
  stages: readonly RunningStage[];
  spans: readonly ReceivedSpan[];
}): Leak[] {
  const sources: { where: string; text: string }[] = [
    ...opts.stages.flatMap(({ stage, child }) =>
      [...child.lines, ...child.stderr].map((text, i) => ({ where: `${stage} log line ${i + 1}`, text })),
    ),
    ...opts.spans.map((s) => ({ where: `span ${s.serviceName}/${s.name}`, text: JSON.stringify(s) })),
  ];
  const leaks: Leak[] = [];
  const hide = (text: string) => (opts.secrets ?? []).reduce((t, secret) => t.split(secret).join('<secret>'), text);
  for (const { where, text } of sources) {
    const padded = ` ${normalise(text)} `;
    for (const f of opts.fragments) {
      if (padded.includes(` ${f} `)) leaks.push({ where, what: f, excerpt: hide(text).slice(0, 300) });
    }
    for (const secret of opts.secrets ?? []) {
      if (text.includes(secret)) leaks.push({ where, what: 'a secret', excerpt: hide(text).slice(0, 300) });
    }
  }
  return leaks;
}
