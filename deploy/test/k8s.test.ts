// deploy/k8s: every manifest checked against the Kubernetes API schemas (kubernetes-models), the kustomize
// wiring resolved by hand (no kustomize or cluster here), and the rules each stage's Deployment, Service,
// HorizontalPodAutoscaler and PodDisruptionBudget must keep so that sessions survive scaling and rollouts.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NATS_PASSWORDS_SECRET, NATS_USERS, natsAuthHelmValues, passwordVariable, STAGES } from '@va/protocol';
import { METRIC } from '@va/telemetry';
import { Deployment, type IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import {
  HorizontalPodAutoscaler,
  type IHorizontalPodAutoscaler,
} from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { PodDisruptionBudget, type IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Service, type IService } from 'kubernetes-models/v1/Service';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const K8S = join(ROOT, 'deploy/k8s');
const BASE = join(K8S, 'base');
const OVERLAY = join(K8S, 'overlays/example');
/** Helm values, not manifests. */
const VALUES_FILES = ['nats-values.yaml', 'nats-auth-values.yaml', 'prometheus-adapter-values.yaml'];
const HEALTH_PORT = 8090;
/** The gateway opens sessions rather than claiming them: it is not an actor host and has no va.sessions.owned. */
const ACTOR_HOSTS: readonly string[] = STAGES.filter((s) => s !== 'media-gateway');
/** The service defaults (README, "How a stage runs") when the environment leaves them unset. */
const DEFAULTS = { VA_HANDOVER_TIMEOUT_MS: '10000', VA_SHUTDOWN_TIMEOUT_MS: '20000', VA_SESSION_CAPACITY: '100' };

type Obj = Record<string, unknown>;
interface Doc {
  file: string;
  obj: Obj;
}
interface Kustomization {
  namespace?: string;
  resources?: string[];
  images?: { name: string; newName?: string; newTag?: string }[];
  patches?: { path?: string; patch?: string; target?: unknown }[];
  configMapGenerator?: { name: string; literals?: string[]; envs?: string[]; behavior?: string }[];
}

// ---- loading ---------------------------------------------------------------------------------------------------

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return yamlFiles(path);
    return /\.ya?ml$/.test(name) ? [path] : [];
  });
}

function loadDocs(file: string): Doc[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).flatMap((doc) => {
    if (doc.errors.length > 0) throw new Error(`${relative(ROOT, file)}: ${doc.errors[0]!.message}`);
    const obj = doc.toJS() as unknown;
    return obj === null || obj === undefined ? [] : [{ file: relative(ROOT, file), obj: obj as Obj }];
  });
}

function kustomization(dir: string): Kustomization {
  return parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Kustomization;
}

/** Reads a parsed object as its kubernetes-models type (after validation, or to break it on purpose). */
const as = <T>(o: unknown): T => o as T;
const id = (o: Obj): string => `${String(o.kind)}/${String((o.metadata as Obj | undefined)?.name)}`;
const clone = <T>(v: T): T => structuredClone(v);

/** A kustomization's resources, depth first (files and directories with their own kustomization). */
function resources(dir: string): Doc[] {
  return (kustomization(dir).resources ?? []).flatMap((entry) => {
    const path = resolve(dir, entry);
    return statSync(path).isDirectory() ? resources(path) : loadDocs(path);
  });
}

const overlayK = kustomization(OVERLAY);
const patchFiles = new Set((overlayK.patches ?? []).flatMap((p) => (p.path ? [resolve(OVERLAY, p.path)] : [])));
/** Every manifest under deploy/k8s, as written: not values files, kustomizations, or partial patches. */
const manifests = yamlFiles(K8S)
  .filter((f) => !f.endsWith('/kustomization.yaml') && !VALUES_FILES.includes(relative(K8S, f)) && !patchFiles.has(f))
  .flatMap(loadDocs);
const baseDocs = resources(BASE);
const baseEnv = generatedEnv(kustomization(BASE));

function generatedEnv(k: Kustomization): Map<string, Map<string, string>> {
  const maps = new Map<string, Map<string, string>>();
  for (const g of k.configMapGenerator ?? []) {
    const m = new Map<string, string>();
    for (const line of g.literals ?? []) {
      const at = line.indexOf('=');
      m.set(line.slice(0, at), line.slice(at + 1));
    }
    maps.set(g.name, m);
  }
  return maps;
}

// ---- schema validation -----------------------------------------------------------------------------------------

