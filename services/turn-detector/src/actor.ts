import { randomBytes } from 'node:crypto';
import type { ActorContext, SessionActor } from '@va/actor';
import { FrameClock } from '@va/audio';
import { CANCEL_REASON, channels, LIMITS, sessionRequests, type Transcript } from '@va/protocol';
import { SpeechSegmenter, type VAD } from '@va/providers';
import {
  ATTR,
  context,
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
/**
 * Words scoring below this sound unfinished: no preview for them (the early request would mostly be wasted), and
 * if their turn was ended anyway (`maxDelayMs`), speech right after it continues it.
 */
const PREVIEW_MIN_SCORE = 0.5;

/** Between frames, quiet may be assumed for about one frame; after this long without frames, the input stopped. */
const HEARD_AHEAD_MS = 20;
const INPUT_STALL_MS = 250;
/** Extra wait past `maxDelayMs` while the recogniser has not yet heard the end of the speech. */
const STT_LAG_GRACE_MS = 3_000;
/** How long a new owner waits for stt's recent finals before going on without them. */
const TRANSCRIPT_REPLAY_TIMEOUT_MS = 500;

/** Where the turn in flight is kept (va_state), for the instance that takes the session over if this one dies. */
const TURN_STATE = 'turn';

/**
 * What a new owner needs to carry on mid-conversation: which audio is already answered, the agent turn a user
 * could barge in on, the words heard so far of the turn being collected, and a preview the responders started on.
 */
interface TurnState {
  emittedUpToMs: number;
  agentTurn?: string;
  lastEmitted?: { turnId: string; text: string; score: number; atWall: number };
  finals: string[];
  lastFinalEndMs: number;
  preview?: { turnId: string; text: string; atWall: number };
}

function newTurnId(): string {
  return `t${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
}

/** Words as a recogniser's text compares: case and punctuation do not make a preview differ. */
function sameWords(a: string, b: string): boolean {
  const norm = (t: string) =>
    t
      .toLowerCase()
      .replace(/[^\p{L}\p{N}' ]/gu, ' ')
      .split(/\s+/)
      .filter(Boolean)
      .join(' ');
  return norm(a) === norm(b);
}

function wordCount(text: string): number {
  return text.split(/\s+/).filter((w) => /[\p{L}\p{N}]/u.test(w)).length;
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
    // Taken over from an instance that died or drained: the turn in flight is where it left it.
    const saved = ctx.reclaimed ? await ctx.state.get<TurnState>(TURN_STATE).catch(() => undefined) : undefined;
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
    let partialStable = false;
    let lastFinalEndMs = -1;
    /** How far the recogniser has heard (the newest transcript's end): behind the speech end = words still coming. */
    let sttHeardMs = -1;
    /** Speech end of the last turn emitted: transcripts of audio before it belong to that turn. */
    let emittedUpToMs = saved?.emittedUpToMs ?? -1;
    /** The agent turn being answered/played; user speech over it is a barge-in. */
    let agentTurn: string | undefined = saved?.agentTurn;
    let lastEmitted: TurnState['lastEmitted'] = saved?.lastEmitted;
    let decideTimer: NodeJS.Timeout | undefined;
    /** A barge-in waiting for words: the agent's playout is paused meanwhile. */
    let paused: { turnId: string; atWall: number; resumeTimer?: NodeJS.Timeout } | undefined;
    /** The preview sent for the speech being judged (preemptive generation), until it is committed or cancelled. */
    let preview: TurnState['preview'] = saved?.preview;
    /** Audio time of the first frame of the current run of speech frames (before the VAD confirms it). */
    let speechRunStartMs: number | undefined;
    /** Baseline mode only: wall time of the VAD's confirmed end. */
    let vadEndWall = 0;
    /** Audio time of the first frame this actor heard: words from before it were spoken before it took over. */
    let firstHeardMs: number | undefined;
    if (saved) {
      finals = saved.finals;
      lastFinalEndMs = saved.lastFinalEndMs;
      ctx.log.info({ agentTurn, emittedUpToMs, words: wordCount(finals.join(' ')) }, 'turn state taken over');
    }

    /** Saves the turn state for a successor (see TurnState). */
    function persist(): void {
      const state: TurnState = { emittedUpToMs, finals, lastFinalEndMs };
      if (agentTurn) state.agentTurn = agentTurn;
      if (lastEmitted) state.lastEmitted = lastEmitted;
      if (preview) state.preview = preview;
      ctx.state.keep(TURN_STATE, state);
    }

    // At most what one turn message may carry (the newest words).
    const text = () =>
      [...finals, partial]
        .filter((t) => t.trim() !== '')
        .join(' ')
        .trim()
        .slice(-LIMITS.textChars)
        .trim();

    function clearTimer(): void {
      clearTimeout(decideTimer);
      decideTimer = undefined;
    }

    function emitTurnEnd(endMs: number, score: number): void {
      clearTimer();
      // The user has had their say over the agent's turn: that is a barge-in, whatever the VAD made of it.
      if (text() !== '') {
        if (agentTurn) bargeIn(speechStartMs);
        commitBargeIn();
      }
      const said = text();
      speechEndMs = undefined;
      if (said === '') return; // noise: VAD heard something the recogniser found no words in
      // The preview already started the responders: commit it if the words are the same, else start over.
      const previewedAt = preview && sameWords(preview.text, said) ? preview.atWall : undefined;
      const previewed = previewedAt !== undefined ? preview!.turnId : undefined;
      if (!previewed) cancelPreview(CANCEL_REASON.preemptMismatch);
      preview = undefined;
      const turnId = previewed ?? newTurnId();
      const delay = Math.max(0, Date.now() - clock.wallOf(endMs));
      const span = startStageSpan(SPAN.turnDetect, {
        parent: frameContext,
        sessionId: ctx.sessionId,
        turnId,
        stage: STAGE,
        startTime: preciseNow() - delay,
        attributes: {
          [ATTR.eouDelayMs]: Math.round(delay),
          [ATTR.eouScore]: score,
          [ATTR.eouModel]: eou.name,
          [ATTR.endpointing]: opts.mode,
          [ATTR.provider]: vad.provider,
          [ATTR.preemptive]: previewed !== undefined,
        },
      });
      if (traceText()) span.setAttribute(ATTR.text, said);
      if (previewedAt !== undefined) span.addEvent(EVENT.preview, previewedAt);
      recordLatency(METRIC.eouDelay, delay, { span, attributes: { [ATTR.stage]: STAGE } });
      span.end();
      ctx.publish(
        channels.turn,
        { turnId, kind: 'end', text: said, eouProb: score, speechEndMs: endMs },
        { context: frameContext },
      );
      agentTurn = turnId;
      lastEmitted = { turnId, text: said, score, atWall: Date.now() };
      emittedUpToMs = endMs;
      finals = [];
      partial = '';
      persist();
    }

    /** Preemptive generation: the words are settled and the user is quiet; the turn is not committed yet. */
    function emitPreview(endMs: number, said: string, score: number): void {
      const turnId = newTurnId();
      preview = { turnId, text: said, atWall: preciseNow() };
      ctx.publish(
        channels.turn,
        { turnId, kind: 'preview', text: said, eouProb: score, speechEndMs: endMs },
        { context: frameContext },
      );
      // Saved after it is sent: the server stores a KV write inline, and the responders should not wait on it.
      persist();
    }

    function cancelPreview(reason: string): void {
      if (!preview) return;
      ctx.publish(channels.control, { kind: 'cancel', turnId: preview.turnId, reason }, { context: frameContext });
      preview = undefined;
      persist();
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
      // Quiet that was heard: a detector running behind its frames must not end the turn on audio still queued.
      const quietFor = clock.heard(HEARD_AHEAD_MS, INPUT_STALL_MS) - endMs;
      const haveFinal =
        lastFinalEndMs >= endMs - FINAL_COVER_MS && lastFinalEndMs <= endMs + RESUMED_MARGIN_MS && partial === '';
      // `maxDelayMs` ends a turn whose final never comes; but while the recogniser is still behind the end of the
      // speech (a loaded machine, a slow network) its words are not all in yet, and ending now would cut them.
      const sttBehind = sttHeardMs < endMs - FINAL_COVER_MS;
      const capMs = sttBehind ? opts.maxDelayMs + STT_LAG_GRACE_MS : opts.maxDelayMs;
      if ((haveFinal && quietFor >= needed) || quietFor >= capMs) return emitTurnEnd(endMs, score);
      const settled = haveFinal || (partialStable && partial !== '');
      if (opts.preemptiveGeneration && !preview && !paused && settled && said !== '' && score >= PREVIEW_MIN_SCORE) {
        emitPreview(endMs, said, score);
      }
      const wait = haveFinal ? needed - quietFor : capMs - quietFor;
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

    /**
     * The user speaks over the agent's turn: pause its playout at once, then end the turn when words come
     * (`commitBargeIn`) or play on when none do (`resumeAfterNoise`).
     */
    function bargeIn(atMs: number): void {
      if (!agentTurn || paused) return;
      paused = { turnId: agentTurn, atWall: Date.now() };
      counter(METRIC.bargeIns).add(1, { [ATTR.stage]: STAGE });
      ctx.log.info({ turnId: agentTurn, atMs }, 'barge-in');
      ctx.publish(
        channels.turn,
        { turnId: agentTurn, kind: 'barge-in', text: '', eouProb: 0, speechEndMs: atMs },
        { context: frameContext },
      );
      // Words may be in before the VAD has heard enough (the recogniser can be quicker): they count.
      if (!opts.resumeFalseInterruption || wordCount(text()) >= opts.minInterruptionWords) commitBargeIn();
    }

    /** Words over the agent: its turn ends everywhere (LLMs, tts, playout), and the user's new turn begins. */
    function commitBargeIn(): void {
      if (!paused) return;
      const { turnId, atWall } = paused;
      clearTimeout(paused.resumeTimer);
      paused = undefined;
      if (agentTurn === turnId) agentTurn = undefined;
      // Talking again right after a turn that was sent unfinished ("a table with…", ended by `maxDelayMs`): the
      // user was not done, their words carry over. A finished question followed by another stays two turns.
      if (
        lastEmitted?.turnId === turnId &&
        lastEmitted.score < PREVIEW_MIN_SCORE &&
        atWall - lastEmitted.atWall < opts.continuationWindowMs
      ) {
        finals.unshift(lastEmitted.text);
      }
      ctx.publish(
        channels.control,
        { kind: 'cancel', turnId, reason: CANCEL_REASON.bargeIn },
        { context: frameContext },
      );
      persist();
    }

    /** Quiet for `falseInterruptionMs` without words: a cough, a door — the agent plays on from where it stopped. */
    function resumeAfterNoise(): void {
      if (!paused) return;
      const { turnId } = paused;
      paused = undefined;
      counter(METRIC.falseInterruptions).add(1, { [ATTR.stage]: STAGE });
      ctx.log.info({ turnId }, 'false interruption: resuming');
      ctx.publish(
        channels.turn,
        { turnId, kind: 'resume', text: '', eouProb: 0, speechEndMs: clock.latestMs },
        { context: frameContext },
      );
    }

    /** While paused: the resume countdown runs only while the user is quiet. */
    function followPause(): void {
      if (!paused) return;
      if (speaking) {
        clearTimeout(paused.resumeTimer);
        paused.resumeTimer = undefined;
      } else {
        paused.resumeTimer ??= setTimeout(resumeAfterNoise, opts.falseInterruptionMs);
      }
    }

    function speechStarted(atMs: number): void {
      // The user goes on: a preview of their words so far will not be what they said.
      cancelPreview(CANCEL_REASON.preemptAbandoned);
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
        ctx.rejectAudio(meta, `turn-detector: frame at ${frame.sampleRate} Hz, VAD needs ${vad.sampleRate} Hz`);
        return;
      }
      frameContext = meta.context;
      clock.observe(frame.tsMs, frame.samples.length, frame.sampleRate);
      firstHeardMs ??= frame.tsMs;
      segmenter ??= new SpeechSegmenter(vad, { originMs: frame.tsMs });
      const events = await segmenter.push(frame.samples);
      followVad(segmenter, frame.tsMs, events);
      decide();
      // Barge-in does not wait for the VAD to confirm speech: a pause costs little (the agent resumes if no
      // words come), a late stop is what users hear. Counted from the first speech frame of the run.
      if (segmenter.lastProbability >= segmenter.options.startThreshold) speechRunStartMs ??= frame.tsMs;
      else speechRunStartMs = undefined;
      if (agentTurn && speechRunStartMs !== undefined && clock.latestMs - speechRunStartMs >= opts.bargeInMinSpeechMs) {
        bargeIn(speaking ? Math.min(speechStartMs, speechRunStartMs) : speechRunStartMs);
      }
      followPause();
    });

    /**
     * Words from the recogniser. `beforeTakeover`: a final published while no instance held the session (read
     * back from stt at takeover), spoken before this actor heard any audio.
     */
    function onTranscript(t: Transcript, beforeTakeover = false): void {
      sttHeardMs = Math.max(sttHeardMs, t.endMs);
      if (t.endMs <= emittedUpToMs && emittedUpToMs >= 0) return; // late words of a turn already sent
      if (t.final) {
        if (t.text.trim() !== '') finals.push(t.text.trim());
        // A turn's text is at most LIMITS.textChars: a user who never pauses keeps their latest words.
        while (finals.length > 1 && finals.join(' ').length > LIMITS.textChars) finals.shift();
        partial = '';
        partialStable = false;
        lastFinalEndMs = Math.max(lastFinalEndMs, t.endMs);
        // Words that began before this actor heard any audio were spoken before it took the session over: if the
        // speech also ended before (the VAD here never heard it), where the recogniser says it ended is the end.
        const spokenBefore = beforeTakeover || (firstHeardMs !== undefined && t.startMs < firstHeardMs);
        if (!speaking && speechEndMs === undefined && spokenBefore && text() !== '') speechEndMs = t.endMs;
        persist();
      } else {
        partial = t.text;
        partialStable = t.stable;
      }
      if (paused && wordCount(text()) >= opts.minInterruptionWords) commitBargeIn();
      decide();
    }
    ctx.subscribe(channels.transcript, (t) => onTranscript(t));

    // Taken over: finals published while no instance held the session went nowhere; stt still has them.
    if (ctx.reclaimed) {
      void ctx.track(
        (async () => {
          try {
            const since = Math.max(emittedUpToMs, lastFinalEndMs);
            const { finals: missed } = await ctx.request(
              sessionRequests.transcriptReplay,
              { afterMs: since },
              { timeoutMs: TRANSCRIPT_REPLAY_TIMEOUT_MS },
            );
            // A final that came live meanwhile moved lastFinalEndMs past it: not taken twice.
            for (const t of missed) if (t.endMs > lastFinalEndMs && !ctx.signal.aborted) onTranscript(t, true);
          } catch (err) {
            ctx.log.warn({ err: String(err) }, 'no finals from stt at takeover');
          }
        })(),
      );
    }

    ctx.subscribe(channels.playout, (p) => {
      if (!p.done) return;
      if (p.turnId === agentTurn) {
        agentTurn = undefined;
        persist();
      }
      if (p.turnId === paused?.turnId) {
        clearTimeout(paused.resumeTimer);
        paused = undefined;
      }
    });

    return {
      stop: async () => {
        clearTimer();
        clearTimeout(paused?.resumeTimer);
        await vad.close();
      },
    };
  };
}
