import { parseBootstrapKeys } from '../security/api-keys.js';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { parse as parseYaml } from 'yaml';
import { parseBucket } from '../objectstore/bucket-ref.js';
import { CONFIG_SCHEMA, derivedDefault, type AkiConfig, type OptionSpec } from './config-schema.js';

/** Where configuration comes from; each defaults to the process's own. */
export interface ConfigInput {
  /** CLI flags by name without dashes (`rest-port`), plus `config`. */
  flags?: Readonly<Record<string, string>>;
  env?: Readonly<Record<string, string | undefined>>;
  cwd?: string;
}

/** A loaded configuration, where each value came from, and the file read (if any). */
export interface LoadedConfig {
  config: AkiConfig;
  sources: Readonly<Record<string, string>>;
  file: string | null;
}

/** The configuration is invalid; `problems` names every bad key and why. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

const BY_KEY = new Map<string, OptionSpec>();
for (const spec of CONFIG_SCHEMA) {
  BY_KEY.set(spec.key, spec);
  for (const a of spec.aliases ?? []) BY_KEY.set(a, spec);
}

/** Files looked for in the working directory when neither `--config` nor AKIDB_CONFIG names one. */
export const DEFAULT_CONFIG_FILES = ['config.toml', 'akidb.yaml', 'akidb.yml'];

/**
 * Load the configuration: flag > env > file > default, each value checked against the schema.
 * Throws ConfigError listing every problem at once. The result is deep-frozen.
 */
export function loadConfig(input: ConfigInput = {}): LoadedConfig {
  const flags = input.flags ?? {};
  const env = input.env ?? process.env;
  const cwd = input.cwd ?? process.cwd();
  const problems: string[] = [];
  const values = new Map<string, unknown>();
  const sources: Record<string, string> = {};

  const explicit = flags.config ?? env.AKIDB_CONFIG;
  let file: string | null = null;
  if (explicit !== undefined && explicit !== '') {
    file = path.resolve(cwd, explicit);
    if (!existsSync(file)) problems.push(`config file ${file} (from ${flags.config !== undefined ? '--config' : 'AKIDB_CONFIG'}): not found`);
  } else {
    const found = DEFAULT_CONFIG_FILES.map((f) => path.join(cwd, f)).find((f) => existsSync(f));
    file = found ?? null;
  }

  if (file !== null && existsSync(file)) {
    const parsed = parseFile(file, problems);
    if (parsed !== undefined) {
      for (const [key, value] of flatten(parsed)) {
        const spec = BY_KEY.get(key);
        if (!spec) {
          problems.push(`${key} (${path.basename(file)}): unknown key`);
          continue;
        }
        const v = checkValue(spec, value, false);
        if (typeof v === 'string' && v.startsWith('!')) problems.push(`${key} (${path.basename(file)}): ${v.slice(1)}`);
        else {
          values.set(spec.key, v);
          sources[spec.key] = file;
        }
      }
    }
  }

  const fromText = (spec: OptionSpec, raw: string, origin: string): void => {
    const v = checkValue(spec, raw, true);
    if (typeof v === 'string' && v.startsWith('!')) problems.push(`${spec.key} (from ${origin}): ${v.slice(1)}`);
    else {
      values.set(spec.key, v);
      sources[spec.key] = origin;
    }
  };

  // seed 001's AKIDB_BIND_ADDRESS=host:port, below the specific variables.
  const bind = env.AKIDB_BIND_ADDRESS;
  if (bind !== undefined && bind !== '') {
    const m = /^(.*):(\d+)$/.exec(bind);
    if (!m) problems.push(`server.host / server.rest_port (from AKIDB_BIND_ADDRESS=${bind}): must be HOST:PORT`);
    else {
      fromText(BY_KEY.get('server.host')!, m[1]!, 'AKIDB_BIND_ADDRESS');
      fromText(BY_KEY.get('server.rest_port')!, m[2]!, 'AKIDB_BIND_ADDRESS');
    }
  }
  for (const spec of CONFIG_SCHEMA) {
    const raw = spec.env !== undefined ? env[spec.env] : undefined;
    if (raw !== undefined && raw !== '') fromText(spec, raw, spec.secret ? `${spec.env}` : `${spec.env}=${raw}`);
  }
  const knownFlags = new Set(['config']);
  for (const spec of CONFIG_SCHEMA) {
    if (spec.flag === undefined) continue;
    knownFlags.add(spec.flag);
    const raw = flags[spec.flag];
    if (raw !== undefined) fromText(spec, raw, `--${spec.flag}`);
  }
  for (const name of Object.keys(flags)) if (!knownFlags.has(name)) problems.push(`--${name}: unknown option`);

  if (problems.length > 0) throw new ConfigError(problems);

  const out: Record<string, unknown> = {};
  const dataDir = path.resolve(cwd, (values.get('storage.data_dir') as string | undefined) ?? (BY_KEY.get('storage.data_dir')!.default as string));
  values.set('storage.data_dir', dataDir);
  for (const spec of CONFIG_SCHEMA) {
    let v = values.get(spec.key);
    if (v === undefined) {
      v = spec.default ?? derivedDefault(spec.key, { storage: { data_dir: dataDir } });
      sources[spec.key] ??= 'default';
    }
    if (spec.key === 'database.path') v = path.resolve(cwd, sqlitePath(v as string));
    setPath(out, spec.key, v);
  }
  const config = out as unknown as AkiConfig;
  problems.push(...crossCheck(config, sources));
  if (problems.length > 0) throw new ConfigError(problems);
  return { config: deepFreeze(config), sources: Object.freeze(sources), file };
}