/** Validates one object against its kind's JSON schema; throws the schema error, or for a kind not expected here. */
function validateSchema(obj: Obj): void {
  const key = `${String(obj.apiVersion)}/${String(obj.kind)}`;
  const data = obj as never;
  switch (key) {
    case 'apps/v1/Deployment':
      return new Deployment(data).validate();
    case 'v1/Service':
      return new Service(data).validate();
    case 'autoscaling/v2/HorizontalPodAutoscaler':
      return new HorizontalPodAutoscaler(data).validate();
    case 'policy/v1/PodDisruptionBudget':
      return new PodDisruptionBudget(data).validate();
    case 'v1/Namespace':
      return new Namespace(data).validate();
    default:
      throw new Error(`no schema for ${key} (add it to validateSchema)`);
  }
}

const TYPES: Record<string, [string, string]> = {
  Deployment: ['IDeployment', 'kubernetes-models/apps/v1/Deployment'],
  Service: ['IService', 'kubernetes-models/v1/Service'],
  HorizontalPodAutoscaler: ['IHorizontalPodAutoscaler', 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler'],
  PodDisruptionBudget: ['IPodDisruptionBudget', 'kubernetes-models/policy/v1/PodDisruptionBudget'],
  Namespace: ['INamespace', 'kubernetes-models/v1/Namespace'],
};
let lastProgram: ts.Program | undefined;

/**
 * Unknown fields. kubernetes-models' schemas accept properties they do not define (a misspelt
 * `terminationGracePeriodSecond` passes them), while the API server rejects them (kubectl's default strict field
 * validation). So each object is also type-checked as an object literal of its kubernetes-models interface, where
 * TypeScript's excess-property check rejects any field the API does not have (the first one per object; values
 * of the wrong type too).
 * Returns the problems per label.
 */
function unknownFields(items: { label: string; obj: Obj }[]): Map<string, string[]> {
  const file = join(ROOT, 'deploy/test/__k8s_fields__.ts');
  const problems = new Map<string, string[]>(items.map((i) => [i.label, []]));
  const kinds = [...new Set(items.map((i) => String(i.obj.kind)))].filter((k) => k in TYPES);
  let src = kinds.map((k) => `import type { ${TYPES[k]![0]} } from '${TYPES[k]![1]}';\n`).join('');
  const spans: { label: string; start: number; end: number }[] = [];
  items.forEach(({ label, obj }, i) => {
    if (!(String(obj.kind) in TYPES)) return void problems.get(label)!.push(`no type for kind ${String(obj.kind)}`);
    const start = src.length;
    src += `export const o${i}: ${TYPES[String(obj.kind)]![0]} = ${JSON.stringify(obj, null, 1)};\n`;
    spans.push({ label, start, end: src.length });
  });
  const options: ts.CompilerOptions = {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  host.getSourceFile = (name, lang, ...rest) =>
    name === file ? ts.createSourceFile(name, src, lang) : getSourceFile(name, lang, ...rest);
  host.fileExists = (name) => name === file || fileExists(name);
  const program = ts.createProgram([file], options, host, lastProgram);
  lastProgram = program;
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const text = ts.flattenDiagnosticMessageText(d.messageText, ' ');
    const span = d.file?.fileName === file ? spans.find((s) => d.start! >= s.start && d.start! < s.end) : undefined;
    if (!span) throw new Error(`field check itself failed: ${text}`);
    problems.get(span.label)!.push(text);
  }
  return problems;
}

// ---- kustomize, by hand ----------------------------------------------------------------------------------------

const imageName = (image: string): string => image.replace(/@.*$/, '').replace(/:[^/:]*$/, '');

/** Strategic merge, as far as these patches need it: maps merge, lists of named items merge by name. */
function merge(into: unknown, patch: unknown): unknown {
  if (Array.isArray(patch) && Array.isArray(into) && patch.every((p) => (p as Obj | null)?.name !== undefined)) {
    const out = [...(into as Obj[])];
    for (const p of patch as Obj[]) {
      const at = out.findIndex((o) => o.name === p.name);
      if (at < 0) out.push(p);
      else out[at] = merge(out[at], p) as Obj;
    }
    return out;
  }
  if (patch && typeof patch === 'object' && !Array.isArray(patch) && into && typeof into === 'object') {
    const out: Obj = { ...(into as Obj) };
    for (const [k, v] of Object.entries(patch)) out[k] = k in out ? merge(out[k], v) : v;
    return out;
  }
  return patch;
}

function containersOf(o: Obj): Obj[] {
  return ((((o.spec as Obj | undefined)?.template as Obj | undefined)?.spec as Obj | undefined)?.containers ??
    []) as Obj[];
}

/** The overlay as `kubectl apply -k` would apply it (resources, namespace, images, patches); problems if any. */
function buildOverlay(dir: string, k = kustomization(dir)): { objs: Obj[]; problems: string[] } {
  const problems: string[] = [];
  let objs = resources(dir).map((d) => clone(d.obj));
  for (const o of objs) if (k.namespace && o.kind !== 'Namespace') (o.metadata as Obj).namespace = k.namespace;
  const baseImages = new Set(baseDocs.flatMap((d) => containersOf(d.obj).map((c) => imageName(String(c.image)))));
  for (const img of k.images ?? []) {
    if (!baseImages.has(img.name)) problems.push(`images: ${img.name} is used by no container`);
    for (const c of objs.flatMap(containersOf)) {
      if (imageName(String(c.image)) !== img.name) continue;
      const tag = img.newTag ?? String(c.image).slice(img.name.length + 1);
      c.image = `${img.newName ?? img.name}:${tag}`;
    }
  }
  for (const p of k.patches ?? []) {
    if (p.target || !(p.path || p.patch)) {
      problems.push('patches: only strategic-merge patches (a file or inline) are resolved here');
      continue;
    }
    const docs = p.path ? loadDocs(resolve(dir, p.path)).map((d) => d.obj) : [parse(p.patch!) as Obj];
    for (const patch of docs) {
      const targets = objs.filter((o) => id(o) === id(patch));
      if (targets.length !== 1) {
        problems.push(`patch ${p.path ?? 'inline'}: ${id(patch)} matches ${targets.length} resources`);
        continue;
      }
      objs = objs.map((o) => (o === targets[0] ? (merge(o, patch) as Obj) : o));
    }
  }
  return { objs, problems };
}

// ---- the rules for one stage -----------------------------------------------------------------------------------

interface StageObjects {
  deploy?: IDeployment;
  svc?: IService;
  hpa?: IHorizontalPodAutoscaler;
  pdb?: IPodDisruptionBudget;
  problems: string[];
}

/** The stage's four objects, exactly one of each kind. */
function stageObjects(objs: Obj[], stage: string): StageObjects {
  const problems: string[] = [];
  const one = <T>(kind: string): T | undefined => {
    const found = objs.filter((o) => o.kind === kind && (o.metadata as Obj | undefined)?.name === stage);
    if (found.length !== 1) problems.push(`${found.length} ${kind} named ${stage}, want exactly 1`);
    return found[0] as T | undefined;
  };
  return {
    deploy: one<IDeployment>('Deployment'),
    svc: one<IService>('Service'),
    hpa: one<IHorizontalPodAutoscaler>('HorizontalPodAutoscaler'),
    pdb: one<IPodDisruptionBudget>('PodDisruptionBudget'),
    problems,
  };
}

const selects = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean =>
  !!selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/** Selectors, labels, image, ports, and the HPA's target. */
function checkWiring(objs: Obj[], stage: string): string[] {
  const { deploy, svc, hpa, pdb, problems } = stageObjects(objs, stage);
  if (!deploy || !svc || !hpa || !pdb) return problems;
  const labels = deploy.spec?.template.metadata?.labels;
  if (labels?.['app.kubernetes.io/name'] !== stage) problems.push(`pod label app.kubernetes.io/name is not ${stage}`);
  if (labels?.['app.kubernetes.io/part-of'] !== 'voice-agent') problems.push('pod label part-of is not voice-agent');
  const others = as<IDeployment[]>(objs.filter((o) => o.kind === 'Deployment' && o !== as<Obj>(deploy)));
  const selectors: [string, Record<string, string> | undefined][] = [
    ['Deployment', deploy.spec?.selector.matchLabels],
    ['Service', svc.spec?.selector],
    ['PodDisruptionBudget', pdb.spec?.selector?.matchLabels],
  ];
  for (const [kind, sel] of selectors) {
    if (!selects(sel, labels)) problems.push(`${kind} selector ${JSON.stringify(sel)} does not select the pods`);
    for (const o of others) {
      if (selects(sel, o.spec?.template.metadata?.labels)) problems.push(`${kind} selector also selects ${id(as(o))}`);
    }
  }
  const ref = hpa.spec?.scaleTargetRef;
  if (ref?.apiVersion !== 'apps/v1' || ref.kind !== 'Deployment' || ref.name !== stage) {
    problems.push(`HPA scaleTargetRef ${JSON.stringify(ref)} is not Deployment ${stage}`);
  }
  const containers = deploy.spec?.template.spec?.containers ?? [];
  if (containers.length !== 1) problems.push(`${containers.length} containers, want 1`);
  const c = containers[0];
  // voice-agent/<stage> in the base; an overlay may put a registry in front of it.
  if (c && !`/${imageName(c.image ?? '')}`.endsWith(`/voice-agent/${stage}`)) {
    problems.push(`image ${c.image} is not voice-agent/${stage}`);
  }
  for (const p of svc.spec?.ports ?? []) {
    const target = p.targetPort ?? p.port;
    if (!c?.ports?.some((cp) => cp.name === target || cp.containerPort === target)) {
      problems.push(`Service port ${p.name} targets ${target}, which the container does not expose`);
    }
  }
  if (!svc.spec?.ports?.some((p) => p.port === HEALTH_PORT)) problems.push(`Service does not expose ${HEALTH_PORT}`);
  return problems;
}

/** The container's environment: the generated ConfigMap(s) it reads, overridden by its own env. */
function envOf(deploy: IDeployment, generated: Map<string, Map<string, string>>): Map<string, string> {
  const c = deploy.spec?.template.spec?.containers[0];
  const env = new Map(Object.entries(DEFAULTS));
  for (const from of c?.envFrom ?? []) {
    if (from.configMapRef) for (const [k, v] of generated.get(from.configMapRef.name ?? '') ?? []) env.set(k, v);
  }
  for (const e of c?.env ?? []) if (e.value !== undefined) env.set(e.name, e.value);
  return env;
}

/** Resolves a probe's or Service's named port to the container port number. */
function portNumber(deploy: IDeployment, port: number | string | undefined): number | undefined {
  if (typeof port === 'number') return port;
  return deploy.spec?.template.spec?.containers[0]?.ports?.find((p) => p.name === port)?.containerPort;
}

/** Liveness /healthz, readiness /readyz, start-up /healthz, all on VA_HEALTH_PORT. */
function checkProbes(objs: Obj[], stage: string, generated = baseEnv): string[] {
  const { deploy, problems } = stageObjects(objs, stage);
  if (!deploy) return problems;
  const c = deploy.spec?.template.spec?.containers[0];
  const env = envOf(deploy, generated);
  if (env.get('VA_HEALTH_PORT') !== String(HEALTH_PORT)) problems.push(`VA_HEALTH_PORT is not ${HEALTH_PORT}`);
  const want = { livenessProbe: '/healthz', readinessProbe: '/readyz', startupProbe: '/healthz' } as const;
  for (const [probe, path] of Object.entries(want) as [keyof typeof want, string][]) {
    const get = c?.[probe]?.httpGet;
    if (get?.path !== path) problems.push(`${probe} is not GET ${path}`);
    else if (portNumber(deploy, get.port) !== HEALTH_PORT) problems.push(`${probe} is not on port ${HEALTH_PORT}`);
  }
  return problems;
}

/** The drain fits: grace > preStop + the service's own shutdown bound > the handover timeout. */
function checkShutdown(objs: Obj[], stage: string, generated = baseEnv): string[] {
  const { deploy, problems } = stageObjects(objs, stage);
  if (!deploy) return problems;
  const spec = deploy.spec?.template.spec;
  const env = envOf(deploy, generated);
  const handoverS = Number(env.get('VA_HANDOVER_TIMEOUT_MS')) / 1000;
  const shutdownS = Number(env.get('VA_SHUTDOWN_TIMEOUT_MS')) / 1000;
  const grace = spec?.terminationGracePeriodSeconds ?? 30;
  const preStop = spec?.containers[0]?.lifecycle?.preStop;
  const cmd = preStop?.exec?.command ?? [];
  let preStopS = preStop?.sleep?.seconds ?? (cmd[0] === 'sleep' ? Number(cmd[1]) : 0);
  if (!(preStopS > 0)) {
    problems.push('no preStop sleep');
    preStopS = 0;
  }
  if (!(grace > handoverS)) problems.push(`terminationGracePeriodSeconds ${grace} <= handover ${handoverS} s`);
  if (!(shutdownS > handoverS)) problems.push(`VA_SHUTDOWN_TIMEOUT_MS ${shutdownS} s <= handover ${handoverS} s`);
  if (!(grace > preStopS + shutdownS)) {
    problems.push(`terminationGracePeriodSeconds ${grace} <= preStop ${preStopS} s + shutdown ${shutdownS} s`);
  }
  const rolling = deploy.spec?.strategy?.rollingUpdate;
  if (rolling?.maxUnavailable !== 0) problems.push('rollouts may drop capacity (maxUnavailable is not 0)');
  return problems;
}

const SCALE: Record<string, number> = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30 };
function quantity(q: string | number | undefined): number {
  const m = /^(\d+(?:\.\d+)?)(m|k|M|G|Ki|Mi|Gi)?$/.exec(String(q));
  if (!m) return NaN;
  return Number(m[1]) * (m[2] ? SCALE[m[2]]! : 1);
}

