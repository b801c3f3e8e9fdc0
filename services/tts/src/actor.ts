import { AsyncQueue, type ActorContext, type SessionActor } from '@va/actor';
import { StreamResampler } from '@va/audio';
import { channels, LIMITS, type AudioSource, type Reply } from '@va/protocol';
import type { SpeechChunk, TTS } from '@va/providers';
import { setTimeout as sleepFor } from 'node:timers/promises';
import {
  ATTR,
  counter,
  METRIC,
  recordError,
  recordLatency,
  SPAN,
  startStageSpan,
  type Context,
  type Span,
} from '@va/telemetry';

export const STAGE = 'tts';
type Source = 'fast' | 'deep';
/** How long an opener already being synthesized may still take when the answer's audio is ready first. */
const OPENER_GRACE_MS = 150;
/** Text one source (opener or answer) of a turn may speak: what a `speech` message can carry. */
export const MAX_SPOKEN_CHARS = LIMITS.textChars * 4;
/** The queue name of dropped text in `va.messages.dropped`. */
const TEXT_QUEUE = 'tts.text';

export interface TtsActorOptions {
  /**
   * Silence the user may hear after the opener (or after the end of their turn, with no opener) before a filler
   * is spoken, if the answer's first audio is still not there.
   */
  fillerAfterMs: number;
  /** Short phrases said while the answer is late (one per turn, in turn); empty = no fillers. */
  fillers: readonly string[];
}

