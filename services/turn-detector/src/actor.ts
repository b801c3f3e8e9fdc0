import { randomBytes } from 'node:crypto';
import type { ActorContext, SessionActor } from '@va/actor';
import { FrameClock } from '@va/audio';
import { channels } from '@va/protocol';
import { SpeechSegmenter, type VAD } from '@va/providers';
import { ATTR, context, histogram, METRIC, SPAN, startStageSpan, traceText, type Context } from '@va/telemetry';
import {
  endpointDelayMs,
  ENDPOINTING_DEFAULTS,
  heuristicEou,
  type EndOfUtteranceModel,
  type EndpointingOptions,
} from './endpointing.js';

export const STAGE = 'turn-detector';
/** A final ending this far past the silence being judged belongs to speech after it. */
const RESUMED_MARGIN_MS = 200;
/** A final counts for the speech being judged if it ends no earlier than this before the speech stopped. */
const FINAL_COVER_MS = 300;

function newTurnId(): string {
  return `t${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
}

/**
 * One session's turn-taking: VAD start/end from the audio, end of turn from how long the user has been quiet
 * against how finished their words sound, and barge-in when the user speaks over the agent's reply.
 */
export function turnDetectorActor(
  makeVad: () => Promise<VAD>,
  options: Partial<EndpointingOptions> = {},
  eou: EndOfUtteranceModel = heuristicEou,
) {
  return async (ctx: ActorContext): Promise<SessionActor> => {
    // Service defaults, then what this session asked for in session.open.
    const { endpointing, ...perSession } = ctx.config.turn ?? {};
    const opts: EndpointingOptions = {
      ...ENDPOINTING_DEFAULTS,
      ...options,
      ...perSession,
      ...(endpointing ? { mode: endpointing } : {}),
    };
    const vad = await makeVad();
    let segmenter: SpeechSegmenter | undefined;
    let frameContext: Context = context.active();
    // Audio clock → wall clock; frames arrive in real time, so the newest one anchors both.
    const clock = new FrameClock();

    /** The user is speaking (for turn-taking; the VAD may still be inside its silence window). */
    let speaking = false;
    let speechStartMs = 0;
    /** Where the user's speech stopped: set when the VAD goes quiet, confirmed (or not) later. */
    let speechEndMs: number | undefined;
    /** Final transcripts of the user turn being collected, and the newest partial after them. */
    let finals: string[] = [];
    let partial = '';
    let lastFinalEndMs = -1;
    /** Speech end of the last turn emitted: transcripts of audio before it belong to that turn. */
    let emittedUpToMs = -1;
    /** The agent turn being answered/played; user speech over it is a barge-in. */
    let agentTurn: string | undefined;
    let lastEmitted: { turnId: string; text: string; atWall: number } | undefined;
    let decideTimer: NodeJS.Timeout | undefined;
    /** Baseline mode only: wall time of the VAD's confirmed end. */
    let vadEndWall = 0;

    const text = () =>
      [...finals, partial]
        .filter((t) => t.trim() !== '')
        .join(' ')
        .trim();

    function clearTimer(): void {
      clearTimeout(decideTimer);
      decideTimer = undefined;
    }

    function emitTurnEnd(endMs: number, score: number): void {
      clearTimer();
      const said = text();
      speechEndMs = undefined;
      if (said === '') return; // noise: VAD heard something the recogniser found no words in
      const turnId = newTurnId();
      const delay = Math.max(0, Date.now() - clock.wallOf(endMs));
      const span = startStageSpan(SPAN.turnDetect, {
        parent: frameContext,
        sessionId: ctx.sessionId,
        turnId,
        stage: STAGE,
        startTime: new Date(Date.now() - delay),
        attributes: {
          [ATTR.eouDelayMs]: Math.round(delay),
          [ATTR.eouScore]: score,
          [ATTR.eouModel]: eou.name,
          [ATTR.endpointing]: opts.mode,
          [ATTR.provider]: vad.provider,
        },
      });
      if (traceText()) span.setAttribute(ATTR.text, said);
      span.end();
      histogram(METRIC.eouDelay).record(delay, { [ATTR.stage]: STAGE });
      ctx.publish(
        channels.turn,
        { turnId, kind: 'end', text: said, eouProb: score, speechEndMs: endMs },
        { context: frameContext },
      );
      agentTurn = turnId;
      lastEmitted = { turnId, text: said, atWall: Date.now() };
      emittedUpToMs = endMs;
      finals = [];
      partial = '';
    }

    /**
     * Ends the turn once the user has been quiet long enough for how finished their words sound and the
     * recogniser's final for that speech is in (or, failing the final, after `maxDelayMs`). Runs on every frame,
     * transcript and timer tick.
     */
    function decide(): void {
      if (opts.mode === 'fixed') return decideFixed();
      clearTimer();
      if (speaking || speechEndMs === undefined) return;
      const endMs = speechEndMs;
      const said = text();
      const score = eou.score(said);
      const needed = endpointDelayMs(score, opts);
      const quietFor = clock.now() - endMs;
      const haveFinal =
        lastFinalEndMs >= endMs - FINAL_COVER_MS && lastFinalEndMs <= endMs + RESUMED_MARGIN_MS && partial === '';
      if ((haveFinal && quietFor >= needed) || quietFor >= opts.maxDelayMs) return emitTurnEnd(endMs, score);
      const wait = haveFinal ? needed - quietFor : opts.maxDelayMs - quietFor;
      decideTimer = setTimeout(decide, Math.max(5, wait));
    }

    /** Baseline: never before `fixedDelayMs` after the VAD's confirmed end, then as soon as a final is in. */
    function decideFixed(): void {
      clearTimer();
      if (speaking || speechEndMs === undefined || vadEndWall === 0) return;
      const now = Date.now();
      const earliest = vadEndWall + opts.fixedDelayMs;
      const haveFinal = lastFinalEndMs >= speechEndMs - FINAL_COVER_MS && partial === '';
      if (now >= earliest && (haveFinal || now >= earliest + opts.maxDelayMs)) {
        vadEndWall = 0;
        return emitTurnEnd(speechEndMs, heuristicEou.score(text()));
      }
      decideTimer = setTimeout(decideFixed, now < earliest ? earliest - now : earliest + opts.maxDelayMs - now);
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

    function speechStarted(atMs: number): void {
      speaking = true;
      speechStartMs = atMs;
      speechEndMs = undefined; // the user goes on: this is still the same turn
      clearTimer();
    }

    /**
     * Follows the VAD inside speech: adaptive endpointing counts quiet from the first quiet frame, not from the
     * VAD's confirmation `minSilenceMs` later; a loud frame after that is the user going on.
     */
    function followVad(seg: SpeechSegmenter, tsMs: number, events: readonly { kind: 'start' | 'end'; atMs: number }[]) {
      for (const ev of events) {
        ctx.publish(channels.vad, { kind: ev.kind, atMs: ev.atMs }, { context: frameContext });
        if (ev.kind === 'start') {
          if (!speaking) speechStarted(ev.atMs);
        } else if (opts.mode === 'fixed') {
          speaking = false;
          speechEndMs = ev.atMs;
          vadEndWall = Date.now();
        } else if (speaking) {
          speaking = false;
          speechEndMs = ev.atMs;
        }
      }
      if (opts.mode === 'fixed' || !seg.inSpeech) return;
      if (seg.lastProbability < seg.options.endThreshold) {
        if (speaking) {
          speaking = false;
          speechEndMs = tsMs;
        }
      } else if (seg.lastProbability >= seg.options.startThreshold && !speaking) {
        if (speechEndMs === undefined) {
          // The turn was already sent on this quiet: a new stretch of speech for everyone.
          ctx.publish(channels.vad, { kind: 'start', atMs: tsMs }, { context: frameContext });
        }
        speechStarted(speechEndMs === undefined ? tsMs : speechStartMs);
      }
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
      clock.observe(frame.tsMs, frame.samples.length, frame.sampleRate);
      segmenter ??= new SpeechSegmenter(vad, { originMs: frame.tsMs });
      const events = await segmenter.push(frame.samples);
      followVad(segmenter, frame.tsMs, events);
      decide();
      if (speaking && agentTurn && clock.latestMs - speechStartMs >= opts.bargeInMinSpeechMs) bargeIn(speechStartMs);
    });

    ctx.subscribe(channels.transcript, (t) => {
      if (t.endMs <= emittedUpToMs && emittedUpToMs >= 0) return; // late words of a turn already sent
      if (t.final) {
        if (t.text.trim() !== '') finals.push(t.text.trim());
        partial = '';
        lastFinalEndMs = Math.max(lastFinalEndMs, t.endMs);
      } else {
        partial = t.text;
      }
      decide();
    });

    ctx.subscribe(channels.playout, (p) => {
      if (p.done && p.turnId === agentTurn) agentTurn = undefined;
    });

    return {
      stop: async () => {
        clearTimer();
        await vad.close();
      },
    };
  };
}