/** Rules that span options: an object-store policy needs a bucket, credentials come in pairs, addresses parse. */
function crossCheck(c: AkiConfig, sources: Record<string, string>): string[] {
  const problems: string[] = [];
  const from = (key: string): string => sources[key] ?? 'default';
  const st = c.storage;
  if (st.tiering_policy !== 'Memory' && st.s3_bucket === '') problems.push(`storage.tiering_policy (from ${from('storage.tiering_policy')}): ${st.tiering_policy} needs an object store; set storage.s3_bucket (AKIDB_S3_BUCKET)`);
  if (st.s3_bucket !== '') {
    try {
      parseBucket(st.s3_bucket);
    } catch (err) {
      problems.push(`storage.s3_bucket (from ${from('storage.s3_bucket')}): ${(err as Error).message}`);
    }
  }
  if (st.s3_endpoint !== '' && !/^https?:\/\/[^/\s]+\/?$/.test(st.s3_endpoint)) problems.push(`storage.s3_endpoint (from ${from('storage.s3_endpoint')}): must be http(s)://host[:port]`);
  if ((st.s3_access_key === '') !== (st.s3_secret_key === '')) problems.push('storage.s3_access_key / storage.s3_secret_key: set both (AKIDB_S3_ACCESS_KEY and AKIDB_S3_SECRET_KEY) or neither');
  if (st.retry.base_backoff_secs > st.retry.max_backoff_secs) problems.push(`storage.retry.base_backoff_secs (${st.retry.base_backoff_secs}) must not exceed storage.retry.max_backoff_secs (${st.retry.max_backoff_secs})`);
  if (c.admin.bind_address !== '' && parseHostPort(c.admin.bind_address) === null) problems.push(`admin.bind_address (from ${from('admin.bind_address')}): must be HOST:PORT, got ${JSON.stringify(c.admin.bind_address)}`);
  if (!isHttpUrl(c.tracing.endpoint)) problems.push(`tracing.endpoint (from ${from('tracing.endpoint')}): must be an http(s) URL, got ${JSON.stringify(c.tracing.endpoint)}`);
  problems.push(...authProblems(c, from));
  return problems;
}

/** 127.0.0.0/8, ::1 and localhost: addresses no other machine reaches. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\./.test(h);
}

function authProblems(c: AkiConfig, from: (key: string) => string): string[] {
  const problems: string[] = [];
  const a = c.auth;
  // Protected mode: with auth off, only loopback, unless the operator says otherwise out loud.
  if (!a.enabled && !c.server.insecure) {
    const admin = c.admin.bind_address !== '' ? parseHostPort(c.admin.bind_address) : null;
    for (const [key, host] of [['server.host', c.server.host], ['admin.bind_address', admin?.host ?? '127.0.0.1']] as const) {
      if (!isLoopback(host)) problems.push(`${key} (from ${from(key)}): protected mode refuses to bind ${host} with authentication off. Enable it ([auth] enabled = true or AKIDB_AUTH_ENABLED=true, with AKIDB_API_KEYS=KEY:admin to bootstrap a key), or pass --insecure (AKIDB_INSECURE=true) to serve without it`);
    }
  }
  if (a.api_keys !== '') {
    try {
      parseBootstrapKeys(a.api_keys);
    } catch (err) {
      problems.push(`auth.api_keys (from ${from('auth.api_keys')}): ${(err as Error).message}`);
    }
  }
  if (a.jwt_secret !== '' && Buffer.byteLength(a.jwt_secret) < 32) problems.push(`auth.jwt_secret (from ${from('auth.jwt_secret')}): must be at least 32 bytes`);
  if (a.jwt_jwks_url !== '' && !/^https?:\/\/[^\s]+$/.test(a.jwt_jwks_url)) problems.push(`auth.jwt_jwks_url (from ${from('auth.jwt_jwks_url')}): must be an http(s) URL`);
  if ((c.server.tls_cert === '') !== (c.server.tls_key === '')) problems.push('server.tls_cert / server.tls_key: set both (AKIDB_TLS_CERT and AKIDB_TLS_KEY) or neither');
  return problems;
}

function isHttpUrl(value: string): boolean {
  try {
    const u = new URL(value);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  } catch {
    return false;
  }
}

/** `host:port` (IPv6 in brackets) taken apart; null when it is not one. */
export function parseHostPort(value: string): { host: string; port: number } | null {
  const m = /^\[?([^\]]*?)\]?:(\d{1,5})$/.exec(value);
  if (!m || m[1] === '' || Number(m[2]) > 65535) return null;
  return { host: m[1]!, port: Number(m[2]) };
}

