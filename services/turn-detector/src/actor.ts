import { randomBytes } from 'node:crypto';
import type { ActorContext, SessionActor } from '@va/actor';
import { channels } from '@va/protocol';
import { SpeechSegmenter, type VAD } from '@va/providers';
import { ATTR, context, histogram, METRIC, SPAN, startStageSpan, traceText, type Context } from '@va/telemetry';
import {
  ENDPOINTING_DEFAULTS,
  endOfUtteranceProbability,
  soundsUnfinished,
  type EndpointingOptions,
} from './endpointing.js';

export const STAGE = 'turn-detector';
/** A final ending this far past the silence being judged belongs to speech after it. */
const RESUMED_MARGIN_MS = 200;

function newTurnId(): string {
  return `t${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
}

/**
 * One session's turn-taking: VAD start/end from the audio, end of turn from VAD silence + transcripts, and
 * barge-in when the user speaks over the agent's reply.
 */
export function turnDetectorActor(makeVad: () => Promise<VAD>, options: Partial<EndpointingOptions> = {}) {
  const opts = { ...ENDPOINTING_DEFAULTS, ...options };
  return async (ctx: ActorContext): Promise<SessionActor> => {
    const vad = await makeVad();
    let segmenter: SpeechSegmenter | undefined;
    let frameContext: Context = context.active();
    let lastFrame = { tsMs: 0, wallMs: Date.now() };
    const wallOf = (tsMs: number) => lastFrame.wallMs - (lastFrame.tsMs - tsMs);

    let speaking = false;
    let speechStartMs = 0;
    let speechEndMs = 0;
    /** Final transcripts of the user turn being collected, and the newest partial after them. */
    let finals: string[] = [];
    let partial = '';
    let lastFinalEndMs = -1;
    /** Speech end of the last turn emitted: transcripts of audio before it belong to that turn. */
    let emittedUpToMs = -1;
    /** The agent turn being answered/played; user speech over it is a barge-in. */
    let agentTurn: string | undefined;
    let endTimer: NodeJS.Timeout | undefined;
    let endDeadline = 0;
    let vadEndWall = 0;
    /** Audio time the VAD's probability fell quiet within the current speech (before it confirms an end). */
    let quietSinceMs: number | undefined;
    /** The turn was ended before the VAD confirmed the silence (see earlyEndSilenceMs). */
    let earlyEnded = false;
    let lastEmitted: { turnId: string; text: string; atWall: number } | undefined;

    const text = () =>
      [...finals, partial]
        .filter((t) => t.trim() !== '')
        .join(' ')
        .trim();

    function clearEndTimer(): void {
      clearTimeout(endTimer);
      endTimer = undefined;
    }

    function emitTurnEnd(): void {
      clearEndTimer();
      const said = text();
      if (said === '') return; // noise: VAD heard something the recogniser found no words in
      const turnId = newTurnId();
      const eouProb = endOfUtteranceProbability(said);
      const delay = Math.max(0, Date.now() - wallOf(speechEndMs));
      const span = startStageSpan(SPAN.turnDetect, {
        parent: frameContext,
        sessionId: ctx.sessionId,
        turnId,
        stage: STAGE,
        startTime: new Date(Date.now() - delay),
        attributes: { [ATTR.eouDelayMs]: Math.round(delay), 'va.eou_prob': eouProb, [ATTR.provider]: vad.provider },
      });
      if (traceText()) span.setAttribute(ATTR.text, said);
      span.end();
      histogram(METRIC.eouDelay).record(delay, { [ATTR.stage]: STAGE });
      ctx.publish(channels.turn, { turnId, kind: 'end', text: said, eouProb, speechEndMs }, { context: frameContext });
      agentTurn = turnId;
      lastEmitted = { turnId, text: said, atWall: Date.now() };
      emittedUpToMs = speechEndMs;
      finals = [];
      partial = '';
    }

    /**
     * Adaptive endpointing's fast path: the final is in, the words sound finished, and the VAD has heard
     * `earlyEndSilenceMs` of quiet — end the turn now rather than after the VAD's own silence window.
     */
    function considerEarlyEnd(): void {
      if (opts.mode !== 'adaptive' || opts.earlyEndSilenceMs <= 0) return;
      if (!speaking || earlyEnded || quietSinceMs === undefined) return;
      if (lastFrame.tsMs - quietSinceMs < opts.earlyEndSilenceMs) return;
      const finalCoversSpeech =
        lastFinalEndMs >= quietSinceMs - 300 && lastFinalEndMs <= quietSinceMs + RESUMED_MARGIN_MS;
      if (!finalCoversSpeech || partial !== '' || soundsUnfinished(text())) return;
      earlyEnded = true;
      speaking = false;
      speechEndMs = quietSinceMs;
      emitTurnEnd();
    }

    /** Decide now if the final for this speech is in; otherwise wait for it, bounded. */
    function considerEnd(): void {
      if (speaking) return;
      if (opts.mode === 'fixed') return considerFixedEnd();
      const haveFinal = lastFinalEndMs >= speechEndMs - 300 && partial === '';
      // Words from after this silence: the user went on, and the VAD has not caught up with that audio yet.
      const resumed = lastFinalEndMs > speechEndMs + RESUMED_MARGIN_MS;
      if (haveFinal && !resumed && !soundsUnfinished(text())) return emitTurnEnd();
      const now = Date.now();
      if (now >= endDeadline) return emitTurnEnd();
      clearEndTimer();
      endTimer = setTimeout(emitTurnEnd, endDeadline - now);
    }

    /** Baseline endpointing: never before `fixedDelayMs` after VAD end, then as soon as a final is in. */
    function considerFixedEnd(): void {
      const now = Date.now();
      const earliest = vadEndWall + opts.fixedDelayMs;
      const haveFinal = lastFinalEndMs >= speechEndMs - 300 && partial === '';
      if (now >= earliest && (haveFinal || now >= earliest + opts.maxFinalWaitMs)) return emitTurnEnd();
      clearEndTimer();
      endTimer = setTimeout(considerFixedEnd, now < earliest ? earliest - now : earliest + opts.maxFinalWaitMs - now);
    }

    function bargeIn(atMs: number): void {
      if (!agentTurn) return;
      const interrupted = agentTurn;
      agentTurn = undefined;
      // Talking again right after the turn was sent: the user was not done. Their words carry over.
      if (lastEmitted?.turnId === interrupted && Date.now() - lastEmitted.atWall < opts.continuationWindowMs) {
        finals.unshift(lastEmitted.text);
      }
      ctx.log.info({ turnId: interrupted, atMs }, 'barge-in');
      ctx.publish(
        channels.turn,
        { turnId: interrupted, kind: 'barge-in', text: '', eouProb: 0, speechEndMs: atMs },
        { context: frameContext },
      );
      ctx.publish(
        channels.control,
        { kind: 'cancel', turnId: interrupted, reason: 'barge-in' },
        { context: frameContext },
      );
    }

    ctx.subscribeAudio('in', async (frame, meta) => {
      if (frame.sampleRate !== vad.sampleRate) {
        ctx.bus.publishError(
          meta.subject,
          'bad-audio',
          `turn-detector: frame at ${frame.sampleRate} Hz, VAD needs ${vad.sampleRate} Hz`,
        );
        return;
      }
      frameContext = meta.context;
      lastFrame = { tsMs: frame.tsMs + (frame.samples.length * 1000) / frame.sampleRate, wallMs: Date.now() };
      segmenter ??= new SpeechSegmenter(vad, { originMs: frame.tsMs });
      for (const ev of await segmenter.push(frame.samples)) {
        ctx.publish(channels.vad, { kind: ev.kind, atMs: ev.atMs }, { context: frameContext });
        if (ev.kind === 'start') {
          speaking = true;
          earlyEnded = false;
          speechStartMs = ev.atMs;
          clearEndTimer(); // the user goes on: this is still the same turn
        } else if (earlyEnded) {
          earlyEnded = false; // the VAD confirms the silence the turn was already ended on
        } else {
          speaking = false;
          speechEndMs = ev.atMs;
          vadEndWall = Date.now();
          endDeadline = Date.now() + opts.maxFinalWaitMs + (soundsUnfinished(text()) ? opts.incompleteExtraMs : 0);
          considerEnd();
        }
      }
      trackQuiet(segmenter, frame.tsMs);
      considerEarlyEnd();
      if (speaking && agentTurn && lastFrame.tsMs - speechStartMs >= opts.bargeInMinSpeechMs) bargeIn(speechStartMs);
    });

    /** Follows the VAD's probability inside speech: when it went quiet, and whether the user resumed. */
    function trackQuiet(seg: SpeechSegmenter, tsMs: number): void {
      if (!seg.inSpeech) {
        quietSinceMs = undefined;
        return;
      }
      if (seg.lastProbability < seg.options.endThreshold) {
        quietSinceMs ??= tsMs;
      } else if (seg.lastProbability >= seg.options.startThreshold) {
        quietSinceMs = undefined;
        if (earlyEnded) {
          // The user went on after we ended their turn early: a new stretch of speech for everyone.
          earlyEnded = false;
          speaking = true;
          speechStartMs = tsMs;
          ctx.publish(channels.vad, { kind: 'start', atMs: tsMs }, { context: frameContext });
        }
      }
    }

    ctx.subscribe(channels.transcript, (t) => {
      if (t.endMs <= emittedUpToMs && emittedUpToMs >= 0) return; // late words of a turn already sent
      if (t.final) {
        if (t.text.trim() !== '') finals.push(t.text.trim());
        partial = '';
        lastFinalEndMs = Math.max(lastFinalEndMs, t.endMs);
      } else {
        partial = t.text;
      }
      if (t.final) considerEarlyEnd();
      if (!speaking && endTimer) {
        // More words arrived while waiting: unfinished-sounding text earns the extra wait once.
        if (soundsUnfinished(text())) endDeadline = Math.max(endDeadline, Date.now() + opts.incompleteExtraMs);
        considerEnd();
      }
    });

    ctx.subscribe(channels.playout, (p) => {
      if (p.done && p.turnId === agentTurn) agentTurn = undefined;
    });

    return {
      stop: async () => {
        clearEndTimer();
        await vad.close();
      },
    };
  };
}
