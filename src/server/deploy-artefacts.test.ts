import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { generate } from 'selfsigned';
import { parse as parseToml } from 'smol-toml';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { renderExampleToml } from '../config/config-docs.js';
import { CONFIG_SCHEMA, type AkiConfig } from '../config/config-schema.js';
import { ConfigError, loadConfig } from '../config/load-config.js';
import { parseBucket } from '../objectstore/bucket-ref.js';
import { tracingTarget } from '../observability/tracing.js';
import { isRole, REST_ROUTES, roleAllows } from '../security/permissions.js';
import { useTempDirs } from '../test-support/temp-dirs.js';

/**
 * The deployment kit (deploy/**, docs/deployment.md) checked against the server it deploys: every
 * variable, key and flag it sets is one the server reads, every configuration it ships loads
 * without a problem (protected mode included), and every port, probe and scrape path is one the
 * server serves. Nothing here needs Docker, Kubernetes or systemd.
 */

const ROOT = path.resolve(import.meta.dirname, '../..');
const DEPLOY = path.join(ROOT, 'deploy');
const read = (rel: string): string => fs.readFileSync(path.join(ROOT, rel), 'utf8');
const tempDir = useTempDirs('akidb-deploy-');

const CLI_SOURCES = fs.readdirSync(path.join(ROOT, 'src/cli')).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts')).map((f) => read(`src/cli/${f}`));
/**
 * Every AKIDB_* variable AkiDB reads: the schema's, those load-config.ts reads by name
 * (AKIDB_CONFIG, AKIDB_BIND_ADDRESS), and the client commands' (AKIDB_API_KEY of `backup`).
 */
const KNOWN_ENV = new Set([
  ...CONFIG_SCHEMA.flatMap((o) => (o.env !== undefined ? [o.env] : [])),
  ...[...read('src/config/load-config.ts').matchAll(/\benv\.(AKIDB_[A-Z0-9_]+)/g)].map((m) => m[1]!),
  ...CLI_SOURCES.flatMap((src) => [...src.matchAll(/process\.env\.(AKIDB_[A-Z0-9_]+)/g)].map((m) => m[1]!)),
]);
/** Flags `serve` takes: the schema's, and --config (read by load-config.ts). */
const SERVER_FLAGS = new Set(['config', ...CONFIG_SCHEMA.flatMap((o) => (o.flag !== undefined ? [o.flag] : []))]);
const BOOLEAN_FLAGS = new Set(CONFIG_SCHEMA.filter((o) => o.flag !== undefined && o.type === 'boolean').map((o) => o.flag!));
const MAIN_SOURCE = read('src/cli/main.ts');
const CLI_COMMANDS = new Set([...MAIN_SOURCE.matchAll(/command === '([a-z-]+)'/g)].map((m) => m[1]!));
const CONFIG_SUBCOMMANDS = new Set([...MAIN_SOURCE.matchAll(/sub === '([a-z-]+)'/g)].map((m) => m[1]!));
/** The flags of the other commands, from their usage lines in the CLI's help (`  backup --url URL --out DIR ...`). */
const HELP_COMMANDS = MAIN_SOURCE.slice(MAIN_SOURCE.indexOf('Commands:'), MAIN_SOURCE.indexOf('Server options'));
const COMMAND_FLAGS = new Map([...HELP_COMMANDS.matchAll(/^ {2}([a-z]+) (.*--.*)$/gm)].map((m) => [m[1]!, new Set([...m[2]!.matchAll(/--([a-z-]+)/g)].map((f) => f[1]!))]));
const SERVER_COMMANDS = new Set(['serve', 'rest', 'grpc', 'config']);
const GRACE_DEFAULT = CONFIG_SCHEMA.find((o) => o.key === 'server.shutdown_grace_seconds')!.default as number;

/** Every file of the kit; a local `.env` (git-ignored secrets) is not part of it. */
const KIT_FILES = [
  ...fs
    .readdirSync(DEPLOY, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name !== '.env')
    .map((e) => path.relative(ROOT, path.join(e.parentPath, e.name))),
  '.dockerignore',
  'docs/deployment.md',
].sort();

// ---------------------------------------------------------------------------------------------
// Reading the artefacts

/** YAML syntax errors by file, asserted empty by the first test (files are read at load time). */
const YAML_ERRORS = new Map<string, string[]>();

/** All documents of a YAML file (multi-document files included). */
function yamlDocs(rel: string): unknown[] {
  const docs = parseAllDocuments(read(rel));
  const errors = docs.flatMap((d) => d.errors.map((e) => e.message));
  if (errors.length > 0) YAML_ERRORS.set(rel, errors);
  return docs.filter((d) => d.errors.length === 0).map((d) => d.toJS() as unknown).filter((d) => d !== null && d !== undefined);
}

/** `<name>` placeholders replaced by random 64-hex keys, the same name by the same key. */
function filler(): (text: string) => string {
  const values = new Map<string, string>();
  return (text) =>
    text.replace(/<([a-z0-9-]+)>/g, (_m, name: string) => {
      if (!values.has(name)) values.set(name, randomBytes(32).toString('hex'));
      return values.get(name)!;
    });
}
const asIs = (text: string): string => text;

/** `serve --flag value ...` as src/cli/main.ts parses it; `problems` names what the CLI would refuse. */
function parseArgv(argv: readonly string[]): { command: string; flags: Record<string, string>; problems: string[] } {
  const [command = '', ...rest] = argv;
  const flags: Record<string, string> = {};
  const problems: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (!a.startsWith('--')) {
      problems.push(`unexpected argument ${a}`);
      continue;
    }
    const eq = a.indexOf('=');
    if (eq > 0) {
      flags[a.slice(2, eq)] = a.slice(eq + 1);
      continue;
    }
    const name = a.slice(2);
    const next = rest[i + 1];
    if (BOOLEAN_FLAGS.has(name) && (next === undefined || next.startsWith('--'))) flags[name] = 'true';
    else if (next === undefined || next.startsWith('--')) problems.push(`${a} needs a value`);
    else {
      flags[name] = next;
      i++;
    }
  }
  for (const name of Object.keys(flags)) if (!SERVER_FLAGS.has(name)) problems.push(`--${name}: unknown option`);
  return { command, flags, problems };
}

interface LoadInput {
  flags?: Record<string, string>;
  env?: Record<string, string>;
  /** Files the artefact points to, by their path on the target machine. */
  files?: Record<string, string>;
}