/** HPA on CPU (+ owned sessions for actor hosts) owns the count; scale-down one pod per drain; PDB; resources. */
function checkScaling(objs: Obj[], stage: string, generated = baseEnv): string[] {
  const { deploy, hpa, pdb, problems } = stageObjects(objs, stage);
  if (!deploy || !hpa || !pdb) return problems;
  if (deploy.spec?.replicas !== undefined) problems.push('Deployment sets replicas, which the HPA owns');
  const spec = hpa.spec!;
  if ((spec.minReplicas ?? 1) < 2) problems.push('minReplicas < 2: one pod leaves its sessions nowhere to go');
  if (spec.maxReplicas < (spec.minReplicas ?? 1)) problems.push('maxReplicas < minReplicas');
  const metrics = spec.metrics ?? [];
  if (
    !metrics.some(
      (m) => m.type === 'Resource' && m.resource?.name === 'cpu' && m.resource.target.type === 'Utilization',
    )
  ) {
    problems.push('HPA has no CPU utilization metric');
  }
  const sessions = metrics.find((m) => m.type === 'Pods' && m.pods?.metric.name === 'va_sessions_owned');
  if (ACTOR_HOSTS.includes(stage)) {
    const target = quantity(sessions?.pods?.target.averageValue);
    const capacity = Number(envOf(deploy, generated).get('VA_SESSION_CAPACITY'));
    if (!sessions || sessions.pods?.target.type !== 'AverageValue')
      problems.push('HPA has no va_sessions_owned target');
    else if (!(target > 0 && target < capacity))
      problems.push(`sessions target ${target} not under capacity ${capacity}`);
  } else if (sessions) {
    problems.push(`${stage} does not report va.sessions.owned: its HPA would never scale down`);
  }
  const down = spec.behavior?.scaleDown;
  const grace = deploy.spec?.template.spec?.terminationGracePeriodSeconds ?? 30;
  if (!down?.policies?.length) problems.push('no scaleDown policy');
  for (const p of down?.policies ?? []) {
    if (p.type !== 'Pods' || p.value !== 1 || p.periodSeconds < grace) {
      problems.push(`scaleDown policy ${JSON.stringify(p)} removes more than one pod per drain (${grace} s)`);
    }
  }
  if ((down?.stabilizationWindowSeconds ?? 300) < 60) problems.push('scaleDown stabilization window under 60 s');
  const budget = pdb.spec!;
  if (!(budget.maxUnavailable === 1 || (typeof budget.minAvailable === 'number' && budget.minAvailable >= 1))) {
    problems.push('PodDisruptionBudget is neither maxUnavailable 1 nor minAvailable >= 1');
  }
  const res = deploy.spec?.template.spec?.containers[0]?.resources;
  for (const r of ['cpu', 'memory']) {
    const req = quantity(res?.requests?.[r]);
    const lim = quantity(res?.limits?.[r]);
    if (!(req > 0 && lim >= req)) problems.push(`${r}: request ${res?.requests?.[r]} / limit ${res?.limits?.[r]}`);
  }
  return problems;
}

