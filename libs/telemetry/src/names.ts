/**
 * Every span, attribute and metric name of the product, in one place (docs/architecture.md "Traces"). Dashboards and tests
 * import these; nobody spells a telemetry name inline.
 */
export const SPAN = {
  /** Root of a turn's trace, opened by the gateway at the user's speech start. */
  turn: 'turn',
  sttTranscribe: 'stt.transcribe',
  turnDetect: 'turn.detect',
  fastGenerate: 'fast.generate',
  deepGenerate: 'deep.generate',
  ttsSynthesize: 'tts.synthesize',
  gatewayPlayout: 'gateway.playout',
  contextGet: 'context.get',
  /**
   * session-context recording a turn into the session's history (the user's words at turn end, what was played
   * at playout end): its span in every turn now that responders read history from their replica.
   */
  contextUpdate: 'context.update',
  /** Folding older messages into the session's summary: its own trace (linked to the turn that triggered it). */
  contextSummarize: 'context.summarize',
  /** One tool call of the deep responder (child of deep.generate). */
  tool: 'tool',
  /** A tool service running one call (its own process; a child of the deep responder's `tool` span). */
  toolRun: 'tool.run',
} as const;
export type SpanName = (typeof SPAN)[keyof typeof SPAN];

export const ATTR = {
  sessionId: 'va.session_id',
  turnId: 'va.turn_id',
  stage: 'va.stage',
  provider: 'va.provider',
  ttftMs: 'va.ttft_ms',
  ttfbMs: 'va.ttfb_ms',
  eouDelayMs: 'va.eou_delay_ms',
  interrupted: 'va.interrupted',
  /** On the root span: first agent audio frame out − user speech end. */
  e2eMs: 'va.e2e_ms',
  /** Time a responder spent fetching history before calling its LLM. */
  historyMs: 'va.history_ms',
  /** How long the first agent frame of a turn waited in the gateway's playout buffer (the frame clock). */
  bufferWaitMs: 'va.buffer_wait_ms',
  /** Which responder's audio the user heard first (fast, or deep when the opener was skipped). */
  firstSource: 'va.first_source',
  /** Which responder a tts span or audio belongs to: fast (opener) or deep (answer). */
  source: 'va.source',
  model: 'va.model',
  /** tts: frames sent for a source, and whether the opener was skipped. */
  frames: 'va.frames',
  skipped: 'va.skipped',
  /** stt: how long after the speech ended its final transcript came. */
  finalDelayMs: 'va.final_delay_ms',
  /** turn-detector: the end-of-utterance score, the model that gave it, and the endpointing mode. */
  eouScore: 'va.eou_score',
  eouModel: 'va.eou_model',
  endpointing: 'va.endpointing',
  /** session-context: which message of a turn a history update recorded (user, assistant, tool). */
  role: 'va.role',
  /** session-context: messages returned by ctx.get. */
  messages: 'va.messages',
  /** Only when VA_TRACE_TEXT=1: transcripts are personal data. */
  text: 'va.text',
  /** Work started on a `preview` turn, before the end of the user's turn was committed. */
  preemptive: 'va.preemptive',
  /** A turn answered again from the start by the instance that took the session over (its owner died mid-answer). */
  retried: 'va.retried',
  /** Preemptive work thrown away (the committed words differed): LLM tokens spent on it, prompt + completion (estimated). */
  wastedTokens: 'va.wasted_tokens',
  /** Why a turn's work was cancelled (the `control cancel` reason). */
  cancelReason: 'va.cancel_reason',
  /** gateway: user speech start of a barge-in → the last agent frame of that turn played. */
  bargeInStopMs: 'va.barge_in_stop_ms',
  /** A provider other than the first choice served (fallback chain); the one given up on and why (failover event). */
  fallback: 'va.fallback',
  failoverReason: 'va.failover.reason',
  /** gateway: silence between the opener's last frame played and the answer's first (root span). */
  answerGapMs: 'va.answer_gap_ms',
  /** tts / gateway: a filler was spoken because the answer's first audio was late. */
  filler: 'va.filler',
  /** The agent's turn was not an answer but spoken first (its profile's greeting). */
  greeting: 'va.greeting',
  /** A turn's root at a gateway that took its answer up after the gateway playing it died. */
  takenOver: 'va.taken_over',
  /** A tool call: the tool's name, its outcome (ok, error, timeout), and its id. */
  toolName: 'va.tool.name',
  toolOutcome: 'va.tool.outcome',
  toolCallId: 'va.tool.call_id',
  /** Responders: tool rounds in this generation. */
  toolRounds: 'va.tool.rounds',
  /** LLM usage as the provider reports it (estimated when it does not). */
  promptTokens: 'va.usage.prompt_tokens',
  completionTokens: 'va.usage.completion_tokens',
  cachedTokens: 'va.usage.cached_tokens',
  /** session-context: estimated tokens of a ctx.get reply (summary + messages), and its budget. */
  contextTokens: 'va.context.tokens',
  contextBudget: 'va.context.budget',
  /** session-context: whether a summary was returned; messages folded into the summary by one summarize run. */
  hasSummary: 'va.context.has_summary',
  summarizedMessages: 'va.context.summarized_messages',
  /** session-context: how a summarize run ended (ok, timeout, error). */
  summaryOutcome: 'va.context.summary_outcome',
  /** session-context: ctx.get served from the in-memory cache (true) or read from KV (false). */
  cacheHit: 'va.context.cache_hit',
  /** Why audio was dropped (e.g. queue-full, stale-turn, late). */
  dropReason: 'va.drop_reason',
  /** Of a pooled decoder count: loaded, leased (serving a speaker) or waiting (speakers waiting for one). */
  decoderState: 'va.decoder_state',
  /** Which bounded queue dropped (e.g. `audio.in` backlog, `stt.frames`, `tts.text`). */
  queue: 'va.queue',
  /** A message channel (`audio.in`, `reply.deep`…), as the bus labels its message counters. */
  channel: 'channel',
  /** A breached latency budget: which latency (a METRIC name) and its budget in ms. */
  budgetMetric: 'va.budget.metric',
  budgetMs: 'va.budget.ms',
  /** The latency that went over its budget (ms), on the budget_exceeded event. */
  budgetValueMs: 'va.budget.value_ms',
  subject: 'messaging.destination.name',
  errorCode: 'va.error_code',
  /** Why the web transport refused or cut off a client (origin, connect-rate, sessions-per-client, idle, …). */
  refusal: 'va.refusal',
} as const;