/** loadConfig as the server would run it, the target's files laid out under a temp directory. */
function tryLoad(input: LoadInput): { config: AkiConfig; problems: [] } | { config: null; problems: readonly string[] } {
  const dir = tempDir();
  const moved = new Map<string, string>();
  for (const [target, text] of Object.entries(input.files ?? {})) {
    const local = path.join(dir, 'root', target);
    fs.mkdirSync(path.dirname(local), { recursive: true });
    fs.writeFileSync(local, text);
    moved.set(target, local);
  }
  const remap = (r: Record<string, string> | undefined): Record<string, string> => Object.fromEntries(Object.entries(r ?? {}).map(([k, v]) => [k, moved.get(v) ?? v]));
  try {
    return { config: loadConfig({ flags: remap(input.flags), env: remap(input.env), cwd: dir }).config, problems: [] };
  } catch (err) {
    if (err instanceof ConfigError) return { config: null, problems: err.problems };
    throw err;
  }
}

function load(input: LoadInput): AkiConfig {
  const r = tryLoad(input);
  expect(r.problems).toEqual([]);
  return r.config!;
}

/** Seconds in a systemd time span or a Go duration: `90s`, `1min 30s`, `1m30s`, `90`. */
function seconds(span: string): number {
  const units: Record<string, number> = { ms: 0.001, msec: 0.001, s: 1, sec: 1, m: 60, min: 60, h: 3600, hr: 3600 };
  let total = 0;
  for (const m of span.trim().matchAll(/(\d+(?:\.\d+)?)\s*([a-z]*)/g)) {
    const unit = units[m[2] === '' ? 's' : m[2]!];
    expect(unit, `unit of ${span}`).toBeDefined();
    total += Number(m[1]) * unit!;
  }
  return total;
}

/**
 * What a clean stop may take: in-flight requests drain for up to the grace, collections flush,
 * then pending uploads ship for up to the grace again (src/server/server.ts, stop()).
 */
function stopBudget(grace: number): number {
  return 2 * grace;
}

/** `KEY=VALUE` lines (systemd EnvironmentFile, Compose .env); quotes around a value are dropped. */
function envFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!.trim().replace(/^(["'])(.*)\1$/, '$2');
  }
  return out;
}

/** The bootstrap keys of an AKIDB_API_KEYS value: key, role, tenant. */
function bootstrapKeys(value: string): { key: string; role: string; tenant: string | undefined }[] {
  return value
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '')
    .map((e) => {
      const [key = '', role = 'admin', tenant] = e.split(':');
      return { key, role, tenant };
    });
}

const isPublicRoute = (p: string): boolean => REST_ROUTES[`GET ${p}`]?.permission === 'public';

// ---------------------------------------------------------------------------------------------
// Dockerfile

interface Instruction {
  op: string;
  args: string;
}

/** The Dockerfile's stages, each a list of instructions (continuation lines joined, comments dropped). */
function dockerStages(text: string): Instruction[][] {
  const stages: Instruction[][] = [];
  for (const line of text.replace(/\\\n/g, ' ').split('\n')) {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) continue;
    const [, op = '', args = ''] = /^(\S+)\s*(.*)$/.exec(t) ?? [];
    if (op.toUpperCase() === 'FROM') stages.push([]);
    stages.at(-1)!.push({ op: op.toUpperCase(), args });
  }
  return stages;
}

const DOCKERFILE = 'deploy/docker/Dockerfile';
const STAGES = dockerStages(read(DOCKERFILE));
const RUNTIME = STAGES.at(-1)!;
const BUILD = STAGES[0]!;
const all = (stage: Instruction[], op: string): string[] => stage.filter((i) => i.op === op).map((i) => i.args);
const IMAGE_WORKDIR = all(RUNTIME, 'WORKDIR').at(-1) ?? '/';
const IMAGE_CMD = JSON.parse(all(RUNTIME, 'CMD').at(-1)!) as string[];
const IMAGE_ENV: Record<string, string> = Object.fromEntries(
  all(RUNTIME, 'ENV').flatMap((a) => a.split(/\s+/).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)] as const)),
);
const IMAGE_USER = all(RUNTIME, 'USER').at(-1) ?? 'root';
const IMAGE_VOLUMES = all(RUNTIME, 'VOLUME').flatMap((a) => JSON.parse(a) as string[]);

/** `node dist/cli/main.js serve ...` → the server's argv after the script (empty when it runs anything else). */
function serverArgv(cmd: readonly string[], workdir: string): string[] {
  const isCli = cmd[0] === 'node' && cmd[1] !== undefined && path.posix.resolve(workdir, cmd[1]).endsWith('/dist/cli/main.js');
  return isCli ? cmd.slice(2) : [];
}
const IMAGE_SERVE = parseArgv(serverArgv(IMAGE_CMD, IMAGE_WORKDIR));

/** Runtime-stage COPY destinations (absolute) → their source, `build:` prefixed when from the build stage. */
const RUNTIME_COPIES = new Map(
  all(RUNTIME, 'COPY').map((a) => {
    const words = a.split(/\s+/);
    const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
    const [src, dest] = words.filter((w) => !w.startsWith('--'));
    return [path.posix.resolve(IMAGE_WORKDIR, dest!), from !== undefined ? `${from}:${src!}` : src!] as const;
  }),
);

/** .dockerignore as Docker reads it: the last matching rule wins, `!` re-includes. */
function dockerIgnored(rel: string): boolean {
  let ignored = false;
  for (const raw of read('.dockerignore').split('\n')) {
    const rule = raw.trim();
    if (rule === '' || rule.startsWith('#')) continue;
    const negate = rule.startsWith('!');
    const pattern = rule.replace(/^!/, '').replace(/^\.?\//, '').replace(/\/$/, '');
    if (pattern === '*' || rel === pattern || rel.startsWith(`${pattern}/`)) ignored = !negate;
  }
  return ignored;
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

interface Meta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
}
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: Meta;
}
interface HttpProbe {
  httpGet?: { path: string; port: string | number; scheme?: string };
  failureThreshold?: number;
  periodSeconds?: number;
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean }; configMapKeyRef?: { name: string; key: string; optional?: boolean } } }[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
  startupProbe?: HttpProbe;
  readinessProbe?: HttpProbe;
  livenessProbe?: HttpProbe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: { allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; runAsNonRoot?: boolean; capabilities?: { drop?: string[] } };
}
interface Volume {
  name: string;
  persistentVolumeClaim?: { claimName: string };
  configMap?: { name: string };
  emptyDir?: unknown;
}
interface Deployment extends K8sObject {
  spec: {
    replicas?: number;
    strategy?: { type: string };
    selector: { matchLabels: Record<string, string> };
    template: {
      metadata: { labels: Record<string, string> };
      spec: {
        containers: Container[];
        volumes?: Volume[];
        terminationGracePeriodSeconds?: number;
        securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; fsGroup?: number; seccompProfile?: { type: string } };
      };
    };
  };
}
interface ConfigMap extends K8sObject {
  data?: Record<string, string>;
}
interface Secret extends K8sObject {
  stringData?: Record<string, string>;
  data?: Record<string, string>;
}
interface Service extends K8sObject {
  spec: { selector: Record<string, string>; ports: { name?: string; port: number; targetPort?: string | number }[] };
}
interface Pvc extends K8sObject {
  spec: { accessModes: string[] };
}
interface Hpa extends K8sObject {
  spec: { scaleTargetRef: { kind: string; name: string }; minReplicas?: number; maxReplicas: number };
}
interface NetworkPolicy extends K8sObject {
  spec: { podSelector: { matchLabels?: Record<string, string> }; ingress?: { ports?: { port: string | number }[] }[] };
}
interface IngressBackend {
  service: { name: string; port: { name?: string; number?: number } };
}
interface Ingress extends K8sObject {
  metadata: Meta & { annotations?: Record<string, string> };
  spec: { rules: { host: string; http: { paths: { path: string; pathType: string; backend: IngressBackend }[] } }[] };
}
interface ServiceMonitor extends K8sObject {
  spec: {
    selector: { matchLabels: Record<string, string> };
    endpoints: { port: string; path: string; authorization?: { type: string; credentials: { name: string; key: string } } }[];
  };
}