/** Non-root, read-only root filesystem with an emptyDir /tmp, no privilege escalation. */
function checkSecurity(objs: Obj[], stage: string): string[] {
  const { deploy, problems } = stageObjects(objs, stage);
  if (!deploy) return problems;
  const pod = deploy.spec?.template.spec;
  const c = pod?.containers[0];
  const user = c?.securityContext?.runAsUser ?? pod?.securityContext?.runAsUser;
  if (!(c?.securityContext?.runAsNonRoot ?? pod?.securityContext?.runAsNonRoot)) problems.push('runAsNonRoot unset');
  // The image's USER is a name (node); the kubelet can verify runAsNonRoot only against a numeric id.
  if (!(typeof user === 'number' && user > 0)) problems.push('no numeric non-root runAsUser');
  if (c?.securityContext?.readOnlyRootFilesystem !== true) problems.push('root filesystem writable');
  if (c?.securityContext?.allowPrivilegeEscalation !== false) problems.push('privilege escalation allowed');
  const tmp = c?.volumeMounts?.find((m) => m.mountPath === '/tmp');
  if (!tmp || !pod?.volumes?.some((v) => v.name === tmp.name && v.emptyDir)) problems.push('no emptyDir at /tmp');
  return problems;
}

const CHECKS = { checkWiring, checkProbes, checkShutdown, checkScaling, checkSecurity };
const baseObjs = baseDocs.map((d) => d.obj);