export const TTS_DEFAULTS = {
  fillerAfterMs: 500,
  fillers: ['One moment.', 'Just a second.', 'Bear with me.'],
} as const satisfies TtsActorOptions;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Waits `ms`; false if the signal fired first. */
async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await sleepFor(Math.max(0, ms), undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

/** One responder's text stream within a turn, and what has been made of it. */
interface SourceStream {
  text: AsyncQueue<string>;
  received: string;
  nextSeq: number;
  firstTextAt?: number;
  span?: Span;
}

interface TurnSpeech {
  turnId: string;
  context: Context;
  signal: AbortSignal;
  fast: SourceStream;
  deep: SourceStream;
  /** When the turn was committed (`turn end`): a preview's audio is held by the gateway until then. */
  committed: Promise<number>;
  commit: (at: number) => void;
}

/**
 * One session's voice: per turn it synthesizes the opener (fast) and the answer (deep) at the same time,
 * and sends the opener's audio first, then the answer's — never overlapping. If the answer's first audio is
 * ready before the opener's, the opener is skipped (DESIGN §5). If the answer is late beyond
 * `fillerAfterMs` of silence, one short filler is spoken, never over the user. Audio goes out as fast as it is
 * made; the gateway paces playout.
 */
export function ttsActor(tts: TTS, options: Partial<TtsActorOptions> = {}) {
  const opts: TtsActorOptions = { ...TTS_DEFAULTS, ...options };
  // Fillers are the same few phrases for every session of this instance: synthesized once, at the first session.
  const fillerAudio = new Map<string, Promise<SpeechChunk[]>>();
  const fillerChunks = (text: string): Promise<SpeechChunk[]> => {
    let audio = fillerAudio.get(text);
    if (!audio) {
      audio = (async () => {
        const chunks: SpeechChunk[] = [];
        const input = (async function* () {
          yield text;
        })();
        for await (const c of tts.synthesize(input, new AbortController().signal)) chunks.push(c);
        return chunks;
      })();
      // A failed synthesis is retried next time rather than cached.
      audio.catch(() => fillerAudio.delete(text));
      fillerAudio.set(text, audio);
    }
    return audio;
  };

  return (ctx: ActorContext): SessionActor => {
    const turns = new Map<string, TurnSpeech>();
    let current: TurnSpeech | undefined;
    /** Commit times of recent turns (a `turn end` usually arrives before the turn's first reply). */
    const commits = new Map<string, number>();
    /** Turns paused by a barge-in, and whether the user is speaking: a filler never talks over the user. */
    const paused = new Set<string>();
    let userSpeaking = false;
    // Connect now (a provider's WebSocket, a TLS connection), not when the first answer is ready.
    void tts.prewarm?.();
    let fillersSpoken = 0;
    for (const text of opts.fillers) {
      fillerChunks(text).catch((err: unknown) => ctx.log.warn({ err, text }, 'filler synthesis failed'));
    }

    const newSource = (): SourceStream => ({ text: new AsyncQueue<string>(), received: '', nextSeq: 0 });

    function turnFor(turnId: string, parent: Context): TurnSpeech {
      let turn = turns.get(turnId);
      if (turn) return turn;
      // A new turn supersedes whatever the previous one still had to say.
      if (current) endTurn(current);
      let commit!: (at: number) => void;
      const committed = new Promise<number>((resolve) => (commit = resolve));
      turn = {
        turnId,
        context: parent,
        signal: ctx.turnSignal(turnId),
        fast: newSource(),
        deep: newSource(),
        committed,
        commit,
      };
      const at = commits.get(turnId);
      if (at !== undefined) commit(at);
      turns.set(turnId, turn);
      current = turn;
      void ctx.track(speak(turn));
      return turn;
    }

    ctx.subscribe(channels.turn, (t) => {
      if (t.kind === 'end') {
        const now = performance.now();
        commits.set(t.turnId, now);
        if (commits.size > 16) commits.delete(commits.keys().next().value!);
        turns.get(t.turnId)?.commit(now);
      } else if (t.kind === 'barge-in') {
        paused.add(t.turnId);
      } else if (t.kind === 'resume') {
        paused.delete(t.turnId);
      }
    });
    ctx.subscribe(channels.vad, (v) => {
      userSpeaking = v.kind === 'start';
    });

    /** Turns already spoken: a late delta (an opener still streaming after the answer) must not reopen one. */
    const finished = new Set<string>();

    function endTurn(turn: TurnSpeech): void {
      finished.add(turn.turnId);
      if (finished.size > 64) finished.delete(finished.values().next().value!);
      turn.fast.text.end();
      turn.deep.text.end();
      turns.delete(turn.turnId);
      paused.delete(turn.turnId);
      ctx.endTurn(turn.turnId);
    }

    const onReply = (source: Source) => (m: Reply, meta: { context: Context }) => {
      if (finished.has(m.turnId)) return;
      const turn = turnFor(m.turnId, meta.context);
      const s = turn[source];
      if (m.seq < s.nextSeq) return; // a duplicate
      s.nextSeq = m.seq + 1;
      // What one source of a turn may speak is bounded (the speech message carries it whole): past that, deltas
      // are dropped and counted rather than queued for a synthesizer that may be slower than the LLM.
      const room = MAX_SPOKEN_CHARS - s.received.length;
      if (m.delta && room < m.delta.length) {
        ctx.dropped(TEXT_QUEUE, 'too-long', source === 'fast' ? channels.replyFast.name : channels.replyDeep.name);
        m = { ...m, delta: m.delta.slice(0, Math.max(0, room)) };
      }
      if (m.delta) {
        s.firstTextAt ??= performance.now();
        s.span ??= startStageSpan(SPAN.ttsSynthesize, {
          parent: turn.context,
          sessionId: ctx.sessionId,
          turnId: turn.turnId,
          stage: STAGE,
          attributes: { [ATTR.provider]: tts.provider, [ATTR.source]: source },
        });
        s.received += m.delta;
        s.text.push(m.delta);
      }
      if (m.done) s.text.end();
    };
    ctx.subscribe(channels.replyFast, onReply('fast'));
    ctx.subscribe(channels.replyDeep, onReply('deep'));

    async function speak(turn: TurnSpeech): Promise<void> {
      let seq = 0;
      let audioMs = 0;
      let firstSentAt: number | undefined;
      const resamplers = await Promise.all([
        StreamResampler.create(tts.sampleRate, ctx.config.sampleRate),
        StreamResampler.create(tts.sampleRate, ctx.config.sampleRate),
      ]);
      const send = (source: AudioSource, chunk: SpeechChunk, resampler: StreamResampler) => {
        if (turn.signal.aborted) return;
        const samples = resampler.push(chunk.samples);
        if (samples.length === 0) return;
        firstSentAt ??= performance.now();
        ctx.publishAudio(
          'out',
          {
            samples,
            sampleRate: ctx.config.sampleRate,
            seq: seq++,
            tsMs: audioMs,
            turnId: turn.turnId,
            source,
            textOffset: chunk.textOffset,
          },
          { context: turn.context },
        );
        audioMs += (samples.length * 1000) / ctx.config.sampleRate;
      };

      // The opener gets its own abort so it can be skipped without touching the answer.
      const skipFast = new AbortController();
      const fastAudio = tts.synthesize(turn.fast.text, AbortSignal.any([turn.signal, skipFast.signal]));
      const deepAudio = new AsyncQueue<SpeechChunk>();
      let deepReady!: () => void;
      const deepFirst = new Promise<'deep'>((resolve) => (deepReady = () => resolve('deep')));
      const deepPump = (async () => {
        try {
          for await (const c of tts.synthesize(turn.deep.text, turn.signal)) {
            deepAudio.push(c);
            deepReady();
          }
          deepAudio.end();
        } catch (err) {
          deepAudio.fail(err);
        } finally {
          deepReady();
        }
      })();

      const done = (source: Source, frames: number, skipped: boolean) => {
        const s = turn[source];
        if (s.span) {
          s.span.setAttribute(ATTR.frames, frames);
          s.span.setAttribute(ATTR.skipped, skipped);
          s.span.setAttribute(ATTR.interrupted, turn.signal.aborted);
          s.span.end();
        }
        if (turn.signal.aborted) return;
        ctx.publish(
          channels.speech,
          { turnId: turn.turnId, source, text: s.received, frames, skipped },
          { context: turn.context },
        );
      };

      /**
       * Waits for the answer's first audio; if the silence after what was sent (the opener, played from the
       * commit on) would exceed `fillerAfterMs`, speaks one filler first — unless the user is speaking.
       */
      const fillIfLate = async (): Promise<void> => {
        if (opts.fillers.length === 0) return;
        const committedAt = await Promise.race([turn.committed, deepFirst.then(() => undefined)]);
        if (committedAt === undefined || deepAudio.size > 0 || deepAudio.closed || turn.signal.aborted) return;
        const playEnd = Math.max(committedAt, firstSentAt ?? committedAt) + audioMs;
        const late = await Promise.race([
          deepFirst.then(() => false),
          pause(playEnd + opts.fillerAfterMs - performance.now(), turn.signal),
        ]);
        if (!late || deepAudio.size > 0 || turn.signal.aborted) return;
        if (userSpeaking || paused.has(turn.turnId)) return;
        const text = opts.fillers[fillersSpoken++ % opts.fillers.length]!;
        let chunks: SpeechChunk[];
        try {
          chunks = await fillerChunks(text);
        } catch (err) {
          ctx.log.warn({ err, turnId: turn.turnId }, 'no filler: synthesis failed');
          return;
        }
        if (turn.signal.aborted || userSpeaking || paused.has(turn.turnId)) return;
        const resampler = await StreamResampler.create(tts.sampleRate, ctx.config.sampleRate);
        try {
          for (const c of chunks) send('filler', c, resampler);
        } finally {
          resampler.destroy();
        }
        counter(METRIC.fillers).add(1, { [ATTR.stage]: STAGE });
        ctx.log.info({ turnId: turn.turnId, text }, 'answer late: filler spoken');
        ctx.publish(
          channels.speech,
          { turnId: turn.turnId, source: 'filler', text, frames: chunks.length, skipped: false },
          { context: turn.context },
        );
      };

      const measureFirstAudio = (source: Source, chunk: SpeechChunk) => {
        const s = turn[source];
        if (chunk.servedBy) {
          s.span?.setAttributes({ [ATTR.provider]: chunk.servedBy.provider, [ATTR.fallback]: chunk.servedBy.fallback });
        }
        if (s.firstTextAt === undefined) return;
        const ttfb = performance.now() - s.firstTextAt;
        s.span?.setAttribute(ATTR.ttfbMs, Math.round(ttfb * 10) / 10);
        recordLatency(METRIC.ttfb, ttfb, { span: s.span, attributes: { [ATTR.stage]: STAGE, source } });
      };

      try {
        // Opener first — unless the answer's audio is ready before the opener has any.
        const fastIt = fastAudio[Symbol.asyncIterator]();
        const firstFast = fastIt.next();
        let winner = await Promise.race([firstFast.then(() => 'fast' as const), deepFirst]);
        // An opener whose text is already being synthesized gets a moment to win the race by a hair.
        if (winner === 'deep' && turn.fast.received !== '') {
          winner = await Promise.race([
            firstFast.then(() => 'fast' as const),
            sleep(OPENER_GRACE_MS).then(() => 'deep' as const),
          ]);
        }
        let fastFrames = 0;
        if (winner === 'deep' && deepAudio.size > 0) {
          skipFast.abort(new Error('opener skipped: answer ready first'));
          void firstFast.catch(() => undefined);
          await fastIt.return?.();
          done('fast', 0, true);
        } else {
          let r = await firstFast;
          if (!r.done) measureFirstAudio('fast', r.value);
          while (!r.done) {
            send('fast', r.value, resamplers[0]);
            fastFrames++;
            r = await fastIt.next();
          }
          done('fast', fastFrames, false);
        }
        if (deepAudio.size === 0 && !deepAudio.closed) await fillIfLate();
        let deepFrames = 0;
        for await (const c of deepAudio) {
          if (deepFrames === 0) measureFirstAudio('deep', c);
          send('deep', c, resamplers[1]);
          deepFrames++;
        }
        done('deep', deepFrames, false);
      } catch (err) {
        if (!turn.signal.aborted) {
          ctx.log.error({ err, turnId: turn.turnId }, 'synthesis failed');
          for (const s of [turn.fast, turn.deep]) if (s.span) recordError(s.span, err);
          ctx.bus.publishError(
            channels.speech.subject(ctx.sessionId),
            'provider-failed',
            `${tts.provider}: ${String(err)}`,
          );
          done('fast', 0, false);
          done('deep', 0, false);
        }
      } finally {
        await deepPump;
        for (const s of [turn.fast, turn.deep]) if (s.span?.isRecording()) s.span.end();
        for (const r of resamplers) r.destroy();
        if (turns.get(turn.turnId) === turn) endTurn(turn);
        if (current === turn) current = undefined;
      }
    }

    return {
      stop: () => {
        for (const t of [...turns.values()]) endTurn(t);
      },
    };
  };
}
