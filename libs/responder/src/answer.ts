import { CANCEL_REASON, type ChatMessage, type Reply, type ToolCall, type ToolExchange, type Turn } from '@va/protocol';
import { failoverCounter, type LLM, type LLMOptions, type LLMUsage, type ServedBy } from '@va/providers';
import {
  ATTR,
  contextOf,
  counter,
  EVENT,
  METRIC,
  recordError,
  recordLatency,
  SPAN,
  startStageSpan,
  traceText,
  type Context,
  type Span,
  type SpanName,
} from '@va/telemetry';
import type { HistoryReader } from './history.js';
import { TOOL_APOLOGY } from './prompts.js';
import type { ToolRegistry, ToolResult } from './tools.js';

const round1 = (ms: number) => Math.round(ms * 10) / 10;
const round3 = (ms: number) => Math.round(ms * 1000) / 1000;

/** Rough token count (≈ 4 characters a token, plus per-message overhead) until providers report usage. */
function estimateTokens(messages: readonly ChatMessage[]): number {
  return messages.reduce((n, m) => n + Math.ceil(m.content.length / 4) + 4, 0);
}

const WASTED_REASONS: ReadonlySet<string> = new Set([CANCEL_REASON.preemptMismatch, CANCEL_REASON.preemptAbandoned]);

/** What a responder is: its model, prompt and budget; the same for every turn of a session. */
export interface AnswerSettings {
  stage: string;
  /** The generation span's name (fast-generate, deep-generate). */
  spanName: SpanName;
  llm: LLM;
  /** The system prompt (persona and tool instructions included). */
  system: string;
  llmOptions: LLMOptions;
  tools: ToolRegistry | undefined;
  maxToolRounds: number;
  apologyOnFailure: string | undefined;
}

/** What answering a turn does to the world: the actor sends it on the bus, a test records it. */
export interface AnswerOutput {
  readonly sessionId: string;
  reply(msg: Reply, context: Context): void;
  tool(msg: ToolExchange, context: Context): void;
  /** Generation failed before the turn was answered (logged, an `error` event). */
  failed(turnId: string, err: unknown): void;
  toolFailed(turnId: string, tool: string, outcome: string): void;
}

/** What the session knows about a turn while it is being answered. */
export interface TurnVerdicts {
  /** Resolves when a preview is committed or cancelled (at once for a committed turn). */
  verdict(turnId: string, signal: AbortSignal): Promise<void>;
  cancelReason(turnId: string): string | undefined;
}

/** Where an answer is: reading history, generating, running tools, waiting for its preview's verdict, over. */
export type AnswerPhase = 'history' | 'generating' | 'tools' | 'verdict' | 'done';

/**
 * One turn's answer: history + the user's words to the model, its text streamed out as reply deltas as it comes,
 * tool rounds (a preview's tools wait for its commit), then `done`. On failure before any text, the apology; a
 * preview's span stays open until the turn detector rules on it, so its cost is counted.
 */
export class TurnAnswer {
  phase: AnswerPhase = 'history';
  private readonly span: Span;
  private readonly spanContext: Context;
  private seq = 0;
  private text = '';
  private promptTokens = 0;
  private completionTokens = 0;
  private started = performance.now();
  private readonly countFailover: ReturnType<typeof failoverCounter>;

  constructor(
    private readonly turn: Turn,
    private readonly parent: Context,
    private readonly signal: AbortSignal,
    private readonly settings: AnswerSettings,
    private readonly history: HistoryReader,
    private readonly verdicts: TurnVerdicts,
    private readonly out: AnswerOutput,
    retried = false,
  ) {
    this.span = startStageSpan(settings.spanName, {
      parent,
      sessionId: out.sessionId,
      turnId: turn.turnId,
      stage: settings.stage,
      attributes: {
        [ATTR.provider]: settings.llm.provider,
        [ATTR.model]: settings.llm.model,
        [ATTR.preemptive]: turn.kind === 'preview',
        ...(retried ? { [ATTR.retried]: true } : {}),
      },
    });
    this.spanContext = contextOf(this.span, parent);
    this.countFailover = failoverCounter(settings.stage);
  }

