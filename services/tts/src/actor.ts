import { AsyncQueue, type ActorContext, type SessionActor } from '@va/actor';
import { StreamResampler } from '@va/audio';
import { channels, type Reply } from '@va/protocol';
import type { SpeechChunk, TTS } from '@va/providers';
import { ATTR, histogram, METRIC, recordError, SPAN, startStageSpan, type Context, type Span } from '@va/telemetry';

export const STAGE = 'tts';
type Source = 'fast' | 'deep';
/** How long an opener already being synthesized may still take when the answer's audio is ready first. */
const OPENER_GRACE_MS = 150;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

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
}

/**
 * One session's voice: per turn it synthesizes the opener (fast) and the answer (deep) at the same time,
 * and sends the opener's audio first, then the answer's — never overlapping. If the answer's first audio is
 * ready before the opener's, the opener is skipped (DESIGN §5). Audio goes out as fast as it is made; the
 * gateway paces playout.
 */
export function ttsActor(tts: TTS) {
  return (ctx: ActorContext): SessionActor => {
    const turns = new Map<string, TurnSpeech>();
    let current: TurnSpeech | undefined;

    const newSource = (): SourceStream => ({ text: new AsyncQueue<string>(), received: '', nextSeq: 0 });

    function turnFor(turnId: string, parent: Context): TurnSpeech {
      let turn = turns.get(turnId);
      if (turn) return turn;
      // A new turn supersedes whatever the previous one still had to say.
      if (current) endTurn(current);
      turn = { turnId, context: parent, signal: ctx.turnSignal(turnId), fast: newSource(), deep: newSource() };
      turns.set(turnId, turn);
      current = turn;
      void ctx.track(speak(turn));
      return turn;
    }

    function endTurn(turn: TurnSpeech): void {
      turn.fast.text.end();
      turn.deep.text.end();
      turns.delete(turn.turnId);
      ctx.endTurn(turn.turnId);
    }

    const onReply = (source: Source) => (m: Reply, meta: { context: Context }) => {
      const turn = turnFor(m.turnId, meta.context);
      const s = turn[source];
      if (m.seq < s.nextSeq) return; // a duplicate
      s.nextSeq = m.seq + 1;
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
      const resamplers = await Promise.all([
        StreamResampler.create(tts.sampleRate, ctx.config.sampleRate),
        StreamResampler.create(tts.sampleRate, ctx.config.sampleRate),
      ]);
      const send = (source: Source, chunk: SpeechChunk, resampler: StreamResampler) => {
        if (turn.signal.aborted) return;
        const samples = resampler.push(chunk.samples);
        if (samples.length === 0) return;
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

      const measureFirstAudio = (source: Source) => {
        const s = turn[source];
        if (s.firstTextAt === undefined) return;
        const ttfb = performance.now() - s.firstTextAt;
        s.span?.setAttribute(ATTR.ttfbMs, Math.round(ttfb * 10) / 10);
        histogram(METRIC.ttfb).record(ttfb, { [ATTR.stage]: STAGE, source });
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
          if (!r.done) measureFirstAudio('fast');
          while (!r.done) {
            send('fast', r.value, resamplers[0]);
            fastFrames++;
            r = await fastIt.next();
          }
          done('fast', fastFrames, false);
        }
        let deepFrames = 0;
        for await (const c of deepAudio) {
          if (deepFrames === 0) measureFirstAudio('deep');
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