// ---- tests -----------------------------------------------------------------------------------------------------

describe('deploy/k8s manifests', () => {
  it('finds the manifests it checks', () => {
    expect(manifests.length).toBeGreaterThanOrEqual(STAGES.length * 4 + 1);
  });

  it('every manifest validates against the Kubernetes schema (kubernetes-models)', () => {
    const failures = manifests.flatMap(({ file, obj }) => {
      try {
        validateSchema(obj);
        return [];
      } catch (err) {
        return [`${file} ${id(obj)}: ${(err as Error).message}`];
      }
    });
    expect(failures).toEqual([]);
  });

  it('no manifest has a field the Kubernetes API does not know (strict field validation)', () => {
    const problems = unknownFields(manifests.map(({ file, obj }) => ({ label: `${file} ${id(obj)}`, obj })));
    expect([...problems].filter(([, p]) => p.length > 0)).toEqual([]);
  });

  it('base/kustomization.yaml lists exactly the YAML files in base, and they exist', () => {
    const listed = kustomization(BASE).resources ?? [];
    const files = readdirSync(BASE).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml');
    expect([...listed].sort()).toEqual([...files].sort());
    for (const r of listed) expect(existsSync(join(BASE, r)), r).toBe(true);
  });

  it('each stage has its own file, and the base holds nothing but the seven stages', () => {
    expect((kustomization(BASE).resources ?? []).map((r) => r.replace(/\.yaml$/, '')).sort()).toEqual(
      [...STAGES].sort(),
    );
    for (const o of baseObjs) expect(STAGES as readonly string[]).toContain((o.metadata as Obj).name);
    // One image per stage, built with --build-arg SERVICE=<stage>: the service must exist.
    for (const s of STAGES) expect(existsSync(join(ROOT, 'services', s, 'package.json')), s).toBe(true);
  });

  it('every stage reads the shared ConfigMap and the optional provider-key Secret', () => {
    const env = baseEnv.get('voice-agent-env');
    expect(env?.get('NATS_URL')).toBe('nats://nats:4222');
    expect(env?.get('OTEL_EXPORTER_OTLP_ENDPOINT')).toBe('http://otel-collector:4318');
    expect(env?.get('OTEL_EXPORTER_OTLP_PROTOCOL')).toBe('http/json');
    expect(env?.has('LOG_LEVEL')).toBe(true);
    for (const o of as<IDeployment[]>(baseObjs.filter((o) => o.kind === 'Deployment'))) {
      const from = o.spec?.template.spec?.containers[0]?.envFrom ?? [];
      expect(from.map((f) => f.configMapRef?.name).filter(Boolean), o.metadata?.name).toEqual(['voice-agent-env']);
      const secret = from.find((f) => f.secretRef)?.secretRef;
      expect(secret, o.metadata?.name).toEqual({ name: 'voice-agent-provider-keys', optional: true });
    }
  });

  it('every stage connects as its own NATS user, its password a file from the Secret (its own key only)', () => {
    for (const o of as<IDeployment[]>(baseObjs.filter((o) => o.kind === 'Deployment'))) {
      const stage = o.metadata!.name!;
      const pod = o.spec!.template.spec!;
      const container = pod.containers[0]!;
      const env = new Map((container.env ?? []).map((e) => [e.name, e]));
      expect(env.get('NATS_USER')?.value, stage).toBe(stage);
      expect(env.has('NATS_PASSWORD'), stage).toBe(false); // never a plain value in a manifest
      const file = env.get('NATS_PASSWORD_FILE')?.value ?? '';
      const mount = container.volumeMounts?.find((m) => file.startsWith(`${m.mountPath}/`));
      expect(mount?.readOnly, stage).toBe(true);
      const volume = pod.volumes?.find((v) => v.name === mount?.name);
      expect(volume?.secret, stage).toMatchObject({
        secretName: NATS_PASSWORDS_SECRET,
        items: [{ key: stage, path: file.slice(mount!.mountPath.length + 1) }],
      });
    }
  });

  describe.each(STAGES)('%s', (stage) => {
    it('has one Deployment, Service, HPA and PDB, selecting its own pods, image voice-agent/<stage>', () => {
      expect(checkWiring(baseObjs, stage)).toEqual([]);
      const deploy = stageObjects(baseObjs, stage).deploy!;
      expect(deploy.spec?.template.spec?.containers[0]?.image).toBe(`voice-agent/${stage}:latest`);
    });
    it('probes /healthz (liveness, start-up) and /readyz (readiness) on 8090', () => {
      expect(checkProbes(baseObjs, stage)).toEqual([]);
    });
    it('drains within its grace period: preStop, then handover and flush before SIGKILL', () => {
      expect(checkShutdown(baseObjs, stage)).toEqual([]);
    });
    it('scales on its HPA (CPU, and owned sessions for actor hosts), one pod per drain, within a PDB', () => {
      expect(checkScaling(baseObjs, stage)).toEqual([]);
    });
    it('runs as non-root with a read-only root filesystem', () => {
      expect(checkSecurity(baseObjs, stage)).toEqual([]);
    });
  });

  it('media-gateway exposes its web (8080) and dispatch (8081) ports, with client affinity', () => {
    const { svc, deploy } = stageObjects(baseObjs, 'media-gateway');
    expect(svc?.spec?.ports?.map((p) => [p.name, p.port])).toEqual([
      ['web', 8080],
      ['dispatch', 8081],
      ['health', 8090],
    ]);
    expect(svc?.spec?.sessionAffinity).toBe('ClientIP');
    const env = envOf(deploy!, baseEnv);
    // Listening on all interfaces (the default, 127.0.0.1, is unreachable from the Service).
    expect([env.get('GATEWAY_WEB_HOST'), env.get('GATEWAY_HTTP_HOST')]).toEqual(['0.0.0.0', '0.0.0.0']);
  });
});

