import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  EVERY_STAGE,
  inboxPrefix,
  NATS_USERS,
  natsAuthConfig,
  natsPermissions,
  passwordVariable,
  sessionId,
  STAGE_ACCESS,
  STAGES,
  subjects,
  type SessionLeaf,
} from '@va/protocol';
import { findNatsServerBinary } from '@va/testkit';

const natsDir = fileURLToPath(new URL('../../../deploy/nats/', import.meta.url));

/** NATS subject matching: `*` one token, `>` the rest. */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}
const allowed = (patterns: string[], subject: string) => patterns.some((p) => matches(p, subject));

describe('NATS permissions (one table in @va/protocol)', () => {
  it('deploy/nats/auth.conf is exactly what the table generates (node scripts/nats-auth.mjs)', () => {
    expect(readFileSync(`${natsDir}auth.conf`, 'utf8')).toBe(natsAuthConfig());
  });

  it('has one user per stage plus observer, admin, debug, agents and tools, passwords only as $NATS_PASSWORD_<USER> references', () => {
    expect(NATS_USERS).toEqual([...STAGES, 'observer', 'admin', 'debug', 'agents', 'tools']);
    const conf = natsAuthConfig();
    for (const user of NATS_USERS) expect(conf).toContain(`password: $${passwordVariable(user)}\n`);
    expect(passwordVariable('media-gateway')).toBe('NATS_PASSWORD_MEDIA_GATEWAY');
    expect(conf.match(/password:/g)).toHaveLength(NATS_USERS.length);
  });

  it('nats-server accepts the generated config and nats-auth.conf (nats.conf + auth.conf)', () => {
    const env = { ...process.env, ...Object.fromEntries(NATS_USERS.map((u) => [passwordVariable(u), `pw-${u}`])) };
    const check = (file: string, environment: NodeJS.ProcessEnv) =>
      spawnSync(findNatsServerBinary(), ['-t', '-c', file], { cwd: natsDir, env: environment, encoding: 'utf8' });
    for (const file of ['auth.conf', 'nats-auth.conf']) {
      const r = check(file, env);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toContain(`configuration file ${file} is valid`);
    }
    // An unset password variable is a start-up error, never an open door.
    const { [passwordVariable('stt')]: _unset, ...missing } = env;
    const r = check('auth.conf', missing);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(`variable reference for '${passwordVariable('stt')}'`);
  });

  it('every channel a stage subscribes to is published by another stage, and every publication has a reader', () => {
    const published = new Set<SessionLeaf>(Object.values(STAGE_ACCESS).flatMap((a) => a.publishes));
    const subscribed = new Set<SessionLeaf>([
      ...Object.values(STAGE_ACCESS).flatMap((a) => a.subscribes),
      ...EVERY_STAGE.subscribes,
    ]);
    for (const leaf of subscribed) expect(published, `${leaf} has no publisher`).toContain(leaf);
    for (const leaf of published) expect(subscribed, `${leaf} has no subscriber`).toContain(leaf);
    const served = Object.values(STAGE_ACCESS).flatMap((a) => a.serves);
    for (const r of Object.values(STAGE_ACCESS).flatMap((a) => a.requests)) expect(served).toContain(r);
  });

  it('gives each stage its own subjects and no one else’s', () => {
    const sid = sessionId('s-1');
    const stt = natsPermissions('stt');
    expect(allowed(stt.publish.allow, subjects.transcript(sid))).toBe(true);
    expect(allowed(stt.publish.allow, subjects.error(sid))).toBe(true);
    for (const other of [
      subjects.replyFast(sid),
      subjects.replyDeep(sid),
      subjects.audioOut(sid),
      subjects.turn(sid),
    ]) {
      expect(allowed(stt.publish.allow, other), other).toBe(false);
    }
    expect(allowed(stt.subscribe.allow, subjects.audioIn(sid))).toBe(true);
    expect(allowed(stt.subscribe.allow, subjects.replyDeep(sid))).toBe(false);
    expect(allowed(stt.publish.allow, subjects.sessionOpen)).toBe(false);
    expect(allowed(stt.subscribe.allow, subjects.sessionOpen)).toBe(true);
    // KV: its own keys only.
    expect(allowed(stt.publish.allow, '$KV.va_leases.stt.s-1')).toBe(true);
    expect(allowed(stt.publish.allow, '$KV.va_leases.tts.s-1')).toBe(false);
    expect(allowed(stt.publish.allow, '$KV.va_state.session-context.s-1.history')).toBe(false);
    // The micro service endpoint and discovery.
    expect(allowed(stt.subscribe.allow, subjects.svcSessions('stt', 'host-1-abc'))).toBe(true);
    expect(allowed(stt.subscribe.allow, subjects.svcSessions('tts', 'host-1-abc'))).toBe(false);
    expect(allowed(stt.subscribe.allow, '$SRV.PING.stt')).toBe(true);

    const tts = natsPermissions('tts');
    expect(allowed(tts.publish.allow, subjects.transcript(sid))).toBe(false);
    expect(allowed(tts.publish.allow, subjects.audioOut(sid))).toBe(true);

    const gateway = natsPermissions('media-gateway');
    expect(allowed(gateway.publish.allow, subjects.sessionOpen)).toBe(true);
    expect(allowed(gateway.publish.allow, subjects.ctxGet)).toBe(true);
    expect(allowed(gateway.subscribe.allow, subjects.ctxGet)).toBe(false);
    expect(allowed(gateway.publish.allow, '$KV.va_leases.stt.s-1')).toBe(true); // parks leases for late stages
    expect(natsPermissions('session-context').subscribe.allow).toContain(subjects.ctxGet);
    // The microphone replay: stt asks, the gateway answers, nobody else does either.
    expect(allowed(stt.publish.allow, subjects.audioReplay(sid))).toBe(true);
    expect(allowed(gateway.subscribe.allow, subjects.audioReplay(sid))).toBe(true);
    expect(allowed(tts.publish.allow, subjects.audioReplay(sid))).toBe(false);
    expect(allowed(stt.subscribe.allow, subjects.audioReplay(sid))).toBe(false);
    // Recent finals: the turn-detector asks, stt answers.
    const td = natsPermissions('turn-detector');
    expect(allowed(td.publish.allow, subjects.transcriptReplay(sid))).toBe(true);
    expect(allowed(stt.subscribe.allow, subjects.transcriptReplay(sid))).toBe(true);
    expect(allowed(tts.publish.allow, subjects.transcriptReplay(sid))).toBe(false);

    // Every stage answers requests (actor hosts: session.open acks; the gateway: audio.replay); every stage reports
    // errors and follows control.
    for (const stage of STAGES) {
      const p = natsPermissions(stage);
      expect(p.allow_responses, stage).toBe(true);
      for (const leaf of EVERY_STAGE.publishes) expect(allowed(p.publish.allow, `va.v1.sess.s-1.${leaf}`)).toBe(true);
      for (const leaf of EVERY_STAGE.subscribes)
        expect(allowed(p.subscribe.allow, `va.v1.sess.s-1.${leaf}`)).toBe(true);
      expect(p.publish.allow.some((s) => s === '>' || s.startsWith('va.v1.>'))).toBe(false);
    }
  });

  it('gives every user its own reply inboxes, so no one reads another’s replies', () => {
    const own = NATS_USERS.map((u) => `${inboxPrefix(u)}.x`);
    for (const user of NATS_USERS) {
      const sub = natsPermissions(user).subscribe.allow;
      const readable = own.filter((inbox) => allowed(sub, inbox));
      expect(readable, user).toEqual([`${inboxPrefix(user)}.x`]);
    }
  });

  it('keeps session traffic and stored payloads away from admin, and observer read-only', () => {
    const admin = natsPermissions('admin');
    expect(allowed(admin.subscribe.allow, subjects.transcript(sessionId('s-1')))).toBe(false);
    // No message of a stream can reach admin: no gets, no consumers, no KV reads or writes, no stream updates.
    for (const subject of [
      '$JS.API.DIRECT.GET.KV_va_state.$KV.va_state.session-context.s-1.history',
      '$JS.API.STREAM.MSG.GET.KV_va_state',
      '$JS.API.CONSUMER.CREATE.KV_va_state.x.$KV.va_state.>',
      '$JS.API.CONSUMER.CREATE.KV_va_state',
      '$JS.API.STREAM.UPDATE.KV_va_state',
      '$JS.API.STREAM.CREATE.CAPTURE',
      '$KV.va_state.session-context.s-1.history',
    ]) {
      expect(allowed(admin.publish.allow, subject), subject).toBe(false);
    }
    expect(allowed(admin.publish.allow, '$JS.API.STREAM.INFO.KV_va_state')).toBe(true);
    const debug = natsPermissions('debug');
    expect(allowed(debug.subscribe.allow, subjects.transcript(sessionId('s-1')))).toBe(true);
    const observer = natsPermissions('observer');
    expect(allowed(observer.subscribe.allow, subjects.transcript(sessionId('s-1')))).toBe(true);
    expect(observer.publish.allow.some((s) => s.startsWith('va.v1.sess') || s.startsWith('$KV'))).toBe(false);
  });
});
