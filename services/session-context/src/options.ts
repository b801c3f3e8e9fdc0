import { z } from 'zod';
import type { WindowOptions } from '@va/context';

export const STAGE = 'session-context';

/** How history is windowed and summarized. */
export interface ContextOptions extends WindowOptions {
  /** Longest summary stored (characters); a longer model reply is cut. */
  summaryMaxChars: number;
  /** Output cap asked of the summarizing model. */
  summaryMaxTokens: number;
  /** A summary run taking longer is abandoned (and retried at the next turn). */
  summaryTimeoutMs: number;
  /** A tool result is stored cut to this many characters (one KV value holds the whole history). */
  toolResultChars: number;
}

/** Keep the last 12 messages (6 exchanges) verbatim; fold the older ones once more than 20 pile up. */
export const CONTEXT_DEFAULTS = {
  keepRecent: 12,
  summarizeAfter: 20,
  summaryMaxChars: 1200,
  summaryMaxTokens: 300,
  summaryTimeoutMs: 30_000,
  toolResultChars: 2000,
} as const satisfies ContextOptions;

const int = (min: number) => z.coerce.number().int().min(min);

/** `CONTEXT_*` variables (zod-parsed like every service's env: a bad value stops start-up with a message). */
export const ContextEnv = z
  .object({
    CONTEXT_KEEP_RECENT: int(2).default(CONTEXT_DEFAULTS.keepRecent),
    CONTEXT_SUMMARIZE_AFTER: int(3).default(CONTEXT_DEFAULTS.summarizeAfter),
    CONTEXT_SUMMARY_MAX_CHARS: int(100).max(16_000).default(CONTEXT_DEFAULTS.summaryMaxChars),
    CONTEXT_SUMMARY_MAX_TOKENS: int(16).default(CONTEXT_DEFAULTS.summaryMaxTokens),
    CONTEXT_SUMMARY_TIMEOUT_MS: int(100).default(CONTEXT_DEFAULTS.summaryTimeoutMs),
    CONTEXT_TOOL_RESULT_CHARS: int(100).max(16_000).default(CONTEXT_DEFAULTS.toolResultChars),
  })
  .refine((e) => e.CONTEXT_SUMMARIZE_AFTER > e.CONTEXT_KEEP_RECENT, {
    message: 'CONTEXT_SUMMARIZE_AFTER must be greater than CONTEXT_KEEP_RECENT',
    path: ['CONTEXT_SUMMARIZE_AFTER'],
  })
  .transform((e): ContextOptions => ({
    keepRecent: e.CONTEXT_KEEP_RECENT,
    summarizeAfter: e.CONTEXT_SUMMARIZE_AFTER,
    summaryMaxChars: e.CONTEXT_SUMMARY_MAX_CHARS,
    summaryMaxTokens: e.CONTEXT_SUMMARY_MAX_TOKENS,
    summaryTimeoutMs: e.CONTEXT_SUMMARY_TIMEOUT_MS,
    toolResultChars: e.CONTEXT_TOOL_RESULT_CHARS,
  }));