const K8S_FILES = KIT_FILES.filter((f) => f.startsWith('deploy/k8s/') && /\.ya?ml$/.test(f) && path.basename(f) !== 'kustomization.yaml');
const K8S = K8S_FILES.flatMap((file) => yamlDocs(file).map((doc) => ({ file, doc: doc as K8sObject })));
const KUSTOMIZATION = yamlDocs('deploy/k8s/kustomization.yaml')[0] as { namespace: string; resources: string[] };

function objects<T extends K8sObject>(kind: string): T[] {
  return K8S.filter((o) => o.doc.kind === kind).map((o) => o.doc as T);
}
function named<T extends K8sObject>(kind: string, name: string): T {
  const found = objects<T>(kind).filter((o) => o.metadata.name === name);
  expect(found, `${kind}/${name}`).toHaveLength(1);
  return found[0]!;
}
const matches = (selector: Record<string, string>, labels: Record<string, string> | undefined): boolean =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/** A container port by name or number → its number. */
function containerPort(c: Container, port: string | number | undefined): number | undefined {
  if (typeof port === 'number') return c.ports?.some((p) => p.containerPort === port) ? port : undefined;
  return c.ports?.find((p) => p.name === port)?.containerPort;
}

/** The container's environment as the kubelet would build it, secret values passed through `fill`. */
function containerEnv(c: Container, fill: (text: string) => string): Record<string, string> {
  const env: Record<string, string> = {};
  const secretValue = (name: string, key: string): string | undefined => {
    const s = named<Secret>('Secret', name);
    const raw = s.stringData?.[key] ?? (s.data?.[key] !== undefined ? Buffer.from(s.data[key], 'base64').toString('utf8') : undefined);
    return raw === undefined ? undefined : fill(raw);
  };
  for (const from of c.envFrom ?? []) {
    if (from.configMapRef) Object.assign(env, named<ConfigMap>('ConfigMap', from.configMapRef.name).data);
    if (from.secretRef) for (const key of Object.keys(named<Secret>('Secret', from.secretRef.name).stringData ?? {})) env[key] = secretValue(from.secretRef.name, key)!;
  }
  for (const e of c.env ?? []) {
    const ref = e.valueFrom?.secretKeyRef ?? e.valueFrom?.configMapKeyRef;
    let value: string | undefined = e.value;
    if (e.valueFrom?.secretKeyRef) value = secretValue(e.valueFrom.secretKeyRef.name, e.valueFrom.secretKeyRef.key);
    if (e.valueFrom?.configMapKeyRef) value = named<ConfigMap>('ConfigMap', e.valueFrom.configMapKeyRef.name).data?.[e.valueFrom.configMapKeyRef.key];
    if (value === undefined) {
      expect(ref?.optional, `${e.name}: its ${ref?.key ?? 'value'} is missing and the reference is not optional`).toBe(true);
      continue;
    }
    env[e.name] = value;
  }
  return env;
}

/** Load the pod's configuration: image CMD (or args), env, and the ConfigMap file AKIDB_CONFIG names. */
function podInput(d: Deployment, fill: (text: string) => string): LoadInput & { env: Record<string, string> } {
  const pod = d.spec.template.spec;
  const c = pod.containers[0]!;
  const env = { ...IMAGE_ENV, ...containerEnv(c, fill) };
  // Kubernetes' command replaces the image's ENTRYPOINT (it has none) and args its CMD.
  const argv = c.command === undefined && c.args === undefined ? IMAGE_SERVE : parseArgv(serverArgv([...(c.command ?? []), ...(c.args ?? [])], IMAGE_WORKDIR));
  expect(argv.command).toBe('serve');
  expect(argv.problems).toEqual([]);
  const flags = argv.flags;
  const files: Record<string, string> = {};
  const file = env.AKIDB_CONFIG;
  if (file !== undefined) {
    const mount = (c.volumeMounts ?? []).find((m) => file.startsWith(`${m.mountPath}/`));
    expect(mount, `a volume mounted where AKIDB_CONFIG=${file} points`).toBeDefined();
    const volume = (pod.volumes ?? []).find((v) => v.name === mount!.name);
    expect(volume?.configMap, `volume ${mount!.name} is a ConfigMap`).toBeDefined();
    const text = named<ConfigMap>('ConfigMap', volume!.configMap!.name).data?.[path.posix.relative(mount!.mountPath, file)];
    expect(text, `ConfigMap ${volume!.configMap!.name} holds ${path.posix.basename(file)}`).toBeDefined();
    files[file] = text!;
  }
  return { flags, env, files };
}

// ---------------------------------------------------------------------------------------------
// Compose

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[] | string;
  entrypoint?: string[] | string;
  environment?: Record<string, string | number | boolean | null> | string[];
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  stop_grace_period?: string;
  profiles?: string[];
  expose?: string[];
}
interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

