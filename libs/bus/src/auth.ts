import { readFileSync } from 'node:fs';
import { credsAuthenticator, type ConnectionOptions } from '@nats-io/transport-node';
import { inboxPrefix } from '@va/protocol';

/**
 * Credentials for the NATS server: a user and password (deploy/nats/auth.conf has one user per stage), a
 * token, or a creds file (JWT + nkey seed, for operator-mode servers). Never logged.
 */
export type NatsAuth = (
  | { kind: 'none' }
  | { kind: 'password'; user: string; password: string }
  | { kind: 'token'; token: string }
  | { kind: 'creds'; credsFile: string }
) & {
  /** Prefix of this connection's reply inboxes; the server lets each user subscribe to its own only. */
  inboxPrefix?: string;
};

/** The environment variables {@link natsAuthFromEnv} reads. */
export interface NatsAuthEnv {
  NATS_USER?: string | undefined;
  NATS_PASSWORD?: string | undefined;
  NATS_PASSWORD_FILE?: string | undefined;
  NATS_TOKEN?: string | undefined;
  NATS_CREDS?: string | undefined;
  NATS_INBOX_PREFIX?: string | undefined;
}

/**
 * Reads NATS credentials from an environment: `NATS_USER` with `NATS_PASSWORD` or `NATS_PASSWORD_FILE`,
 * or `NATS_TOKEN`, or `NATS_CREDS` (a creds file); none of them = no authentication. `NATS_INBOX_PREFIX`
 * overrides the inbox prefix, which otherwise follows the user (see `inboxPrefix` in @va/protocol).
 * Throws on a contradictory or incomplete setting.
 */
export function natsAuthFromEnv(env: NatsAuthEnv = process.env): NatsAuth {
  const set = (name: keyof NatsAuthEnv) => (env[name] !== undefined && env[name] !== '' ? env[name] : undefined);
  const user = set('NATS_USER');
  const password = set('NATS_PASSWORD');
  const passwordFile = set('NATS_PASSWORD_FILE');
  const token = set('NATS_TOKEN');
  const credsFile = set('NATS_CREDS');
  const methods = [user !== undefined || password !== undefined || passwordFile !== undefined, token, credsFile];
  if (methods.filter(Boolean).length > 1) {
    throw new Error('NATS credentials: set only one of NATS_USER (+ password), NATS_TOKEN or NATS_CREDS');
  }
  const prefix = set('NATS_INBOX_PREFIX');
  const withPrefix = (p: string | undefined) => (p !== undefined ? { inboxPrefix: p } : {});
  if (token !== undefined) return { kind: 'token', token, ...withPrefix(prefix) };
  if (credsFile !== undefined) return { kind: 'creds', credsFile, ...withPrefix(prefix) };
  if (user === undefined && password === undefined && passwordFile === undefined) {
    return { kind: 'none', ...withPrefix(prefix) };
  }
  if (user === undefined) throw new Error('NATS credentials: NATS_PASSWORD(_FILE) is set without NATS_USER');
  if (password !== undefined && passwordFile !== undefined) {
    throw new Error('NATS credentials: set NATS_PASSWORD or NATS_PASSWORD_FILE, not both');
  }
  const pass = passwordFile !== undefined ? readPasswordFile(passwordFile) : password;
  if (pass === undefined || pass === '') throw new Error('NATS credentials: NATS_USER is set without a password');
  return { kind: 'password', user, password: pass, ...withPrefix(prefix ?? inboxPrefix(user)) };
}

/** The password in a file (a mounted secret), without its trailing newline. */
function readPasswordFile(path: string): string {
  try {
    return readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new Error(`NATS credentials: cannot read NATS_PASSWORD_FILE: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
}

/** The connection options of some credentials, and what may be logged about them. */
export function authOptions(auth: NatsAuth): {
  options: Partial<ConnectionOptions>;
  describe: Record<string, string>;
} {
  const inbox = auth.inboxPrefix !== undefined ? { inboxPrefix: auth.inboxPrefix } : {};
  switch (auth.kind) {
    case 'none':
      return { options: inbox, describe: { auth: 'none' } };
    case 'password':
      return {
        options: { ...inbox, user: auth.user, pass: auth.password },
        describe: { auth: 'password', user: auth.user },
      };
    case 'token':
      return { options: { ...inbox, token: auth.token }, describe: { auth: 'token' } };
    case 'creds': {
      let creds: Uint8Array;
      try {
        creds = readFileSync(auth.credsFile);
      } catch (err) {
        throw new Error(`NATS credentials: cannot read NATS_CREDS: ${(err as NodeJS.ErrnoException).code ?? err}`);
      }
      return {
        options: { ...inbox, authenticator: credsAuthenticator(creds) },
        describe: { auth: 'creds', credsFile: auth.credsFile },
      };
    }
  }
}
