export * from './names.js';
export * from './setup.js';
export * from './spans.js';
export * from './instruments.js';
export * from './budgets.js';
export * from './log.js';
export { context, trace, propagation, SpanStatusCode } from '@opentelemetry/api';
export type { Context, Span, Attributes, Link } from '@opentelemetry/api';