export const METRIC = {
  /** Messages dropped because they failed their schema (attributes: stage, channel). */
  messagesRejected: 'va.messages.rejected',
  messagesPublished: 'va.messages.published',
  messagesReceived: 'va.messages.received',
  sessionsOwned: 'va.sessions.owned',
  sessionsClaimed: 'va.sessions.claimed',
  sessionsReclaimed: 'va.sessions.reclaimed',
  turnsCancelled: 'va.turns.cancelled',
  /** Committed turns answered again by a new owner because the instance answering them died. */
  turnsRetried: 'va.turns.retried',
  ttft: 'va.ttft',
  ttfb: 'va.ttfb',
  eouDelay: 'va.eou_delay',
  e2e: 'va.e2e',
  /** Barge-ins that paused the agent, and those that turned out to be noise (the agent resumed). */
  bargeIns: 'va.barge_ins',
  falseInterruptions: 'va.false_interruptions',
  /** Turns ended on the recogniser's partial words whose final came out different (the final's turn replaced it). */
  turnsRevised: 'va.turns.revised',
  /** Preemptive LLM requests cancelled because the committed turn differed, and their (estimated) tokens. */
  preemptiveWasted: 'va.preemptive.wasted_requests',
  preemptiveWastedTokens: 'va.preemptive.wasted_tokens',
  /** Failovers from one provider to the next (attributes: stage, provider given up on, reason). */
  fallbacks: 'va.fallbacks',
  /** Silence between the opener and the answer (ms). */
  answerGap: 'va.answer_gap',
  /** Fillers spoken because the answer was late. */
  fillers: 'va.fillers',
  /** tts: turns a new owner spoke on from where its predecessor's audio stopped. */
  ttsResumed: 'va.tts.resumed',
  /** tts: turns spoken again from what was heard, for a gateway that took a session up after its gateway died. */
  ttsReplayed: 'va.tts.replayed',
  /** Tool calls (attributes: tool name, outcome) and their duration (ms). */
  toolCalls: 'va.tool.calls',
  toolDuration: 'va.tool.duration',
  /** session-context: ctx.get latency (ms) and summarize runs (attribute outcome). */
  contextGet: 'va.context.get',
  contextSummaries: 'va.context.summaries',
  /** gateway: user turns played out or interrupted (attribute va.interrupted). */
  turns: 'va.turns',
  /** Audio frames dropped instead of queued without bound (attributes: stage, va.drop_reason). */
  audioDropped: 'va.audio.dropped',
  /** A latency over its budget (attributes: stage, va.budget.metric). */
  budgetBreaches: 'va.budget.breaches',
  /**
   * Messages other than audio dropped instead of queued without bound, e.g. reply text past what one turn may
   * speak (attributes: stage, channel, va.drop_reason, va.queue).
   */
  messagesDropped: 'va.messages.dropped',
  /** Event-loop delay p99 over the last load window (ms): how late this process runs its callbacks. */
  loadEventLoopDelay: 'va.load.event_loop_delay',
  /** CPU of the event-loop thread over the last load window, in cores (1 = one core busy; worker threads not counted). */
  loadCpu: 'va.load.cpu',
  /** 1 while this instance is over its load limit and claims no new session, else 0. */
  loadOverloaded: 'va.load.overloaded',
  /** Sessions the gateway refused because some stage had no instance with room (attribute va.stage: which). */
  sessionsRefused: 'va.sessions.refused',
  /** pocketsphinx decoders of an stt instance (attribute va.decoder_state: loaded, leased, waiting). */
  sttDecoders: 'va.stt.decoders',
  /** Web clients the gateway refused or cut off to protect the others (attribute va.refusal: why). */
  webRefused: 'va.web.refused',
} as const;
export type MetricName = (typeof METRIC)[keyof typeof METRIC];