describe('overlays/example', () => {
  const built = buildOverlay(OVERLAY);

  it('resolves: its images are base images, its patches hit existing resources', () => {
    expect(built.problems).toEqual([]);
  });

  it('pins every stage image, so swapping one stage is one newTag (stt runs another build here)', () => {
    const named = new Set((overlayK.images ?? []).map((i) => i.name));
    expect([...named].sort()).toEqual(STAGES.map((s) => `voice-agent/${s}`).sort());
    const tags = new Map(
      STAGES.map((s) => [s, stageObjects(built.objs, s).deploy?.spec?.template.spec?.containers[0]?.image]),
    );
    for (const [s, image] of tags) expect(image, s).toMatch(new RegExp(`/voice-agent/${s}:[\\w.-]+$`));
    const sttTag = tags.get('stt')!.split(':').pop();
    expect(sttTag).not.toBe(tags.get('tts')!.split(':').pop());
    expect(sttTag).not.toBe('latest');
  });

  it('puts everything in its namespace, which it creates', () => {
    const ns = built.objs.filter((o) => o.kind === 'Namespace');
    expect(ns.map((o) => (o.metadata as Obj).name)).toEqual([overlayK.namespace]);
    for (const o of built.objs) if (o.kind !== 'Namespace') expect((o.metadata as Obj).namespace).toBe('voice-agent');
  });

  it('the patched result still validates and keeps every stage rule (stt scaled up)', () => {
    for (const o of built.objs) expect(() => validateSchema(o), id(o)).not.toThrow();
    const fields = unknownFields(built.objs.map((o) => ({ label: id(o), obj: o })));
    expect([...fields].filter(([, p]) => p.length > 0)).toEqual([]);
    for (const stage of STAGES) {
      for (const [name, check] of Object.entries(CHECKS))
        expect(check(built.objs, stage), `${stage} ${name}`).toEqual([]);
    }
    const stt = stageObjects(built.objs, 'stt');
    expect(stt.hpa?.spec?.minReplicas).toBeGreaterThan(stageObjects(baseObjs, 'stt').hpa!.spec!.minReplicas!);
    expect(stt.deploy?.spec?.template.spec?.containers[0]?.resources?.requests?.cpu).toBe('2');
  });

  it('keeps provider keys out of git (secretGenerator reads a git-ignored file)', () => {
    expect(readFileSync(join(K8S, '.gitignore'), 'utf8')).toMatch(/^provider-keys\.env$/m);
    expect(existsSync(join(OVERLAY, 'provider-keys.env.example'))).toBe(true);
  });
});

