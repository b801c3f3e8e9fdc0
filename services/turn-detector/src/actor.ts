import { closeSession, type ActorContext, type SessionActor } from '@va/actor';
import { traceFields } from '@va/bus';
import { channels, sessionRequests, TURN_REPLAY_MAX, type Turn } from '@va/protocol';
import { heuristicEou, SpeechSegmenter, type EndOfUtteranceModel, type VAD } from '@va/providers';
import {
  ATTR,
  context,
  contextOf,
  counter,
  EVENT,
  METRIC,
  preciseNow,
  recordLatency,
  SPAN,
  startStageSpan,
  traceText,
  type Context,
} from '@va/telemetry';
import { ENDPOINTING_DEFAULTS, type EndpointingOptions } from './endpointing.js';
import { TurnTaking, wordCount, type TurnState, type TurnTakingEffects } from './turn-taking.js';

export const STAGE = 'turn-detector';
/** How long a new owner waits for stt's recent finals before going on without them. */
const TRANSCRIPT_REPLAY_TIMEOUT_MS = 500;
/** A session with no microphone frame for this long has lost its gateway for good (none resumed it). */
export const ORPHAN_AFTER_MS = 30_000;
/** Where the turn in flight is kept (va_state), for the instance that takes the session over if this one dies. */
const TURN_STATE = 'turn';

/**
 * Wires one session's turn-taking (turn-taking.ts: where the turn ends) to the bus: audio through the VAD into it,
 * transcripts and playout into it, and what it decides out as messages, spans and metrics.
 */
export function turnDetectorActor(
  makeVad: () => Promise<VAD>,
  options: Partial<EndpointingOptions> = {},
  eou: EndOfUtteranceModel = heuristicEou,
  lifetime: { orphanAfterMs?: number } = {},
) {
  const orphanAfterMs = lifetime.orphanAfterMs ?? ORPHAN_AFTER_MS;
  return async (ctx: ActorContext): Promise<SessionActor> => {
    const opts = sessionEndpointing(options, ctx.config.turn);
    const vad = await makeVad();
    // Taken over from an instance that died or drained: the turn in flight is where it left it.
    const saved = ctx.reclaimed ? await ctx.state.get<TurnState>(TURN_STATE).catch(() => undefined) : undefined;
    let segmenter: SpeechSegmenter | undefined;
    let frameContext: Context = context.active();

    // The newest turns sent, for a responder whose connection was lost when one went out (turn.replay); their trace
    // fields are built only when asked.
    const sent: { turn: Turn; context: Context }[] = [];
    const effects = busEffects(
      ctx,
      opts,
      eou,
      vad.provider,
      () => frameContext,
      (turn, context) => {
        sent.push({ turn, context });
        if (sent.length > TURN_REPLAY_MAX) sent.shift();
      },
    );
    ctx.serve(sessionRequests.turnReplay, () => ({
      turns: sent.map(({ turn, context }) => ({ turn, trace: traceFields(context) })),
    }));
    const turns = new TurnTaking(opts, eou, effects, saved);
    if (saved) {
      const words = wordCount(saved.finals.join(' '));
      ctx.log.info({ agentTurn: saved.agentTurn, emittedUpToMs: saved.emittedUpToMs, words }, 'turn state taken over');
    }

    // The agent's greeting, said once per session (not again by an instance that takes the session over). It goes
    // out with the first microphone frame: the gateway sends audio only once every stage has the session open.
    let greeting = ctx.reclaimed ? undefined : ctx.config.agent?.greeting;

    // A live gateway sends a frame every 20 ms, speech or not: none for this long means it died and no other
    // instance resumed the session. Closed, so every stage releases it (no lease or actor left behind).
    let lastFrameAt = performance.now();
    const orphanCheck =
      orphanAfterMs > 0
        ? setInterval(
            () => {
              if (performance.now() - lastFrameAt < orphanAfterMs) return;
              clearInterval(orphanCheck);
              ctx.log.warn({ orphanAfterMs }, 'no microphone audio: the gateway is gone; session closed');
              closeSession(ctx.bus, ctx.sessionId, 'gateway gone');
            },
            Math.min(5000, Math.max(50, orphanAfterMs / 4)),
          )
        : undefined;
    orphanCheck?.unref();

    ctx.subscribeAudio('in', async (frame, meta) => {
      lastFrameAt = performance.now();
      if (frame.sampleRate !== vad.sampleRate) {
        ctx.rejectAudio(meta, `turn-detector: frame at ${frame.sampleRate} Hz, VAD needs ${vad.sampleRate} Hz`);
        return;
      }
      if (greeting) {
        frameContext = meta.context;
        turns.greet(greeting, frame.tsMs);
        greeting = undefined;
      }
      frameContext = meta.context;
      turns.arrived(frame.tsMs, (frame.samples.length * 1000) / frame.sampleRate, frame);
      segmenter ??= new SpeechSegmenter(vad, { originMs: frame.tsMs });
      const events = await segmenter.push(frame.samples);
      const p = segmenter.lastProbability;
      const { startThreshold, endThreshold } = segmenter.options;
      turns.heard({
        tsMs: frame.tsMs,
        events,
        inSpeech: segmenter.inSpeech,
        level: p >= startThreshold ? 'speech' : p < endThreshold ? 'quiet' : 'between',
      });
    });

    ctx.subscribe(channels.transcript, (t) => turns.transcript(t));

    // Taken over: finals published while no instance held the session went nowhere; stt still has them.
    if (ctx.reclaimed) {
      void ctx.track(
        (async () => {
          try {
            const { finals: missed } = await ctx.request(
              sessionRequests.transcriptReplay,
              { afterMs: turns.transcriptsAfterMs },
              { timeoutMs: TRANSCRIPT_REPLAY_TIMEOUT_MS },
            );
            // A final that came live meanwhile moved the last final past it: not taken twice.
            for (const t of missed) if (t.endMs > turns.lastFinalMs && !ctx.signal.aborted) turns.transcript(t, true);
          } catch (err) {
            ctx.log.warn({ err: String(err) }, 'no finals from stt at takeover');
          }
        })(),
      );
    }

    ctx.subscribe(channels.playout, (p) => {
      if (p.done) turns.playedOut(p.turnId);
    });

    return {
      stop: async () => {
        clearInterval(orphanCheck);
        turns.stop();
        await vad.close();
      },
    };
  };
}

