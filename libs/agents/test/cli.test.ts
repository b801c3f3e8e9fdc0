import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer, type NatsServerHandle } from '@va/testkit';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

let nats: NatsServerHandle;
let dir: string;

beforeAll(async () => {
  nats = await startNatsServer();
  dir = await mkdtemp(join(tmpdir(), 'va-agent-cli-'));
});

afterAll(async () => {
  await nats?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Runs `npm run agent -- …` as its script does (the built CLI), against the test's NATS. */
function agent(args: string[], natsUrl = nats.url): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, NATS_URL: natsUrl, NATS_USER: '', NATS_PASSWORD_FILE: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

describe('npm run agent', () => {
  it('puts a YAML or JSON profile, gets, lists and removes it', async () => {
    const yamlFile = join(dir, 'concierge.yaml');
    await writeFile(
      yamlFile,
      [
        'name: concierge',
        'instructions: You book tables at Chez Nous.',
        'greeting: Hello, Chez Nous, how can I help?',
        'tools: [get_local_time]',
        'turn:',
        '  maxDelayMs: 1500',
      ].join('\n'),
    );
    expect(await agent(['put', yamlFile])).toMatchObject({ code: 0, stdout: 'stored concierge version 1\n' });
    const jsonFile = join(dir, 'concierge.json');
    await writeFile(jsonFile, JSON.stringify({ name: 'concierge', instructions: 'You book tables.' }));
    expect(await agent(['put', jsonFile])).toMatchObject({ code: 0, stdout: 'stored concierge version 2\n' });

    const got = await agent(['get', 'concierge']);
    expect(got.code).toBe(0);
    expect(JSON.parse(got.stdout)).toMatchObject({ name: 'concierge', version: 2, instructions: 'You book tables.' });
    const first = await agent(['get', 'concierge', '--version', '1']);
    expect(JSON.parse(first.stdout)).toMatchObject({ version: 1, turn: { maxDelayMs: 1500 } });
    expect((await agent(['list'])).stdout).toBe('concierge\tversion 2\n');

    expect(await agent(['rm', 'concierge'])).toMatchObject({ code: 0, stdout: 'removed concierge\n' });
    expect(await agent(['get', 'concierge'])).toMatchObject({ code: 1, stderr: 'no agent concierge\n' });
  });

  it('refuses a bad profile (exit 2, the schema’s message), bad usage, and says when NATS is unreachable', async () => {
    const bad = join(dir, 'bad.json');
    await writeFile(bad, JSON.stringify({ name: 'x', instructions: '', tools: ['a b'] }));
    const refused = await agent(['put', bad]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/invalid agent profile: instructions: may not be empty; tools\.0: must be/);
    const notYaml = join(dir, 'bad.yaml');
    await writeFile(notYaml, 'name: [unclosed');
    expect((await agent(['put', notYaml])).stderr).toMatch(/bad\.yaml is not valid YAML/);
    const usage = await agent(['frobnicate', 'x']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/unknown command frobnicate[\s\S]*usage: npm run agent/);
    expect((await agent(['get'])).stderr).toMatch(/get needs an argument/);
    const down = await agent(['list'], 'nats://127.0.0.1:9');
    expect(down).toMatchObject({ code: 1 });
    expect(down.stderr).toMatch(/cannot reach NATS at nats:\/\/127\.0\.0\.1:9/);
  });
});