/** Compose's variable substitution; a variable neither set nor defaulted fails, as `:?` does. */
function interpolate(value: string, vars: Readonly<Record<string, string>>): string {
  return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (m: string, braced?: string, op?: string, arg?: string, bare?: string) => {
    if (m === '$$') return '$';
    const name = (braced ?? bare)!;
    const v = vars[name];
    if ((op === ':-' && (v === undefined || v === '')) || (op === '-' && v === undefined)) return arg ?? '';
    if (v === undefined || (op === ':?' && v === '')) throw new Error(`${name} is not set${op?.endsWith('?') ? `: ${arg}` : ''}`);
    return v;
  });
}
function interpolateAll(v: unknown, vars: Readonly<Record<string, string>>): unknown {
  if (typeof v === 'string') return interpolate(v, vars);
  if (Array.isArray(v)) return v.map((x) => interpolateAll(x, vars));
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, interpolateAll(x, vars)]));
  return v;
}
function composeEnv(s: ComposeService): Record<string, string> {
  if (Array.isArray(s.environment)) return envFile(s.environment.join('\n'));
  return Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, v === null ? '' : String(v)]));
}
const COMPOSE_FILES = KIT_FILES.filter((f) => /docker-compose[^/]*\.ya?ml$/.test(f));
const COMPOSE_ENV_EXAMPLE = read('deploy/docker/.env.example');
const usesImage = (s: ComposeService): boolean => s.build?.dockerfile === DOCKERFILE || s.image?.startsWith('akidb:') === true;

// ---------------------------------------------------------------------------------------------
// systemd

/** A unit file: section → key → values in order (a key may repeat). Comments dropped. */
function unitFile(text: string): Map<string, Map<string, string[]>> {
  const out = new Map<string, Map<string, string[]>>();
  let section = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (t === '' || t.startsWith('#') || t.startsWith(';')) continue;
    const head = /^\[(.+)\]$/.exec(t);
    if (head) {
      section = new Map();
      out.set(head[1]!, section);
      continue;
    }
    const eq = t.indexOf('=');
    const key = t.slice(0, eq).trim();
    section.set(key, [...(section.get(key) ?? []), t.slice(eq + 1).trim()]);
  }
  return out;
}
const UNIT_TEXT = read('deploy/systemd/akidb.service');
const UNIT = unitFile(UNIT_TEXT).get('Service')!;
const unitValue = (key: string): string | undefined => UNIT.get(key)?.at(-1);

// =============================================================================================

describe('every artefact', () => {
  it('parses: each YAML file (all its documents) and JSON file under deploy/', () => {
    const structured = KIT_FILES.filter((f) => /\.(ya?ml|json)$/.test(f));
    expect(structured.length).toBeGreaterThanOrEqual(12);
    for (const f of structured) {
      if (f.endsWith('.json')) expect(() => JSON.parse(read(f)) as unknown, f).not.toThrow();
      else expect(yamlDocs(f).length, f).toBeGreaterThan(0);
    }
    expect(Object.fromEntries(YAML_ERRORS)).toEqual({});
    for (const { file, doc } of K8S) {
      expect(typeof doc.apiVersion === 'string' && typeof doc.kind === 'string' && typeof doc.metadata?.name === 'string', file).toBe(true);
      if (doc.kind !== 'Namespace') expect(doc.metadata.namespace, `${file}: ${doc.kind}/${doc.metadata.name}`).toBe(KUSTOMIZATION.namespace);
    }
  });

  it('names only AKIDB_* variables the server reads, in every file, comments included', () => {
    const seen = new Map<string, string[]>();
    for (const f of KIT_FILES) for (const m of read(f).matchAll(/\bAKIDB_[A-Z0-9_]+(\*)?/g)) seen.set(m[0], [...(seen.get(m[0]) ?? []), f]);
    // `AKIDB_S3_*` in prose stands for a family: it must name at least one real variable.
    const known = (name: string): boolean => (name.endsWith('*') ? [...KNOWN_ENV].some((k) => k.startsWith(name.slice(0, -1))) : KNOWN_ENV.has(name));
    const unknown = [...seen].filter(([name]) => !known(name)).map(([name, files]) => `${name} (${[...new Set(files)].join(', ')})`);
    expect(unknown).toEqual([]);
    // The check has something to bite on: the variables every deployment must set are there.
    for (const name of ['AKIDB_AUTH_ENABLED', 'AKIDB_API_KEYS', 'AKIDB_S3_BUCKET', 'AKIDB_TLS_CERT', 'AKIDB_CONFIG']) expect([...seen.keys()]).toContain(name);
  });
});