/** What turn-taking decides, sent on the session's channels (in the trace of the newest frame) and measured. */
function busEffects(
  ctx: ActorContext,
  opts: EndpointingOptions,
  eou: EndOfUtteranceModel,
  vadProvider: string,
  frameContext: () => Context,
  /** Every turn message as it goes out, with its trace. */
  sentTurn: (turn: Turn, context: Context) => void,
): TurnTakingEffects {
  // A turn ended on a partial and replaced by its final is the same user turn: the replacement goes out in the
  // trace of the turn it replaces, under its turn-detect span (the frames since carry no trace: the gateway opens
  // one on the next speech).
  let lastEnd: { turnId: string; context: Context } | undefined;
  let replacing: Context | undefined;
  const turnContext = () => replacing ?? frameContext();
  const publishOpts = () => ({ context: turnContext() });
  return {
    turn: (msg) => {
      const context = turnContext();
      ctx.publish(channels.turn, msg, { context });
      sentTurn(msg, context);
      if (msg.kind === 'end') replacing = undefined;
    },
    vad: (kind, atMs) => ctx.publish(channels.vad, { kind, atMs }, publishOpts()),
    cancel: (turnId, reason) => ctx.publish(channels.control, { kind: 'cancel', turnId, reason }, publishOpts()),
    save: (state) => ctx.state.keep(TURN_STATE, state),
    ended: ({ turnId, text, score, delayMs, previewedAt }) => {
      const span = startStageSpan(SPAN.turnDetect, {
        parent: turnContext(),
        sessionId: ctx.sessionId,
        turnId,
        stage: STAGE,
        startTime: preciseNow() - delayMs,
        attributes: {
          [ATTR.eouDelayMs]: Math.round(delayMs),
          [ATTR.eouScore]: score,
          [ATTR.eouModel]: eou.name,
          [ATTR.endpointing]: opts.mode,
          [ATTR.provider]: vadProvider,
          [ATTR.preemptive]: previewedAt !== undefined,
        },
      });
      if (traceText()) span.setAttribute(ATTR.text, text);
      if (previewedAt !== undefined) span.addEvent(EVENT.preview, previewedAt);
      lastEnd = { turnId, context: contextOf(span) };
      recordLatency(METRIC.eouDelay, delayMs, { span, attributes: { [ATTR.stage]: STAGE } });
      span.end();
    },
    bargedIn: (turnId, atMs) => {
      counter(METRIC.bargeIns).add(1, { [ATTR.stage]: STAGE });
      ctx.log.info({ turnId, atMs }, 'barge-in');
    },
    revised: (from, to) => {
      if (lastEnd?.turnId === from.turnId) replacing = lastEnd.context;
      counter(METRIC.turnsRevised).add(1, { [ATTR.stage]: STAGE });
      ctx.log.info({ turnId: from.turnId, newTurnId: to.turnId }, 'turn ended on a partial, replaced by its final');
    },
    resumed: (turnId) => {
      counter(METRIC.falseInterruptions).add(1, { [ATTR.stage]: STAGE });
      ctx.log.info({ turnId }, 'false interruption: resuming');
    },
  };
}

/** Service defaults, then what this session asked for in session.open (its agent's turn settings). */
function sessionEndpointing(
  options: Partial<EndpointingOptions>,
  turn: ActorContext['config']['turn'],
): EndpointingOptions {
  const { endpointing, ...perSession } = turn ?? {};
  return { ...ENDPOINTING_DEFAULTS, ...options, ...perSession, ...(endpointing ? { mode: endpointing } : {}) };
}
