import type { RecordedTurn, SessionRecording } from '@va/protocol';
import { ATTR, SPAN } from '@va/telemetry';
import type { AttrValue, ReceivedSpan } from '@va/testkit';
import { spanRows } from './trace-view.js';

/** One span of a turn's trace, in waterfall order (depth-first from the root, children by start). */
export interface ReportSpan {
  name: string;
  service: string;
  /** Relative to the turn's root span start. */
  startMs: number;
  durationMs: number;
  /** Depth under the root (0 = the root). */
  depth?: number;
  /** The span's key attributes (latencies, source, tool…; see KEY_ATTRIBUTES). */
  attributes?: Record<string, AttrValue>;
  /** The span ended in error. */
  error?: boolean;
  /** Span events (barge_in, budget_exceeded…), at ms relative to the root's start. */
  events?: { name: string; atMs: number; attributes: Record<string, AttrValue> }[];
}

export interface ReportTurn {
  turnId: string;
  /** The agent spoke first (its profile's greeting): no user turn before it. */
  greeting: boolean;
  /** What the scripted user said in this turn (utterances the turn's speech covers). */
  userText: string;
  transcript: string;
  opener: string;
  answer: string;
  spokenText: string;
  /** What the user actually heard of the agent's turn (opener + answer, cut where they barged in). */
  playedText: string;
  interrupted: boolean;
  /** Barge-in: the user's speech start (as the VAD dated it) → the last agent frame of this turn played. */
  bargeInStopMs: number | null;
  /** False interruptions on this turn: the agent paused and played on. */
  resumes: number;
  /** How long the turn detector waited after the user's speech ended before ending the turn. */
  eouDelayMs: number | null;
  traceId: string;
  /** First agent audio − user speech end (the voice-to-voice latency). */
  e2eMs: number | null;
  /** Where the first agent audio sits in the recording (session clock). */
  firstAudioMs: number | null;
  /** Silence between the opener's end and the answer's start (null when either is missing). */
  gapMs: number | null;
  /** A filler was played because the answer was late. */
  filler: boolean;
  /** The deep responder's tool calls in this turn: name, outcome, duration. */
  tools: { name: string; outcome: string; durationMs: number }[];
  spans: ReportSpan[];
}

export interface ConversationReport {
  sessionId: string;
  agentWav: string;
  mixWav: string;
  turns: ReportTurn[];
}

export interface SaidByStages {
  transcripts: Map<string, string>;
  openers: Map<string, string>;
  answers: Map<string, string>;
}

/** Barge-in: where the turn detector heard the user begin (the VAD's dated start) → the turn's last agent frame. */
function bargeInStopMs(t: RecordedTurn): number | null {
  if (!t.interrupted || t.lastAudioMs === null || t.bargeInAtMs === null) return null;
  return Math.round(t.lastAudioMs - t.bargeInAtMs);
}

/** Scripted utterances a turn's speech overlaps, as the user's words for that turn. */
function userTextOf(summary: SessionRecording, start: number, end: number): string {
  return summary.utterances
    .filter((u) => u.say !== '' && u.endMs > start - 300 && u.startMs < end + 300)
    .map((u) => u.say)
    .join(' ');
}

/** The turn's `turn-detect` span: its own where the trace holds two (a turn ended on a partial, then replaced). */
function turnDetectOf(spans: readonly ReceivedSpan[], turnId: string): ReceivedSpan | undefined {
  const detects = spans.filter((s) => s.name === SPAN.turnDetect);
  return detects.find((s) => s.attributes[ATTR.turnId] === turnId) ?? detects[0];
}

export function buildReport(
  summary: SessionRecording,
  spans: readonly ReceivedSpan[],
  said: SaidByStages,
): ConversationReport {
  const turns = summary.turns.map((t): ReportTurn => {
    const mine = spans.filter((s) => s.traceId === t.traceId);
    const segs = summary.segments.filter((s) => s.turnId === t.turnId);
    const fast = segs.filter((s) => s.source === 'fast');
    const deep = segs.filter((s) => s.source === 'deep');
    const gapMs = fast.length > 0 && deep.length > 0 ? deep[0]!.startMs - fast[fast.length - 1]!.endMs : null;
    const greeting = mine.some((s) => s.name === SPAN.turn && s.attributes[ATTR.greeting] === true);
    return {
      turnId: t.turnId,
      greeting,
      userText: greeting ? '' : userTextOf(summary, t.speechStartMs, t.speechEndMs),
      transcript: said.transcripts.get(t.turnId) ?? t.userText,
      opener: (said.openers.get(t.turnId) ?? '').trim(),
      answer: (said.answers.get(t.turnId) ?? '').trim(),
      spokenText: t.spokenText,
      playedText: t.spokenText,
      interrupted: t.interrupted,
      bargeInStopMs: bargeInStopMs(t),
      resumes: t.resumes,
      eouDelayMs: numberAttr(turnDetectOf(mine, t.turnId)?.attributes[ATTR.eouDelayMs]),
      traceId: t.traceId,
      e2eMs: t.e2eMs,
      firstAudioMs: t.firstAudioMs,
      gapMs,
      filler: segs.some((s) => s.source === 'filler'),
      tools: mine
        .filter((s) => s.name === SPAN.tool)
        .sort((a, b) => a.startMs - b.startMs)
        .map((s) => ({
          name: String(s.attributes[ATTR.toolName]),
          outcome: String(s.attributes[ATTR.toolOutcome]),
          durationMs: Math.round(s.durationMs),
        })),
      spans: spanRows(mine),
    };
  });
  return { sessionId: summary.sessionId, agentWav: summary.agentWav, mixWav: summary.mixWav, turns };
}

function numberAttr(v: unknown): number | null {
  return typeof v === 'number' ? v : null;
}
