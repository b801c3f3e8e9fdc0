/**
 * docker-compose.yml, deploy/Dockerfile and the configs they mount, checked statically (no Docker engine needed):
 * every stage is built from the one Dockerfile with its own SERVICE, reaches NATS and the collector, has a health
 * check; the collector sends traces to Tempo and metrics to the Prometheus exporter Prometheus scrapes; every file
 * a container mounts exists.
 */
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { STAGES } from '@va/protocol';
import { findNatsServerBinary } from '@va/testkit';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

type Obj = Record<string, unknown>;

const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');
/** YAML with merge keys (`<<: *anchor`) resolved, as docker compose reads it. */
const readYaml = (path: string): Obj => parse(read(path), { merge: true }) as Obj;

function obj(v: unknown, what: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${what}: expected a mapping`);
  return v as Obj;
}
function list(v: unknown, what: string): unknown[] {
  if (!Array.isArray(v)) throw new Error(`${what}: expected a list`);
  return v;
}
function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new Error(`${what}: expected a string, got ${JSON.stringify(v)}`);
  return v;
}
/** `host:port` or a URL → its port. */
function portOf(address: string): number {
  const m = /:(\d+)(?:\/|$)/.exec(address);
  if (!m) throw new Error(`no port in ${address}`);
  return Number(m[1]);
}
/** `${VAR:-default}` → default (compose interpolation); anything else as is. */
function composeDefault(value: string): string {
  const m = /^\$\{[A-Z0-9_]+:-(.*)\}$/.exec(value);
  return m ? m[1]! : value;
}
/** A compose command or healthcheck test as one string. */
function commandText(v: unknown): string {
  return Array.isArray(v) ? v.map(String).join(' ') : String(v ?? '');
}

const compose = readYaml('docker-compose.yml');
/** The NATS cluster's nodes, as the stages' NATS_URL and the routes name them. */
const NATS_NODES = ['nats-1', 'nats-2', 'nats-3'];
const services = obj(compose.services, 'services');
const service = (name: string): Obj => obj(services[name], `service ${name}`);
const env = (name: string): Record<string, string> =>
  Object.fromEntries(
    Object.entries(obj(service(name).environment, `${name}.environment`)).map(([k, v]) => [k, String(v)]),
  );

/** Short-syntax volume strings of a service: `source:target[:mode]`. */
function mounts(name: string): { source: string; target: string }[] {
  return list(service(name).volumes ?? [], `${name}.volumes`).map((v) => {
    const [source, target] = str(v, `${name}.volumes[]`).split(':');
    return { source: source!, target: target! };
  });
}
/** The repo file mounted at `target` in a service (must be a bind mount). */
function mountedFile(name: string, target: string): string {
  const m = mounts(name).find((x) => x.target === target);
  if (!m) throw new Error(`${name}: nothing mounted at ${target}`);
  expect(m.source.startsWith('./'), `${name}: ${target} should come from the repo`).toBe(true);
  return m.source.slice(2);
}

/** Dockerfile instructions (continuations joined, comments dropped), grouped by stage. */
function dockerfileStages(text: string): { from: string; lines: string[] }[] {
  const joined = text
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n')
    .replace(/\\\n/g, ' ');
  const stages: { from: string; lines: string[] }[] = [];
  for (const raw of joined.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    if (/^FROM\s/i.test(line)) stages.push({ from: line, lines: [] });
    else if (stages.length) stages.at(-1)!.lines.push(line);
  }
  return stages;
}

describe('the seven stages', () => {
  it('are exactly the directories under services/', () => {
    const dirs = readdirSync(join(ROOT, 'services')).filter((d) => statSync(join(ROOT, 'services', d)).isDirectory());
    expect(dirs.sort()).toEqual([...STAGES].sort());
  });

  it.each(STAGES)('%s is built from deploy/Dockerfile with SERVICE=%s', (stage) => {
    expect(existsSync(join(ROOT, 'services', stage, 'package.json'))).toBe(true);
    expect(existsSync(join(ROOT, 'services', stage, 'src', 'main.ts'))).toBe(true);
    const s = service(stage);
    const build = obj(s.build, `${stage}.build`);
    expect(build.context).toBe('.');
    expect(build.dockerfile).toBe('deploy/Dockerfile');
    expect(obj(build.args, `${stage}.build.args`).SERVICE).toBe(stage);
    expect(s.image).toBe(`voice-agent/${stage}:\${TAG:-dev}`);
  });

  it.each(STAGES)('%s reaches NATS and exports OTLP/HTTP JSON to the collector', (stage) => {
    const e = env(stage);
    // Every node of the cluster, so the stage reconnects to another when its node goes.
    const urls = (e.NATS_URL ?? '').split(',');
    expect(
      urls.map((u) => /^nats:\/\/([a-z0-9-]+):4222$/.exec(u)?.[1]),
      `${stage}: NATS_URL`,
    ).toEqual(NATS_NODES);
    expect(e.NATS_KV_REPLICAS).toBe('3');

    const otlp = /^http:\/\/([a-z0-9-]+):(\d+)$/.exec(e.OTEL_EXPORTER_OTLP_ENDPOINT ?? '');
    expect(
      otlp,
      `${stage}: OTEL_EXPORTER_OTLP_ENDPOINT (a base URL: /v1/traces and /v1/metrics are appended)`,
    ).not.toBeNull();
    expect(otlp![1]).toBe('otel-collector');
    const collector = readYaml(mountedFile('otel-collector', '/etc/otelcol-contrib/config.yaml'));
    const http = obj(obj(obj(obj(collector.receivers, 'receivers').otlp, 'otlp').protocols, 'protocols').http, 'http');
    expect(Number(otlp![2])).toBe(portOf(str(http.endpoint, 'otlp http endpoint')));
    expect(e.OTEL_EXPORTER_OTLP_PROTOCOL).toBe('http/json');
  });

  it.each(STAGES)(
    '%s has a health check on /healthz at VA_HEALTH_PORT, a restart policy and waits for NATS',
    (stage) => {
      const s = service(stage);
      const port = env(stage).VA_HEALTH_PORT;
      expect(port).toBe('8090');
      const test = commandText(obj(s.healthcheck, `${stage}.healthcheck`).test);
      expect(test).toContain(`:${port}/healthz`);
      expect(test).toMatch(/^CMD node -e /);
      expect(['always', 'unless-stopped', 'on-failure']).toContain(s.restart);
      const deps = obj(s.depends_on, `${stage}.depends_on`);
      for (const node of NATS_NODES) {
        expect(obj(deps[node], `depends_on.${node}`).condition).toBe('service_healthy');
        expect(service(node).healthcheck).toBeDefined();
      }
      for (const [dep, cond] of Object.entries(deps)) {
        expect(Object.keys(services), `${stage} depends on ${dep}`).toContain(dep);
        if (obj(cond, dep).condition === 'service_healthy') expect(service(dep).healthcheck, dep).toBeDefined();
      }
    },
  );

  it('share their environment through a YAML anchor', () => {
    const text = read('docker-compose.yml');
    const anchor = /^x-[a-z-]+: &([a-z-]+)\n(?: {2}.*\n)*? {2}NATS_URL:/m.exec(text);
    expect(anchor, 'an x- block with an anchor holding NATS_URL').not.toBeNull();
    const uses = text.match(new RegExp(`<<: \\*${anchor![1]}\\b`, 'g')) ?? [];
    expect(uses.length).toBeGreaterThanOrEqual(STAGES.length);
  });

  it('media-gateway serves the talk page on 0.0.0.0:8080, published on loopback, with turns linked to the dashboard', () => {
    const e = env('media-gateway');
    expect(e.GATEWAY_TRANSPORT).toBe('web');
    expect(e.GATEWAY_WEB_HOST).toBe('0.0.0.0');
    const ports = list(service('media-gateway').ports, 'media-gateway.ports').map(String);
    expect(ports).toContain(`127.0.0.1:${e.GATEWAY_WEB_PORT}:${e.GATEWAY_WEB_PORT}`);
    const dashboard = JSON.parse(read('grafana/dashboards/voice-turns.json')) as {
      uid: string;
      templating: { list: { name: string }[] };
    };
    const url = new URL(e.GATEWAY_TRACE_URL!.replace('{traceId}', '0123abcd'));
    expect(url.pathname.startsWith(`/d/${dashboard.uid}/`)).toBe(true);
    expect(url.port).toBe('3000');
    const variable = [...url.searchParams.keys()].find((k) => k.startsWith('var-'))!.slice(4);
    expect(dashboard.templating.list.map((v) => v.name)).toContain(variable);
    expect(url.searchParams.get(`var-${variable}`)).toBe('0123abcd');
  });

  it('the responders and session-context default to LLM servers this file runs', () => {
    for (const [stage, v] of [
      ['fast-responder', 'FAST_LLM_BASE_URL'],
      ['deep-responder', 'DEEP_LLM_BASE_URL'],
      ['session-context', 'SUMMARY_LLM_BASE_URL'],
    ] as const) {
      const url = new URL(composeDefault(env(stage)[v] ?? ''));
      expect(Object.keys(services), `${stage} ${v}`).toContain(url.hostname);
      const llm = service(url.hostname);
      expect(commandText(llm.command)).toContain(`--port ${url.port}`);
      expect(commandText(llm.command)).toContain('--host 0.0.0.0');
      expect(obj(llm.build, 'llm build').dockerfile).toBe('deploy/Dockerfile');
      const dir = str(obj(obj(llm.build, 'llm build').args, 'llm args').SERVICE_DIR, 'SERVICE_DIR');
      expect(existsSync(join(ROOT, dir, 'src', 'main.ts'))).toBe(true);
      expect(commandText(obj(llm.healthcheck, 'llm healthcheck').test)).toContain(`:${url.port}/v1/models`);
      const model = composeDefault(env(stage)[v.replace('BASE_URL', 'MODEL')] ?? '');
      expect(model.length, `${stage} needs a model name`).toBeGreaterThan(0);
    }
  });
});

describe('infrastructure', () => {
  it('runs NATS as a three-node cluster, each node with JetStream stored on its own volume, routed to all three', () => {
    const dataVolumes = new Set<string>();
    for (const node of NATS_NODES) {
      const nats = service(node);
      expect(str(nats.image, `${node}.image`)).toMatch(/^nats:2\.\d+/);
      expect(obj(nats.environment, `${node}.environment`).SERVER_NAME).toBe(node);
      const conf = /-c\s+(\S+)/.exec(commandText(nats.command));
      expect(conf, `${node}: a config file`).not.toBeNull();
      // The config and the files it includes (mounted beside it).
      const dir = conf![1]!.slice(0, conf![1]!.lastIndexOf('/'));
      const main = read(mountedFile(node, conf![1]!));
      const included = [...main.matchAll(/^include \.\/(\S+)$/gm)]
        .map((m) => `${dir}/${m[1]}`)
        .filter((target) => mounts(node).some((x) => x.target === target && x.source.startsWith('./')))
        .map((target) => read(mountedFile(node, target)));
      const text = [main, ...included].join('\n');
      const storeDir = /jetstream\s*\{[^}]*store_dir:\s*"?([^\s"]+)"?/.exec(text);
      expect(storeDir, 'nats.conf enables JetStream with a store_dir').not.toBeNull();
      const data = mounts(node).find((m) => m.target === storeDir![1]);
      expect(data, `${node}: a volume at the store dir`).toBeDefined();
      dataVolumes.add(data!.source);
      expect(text).toMatch(/server_name:\s*\$SERVER_NAME/);
      const routes = /cluster\s*\{[\s\S]*?routes:\s*\[([^\]]*)\]/.exec(text);
      expect(routes, `${node}: a cluster block with routes`).not.toBeNull();
      expect([...routes![1]!.matchAll(/nats-route:\/\/([a-z0-9-]+):6222/g)].map((m) => m[1])).toEqual(NATS_NODES);
    }
    expect(dataVolumes.size, 'one store per node').toBe(NATS_NODES.length);
  });

  it('publishes nothing beyond loopback, and not NATS’ client port at all', () => {
    for (const name of Object.keys(services)) {
      for (const port of list(service(name).ports ?? [], `${name}.ports`).map(String)) {
        expect(port, name).toMatch(/^127\.0\.0\.1:\d+:\d+(\/udp)?$/);
        expect(port, name).not.toMatch(/:4222$/);
      }
    }
  });

  it('runs NATS with one user per stage: each stage holds only its own password, and the server accepts them', () => {
    for (const stage of STAGES) {
      const e = env(stage);
      expect(e.NATS_USER, stage).toBe(stage);
      expect(e.NATS_PASSWORD).toBeUndefined();
      const dir = e.NATS_PASSWORD_FILE!.slice(0, e.NATS_PASSWORD_FILE!.lastIndexOf('/'));
      const mount = mounts(stage).find((m) => m.target === dir);
      expect(mount?.source, stage).toBe(`nats-password-${stage}`);
      // No other service but the generator mounts a stage's password volume.
      const holders = Object.keys(services).filter((n) => mounts(n).some((m) => m.source === mount!.source));
      expect(holders.sort(), stage).toEqual(['nats-passwords', stage].sort());
    }
    for (const node of NATS_NODES) {
      expect(obj(obj(service(node).depends_on, `${node}.depends_on`)['nats-passwords'], 'dep').condition).toBe(
        'service_completed_successfully',
      );
    }
    // The generator, run for real on the checked-in auth.conf, and nats-server on the result.
    const tmp = mkdtempSync(join(tmpdir(), 'va-compose-nats-'));
    try {
      for (const d of ['out/nats', 'out/stt', 'etc']) mkdirSync(join(tmp, d), { recursive: true });
      const gen = spawnSync('sh', [join(ROOT, 'deploy/nats/compose-passwords.sh')], {
        env: { ...process.env, OUT: join(tmp, 'out'), TEMPLATE: join(ROOT, 'deploy/nats/auth.conf') },
        encoding: 'utf8',
      });
      expect(gen.status, gen.stderr).toBe(0);
      const password = readFileSync(join(tmp, 'out/stt/password'), 'utf8');
      expect(password).toMatch(/^[A-Za-z0-9]{32}$/);
      const auth = readFileSync(join(tmp, 'out/nats/auth.conf'), 'utf8');
      expect(auth).toContain(`password: "${password}"`);
      expect(auth).not.toMatch(/password: \$/);
      for (const f of ['nats-compose.conf', 'nats.conf', 'nats-cluster.conf']) {
        const text = readFileSync(join(ROOT, 'deploy/nats', f), 'utf8');
        writeFileSync(join(tmp, 'etc', f), text.replace('store_dir: /data', `store_dir: ${join(tmp, 'js')}`));
      }
      symlinkSync(join(tmp, 'out/nats'), join(tmp, 'etc/generated'));
      const check = spawnSync(findNatsServerBinary(), ['-t', '-c', join(tmp, 'etc/nats-compose.conf')], {
        encoding: 'utf8',
        env: { ...process.env, SERVER_NAME: 'nats-1' },
      });
      expect(check.status, check.stderr).toBe(0);
      // Run again: the passwords stay.
      spawnSync('sh', [join(ROOT, 'deploy/nats/compose-passwords.sh')], {
        env: { ...process.env, OUT: join(tmp, 'out'), TEMPLATE: join(ROOT, 'deploy/nats/auth.conf') },
      });
      expect(readFileSync(join(tmp, 'out/stt/password'), 'utf8')).toBe(password);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('has tempo, the collector, prometheus, grafana and livekit', () => {
    expect(str(service('tempo').image, 'tempo')).toMatch(/^grafana\/tempo:/);
    expect(str(service('otel-collector').image, 'collector')).toMatch(/^otel\/opentelemetry-collector-contrib:/);
    expect(str(service('prometheus').image, 'prometheus')).toMatch(/^prom\/prometheus:/);
    expect(str(service('grafana').image, 'grafana')).toMatch(/^grafana\/grafana:/);
    const livekit = service('livekit');
    expect(str(livekit.image, 'livekit')).toMatch(/^livekit\/livekit-server:/);
    expect(commandText(livekit.command)).toMatch(/--dev\b/);
    // Dev mode binds 127.0.0.1 unless told otherwise: unreachable from the host and the other containers.
    expect(commandText(livekit.command)).toContain('--bind 0.0.0.0');
    expect(list(livekit.ports, 'livekit.ports').map(String)).toEqual(
      expect.arrayContaining(['127.0.0.1:7880:7880', '127.0.0.1:7881:7881', '127.0.0.1:7882:7882/udp']),
    );
  });

  it('mounts only files that exist, and declares every named volume', () => {
    const named = Object.keys(obj(compose.volumes ?? {}, 'volumes'));
    let binds = 0;
    for (const name of Object.keys(services)) {
      for (const { source } of mounts(name)) {
        if (source.startsWith('.') || source.startsWith('/')) {
          expect(source.startsWith('./'), `${name}: ${source} should be relative to the repo`).toBe(true);
          expect(existsSync(join(ROOT, source)), `${name} mounts ${source}`).toBe(true);
          binds += 1;
        } else {
          expect(named, `${name} uses volume ${source}`).toContain(source);
        }
      }
    }
    expect(binds).toBeGreaterThanOrEqual(6);
  });

  it('the collector routes traces to Tempo and metrics to the Prometheus exporter Prometheus scrapes', () => {
    const collectorCmd = commandText(service('otel-collector').command);
    const configPath = /--config[= ](\S+)/.exec(collectorCmd)![1]!;
    const config = readYaml(mountedFile('otel-collector', configPath));
    const exporters = obj(config.exporters, 'exporters');
    const pipelines = obj(obj(config.service, 'service').pipelines, 'pipelines');
    // Every component a pipeline names is defined.
    for (const [name, p] of Object.entries(pipelines)) {
      for (const kind of ['receivers', 'processors', 'exporters'] as const) {
        const defined = Object.keys(obj(config[kind] ?? {}, kind));
        for (const c of list(obj(p, name)[kind] ?? [], `${name}.${kind}`))
          expect(defined, `${name} uses ${kind} ${String(c)}`).toContain(c);
      }
    }
    const traces = list(obj(pipelines.traces, 'traces pipeline').exporters, 'traces exporters').map(String);
    const metrics = list(obj(pipelines.metrics, 'metrics pipeline').exporters, 'metrics exporters').map(String);

    // traces → Tempo's OTLP/HTTP receiver.
    expect(traces).toHaveLength(1);
    expect(traces[0]).toMatch(/^otlphttp(\/|$)/);
    const tempoUrl = new URL(str(obj(exporters[traces[0]!], traces[0]!).endpoint, 'tempo endpoint'));
    expect(tempoUrl.hostname).toBe('tempo');
    const tempo = readYaml(
      mountedFile('tempo', /-config\.file=(\S+)/.exec(commandText(service('tempo').command))![1]!),
    );
    const tempoHttp = obj(
      obj(obj(obj(obj(tempo.distributor, 'distributor').receivers, 'receivers').otlp, 'otlp').protocols, 'protocols')
        .http,
      'http',
    );
    expect(Number(tempoUrl.port)).toBe(portOf(str(tempoHttp.endpoint, 'tempo otlp endpoint')));

    // metrics → the Prometheus exporter, resource attributes (service.name …) as labels, scraped by Prometheus.
    expect(metrics).toHaveLength(1);
    expect(metrics[0]).toMatch(/^prometheus(\/|$)/);
    const prom = obj(exporters[metrics[0]!], metrics[0]!);
    expect(obj(prom.resource_to_telemetry_conversion, 'resource_to_telemetry_conversion').enabled).toBe(true);
    // The dashboard's names assume the default suffixes (_total, _milliseconds).
    expect(prom.add_metric_suffixes ?? true).toBe(true);
    const exporterPort = portOf(str(prom.endpoint, 'prometheus exporter endpoint'));

    const promCfgPath = /--config\.file=(\S+)/.exec(commandText(service('prometheus').command))![1]!;
    const promCfg = readYaml(mountedFile('prometheus', promCfgPath));
    const targets = list(promCfg.scrape_configs, 'scrape_configs').flatMap((sc) =>
      list(obj(sc, 'scrape_config').static_configs ?? [], 'static_configs').flatMap((c) =>
        list(obj(c, 'static_config').targets, 'targets').map(String),
      ),
    );
    expect(targets).toContain(`otel-collector:${exporterPort}`);
  });

  it('grafana provisions its datasources and the dashboards directory, with Voice turns as home', () => {
    const provisioning = mountedFile('grafana', '/etc/grafana/provisioning');
    const providerDir = join(provisioning, 'dashboards');
    const providers = readdirSync(join(ROOT, providerDir))
      .filter((f) => /\.ya?ml$/.test(f))
      .flatMap((f) => list(readYaml(join(providerDir, f)).providers, 'providers'));
    expect(providers.length).toBeGreaterThan(0);
    for (const p of providers) {
      const path = str(obj(obj(p, 'provider').options, 'options').path, 'provider path');
      const dir = mountedFile('grafana', path);
      expect(existsSync(join(ROOT, dir, 'voice-turns.json'))).toBe(true);
    }
    const e = env('grafana');
    expect(e.GF_AUTH_ANONYMOUS_ENABLED).toBe('true');
    expect(e.GF_AUTH_ANONYMOUS_ORG_ROLE).toBe('Viewer');
    const home = e.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH!;
    const homeMount = mounts('grafana').find((m) => home.startsWith(`${m.target}/`))!;
    expect(existsSync(join(ROOT, homeMount.source, home.slice(homeMount.target.length)))).toBe(true);

    // Datasource URLs point at the services (and ports) this file runs.
    const dsDir = join(provisioning, 'datasources');
    const datasources = readdirSync(join(ROOT, dsDir))
      .filter((f) => /\.ya?ml$/.test(f))
      .flatMap((f) => list(readYaml(join(dsDir, f)).datasources, 'datasources').map((d) => obj(d, 'datasource')));
    const byType = (type: string) => datasources.find((d) => d.type === type)!;
    const tempoUrl = new URL(str(byType('tempo').url, 'tempo url'));
    expect(tempoUrl.hostname).toBe('tempo');
    const tempo = readYaml('deploy/tempo.yaml');
    expect(Number(tempoUrl.port)).toBe(obj(tempo.server, 'server').http_listen_port);
    const promUrl = new URL(str(byType('prometheus').url, 'prometheus url'));
    expect(promUrl.hostname).toBe('prometheus');
    expect(list(service('prometheus').ports, 'ports').map(String)).toContain(
      `127.0.0.1:${promUrl.port}:${promUrl.port}`,
    );
  });
});

describe('deploy/Dockerfile', () => {
  const stages = dockerfileStages(read('deploy/Dockerfile'));
  const final = stages.at(-1)!;

  it('is multi-stage: builds with npm ci + tsc -b, runs from a slim node image', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const all = stages.flatMap((s) => s.lines).join('\n');
    expect(all).toMatch(/RUN .*npm ci\b/);
    expect(all).toMatch(/RUN .*npx tsc -b\b/);
    expect(
      final.lines.some((l) => /npm ci|tsc -b/.test(l)),
      'the runtime stage does not build',
    ).toBe(false);
    expect(final.lines.some((l) => /^COPY --from=/.test(l))).toBe(true);
    const text = read('deploy/Dockerfile');
    const base = /^ARG NODE_IMAGE=(\S+)/m.exec(text)?.[1];
    expect(final.from.replace('${NODE_IMAGE}', base ?? '')).toMatch(/^FROM node:20-bookworm-slim\b/);
  });

  it('has .npmrc (onnxruntime-node-install=skip) in place before npm ci', () => {
    expect(read('.npmrc')).toMatch(/^onnxruntime-node-install=skip$/m);
    const instructions = stages.flatMap((s) => [s.from, ...s.lines]);
    const ci = instructions.findIndex((l) => /^RUN .*npm ci\b/.test(l));
    expect(ci).toBeGreaterThan(0);
    const manifests = instructions.slice(0, ci).join('\n');
    // The manifests stage keeps .npmrc alongside the package.json files and the lockfile…
    expect(manifests).toMatch(/! -name \.npmrc/);
    expect(manifests).toMatch(/! -name package-lock\.json/);
    // … and nothing in the build context drops them.
    const ignored = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    for (const f of ['.npmrc', 'package-lock.json', 'package.json']) expect(ignored).not.toContain(f);
    expect(ignored).toEqual(expect.arrayContaining(['**/node_modules', '**/dist', '**/*.tsbuildinfo']));
  });

  it('takes ARG SERVICE, runs services/${SERVICE}/dist/main.js as a non-root user', () => {
    expect(final.lines).toContain('ARG SERVICE');
    const user = final.lines.filter((l) => l.startsWith('USER ')).at(-1);
    expect(user).toBeDefined();
    expect(user).not.toMatch(/^USER (root|0)(:|$)/);
    const workdir = final.lines.filter((l) => l.startsWith('WORKDIR ')).at(-1)!;
    const dirArg = /ARG SERVICE_DIR=(\S+)/.exec(final.lines.join('\n'))?.[1];
    const resolved = workdir.replace('${SERVICE_DIR}', dirArg ?? '${SERVICE_DIR}');
    expect(resolved).toBe('WORKDIR /app/services/${SERVICE}');
    expect(final.lines.at(-1)).toBe('CMD ["node", "dist/main.js"]');
  });

  it('installs the offline providers, exposes the health port and checks /healthz', () => {
    const apt = final.lines.find((l) => l.includes('apt-get install'))!;
    for (const pkg of ['flite', 'libpocketsphinx3', 'pocketsphinx-en-us']) expect(apt.split(/\s+/)).toContain(pkg);
    expect(final.lines).toContain('EXPOSE 8090');
    const hc = final.lines.find((l) => l.startsWith('HEALTHCHECK'))!;
    expect(hc).toMatch(/CMD \["node", "-e", ".*\/healthz/);
    expect(final.lines.join('\n')).toMatch(/VA_HEALTH_PORT=8090/);
  });
});