describe('Docker image (deploy/docker/Dockerfile)', () => {
  it('builds in node:20-bookworm with the native toolchain, runs on node:20-bookworm-slim', () => {
    expect(BUILD[0]!.args).toMatch(/^node:20-bookworm\s+AS\s+build$/i);
    expect(RUNTIME[0]!.args).toBe('node:20-bookworm-slim');
    const run = all(BUILD, 'RUN').join('\n');
    for (const step of ['python3', 'make', 'g++', 'npm ci', 'npm run build', 'npm prune --omit=dev']) expect(run).toContain(step);
    expect(run.indexOf('npm run build')).toBeLessThan(run.indexOf('npm prune --omit=dev'));
  });

  it('ships what the built server reads at run time, from a context .dockerignore lets through', () => {
    // dist/cli/main.js reads ../../package.json; src/api/grpc/grpc-server.ts loads ../../../proto.
    expect(read('src/cli/main.ts')).toContain("'../../package.json'");
    expect(read('src/api/grpc/grpc-server.ts')).toContain("'../../../proto/'");
    const app = path.posix.resolve(IMAGE_WORKDIR);
    for (const needed of ['package.json', 'dist', 'node_modules', 'proto']) expect([...RUNTIME_COPIES.keys()], needed).toContain(`${app}/${needed}`);
    const fromContext = [...STAGES.flatMap((s) => all(s, 'COPY'))].flatMap((a) => {
      if (a.includes('--from=')) return [];
      const words = a.split(/\s+/).filter((w) => !w.startsWith('--'));
      return words.slice(0, -1).map((w) => w.replace(/^\.\//, '').replace(/\/$/, ''));
    });
    expect(fromContext.length).toBeGreaterThanOrEqual(5);
    for (const src of fromContext) {
      expect(fs.existsSync(path.join(ROOT, src)), `${src} exists`).toBe(true);
      expect(dockerIgnored(src), `${src} is sent to the build`).toBe(false);
    }
    // Host-built native modules, old builds, data and secrets stay out of the context.
    for (const out of ['node_modules', 'dist', 'data', '.git', 'deploy/docker/.env', 'bench/data']) expect(dockerIgnored(out), out).toBe(true);
  });

  it('CMD runs `serve` through the built CLI with flags the CLI has', () => {
    expect(IMAGE_CMD.slice(0, 2)).toEqual(['node', 'dist/cli/main.js']);
    expect(IMAGE_SERVE.command).toBe('serve');
    expect(IMAGE_SERVE.problems).toEqual([]);
    expect(Object.keys(IMAGE_SERVE.flags).sort()).toEqual(['data-dir', 'host']);
  });

  it('runs as a non-root user, with the data directory as its volume and the configured ports exposed', () => {
    const uid = IMAGE_USER.split(':')[0]!;
    expect(uid).toMatch(/^\d+$/); // numeric, so Kubernetes' runAsNonRoot can check it
    expect(Number(uid)).toBeGreaterThan(0);
    const config = load({ flags: IMAGE_SERVE.flags, env: { ...IMAGE_ENV, AKIDB_AUTH_ENABLED: 'true', AKIDB_API_KEYS: filler()('<admin-key>:admin') } });
    expect(config.server.host).toBe('0.0.0.0');
    expect(IMAGE_VOLUMES).toEqual([config.storage.data_dir]);
    expect(all(RUNTIME, 'EXPOSE').flatMap((a) => a.split(/\s+/).map(Number))).toEqual([config.server.rest_port, config.server.grpc_port]);
    expect(config.logging.format).toBe('json');
  });

  it('refuses to start without auth: binding 0.0.0.0 needs AKIDB_AUTH_ENABLED (protected mode)', () => {
    const r = tryLoad({ flags: IMAGE_SERVE.flags, env: IMAGE_ENV });
    expect(r.problems.join('\n')).toContain('protected mode refuses to bind 0.0.0.0');
  });

  it('health-checks a public route with a script the image carries', () => {
    const hc = all(RUNTIME, 'HEALTHCHECK').at(-1)!;
    const cmd = JSON.parse(hc.slice(hc.indexOf('CMD') + 3).trim()) as string[];
    expect(cmd[0]).toBe('node');
    const source = RUNTIME_COPIES.get(path.posix.resolve(IMAGE_WORKDIR, cmd[1]!));
    expect(source).toBe('deploy/docker/healthcheck.mjs');
    const probed = [...read(source!).matchAll(/'(\/health[a-z/]*)'/g)].map((m) => m[1]!);
    expect(probed).toEqual(['/health/ready']);
    for (const p of probed) expect(isPublicRoute(p), p).toBe(true);
  });
});

describe('health-check script (deploy/docker/healthcheck.mjs)', () => {
  const SCRIPT = path.join(DEPLOY, 'docker/healthcheck.mjs');

  function run(env: Record<string, string>): Promise<{ code: number | null; out: string }> {
    return new Promise((resolve) => {
      execFile(process.execPath, [SCRIPT], { env, timeout: 30_000 }, (err, stdout) => {
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, out: stdout });
      });
    });
  }

  async function stub(status: number, tls?: { cert: string; key: string }): Promise<{ port: number; paths: string[]; close: () => Promise<void> }> {
    const paths: string[] = [];
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      paths.push(req.url ?? '');
      res.statusCode = req.url === '/health/ready' ? status : 404;
      res.end();
    };
    const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { port: (server.address() as AddressInfo).port, paths, close: () => new Promise((resolve) => server.close(() => resolve())) };
  }

  it('exits 0 on 200 and 1 on 503 or when nothing listens, on AKIDB_REST_PORT or the port of AKIDB_BIND_ADDRESS', async () => {
    const ready = await stub(200);
    const starting = await stub(503);
    try {
      expect(await run({ AKIDB_REST_PORT: String(ready.port) })).toMatchObject({ code: 0 });
      expect(await run({ AKIDB_BIND_ADDRESS: `0.0.0.0:${ready.port}` })).toMatchObject({ code: 0 });
      expect(await run({ AKIDB_REST_PORT: String(starting.port) })).toMatchObject({ code: 1, out: expect.stringContaining('HTTP 503') as unknown });
      expect(ready.paths).toEqual(['/health/ready', '/health/ready']);
    } finally {
      await ready.close();
      await starting.close();
    }
    expect(await run({ AKIDB_REST_PORT: String(ready.port) })).toMatchObject({ code: 1 });
  });

  it('speaks HTTPS when AKIDB_TLS_CERT is set, whatever names the certificate carries', async () => {
    const pems = await generate([{ name: 'commonName', value: 'akidb.example.com' }], { keySize: 2048, algorithm: 'sha256' });
    const server = await stub(200, { cert: pems.cert, key: pems.private });
    try {
      expect(await run({ AKIDB_REST_PORT: String(server.port), AKIDB_TLS_CERT: '/etc/akidb/tls/server.crt' })).toMatchObject({ code: 0 });
      expect(await run({ AKIDB_REST_PORT: String(server.port) })).toMatchObject({ code: 1 });
    } finally {
      await server.close();
    }
  });
});

