import { ATTR, EVENT, SPAN } from '@va/telemetry';
import type { ReceivedSpan } from '@va/testkit';

/**
 * Time of one turn that is neither provider time nor turn-taking policy, from span timestamps: the hops
 * between stages, schema checks, history fetch and scheduling, on the path to the first audio the user heard:
 *   turn.detect end (or its `preview` event, with preemptive generation) → generate start (turn message),
 *   + history fetch,
 *   first token → tts start (reply message), first audio made → gateway receives it (audio message).
 * Excluded: endpointing (turn.detect), the LLM's time to first token, the TTS's first byte, and the wait for the
 * gateway's 20 ms frame clock (inherent in real-time playout). Undefined when a span is missing.
 */
export interface OverheadParts {
  /** turn.detect end, or the preview it committed → the responder's span start (the `turn` message). */
  turnHop: number;
  /** The responder fetching history from session-context. */
  history: number;
  /** First token → tts span start (the first `reply` delta). */
  replyHop: number;
  /** First audio made by tts → received by the gateway (`audio.out`). */
  audioHop: number;
}

export function turnOverheadMs(spans: readonly ReceivedSpan[]): number | undefined {
  const parts = turnOverheadParts(spans);
  if (!parts) return undefined;
  const total = parts.turnHop + parts.history + parts.replyHop + parts.audioHop;
  return Number.isFinite(total) ? total : undefined;
}

export function turnOverheadParts(spans: readonly ReceivedSpan[]): OverheadParts | undefined {
  const play = spans.find((s) => s.name === SPAN.gatewayPlayout);
  const detect = spans.find((s) => s.name === SPAN.turnDetect);
  if (!play || !detect) return undefined;
  const source = play.attributes[ATTR.firstSource] === 'deep' ? 'deep' : 'fast';
  // The turn that played (a trace may also hold a cancelled preview's spans).
  const turnId = play.attributes[ATTR.turnId];
  const ofTurn = (s: ReceivedSpan) => s.attributes[ATTR.turnId] === turnId;
  const gen = spans.find((s) => s.name === (source === 'fast' ? SPAN.fastGenerate : SPAN.deepGenerate) && ofTurn(s));
  const tts = spans.find((s) => s.name === SPAN.ttsSynthesize && s.attributes[ATTR.source] === source && ofTurn(s));
  if (!gen || !tts) return undefined;
  const num = (s: ReceivedSpan, key: string) =>
    typeof s.attributes[key] === 'number' ? (s.attributes[key] as number) : NaN;
  const history = num(gen, ATTR.historyMs);
  const tokenAt = gen.startMs + history + num(gen, ATTR.ttftMs);
  const audioMadeAt = tts.startMs + num(tts, ATTR.ttfbMs);
  const arrivedAt = play.startMs - num(play, ATTR.bufferWaitMs);
  const previewedAt = detect.events.find((e) => e.name === EVENT.preview)?.timeMs;
  return {
    turnHop: gen.startMs - (previewedAt ?? detect.endMs),
    history,
    replyHop: tts.startMs - tokenAt,
    audioHop: arrivedAt - audioMadeAt,
  };
}