  async run(): Promise<void> {
    const { signal } = this;
    try {
      const messages = await this.prompt();
      this.started = performance.now();
      const toolFailed = await this.converse(messages);
      // The model was told the tool failed; if it then said nothing, the user still hears why there is no answer.
      if (!signal.aborted && toolFailed && this.text.trim() === '') this.emit(TOOL_APOLOGY);
      if (!signal.aborted) this.end();
    } catch (err) {
      if (!signal.aborted) {
        recordError(this.span, err);
        this.out.failed(this.turn.turnId, err);
        const apology = this.settings.apologyOnFailure;
        if (apology && this.text.trim() === '') this.emit(apology);
        // Close the stream so tts is not left waiting for a `done` that never comes.
        this.end();
      }
    } finally {
      await this.finish();
    }
  }

  /** System prompt, history (timed: it is our overhead, time to first token is the provider's) and the words. */
  private async prompt(): Promise<ChatMessage[]> {
    const fetching = performance.now();
    const past = await this.history(this.turn);
    this.span.setAttributes({ [ATTR.historyMs]: round3(performance.now() - fetching), [ATTR.cacheHit]: past.hit });
    return [
      { role: 'system', content: this.settings.system },
      ...past.messages,
      { role: 'user', content: this.turn.text },
    ];
  }

  /** Model rounds until it answers without tools (the last round offers none). True if a tool failed. */
  private async converse(messages: ChatMessage[]): Promise<boolean> {
    const { tools, maxToolRounds } = this.settings;
    const llmOptions: LLMOptions = {
      ...this.settings.llmOptions,
      // One key per session: each turn's prompt extends the previous one, which is what a prompt cache reuses.
      promptCacheKey: `${this.settings.stage}:${this.out.sessionId}`,
    };
    let toolFailed = false;
    let rounds = 0;
    for (;;) {
      // The tools running now (tool services come and go between rounds).
      const specs = tools !== undefined && rounds < maxToolRounds ? tools.specs : [];
      const offerTools = specs.length > 0;
      this.phase = 'generating';
      const round = await this.generate(messages, offerTools ? { ...llmOptions, tools: specs } : llmOptions);
      this.promptTokens += round.usage?.promptTokens ?? estimateTokens(messages);
      this.completionTokens += round.usage?.completionTokens ?? round.deltas;
      if (round.usage?.cachedTokens !== undefined) this.span.setAttribute(ATTR.cachedTokens, round.usage.cachedTokens);
      if (this.signal.aborted || round.calls.length === 0 || !offerTools) break;
      rounds++;
      const results = await this.toolRound(round.calls);
      if (!results) break;
      toolFailed ||= results.some((r) => r.outcome !== 'ok');
      // A tool that decides the last words (a handoff: the new agent's greeting) ends the answer with them.
      const say = results.find((r) => r.say)?.say;
      if (say) {
        this.emit(this.text === '' || /\s$/.test(this.text) ? say : ` ${say}`);
        break;
      }
      messages.push(
        { role: 'assistant', content: round.text, toolCalls: round.calls },
        ...results.map((r): ChatMessage => ({ role: 'tool', toolCallId: r.call.id, content: r.content })),
      );
    }
    if (rounds > 0) this.span.setAttribute(ATTR.toolRounds, rounds);
    return toolFailed;
  }

  /** One LLM request: its text is streamed out as it comes; tool calls and usage are returned. */
  private async generate(messages: readonly ChatMessage[], llmOptions: LLMOptions) {
    const round = { text: '', deltas: 0, calls: [] as ToolCall[], usage: undefined as LLMUsage | undefined };
    for await (const event of this.settings.llm.chat(messages, llmOptions, this.signal)) {
      if (this.signal.aborted) break;
      if (event.type === 'text') {
        if (event.text === '') continue;
        round.text += event.text;
        round.deltas++;
        this.emit(event.text);
      } else if (event.type === 'tool-calls') {
        round.calls.push(...event.calls);
      } else if (event.type === 'usage') {
        round.usage = event.usage;
      } else {
        this.servedBy(event);
      }
    }
    return round;
  }

  /** The model's tool calls, run together; undefined if the turn was cancelled meanwhile. */
  private async toolRound(calls: ToolCall[]): Promise<ToolResult[] | undefined> {
    // Tools act on the world: a preview's calls wait until the turn is committed (and run only if it is).
    if (this.turn.kind === 'preview') {
      this.phase = 'verdict';
      await this.verdicts.verdict(this.turn.turnId, this.signal);
    }
    if (this.signal.aborted) return undefined;
    this.phase = 'tools';
    const results = await Promise.all(calls.map((call) => this.runTool(call)));
    if (this.signal.aborted) return undefined;
    const exchange = results.map((r) => ({
      call: r.call,
      result: r.content,
      ok: r.outcome === 'ok',
      durationMs: r.durationMs,
    }));
    this.out.tool({ turnId: this.turn.turnId, calls: exchange }, this.spanContext);
    return results;
  }

