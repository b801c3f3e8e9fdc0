import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PROFILES, type ProfileName } from './profiles.js';

const PEER_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../livekit-peer');

function run(cmd: string, args: string[], opts: { capture?: boolean; timeoutMs: number }): Promise<string> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', opts.capture ? 'pipe' : 'inherit', 'inherit'] });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolveRun(out);
      else reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}`));
    });
  });
}

/** Installs the LiveKit peer's own dependencies (kept out of the main install) when they are missing. */
export async function ensurePeerInstalled(): Promise<void> {
  if (existsSync(join(PEER_DIR, 'node_modules', '@livekit', 'agents'))) return;
  await run('npm', ['ci', '--prefix', PEER_DIR, '--no-audit', '--no-fund'], { timeoutMs: 600_000 });
}

/**
 * Runs LiveKit Agents (its AgentSession, default turn settings, offline) on a cloud profile's timings and
 * returns each turn's voice-to-voice latency. LiveKit has one LLM: it gets the profile's deep-LLM timing.
 */
export async function runLivekitPeer(profile: ProfileName, turns: number): Promise<number[]> {
  const p = PROFILES[profile];
  if (!('TIMED_STT_FINAL_MS' in p.env)) throw new Error(`the LiveKit peer runs cloud profiles only, not ${profile}`);
  const timings = {
    sttFinalMs: Number(p.env.TIMED_STT_FINAL_MS),
    sttPartialMs: Number(p.env.TIMED_STT_PARTIAL_MS),
    llmTtftMs: p.deepLlm.ttftMs,
    llmTokensPerSecond: p.deepLlm.tokensPerSecond,
    ttsFirstByteMs: Number(p.env.TTS_FAKE_TTFB_MS),
    ttsMsPerChar: Number(p.env.TTS_FAKE_MS_PER_CHAR),
  };
  const out = await run(
    process.execPath,
    [join(PEER_DIR, 'run.mjs'), '--profile', profile, '--turns', String(turns), '--timings', JSON.stringify(timings)],
    { capture: true, timeoutMs: 15 * 60_000 },
  );
  const line = out.trim().split('\n').pop() ?? '';
  const parsed = JSON.parse(line) as { variant: string; e2eMs: number[] };
  if (parsed.variant !== 'livekit' || !Array.isArray(parsed.e2eMs)) throw new Error(`unexpected peer output: ${line}`);
  return parsed.e2eMs;
}
