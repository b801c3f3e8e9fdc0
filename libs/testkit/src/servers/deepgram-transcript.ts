/** Speech is heard as one word per this much audio. */
const WORD_MS = 200;

/** A JSON message the server sends; `Results` are told apart by their flags. */
export interface DeepgramMessage {
  type: string;
  is_final?: boolean;
  speech_final?: boolean;
  [field: string]: unknown;
}

/** What successive utterances say: the texts in turn, cycled. */
export class TextScript {
  private said = 0;
  constructor(private readonly texts: readonly string[]) {}

  next(): string {
    return this.texts[this.said++ % this.texts.length]!;
  }
}

/** How one stream is transcribed: the server's options and the connection's query. */
export interface TranscriptSettings {
  requestId: string;
  /** `model_info.name` of every Results. */
  modelName: string;
  speechDbfs: number;
  interimEveryMs: number;
  segmentMs: number;
  interim: boolean;
  vadEvents: boolean;
  /** Silence that ends an utterance (speech_final); undefined: endpointing off. */
  endpointingMs: number | undefined;
  /** Silence after the last word that sends UtteranceEnd; undefined: none. */
  utteranceEndMs: number | undefined;
  script: TextScript;
  send(msg: DeepgramMessage): void;
}

interface FinalizeFlags {
  speechFinal: boolean;
  /** Answers a client's Finalize. */
  fromFinalize?: boolean;
  /** The utterance is over: all its words, not only those heard so far. */
  whole: boolean;
}

/** The utterance being heard. */
interface Speech {
  startMs: number;
  lastVoiceMs: number;
  words: string[];
  /** Words already finalized. */
  done: number;
  segStartMs: number;
  nextInterimMs: number;
}

/** The level of a frame of 16-bit samples, in dBFS. */
function frameDbfs(samples: Int16Array): number {
  let sum = 0;
  for (const s of samples) sum += s * s;
  return 10 * Math.log10(sum / samples.length / (32768 * 32768) + 1e-12);
}

/** Words heard so far in an utterance (one per WORD_MS of speech), never the last before the final. */
function heard(s: Speech): number {
  return Math.min(s.words.length - 1, Math.max(1, Math.ceil((s.lastVoiceMs - s.startMs) / WORD_MS)));
}

/**
 * The transcript state of one stream on its audio clock: an energy VAD finds utterances, each "says" the script's
 * next text, and interim / final / speech_final `Results`, `SpeechStarted` and `UtteranceEnd` go out as Deepgram
 * would send them.
 */
export class DeepgramTranscript {
  /** Stream time (ms) up to which results were finalized: the next Results starts here. */
  private cursorMs = 0;
  private lastWordEndMs: number | undefined;
  private wordsSinceUtteranceEnd = false;
  private speech: Speech | undefined;

  constructor(private readonly settings: TranscriptSettings) {}

  /** One 10 ms frame of audio, heard at [startMs, endMs] of the stream. */
  hear(samples: Int16Array, startMs: number, endMs: number): void {
    const { speechDbfs, endpointingMs } = this.settings;
    const voiced = frameDbfs(samples) > speechDbfs;
    if (voiced) this.voice(startMs, endMs);
    else if (this.speech && endpointingMs !== undefined && endMs - this.speech.lastVoiceMs >= endpointingMs) {
      this.finalize(endMs, { speechFinal: true, whole: true });
    }
    if (!voiced) this.silence(endMs);
  }

  /** Finalizes the current segment: the rest of the words when the utterance ended, else those heard so far. */
  finalize(nowMs: number, flags: FinalizeFlags): void {
    const s = this.speech;
    if (!s) {
      if (flags.fromFinalize) this.results(undefined, 0, 0, nowMs, { isFinal: true, ...flags });
      this.cursorMs = nowMs;
      return;
    }
    const upTo = flags.whole ? s.words.length : Math.max(s.done, heard(s));
    this.results(s, s.done, upTo, nowMs, { isFinal: true, ...flags });
    this.cursorMs = nowMs;
    s.done = upTo;
    s.segStartMs = s.lastVoiceMs;
    if (flags.whole) this.speech = undefined;
  }

  /** The stream is closing: an utterance under way ends here. */
  closeStream(nowMs: number): void {
    if (this.speech) this.finalize(nowMs, { speechFinal: true, whole: true });
  }