describe('helm values', () => {
  it('NATS: JetStream on file storage PVCs, a cluster of 3, installed as the `nats` the stages connect to', () => {
    const text = readFileSync(join(K8S, 'nats-values.yaml'), 'utf8');
    const values = parse(text) as {
      config: { cluster: Obj; jetstream: { enabled: boolean; fileStore: { enabled: boolean; pvc: Obj } } };
    };
    expect(values.config.cluster).toMatchObject({ enabled: true, replicas: 3 });
    expect(values.config.jetstream.enabled).toBe(true);
    expect(values.config.jetstream.fileStore.enabled).toBe(true);
    expect(values.config.jetstream.fileStore.pvc).toMatchObject({ enabled: true });
    // Release `nats` makes the client Service `nats`, the host in NATS_URL.
    expect(text).toMatch(/helm upgrade --install nats nats\/nats /);
    expect(new URL(baseEnv.get('voice-agent-env')!.get('NATS_URL')!).host).toBe('nats:4222');
  });

  it('NATS: the generated least-privilege users, each password from the Secret', () => {
    const text = readFileSync(join(K8S, 'nats-auth-values.yaml'), 'utf8');
    expect(text).toBe(natsAuthHelmValues()); // node scripts/nats-auth.mjs writes it
    const values = parse(text) as {
      config: { merge: { authorization: { users: { user: string; password: string }[] } } };
      container: { env: Record<string, { valueFrom: { secretKeyRef: { name: string; key: string } } }> };
    };
    const users = values.config.merge.authorization.users;
    expect(users.map((u) => u.user)).toEqual([...NATS_USERS]);
    for (const u of users) {
      const variable = passwordVariable(u.user);
      expect(u.password).toBe(`<< $${variable} >>`);
      expect(values.container.env[variable]?.valueFrom.secretKeyRef).toEqual({
        name: NATS_PASSWORDS_SECRET,
        key: u.user,
      });
    }
  });

  it('prometheus-adapter serves the sessions metric the HPAs scale on, per pod', () => {
    const values = parse(readFileSync(join(K8S, 'prometheus-adapter-values.yaml'), 'utf8')) as {
      rules: { custom: { seriesQuery: string; name: { as: string }; resources: { overrides: Obj } }[] };
    };
    // The OTel gauge va.sessions.owned, as Prometheus names it.
    const series = METRIC.sessionsOwned.replace(/\./g, '_');
    const rule = values.rules.custom.find((r) => r.seriesQuery.startsWith(`${series}{`));
    expect(rule?.name.as).toBe(series);
    expect(Object.values(rule!.resources.overrides)).toEqual([{ resource: 'namespace' }, { resource: 'pod' }]);
    for (const s of ACTOR_HOSTS) {
      const hpa = stageObjects(baseObjs, s).hpa;
      expect(
        hpa?.spec?.metrics?.some((m) => m.pods?.metric.name === series),
        s,
      ).toBe(true);
    }
  });
});