/** A copy of `config` fit to print: credentials replaced by `***` (empty ones stay empty). */
export function redactConfig(config: AkiConfig): unknown {
  const copy = JSON.parse(JSON.stringify(config)) as Record<string, Record<string, unknown>>;
  for (const spec of CONFIG_SCHEMA) {
    if (!spec.secret) continue;
    const [section, name] = [spec.key.slice(0, spec.key.lastIndexOf('.')), spec.key.slice(spec.key.lastIndexOf('.') + 1)];
    let cur: Record<string, unknown> | undefined = copy;
    for (const p of section.split('.')) cur = cur?.[p] as Record<string, unknown> | undefined;
    if (cur && cur[name] !== '') cur[name] = '***';
  }
  return copy;
}

/** `sqlite:///abs/file.db` → `/abs/file.db`, `sqlite://rel.db` → `rel.db`, a plain path unchanged. */
export function sqlitePath(value: string): string {
  return value.startsWith('sqlite://') ? value.slice('sqlite://'.length) : value;
}

function parseFile(file: string, problems: string[]): Record<string, unknown> | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    problems.push(`config file ${file}: ${(err as Error).message}`);
    return undefined;
  }
  try {
    const ext = path.extname(file).toLowerCase();
    const doc: unknown = ext === '.yaml' || ext === '.yml' ? parseYaml(text) : ext === '.json' ? JSON.parse(text) : parseToml(text);
    if (doc === null || doc === undefined) return {};
    if (typeof doc !== 'object' || Array.isArray(doc)) {
      problems.push(`config file ${file}: the top level must be a table of sections`);
      return undefined;
    }
    return doc as Record<string, unknown>;
  } catch (err) {
    problems.push(`config file ${file}: ${(err as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

function* flatten(obj: Record<string, unknown>, prefix = ''): Generator<[string, unknown]> {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix === '' ? k : `${prefix}.${k}`;
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date) && !BY_KEY.has(key)) yield* flatten(v as Record<string, unknown>, key);
    else yield [key, v];
  }
}

/** The checked value, or a string starting with `!` that says what is wrong. */
function checkValue(spec: OptionSpec, raw: unknown, fromText: boolean): unknown {
  switch (spec.type) {
    case 'string':
      // An option whose default is "" (not set) may be set to "" again.
      return typeof raw === 'string' && (raw.length > 0 || spec.default === '') ? raw : '!must be a non-empty string';
    case 'boolean': {
      if (typeof raw === 'boolean') return raw;
      if (fromText && typeof raw === 'string') {
        const t = raw.trim().toLowerCase();
        if (['true', '1', 'yes', 'on'].includes(t)) return true;
        if (['false', '0', 'no', 'off'].includes(t)) return false;
      }
      return `!must be true or false, got ${JSON.stringify(raw)}`;
    }
    case 'enum':
      return typeof raw === 'string' && spec.values!.includes(raw) ? raw : `!must be one of ${spec.values!.join(', ')}, got ${JSON.stringify(raw)}`;
    case 'integer':
    case 'number': {
      let n: number;
      if (typeof raw === 'number') n = raw;
      else if (typeof raw === 'bigint') n = Number(raw);
      else if (fromText && typeof raw === 'string' && raw.trim() !== '' && /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(raw.trim())) n = Number(raw);
      else return `!must be ${spec.type === 'integer' ? 'an integer' : 'a number'}, got ${JSON.stringify(typeof raw === 'bigint' ? String(raw) : raw)}`;
      const range = `${spec.min ?? '-inf'}..${spec.max ?? 'inf'}`;
      if (!Number.isFinite(n) || (spec.type === 'integer' && !Number.isInteger(n))) return `!must be ${spec.type === 'integer' ? 'an integer' : 'a number'} in ${range}, got ${JSON.stringify(raw)}`;
      if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) return `!must be in ${range}, got ${n}`;
      return n;
    }
  }
}

function setPath(obj: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  let cur = obj;
  for (const p of parts.slice(0, -1)) cur = (cur[p] ??= {}) as Record<string, unknown>;
  cur[parts.at(-1)!] = value;
}

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