describe('Docker Compose (deploy/docker/docker-compose*.yml)', () => {
  const composed = (file: string, env: Record<string, string>): ComposeFile => interpolateAll(yamlDocs(file)[0], env) as ComposeFile;

  it('covers both files; every variable they interpolate is in .env.example or has a default', () => {
    expect(COMPOSE_FILES).toEqual(['deploy/docker/docker-compose.minio.yml', 'deploy/docker/docker-compose.yml']);
    for (const f of COMPOSE_FILES) {
      expect(() => composed(f, envFile(COMPOSE_ENV_EXAMPLE)), f).not.toThrow();
      const withoutKey = envFile(COMPOSE_ENV_EXAMPLE);
      delete withoutKey.AKIDB_API_KEYS;
      expect(() => composed(f, withoutKey), `${f} without AKIDB_API_KEYS`).toThrow(/AKIDB_API_KEYS is not set/);
    }
  });

  for (const file of ['deploy/docker/docker-compose.yml', 'deploy/docker/docker-compose.minio.yml']) {
    it(`${path.basename(file)}: the server loads its configuration, and its ports, volume and stop time fit it`, () => {
      const compose = composed(file, envFile(filler()(COMPOSE_ENV_EXAMPLE)));
      const servers = Object.entries(compose.services).filter(([, s]) => usesImage(s));
      expect(servers.map(([name]) => name)).toEqual(['akidb']);
      const s = servers[0]![1];
      expect(s.build).toEqual({ context: '../..', dockerfile: DOCKERFILE });
      expect(s.command).toBeUndefined();
      const config = load({ flags: IMAGE_SERVE.flags, env: { ...IMAGE_ENV, ...composeEnv(s) } });
      expect(config.server.host).toBe('0.0.0.0');
      expect(config.auth.enabled).toBe(true);
      const published = (s.ports ?? []).map((p) => Number(p.split(':').at(-1)));
      expect(published).toEqual([config.server.rest_port, config.server.grpc_port]);
      const dataVolume = (s.volumes ?? []).find((v) => v.split(':')[1] === config.storage.data_dir);
      expect(dataVolume, 'a named volume on the data directory').toBeDefined();
      expect(Object.keys(compose.volumes ?? {})).toContain(dataVolume!.split(':')[0]);
      expect(seconds(s.stop_grace_period ?? '10s')).toBeGreaterThan(stopBudget(config.server.shutdown_grace_seconds));

      // The .env.example placeholders are refused, so nothing runs on a published example key.
      const asShipped = composed(file, envFile(asIs(COMPOSE_ENV_EXAMPLE))).services.akidb!;
      expect(tryLoad({ flags: IMAGE_SERVE.flags, env: { ...IMAGE_ENV, ...composeEnv(asShipped) } }).problems.join('\n')).toMatch(/auth\.api_keys .*shorter than 16/);
    });
  }

  it('docker-compose.minio.yml: MemoryS3 on the bucket the init container creates, at the MinIO service, after it succeeded', () => {
    const compose = composed('deploy/docker/docker-compose.minio.yml', envFile(filler()(COMPOSE_ENV_EXAMPLE)));
    const akidb = compose.services.akidb!;
    const config = load({ flags: IMAGE_SERVE.flags, env: { ...IMAGE_ENV, ...composeEnv(akidb) } });
    expect(config.storage.tiering_policy).toBe('MemoryS3');
    const endpoint = new URL(config.storage.s3_endpoint);
    const minio = compose.services[endpoint.hostname];
    expect(minio?.image, `the endpoint ${endpoint.hostname} is a MinIO service of this file`).toMatch(/^minio\/minio/);
    expect(minio!.command).toEqual(expect.arrayContaining(['server']));
    const [initName, init] = Object.entries(compose.services).find(([, s]) => s.image?.startsWith('minio/mc') === true)!;
    expect(akidb.depends_on?.[initName]).toEqual({ condition: 'service_completed_successfully' });
    expect(init.depends_on?.[endpoint.hostname]).toEqual({ condition: 'service_healthy' });
    const script = [init.command ?? []].flat().join(' ');
    expect(script).toContain(`http://${endpoint.host}`);
    expect(/\bmc mb (?:--\S+ )*local\/(\S+)/.exec(script)?.[1]).toBe(parseBucket(config.storage.s3_bucket).bucket);
    // AkiDB signs with the MinIO credentials the services share.
    expect(config.storage.s3_access_key).toBe(composeEnv(minio!).MINIO_ROOT_USER);
    expect(config.storage.s3_secret_key).toBe(composeEnv(minio!).MINIO_ROOT_PASSWORD);
  });

  it('docker-compose.minio.yml: traces, once enabled in .env, go over OTLP/gRPC to the Jaeger service of the tracing profile', () => {
    const example = envFile(filler()(COMPOSE_ENV_EXAMPLE));
    expect(load({ flags: IMAGE_SERVE.flags, env: { ...IMAGE_ENV, ...composeEnv(composed('deploy/docker/docker-compose.minio.yml', example).services.akidb!) } }).tracing.enabled).toBe(false);
    const compose = composed('deploy/docker/docker-compose.minio.yml', { ...example, AKIDB_TELEMETRY_ENABLED: 'true' });
    const config = load({ flags: IMAGE_SERVE.flags, env: { ...IMAGE_ENV, ...composeEnv(compose.services.akidb!) } });
    expect(config.tracing).toMatchObject({ enabled: true, sample_rate: 0.01 });
    const target = tracingTarget(config.tracing);
    const endpoint = new URL(target.url);
    expect(target.protocol).toBe('grpc');
    const jaeger = compose.services[endpoint.hostname];
    expect(jaeger?.image, `the endpoint ${endpoint.hostname} is a Jaeger service of this file`).toMatch(/^jaegertracing\/all-in-one/);
    expect(jaeger!.profiles).toEqual(['tracing']);
    expect(composeEnv(jaeger!).COLLECTOR_OTLP_ENABLED).toBe('true');
    expect((jaeger!.expose ?? []).map((p) => p.split('/')[0])).toContain(endpoint.port);
  });
});