describe('the checks can fail', () => {
  const broken = (): Obj[] => clone(baseObjs);
  const sttDeploy = (objs: Obj[]): IDeployment =>
    as<IDeployment>(objs.find((o) => o.kind === 'Deployment' && (o.metadata as Obj).name === 'stt'));

  it('the schema rejects a broken Deployment', () => {
    const objs = broken();
    const d = sttDeploy(objs);
    as<Obj>(d.spec!.template.spec!.containers[0]!.ports![0]).containerPort = 'eighty-ninety';
    expect(() => validateSchema(as(d))).toThrow(/containerPort must be integer/);
    delete as<Obj>(d.spec).selector;
    expect(() => validateSchema(as(d))).toThrow(/selector/);
    expect(() => validateSchema({ apiVersion: 'v1', kind: 'Pod' })).toThrow(/no schema/);
  });

  it('the field check rejects a misspelt field', () => {
    const d = as<Obj>(clone(sttDeploy(baseObjs)));
    ((d.spec as Obj).template as { spec: Obj }).spec.terminationGracePeriodSecond = 45;
    const problems = unknownFields([{ label: 'typo', obj: d }]).get('typo');
    expect(problems?.join()).toMatch(/terminationGracePeriodSecond/);
  });

  it('the stage rules reject wrong selectors, probes, grace, scaling and security', () => {
    const objs = broken();
    const d = sttDeploy(objs);
    const pod = d.spec!.template.spec!;
    const c = pod.containers[0]!;
    d.spec!.template.metadata!.labels!['app.kubernetes.io/name'] = 'speech';
    c.readinessProbe!.httpGet!.path = '/healthz';
    pod.terminationGracePeriodSeconds = 10;
    delete c.lifecycle;
    d.spec!.replicas = 3;
    c.securityContext!.readOnlyRootFilesystem = false;
    const hpa = objs.find((o) => o.kind === 'HorizontalPodAutoscaler' && (o.metadata as Obj).name === 'stt');
    as<IHorizontalPodAutoscaler>(hpa).spec!.behavior!.scaleDown!.policies = [
      { type: 'Percent', value: 50, periodSeconds: 15 },
    ];
    expect(checkWiring(objs, 'stt').join()).toMatch(/Deployment selector .* does not select the pods/);
    expect(checkProbes(objs, 'stt')).toEqual(['readinessProbe is not GET /readyz']);
    expect(checkShutdown(objs, 'stt')).toEqual([
      'no preStop sleep',
      'terminationGracePeriodSeconds 10 <= handover 10 s',
      'terminationGracePeriodSeconds 10 <= preStop 0 s + shutdown 20 s',
    ]);
    expect(checkScaling(objs, 'stt')).toEqual([
      'Deployment sets replicas, which the HPA owns',
      'scaleDown policy {"type":"Percent","value":50,"periodSeconds":15} removes more than one pod per drain (10 s)',
    ]);
    expect(checkSecurity(objs, 'stt')).toEqual(['root filesystem writable']);
    expect(
      checkScaling(
        objs.filter((o) => o.kind !== 'PodDisruptionBudget'),
        'stt',
      ),
    ).toContain('0 PodDisruptionBudget named stt, want exactly 1');
  });

  it('the overlay resolution rejects an image no stage uses and a patch with no target', () => {
    const k = clone(overlayK);
    k.images!.push({ name: 'voice-agent/sst', newTag: '0.2.0' });
    k.patches!.push({ patch: 'apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: sst }\n' });
    expect(buildOverlay(OVERLAY, k).problems).toEqual([
      'images: voice-agent/sst is used by no container',
      'patch inline: Deployment/sst matches 0 resources',
    ]);
  });
});
