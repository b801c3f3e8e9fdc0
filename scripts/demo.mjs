// npm run demo: one scripted voice conversation through the seven services, on this machine, offline.
// Options: --script FILE, --report FILE, --llm-ttft-ms N, --llm-tps N, --out DIR
// --web [--port N]: no script; the talk page on http://127.0.0.1:N, to talk to the agent with your microphone.
// --livekit [--room NAME]: no script; the agent joins a LiveKit room (LIVEKIT_URL, LIVEKIT_API_KEY, _SECRET).
// --agent FILE: the session runs this agent profile (JSON or YAML; stored in va_agents as `npm run agent` does).
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { readProfileFile } from '@va/agents';
import { runConversation, startLiveKitGateway, startPipeline, startWebGateway, storeAgent, waterfall } from '@va/e2e';

const BUILT_IN_SCRIPT = {
  turns: [
    { say: 'Hello, can you help me plan a trip to the mountains next week?', pauseMs: 800 },
    { say: 'I would like to go hiking with my two children.', pauseMs: 800 },
    { say: 'What should we pack for cold weather?', pauseMs: 800 },
    // Answered with the deep responder's example tool (get_local_time).
    { say: 'What time is it right now?', pauseMs: 800 },
  ],
};

const { values } = parseArgs({
  options: {
    script: { type: 'string' },
    report: { type: 'string' },
    'llm-ttft-ms': { type: 'string' },
    'llm-tps': { type: 'string' },
    providers: { type: 'string', default: 'local' },
    out: { type: 'string', default: 'out' },
    web: { type: 'boolean', default: false },
    livekit: { type: 'boolean', default: false },
    room: { type: 'string', default: 'voice-agent' },
    port: { type: 'string', default: '8080' },
    agent: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  console.log(
    'usage: npm run demo -- [--script FILE] [--agent FILE] [--report FILE] [--llm-ttft-ms N] [--llm-tps N] [--providers local|cloud] [--out DIR]\n' +
      '       npm run demo -- --web [--port N] [--llm-ttft-ms N] [--llm-tps N] [--providers local|cloud]\n' +
      '       npm run demo -- --livekit [--room NAME] [--port N]   (LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET)',
  );
  process.exit(0);
}
const number = (name) => {
  if (values[name] === undefined) return undefined;
  const n = Number(values[name]);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number`);
  return n;
};

const script = values.script ? JSON.parse(await readFile(values.script, 'utf8')) : BUILT_IN_SCRIPT;
// Read (and so checked for JSON/YAML) before anything starts; the schema checks it when it is stored.
const agent = values.agent ? await readProfileFile(values.agent) : undefined;
const passthrough = Object.fromEntries(
  Object.entries(process.env).filter(
    ([k, v]) =>
      v !== undefined &&
      /^(FAST_|DEEP_|SUMMARY_)?LLM_|_PROVIDER$|^TOOLS$|^TOOL_|^TTS_FILLER|^(DEEPGRAM|ELEVENLABS|OPENAI|GROQ|CEREBRAS|OLLAMA|VLLM|LLAMACPP|PROVIDER)_/.test(
        k,
      ),
  ),
);
if (values.providers === 'cloud') Object.assign(passthrough, cloudProviders(process.env));
else if (values.providers !== 'local') throw new Error('--providers must be local or cloud');

/**
 * `--providers cloud`: the cloud adapters, chosen by the keys in env, each backed by the local one (a fallback
 * chain), unless a *_PROVIDER variable already says otherwise. Keys are read by the services, never printed.
 */
function cloudProviders(env) {
  const chosen = {};
  const missing = [];
  if (!env.STT_PROVIDER) {
    if (env.DEEPGRAM_API_KEY) chosen.STT_PROVIDER = 'deepgram,local';
    else missing.push('DEEPGRAM_API_KEY (speech to text)');
  }
  if (!env.TTS_PROVIDER) {
    if (env.ELEVENLABS_API_KEY) chosen.TTS_PROVIDER = 'elevenlabs,local';
    else if (env.OPENAI_API_KEY) chosen.TTS_PROVIDER = 'openai,local';
    else missing.push('ELEVENLABS_API_KEY or OPENAI_API_KEY (text to speech)');
  }
  if (!env.LLM_PROVIDER && !env.LLM_BASE_URL) {
    if (env.GROQ_API_KEY) {
      Object.assign(chosen, {
        LLM_PROVIDER: 'groq',
        FAST_LLM_MODEL: 'llama-3.1-8b-instant',
        DEEP_LLM_MODEL: 'llama-3.3-70b-versatile',
      });
    } else if (env.OPENAI_API_KEY) {
      Object.assign(chosen, { LLM_PROVIDER: 'openai', FAST_LLM_MODEL: 'gpt-4.1-nano', DEEP_LLM_MODEL: 'gpt-4.1-mini' });
    } else missing.push('GROQ_API_KEY or OPENAI_API_KEY (or LLM_PROVIDER / LLM_BASE_URL) for the LLMs');
  }
  if (missing.length > 0) {
    console.error(`--providers cloud needs: ${missing.join('; ')}. See README, "Cloud providers".`);
    process.exit(2);
  }
  // Models stay overridable: an explicit FAST_/DEEP_LLM_MODEL wins.
  for (const k of ['FAST_LLM_MODEL', 'DEEP_LLM_MODEL']) if (env[k]) delete chosen[k];
  return chosen;
}
console.log(
  `voice-agent demo: seven services, each its own process, on nats-server; ${values.providers === 'cloud' ? 'cloud providers (local ones as fallback)' : 'offline providers'}.`,
);
if (!passthrough.LLM_BASE_URL && !passthrough.FAST_LLM_BASE_URL && !passthrough.LLM_PROVIDER) {
  console.log('LLM: a local rule-based OpenAI-compatible server (no model weights here). Real answers need a real');
  console.log('     LLM: set LLM_BASE_URL / LLM_API_KEY / LLM_MODEL (Ollama, llama.cpp, vLLM, Groq, OpenAI…).');
}
if (values.web || values.livekit) {
  await talkLive(values.livekit ? 'livekit' : 'web');
  process.exit(0);
}

/**
 * `--web`: the six stages and the gateway's talk page; `--livekit`: the same with the gateway in a LiveKit room.
 * Both run until Ctrl-C.
 */
async function talkLive(mode) {
  const port = number('port');
  if (port === undefined || !Number.isInteger(port) || port > 65_535) throw new Error('--port must be 0…65535');
  let liveKit;
  if (mode === 'livekit') {
    const missing = ['LIVEKIT_URL', 'LIVEKIT_API_KEY', 'LIVEKIT_API_SECRET'].filter((k) => !process.env[k]);
    if (missing.length > 0) {
      console.error(`--livekit needs ${missing.join(', ')} (README, "Talk to it in a LiveKit room").`);
      process.exit(2);
    }
    liveKit = {
      LIVEKIT_URL: process.env.LIVEKIT_URL,
      LIVEKIT_API_KEY: process.env.LIVEKIT_API_KEY,
      LIVEKIT_API_SECRET: process.env.LIVEKIT_API_SECRET,
    };
  }
  // Hours, not the tests' minutes: the processes live until Ctrl-C (and die with this one).
  const maxLifetimeSec = 12 * 3600;
  const pipeline = await startPipeline({
    llmTtftMs: number('llm-ttft-ms'),
    llmTokensPerSecond: number('llm-tps'),
    env: passthrough,
    maxLifetimeSec,
    onProgress: (line) => console.log(`  · ${line}`),
  });
  let gateway;
  try {
    const agentEnv = agent ? { GATEWAY_AGENT: await storeAgent(pipeline.nats.url, agent) } : {};
    gateway =
      mode === 'web'
        ? await startWebGateway(pipeline, { port, maxLifetimeSec, env: agentEnv })
        : await startLiveKitGateway(pipeline, {
            liveKit,
            rooms: [values.room],
            port: values.port === '8080' ? 8081 : port,
            tokenEndpoint: true,
            maxLifetimeSec,
            env: agentEnv,
          });
  } catch (err) {
    await pipeline.stop();
    const busy = /EADDRINUSE/.test(String(err));
    console.error(busy ? `port ${port} is in use: try --port 0 (any free port) or another port` : String(err));
    process.exit(1);
  }
  if (mode === 'web') {
    console.log(`\n  Talk to the agent: open ${gateway.url} in Chrome, Edge or Firefox on this machine,`);
    console.log('  press "Start talking" and allow the microphone. Headphones keep the agent from hearing itself.');
    console.log(
      '  Each turn shows its latency (when each stage answered) and its trace id. Ctrl-C stops everything.\n',
    );
  } else {
    // A client token from the gateway's own token endpoint (on 127.0.0.1 only).
    const res = await fetch(`${gateway.url}/token?room=${encodeURIComponent(values.room)}&identity=you`);
    const { url, token } = await res.json();
    const meet = `https://meet.livekit.io/custom?liveKitUrl=${encodeURIComponent(url)}&token=${encodeURIComponent(token)}`;
    console.log(`\n  The agent is joining room "${values.room}" on ${url}. Join it from a LiveKit client, e.g.:`);
    console.log(`    ${meet}`);
    console.log(`  or with your own client: server ${url}, token (15 min):\n    ${token}`);
    console.log(
      `  More rooms: curl -X POST ${gateway.url}/dispatch -H 'content-type: application/json' -d '{"room":"another"}'. Ctrl-C stops everything.\n`,
    );
  }
  await new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  console.log('\nstopping…');
  const exit = await gateway.stop();
  const exits = { 'media-gateway': exit, ...(await pipeline.stopStages()) };
  await pipeline.stop();
  const unclean = Object.entries(exits).filter(([, e]) => e.code !== 0);
  if (unclean.length > 0) console.log(`services that did not stop cleanly: ${JSON.stringify(unclean)}`);
}

/** The built example tool services' entries (examples/tools/<name>/dist/main.js). */
async function exampleToolServices() {
  const dir = new URL('../examples/tools/', import.meta.url);
  const names = await readdir(dir).catch(() => []);
  return names.map((n) => new URL(`${n}/dist/main.js`, dir).pathname);
}

const started = Date.now();
const { report, exits, spansFile } = await runConversation({
  script,
  outDir: values.out,
  llmTtftMs: number('llm-ttft-ms'),
  llmTokensPerSecond: number('llm-tps'),
  env: passthrough,
  // With an agent, the example tool services run too (examples/tools/*): its profile may name their tools.
  ...(agent ? { agent, toolServices: await exampleToolServices() } : {}),
  onProgress: (line) => console.log(`  · ${line}`),
});

for (const [i, t] of report.turns.entries()) {
  console.log(`\nturn ${i + 1} (${t.turnId})${t.interrupted ? ' — interrupted' : ''}`);
  if (t.greeting) {
    console.log(`  greeting    : ${t.answer} (the agent speaks first)`);
    if (t.interrupted) console.log(`  heard       : ${t.playedText}`);
    console.log(`  trace ${t.traceId}`);
    continue;
  }
  console.log(`  user said   : ${t.userText}`);
  console.log(`  transcript  : ${t.transcript}`);
  console.log(`  opener      : ${t.opener}`);
  console.log(`  answer      : ${t.answer}`);
  if (t.interrupted)
    console.log(
      `  heard       : ${t.playedText} (agent audio stopped ${t.bargeInStopMs ?? '–'} ms after the user began)`,
    );
  if (t.resumes > 0) console.log(`  resumed after ${t.resumes} false interruption(s)`);
  for (const tool of t.tools) console.log(`  tool        : ${tool.name} (${tool.outcome}, ${tool.durationMs} ms)`);
  if (t.filler) console.log('  filler      : played (the answer was late)');
  console.log(
    `  voice-to-voice ${t.e2eMs ?? '–'} ms · end of turn after ${t.eouDelayMs ?? '–'} ms · opener→answer gap ${t.gapMs ?? '–'} ms · trace ${t.traceId}`,
  );
  console.log(waterfall(t));
}
console.log(`\nagent audio: ${report.agentWav}\nconversation (user left, agent right): ${report.mixWav}`);
console.log(`spans: ${spansFile} (a turn's waterfall again: npm run trace -- --file ${spansFile} --last 1)`);
const unclean = Object.entries(exits).filter(([, e]) => e.code !== 0);
if (unclean.length > 0) console.log(`services that did not stop cleanly: ${JSON.stringify(unclean)}`);
if (values.report) {
  await writeFile(values.report, JSON.stringify(report, null, 2));
  console.log(`report: ${values.report}`);
}
console.log(`done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