describe('Kubernetes (deploy/k8s)', () => {
  const deployment = named<Deployment>('Deployment', 'akidb');
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0]!;
  const podLabels = deployment.spec.template.metadata.labels;

  it('kustomization.yaml lists every manifest but the example Secret and the optional ServiceMonitor', () => {
    const files = K8S_FILES.map((f) => path.basename(f));
    for (const r of KUSTOMIZATION.resources) expect(files, r).toContain(r);
    expect(files.filter((f) => !KUSTOMIZATION.resources.includes(f)).sort()).toEqual(['secret.example.yaml', 'servicemonitor.yaml']);
    expect(new Set(K8S.map((o) => o.doc.kind))).toEqual(new Set(['Namespace', 'ConfigMap', 'Secret', 'PersistentVolumeClaim', 'Deployment', 'Service', 'ServiceMonitor', 'Ingress', 'HorizontalPodAutoscaler', 'NetworkPolicy']));
    expect(named<K8sObject>('Namespace', KUSTOMIZATION.namespace).metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
  });

  it('every config.toml in a ConfigMap parses and loads alone, protected mode satisfied', () => {
    const tomls = objects<ConfigMap>('ConfigMap').flatMap((cm) => Object.entries(cm.data ?? {}).filter(([k]) => k.endsWith('.toml')));
    expect(tomls.length).toBeGreaterThan(0);
    for (const [key, text] of tomls) {
      expect(() => parseToml(text), key).not.toThrow();
      const config = load({ env: { AKIDB_CONFIG: `/etc/akidb/${key}` }, files: { [`/etc/akidb/${key}`]: text } });
      expect(config.server.host).toBe('0.0.0.0');
      expect(config.auth.enabled).toBe(true);
    }
  });

  it('the pod loads its configuration (image CMD + env + ConfigMap) without a problem', () => {
    const config = load(podInput(deployment, filler()));
    expect(config.server.host).toBe('0.0.0.0');
    expect(config.auth.enabled).toBe(true);
    expect(config.logging.format).toBe('json');
    const env = podInput(deployment, filler()).env;
    expect(env.AKIDB_AUTH_ENABLED).toBe('true');
    expect(bootstrapKeys(env.AKIDB_API_KEYS!).some((k) => k.role === 'admin')).toBe(true);
  });

  it('refuses to run on the example Secret placeholders', () => {
    expect(tryLoad(podInput(deployment, asIs)).problems.join('\n')).toMatch(/auth\.api_keys .*shorter than 16/);
  });

  it('one replica, Recreate, and no autoscaling past one: the data directory has one owner', () => {
    const claims = (pod.volumes ?? []).flatMap((v) => (v.persistentVolumeClaim ? [named<Pvc>('PersistentVolumeClaim', v.persistentVolumeClaim.claimName)] : []));
    expect(claims).toHaveLength(1);
    expect(claims[0]!.spec.accessModes.every((m) => m.startsWith('ReadWriteOnce'))).toBe(true);
    expect(deployment.spec.replicas).toBe(1);
    expect(deployment.spec.strategy?.type).toBe('Recreate');
    const hpas = objects<Hpa>('HorizontalPodAutoscaler').filter((h) => h.spec.scaleTargetRef.kind === 'Deployment' && h.spec.scaleTargetRef.name === deployment.metadata.name);
    expect(hpas).toHaveLength(1);
    for (const h of hpas) expect(h.spec.maxReplicas).toBeLessThanOrEqual(1);
  });

  it('mounts the data directory writable and /tmp, under a read-only root filesystem, as the image user', () => {
    const config = load(podInput(deployment, filler()));
    const mounts = container.volumeMounts ?? [];
    const data = mounts.find((m) => m.mountPath === config.storage.data_dir);
    expect(data?.readOnly).not.toBe(true);
    expect(pod.volumes?.find((v) => v.name === data!.name)?.persistentVolumeClaim).toBeDefined();
    expect(pod.volumes?.find((v) => v.name === mounts.find((m) => m.mountPath === '/tmp')?.name)?.emptyDir).toBeDefined();
    expect(mounts.filter((m) => m.mountPath !== config.storage.data_dir && m.mountPath !== '/tmp').every((m) => m.readOnly === true)).toBe(true);
    expect(container.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: Number(IMAGE_USER.split(':')[0]), seccompProfile: { type: 'RuntimeDefault' } });
    expect(container.resources?.requests).toBeDefined();
    expect(container.resources?.limits?.memory).toBeDefined();
  });

  it('container ports, probes and Services match the configured REST and gRPC ports; probes use public routes', () => {
    const config = load(podInput(deployment, filler()));
    expect(containerPort(container, 'http')).toBe(config.server.rest_port);
    expect(containerPort(container, 'grpc')).toBe(config.server.grpc_port);
    const probes = { startup: container.startupProbe, readiness: container.readinessProbe, liveness: container.livenessProbe };
    for (const [kind, probe] of Object.entries(probes)) {
      expect(probe?.httpGet, kind).toBeDefined();
      expect(isPublicRoute(probe!.httpGet!.path), `${kind} probe ${probe!.httpGet!.path}`).toBe(true);
      expect(containerPort(container, probe!.httpGet!.port), `${kind} probe port`).toBe(config.server.rest_port);
    }
    expect(probes.liveness!.httpGet!.path).toBe('/health/live');
    expect(probes.readiness!.httpGet!.path).toBe('/health/ready');
    expect(probes.startup!.httpGet!.path).toBe('/health/ready');

    const services = objects<Service>('Service');
    expect(services.map((s) => s.metadata.name).sort()).toEqual(['akidb-grpc', 'akidb-rest']);
    for (const s of services) {
      expect(matches(s.spec.selector, podLabels), `${s.metadata.name} selects the pod`).toBe(true);
      const target = containerPort(container, s.spec.ports[0]!.targetPort ?? s.spec.ports[0]!.port);
      expect(target, s.metadata.name).toBe(s.metadata.name === 'akidb-rest' ? config.server.rest_port : config.server.grpc_port);
    }
  });

  it('stops within terminationGracePeriodSeconds', () => {
    const config = load(podInput(deployment, filler()));
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(stopBudget(config.server.shutdown_grace_seconds));
  });

  it('the ServiceMonitor scrapes /metrics on the REST Service with a key the server knows, which may read status and not write', () => {
    const config = load(podInput(deployment, filler()));
    expect(config.features.metrics_enabled).toBe(true);
    const sm = named<ServiceMonitor>('ServiceMonitor', 'akidb');
    const rest = objects<Service>('Service').filter((s) => matches(sm.spec.selector.matchLabels, s.metadata.labels));
    expect(rest.map((s) => s.metadata.name)).toEqual(['akidb-rest']);
    const [endpoint] = sm.spec.endpoints;
    expect(endpoint!.path).toBe('/metrics');
    expect(REST_ROUTES[`GET ${endpoint!.path}`]).toBeDefined();
    const port = rest[0]!.spec.ports.find((p) => p.name === endpoint!.port);
    expect(containerPort(container, port?.targetPort)).toBe(config.server.rest_port);

    // The bearer credential is a bootstrap key whose role may read /metrics, for every tenant.
    const fill = filler();
    expect(endpoint!.authorization?.type).toBe('Bearer');
    const ref = endpoint!.authorization!.credentials;
    const secret = named<Secret>('Secret', ref.name);
    const credential = fill(secret.stringData![ref.key]!);
    const keys = bootstrapKeys(fill(containerEnv(container, asIs).AKIDB_API_KEYS!));
    const match = keys.find((k) => k.key === credential);
    expect(match, 'the scrape key is one of AKIDB_API_KEYS').toBeDefined();
    const role = match!.role;
    expect(isRole(role), `${role} is a role`).toBe(true);
    if (!isRole(role)) return;
    expect(roleAllows(role, REST_ROUTES['GET /metrics']!.permission)).toBe(true);
    // Least privilege: a key kept in Prometheus's config cannot read or change data.
    expect(roleAllows(role, 'read') || roleAllows(role, 'write')).toBe(false);
    expect(match!.tenant).toBeUndefined();
  });

  it('Ingresses route to existing Service ports, and publish the API but not /metrics or /admin', () => {
    const ingresses = objects<Ingress>('Ingress');
    expect(ingresses.length).toBeGreaterThan(0);
    const restPaths: string[] = [];
    for (const ing of ingresses) {
      for (const rule of ing.spec.rules) {
        for (const p of rule.http.paths) {
          const svc = named<Service>('Service', p.backend.service.name);
          const port = svc.spec.ports.find((sp) => sp.name === p.backend.service.port.name || sp.port === p.backend.service.port.number);
          expect(port, `${ing.metadata.name} ${p.path} → ${svc.metadata.name}`).toBeDefined();
          if (svc.metadata.name === 'akidb-rest') restPaths.push(`${p.pathType} ${p.path}`);
          else expect(ing.metadata.annotations?.['nginx.ingress.kubernetes.io/backend-protocol']).toMatch(/^GRPCS?$/);
        }
      }
    }
    const routes = Object.keys(REST_ROUTES).map((r) => r.slice(r.indexOf(' ') + 1));
    const published = (route: string): boolean =>
      restPaths.some((rp) => {
        const [type, p] = rp.split(' ') as [string, string];
        return type === 'Exact' ? route === p : route === p || route.startsWith(p.endsWith('/') ? p : `${p}/`);
      });
    expect(routes.filter(published).length).toBeGreaterThan(10);
    expect(published('/api/v1/collections/:id/query')).toBe(true);
    for (const internal of ['/metrics', '/health', '/admin/api-keys', '/admin/health']) expect(published(internal), internal).toBe(false);
  });

  it('the NetworkPolicy selects the pod and opens only its ports', () => {
    const config = load(podInput(deployment, filler()));
    const [np] = objects<NetworkPolicy>('NetworkPolicy');
    expect(matches(np!.spec.podSelector.matchLabels ?? {}, podLabels)).toBe(true);
    const opened = (np!.spec.ingress ?? []).flatMap((r) => (r.ports ?? []).map((p) => containerPort(container, p.port)));
    expect(new Set(opened)).toEqual(new Set([config.server.rest_port, config.server.grpc_port]));
  });
});