/**
 * Each metric's instrument: dashboards and their tests derive exported names from it (Prometheus: histograms in
 * ms become `<name>_milliseconds_bucket|_sum|_count`, counters `<name>_total`, gauges keep their name; dots → `_`).
 */
export const METRIC_KIND = {
  [METRIC.messagesRejected]: 'counter',
  [METRIC.messagesPublished]: 'counter',
  [METRIC.messagesReceived]: 'counter',
  [METRIC.sessionsOwned]: 'gauge',
  [METRIC.sessionsClaimed]: 'counter',
  [METRIC.sessionsReclaimed]: 'counter',
  [METRIC.turnsCancelled]: 'counter',
  [METRIC.turnsRetried]: 'counter',
  [METRIC.ttft]: 'histogram',
  [METRIC.ttfb]: 'histogram',
  [METRIC.eouDelay]: 'histogram',
  [METRIC.e2e]: 'histogram',
  [METRIC.bargeIns]: 'counter',
  [METRIC.falseInterruptions]: 'counter',
  [METRIC.turnsRevised]: 'counter',
  [METRIC.preemptiveWasted]: 'counter',
  [METRIC.preemptiveWastedTokens]: 'counter',
  [METRIC.fallbacks]: 'counter',
  [METRIC.answerGap]: 'histogram',
  [METRIC.fillers]: 'counter',
  [METRIC.ttsResumed]: 'counter',
  [METRIC.ttsReplayed]: 'counter',
  [METRIC.toolCalls]: 'counter',
  [METRIC.toolDuration]: 'histogram',
  [METRIC.contextGet]: 'histogram',
  [METRIC.contextSummaries]: 'counter',
  [METRIC.turns]: 'counter',
  [METRIC.audioDropped]: 'counter',
  [METRIC.budgetBreaches]: 'counter',
  [METRIC.messagesDropped]: 'counter',
  [METRIC.loadEventLoopDelay]: 'gauge',
  [METRIC.loadCpu]: 'gauge',
  [METRIC.loadOverloaded]: 'gauge',
  [METRIC.sessionsRefused]: 'counter',
  [METRIC.sttDecoders]: 'gauge',
  [METRIC.webRefused]: 'counter',
} as const satisfies Record<MetricName, 'counter' | 'gauge' | 'histogram'>;

/** Span event names. */
export const EVENT = {
  /** On the turn's root span: the user spoke over the agent; playout paused. */
  bargeIn: 'barge_in',
  /** On the turn's root span: the barge-in was noise; playout resumed where it stopped. */
  resume: 'resume',
  /** On turn.detect: when the turn was previewed (preemptive generation started), before it was committed. */
  preview: 'preview',
  /** On a responder span: its preemptive request was cancelled (the committed turn differed). */
  preemptiveCancel: 'preemptive_cancel',
  /** On a stage span: a provider was given up on and the next one tried. */
  failover: 'failover',
  /** On the root span: a filler was played because the answer was late. */
  filler: 'filler',
  /** On the span whose latency went over its budget (attributes va.budget.metric, va.budget.ms, va.budget.value_ms). */
  budgetExceeded: 'budget_exceeded',
} as const;

/** Resource attribute names (OpenTelemetry semantic conventions, spelled here so no module depends on semconv). */
export const RESOURCE = {
  serviceName: 'service.name',
  serviceInstanceId: 'service.instance.id',
  serviceVersion: 'service.version',
} as const;