  /** One tool call under its own span (a child of the generation), counted by name and outcome. */
  private async runTool(call: ToolCall): Promise<ToolResult> {
    const { stage } = this.settings;
    const span = startStageSpan(SPAN.tool, {
      parent: this.spanContext,
      sessionId: this.out.sessionId,
      turnId: this.turn.turnId,
      stage,
      attributes: { [ATTR.toolName]: call.name, [ATTR.toolCallId]: call.id },
    });
    // The tool's own span (a tool service's, in its process) joins this one: the trace context goes with the call.
    const result = await this.settings.tools!.call(call, this.signal, contextOf(span), this.turn.turnId);
    span.setAttribute(ATTR.toolOutcome, result.outcome);
    if (result.outcome !== 'ok' && result.outcome !== 'cancelled') {
      // The content can quote the model's arguments (LLM text, often the user's words): only with VA_TRACE_TEXT.
      recordError(span, new Error(traceText() ? result.content : `${call.name}: ${result.outcome}`));
      this.out.toolFailed(this.turn.turnId, call.name, result.outcome);
    }
    const attrs = { [ATTR.stage]: stage, [ATTR.toolName]: call.name, [ATTR.toolOutcome]: result.outcome };
    counter(METRIC.toolCalls).add(1, attrs);
    recordLatency(METRIC.toolDuration, result.durationMs, { span, attributes: attrs });
    span.end();
    return result;
  }

  private emit(delta: string): void {
    if (this.seq === 0) {
      const ttft = performance.now() - this.started;
      this.span.setAttribute(ATTR.ttftMs, round1(ttft));
      recordLatency(METRIC.ttft, ttft, { span: this.span, attributes: { [ATTR.stage]: this.settings.stage } });
    }
    this.text += delta;
    this.out.reply({ turnId: this.turn.turnId, seq: this.seq++, delta, done: false }, this.parent);
  }

  private end(): void {
    this.out.reply({ turnId: this.turn.turnId, seq: this.seq, delta: '', done: true }, this.parent);
  }

  /** A fallback chain chose a provider: the span says which, and who was given up on. */
  private servedBy(event: ServedBy): void {
    this.span.setAttributes({
      [ATTR.provider]: event.provider,
      [ATTR.model]: event.model,
      [ATTR.fallback]: event.fallback,
    });
    for (const f of event.failovers) {
      this.span.addEvent(EVENT.failover, { [ATTR.provider]: f.provider, [ATTR.failoverReason]: f.reason });
      this.countFailover(f);
    }
  }

  /** Tokens, the verdict on a preview (its cost is known only then), what was wasted; the span ends. */
  private async finish(): Promise<void> {
    const { span, signal } = this;
    span.setAttribute(ATTR.promptTokens, this.promptTokens);
    span.setAttribute(ATTR.completionTokens, this.completionTokens);
    if (this.turn.kind === 'preview') {
      this.phase = 'verdict';
      await this.verdicts.verdict(this.turn.turnId, signal);
    }
    this.phase = 'done';
    const reason = this.verdicts.cancelReason(this.turn.turnId);
    if (reason !== undefined) span.setAttribute(ATTR.cancelReason, reason);
    // Early work the committed turn did not want: what preemptive generation costs, counted once per request.
    if (reason !== undefined && WASTED_REASONS.has(reason) && this.promptTokens > 0) {
      const wasted = this.promptTokens + this.completionTokens;
      const attrs = { [ATTR.stage]: this.settings.stage };
      span.setAttribute(ATTR.wastedTokens, wasted);
      span.addEvent(EVENT.preemptiveCancel, { [ATTR.cancelReason]: reason });
      counter(METRIC.preemptiveWasted).add(1, attrs);
      counter(METRIC.preemptiveWastedTokens).add(wasted, attrs);
    }
    span.setAttribute(ATTR.interrupted, signal.aborted);
    if (traceText()) span.setAttribute(ATTR.text, this.text);
    span.end();
  }
}