describe('systemd and logrotate (deploy/systemd, deploy/logrotate)', () => {
  const execStart = unitValue('ExecStart')!.split(/\s+/);
  const envExample = read('deploy/systemd/akidb.env.example');
  const configFile = (flags: Record<string, string>): Record<string, string> => ({ [flags.config!]: renderExampleToml() });

  it('ExecStart runs `serve` with flags the CLI has; with the env file and `config example` as config.toml, the server loads', () => {
    expect(execStart[0]).toMatch(/\/node$/);
    expect(execStart[1]).toMatch(/\/dist\/cli\/main\.js$/);
    const { command, flags, problems } = parseArgv(serverArgv(['node', ...execStart.slice(1)], '/'));
    expect(problems).toEqual([]);
    expect(command).toBe('serve');
    expect(Object.keys(flags).sort()).toEqual(['config', 'data-dir']);
    expect(unitValue('EnvironmentFile')).toBe('/etc/akidb/akidb.env');
    const config = load({ flags, env: envFile(filler()(envExample)), files: configFile(flags) });
    expect(config.server.host).toBe('0.0.0.0');
    expect(config.auth.enabled).toBe(true);
    expect(unitValue('ReadWritePaths')!.split(/\s+/)).toContain(config.storage.data_dir);
    expect(unitValue('WorkingDirectory')).toBe(config.storage.data_dir);
    // The example's placeholder key is refused.
    expect(tryLoad({ flags, env: envFile(envExample), files: configFile(flags) }).problems.join('\n')).toMatch(/auth\.api_keys .*shorter than 16/);
  });

  it('is hardened, restarts on failure but not on a bad configuration, and waits out a graceful stop', () => {
    for (const [key, value] of Object.entries({ NoNewPrivileges: 'true', ProtectSystem: 'strict', PrivateTmp: 'true', ProtectHome: 'true', Restart: 'on-failure', User: 'akidb' })) {
      expect(unitValue(key), key).toBe(value);
    }
    expect(unitValue('RestartPreventExitStatus')).toBe('2'); // run-server.ts: 2 is an invalid configuration
    expect(unitValue('MemoryDenyWriteExecute')).toBeUndefined(); // V8's JIT needs it off
    expect(seconds(unitValue('TimeoutStopSec')!)).toBeGreaterThan(stopBudget(GRACE_DEFAULT));
    expect(stopBudget(GRACE_DEFAULT)).toBeGreaterThan(GRACE_DEFAULT);
  });

  it('logrotate covers the log file the unit offers, and truncates in place', () => {
    const target = /StandardOutput=append:(\S+)/.exec(UNIT_TEXT)?.[1];
    expect(target).toBeDefined();
    const rotate = read('deploy/logrotate/akidb');
    const pattern = /^(\/\S+)\s*\{/m.exec(rotate)?.[1];
    expect(pattern).toBeDefined();
    const glob = new RegExp(`^${pattern!.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}$`);
    expect(target).toMatch(glob);
    expect(rotate).toMatch(/^\s*copytruncate\s*$/m);
  });
});

/** The words of a shell command line up to its end (`|`, `;`, `&`, `>` outside quotes and `$(...)`). */
function shellWords(line: string): string[] {
  const words: string[] = [];
  let word = '';
  let quote = '';
  let depth = 0;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quote !== '') {
      if (ch === quote) quote = '';
      else word += ch;
    } else if (ch === "'" || ch === '"') quote = ch;
    else if (ch === '$' && line[i + 1] === '(') {
      depth++;
      word += '$(';
      i++;
    } else if (ch === ')' && depth > 0) {
      depth--;
      word += ch;
    } else if (depth === 0 && /[|;&>)]/.test(ch)) break;
    else if (depth === 0 && /\s/.test(ch)) {
      if (word !== '') words.push(word);
      word = '';
    } else word += ch;
  }
  if (word !== '') words.push(word);
  return words;
}

describe('docs/deployment.md', () => {
  it('uses only CLI commands and flags that exist', () => {
    const doc = read('docs/deployment.md');
    const blocks = [...doc.matchAll(/```(?:sh|bash|console)?\n([\s\S]*?)```/g)].map((m) => m[1]!.replace(/\\\n\s*/g, ' '));
    const calls = blocks.flatMap((b) => [...b.matchAll(/dist\/cli\/main\.js([^\n]*)/g)].map((m) => shellWords(m[1]!)));
    expect(calls.length).toBeGreaterThanOrEqual(10);
    expect(shellWords(`backup --out "b/$(date +%F)" --api-key "$K" | tee x`)).toEqual(['backup', '--out', 'b/$(date +%F)', '--api-key', '$K']);
    for (const argv of calls) {
      const [command = '', sub] = argv;
      if (command.startsWith('--')) {
        expect(['--help', '--version']).toContain(command);
        continue;
      }
      expect(CLI_COMMANDS, argv.join(' ')).toContain(command);
      if (command === 'config') expect(CONFIG_SUBCOMMANDS, argv.join(' ')).toContain(sub);
      const allowed = SERVER_COMMANDS.has(command) ? SERVER_FLAGS : (COMMAND_FLAGS.get(command) ?? new Set<string>());
      for (const flag of argv.filter((a) => a.startsWith('--')).map((a) => a.slice(2).split('=')[0]!)) expect([...allowed, 'help'], argv.join(' ')).toContain(flag);
    }
  });
});