  /** A voiced frame: starts an utterance, or goes on with it (interims, segment finals). */
  private voice(startMs: number, endMs: number): void {
    const { interim, interimEveryMs, segmentMs } = this.settings;
    const speech = (this.speech ??= this.startSpeech(startMs, endMs));
    speech.lastVoiceMs = endMs;
    if (interim && endMs >= speech.nextInterimMs) {
      speech.nextInterimMs += interimEveryMs;
      const upTo = Math.max(speech.done, heard(speech));
      this.results(speech, speech.done, upTo, endMs, { isFinal: false, speechFinal: false });
    }
    if (segmentMs > 0 && endMs - speech.segStartMs >= segmentMs && heard(speech) > speech.done) {
      this.finalize(endMs, { speechFinal: false, whole: false });
    }
  }

  private startSpeech(startMs: number, endMs: number): Speech {
    const { script, interimEveryMs, vadEvents, send } = this.settings;
    const speech: Speech = {
      startMs,
      lastVoiceMs: endMs,
      words: script.next().split(/\s+/).filter(Boolean),
      done: 0,
      segStartMs: startMs,
      nextInterimMs: startMs + interimEveryMs,
    };
    if (vadEvents) send({ type: 'SpeechStarted', channel: [0], timestamp: startMs / 1000 });
    return speech;
  }

  /** A silent frame: UtteranceEnd once there has been `utterance_end_ms` of silence after the last word. */
  private silence(endMs: number): void {
    const { utteranceEndMs, send } = this.settings;
    const speech = this.speech;
    if (
      utteranceEndMs === undefined ||
      !this.wordsSinceUtteranceEnd ||
      this.lastWordEndMs === undefined ||
      endMs - Math.max(this.lastWordEndMs, speech?.lastVoiceMs ?? 0) < utteranceEndMs
    ) {
      return;
    }
    this.wordsSinceUtteranceEnd = false;
    send({ type: 'UtteranceEnd', channel: [0, 1], last_word_end: (speech?.lastVoiceMs ?? this.lastWordEndMs) / 1000 });
    // With endpointing off, Deepgram still settles the words later: an is_final without speech_final.
    if (speech) this.finalize(endMs, { speechFinal: false, whole: true });
    this.wordsSinceUtteranceEnd = false;
  }

  /**
   * A `Results` with words `from`..`to` of the utterance `s`. Word i is said at [start + i·WORD_MS, +WORD_MS],
   * the last one until the speech's end, all within the speech heard so far: the same word has the same times
   * in every interim and in its final.
   */
  private results(
    s: Speech | undefined,
    from: number,
    to: number,
    endMs: number,
    flags: { isFinal: boolean; speechFinal: boolean; fromFinalize?: boolean },
  ): void {
    const words = s ? s.words.slice(from, to) : [];
    const confidence = flags.isFinal ? 0.98 : 0.7;
    const timed = words.map((word, k) => {
      const i = from + k;
      const last = i === s!.words.length - 1;
      return {
        word: word.toLowerCase().replace(/[^\p{L}\p{N}']/gu, ''),
        start: Math.min(s!.startMs + i * WORD_MS, s!.lastVoiceMs) / 1000,
        end: (last ? s!.lastVoiceMs : Math.min(s!.startMs + (i + 1) * WORD_MS, s!.lastVoiceMs)) / 1000,
        confidence,
        punctuated_word: word,
      };
    });
    this.settings.send({
      type: 'Results',
      channel_index: [0, 1],
      duration: Math.max(0, endMs - this.cursorMs) / 1000,
      start: this.cursorMs / 1000,
      is_final: flags.isFinal,
      speech_final: flags.speechFinal,
      from_finalize: flags.fromFinalize ?? false,
      channel: {
        alternatives: [{ transcript: words.join(' '), confidence: words.length ? confidence : 0, words: timed }],
      },
      metadata: {
        request_id: this.settings.requestId,
        model_info: { name: this.settings.modelName, version: 'test', arch: 'test' },
        model_uuid: '00000000-0000-0000-0000-000000000000',
      },
    });
    if (timed.length) {
      this.lastWordEndMs = timed.at(-1)!.end * 1000;
      this.wordsSinceUtteranceEnd = true;
    }
  }
}
