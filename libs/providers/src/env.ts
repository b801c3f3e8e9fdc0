import { z } from 'zod';

/**
 * A provider's settings from env, checked by its schema; the error names each bad variable (never its value:
 * keys live in env).
 */
export function parseProviderEnv<T extends z.ZodType>(schema: T, env: NodeJS.ProcessEnv, what: string): z.infer<T> {
  const r = schema.safeParse(env);
  if (r.success) return r.data;
  throw new Error(
    `invalid ${what} config: ${r.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`,
  );
}

/** An optional variable; empty counts as unset (compose files often carry `FOO=` placeholders). */
export const optionalEnv = <T extends z.ZodType>(t: T) => z.preprocess((v) => (v === '' ? undefined : v), t.optional());
