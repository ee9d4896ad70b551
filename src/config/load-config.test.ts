import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../test-support/temp-dirs.js';
import { renderConfigTable, renderExampleToml } from './config-docs.js';
import { CONFIG_SCHEMA } from './config-schema.js';
import { ConfigError, loadConfig, redactConfig } from './load-config.js';

const tempDir = useTempDirs('akidb-config-');
const ROOT = path.resolve(import.meta.dirname, '../..');

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('object-store settings', () => {
  it('credentials never appear in sources or in the printable config; cross-checks name every problem', () => {
    const cwd = tempDir();
    const { config, sources } = loadConfig({ cwd, env: { AKIDB_S3_BUCKET: 's3://bkt/pre', AKIDB_S3_ACCESS_KEY: 'AKIDEXAMPLE', AKIDB_S3_SECRET_KEY: 'very-secret-value', AKIDB_TIERING_POLICY: 'MemoryS3' } });
    expect(config.storage).toMatchObject({ s3_bucket: 's3://bkt/pre', s3_secret_key: 'very-secret-value', tiering_policy: 'MemoryS3' });
    expect(JSON.stringify(sources)).not.toContain('very-secret-value');
    const printable = JSON.stringify(redactConfig(config));
    expect(printable).not.toContain('very-secret-value');
    expect(printable).not.toContain('AKIDEXAMPLE');
    expect(printable).toContain('"s3_secret_key":"***"');

    let err: unknown;
    try {
      loadConfig({ cwd, env: { AKIDB_TIERING_POLICY: 'S3Only', AKIDB_S3_SECRET_KEY: 'x', AKIDB_S3_ENDPOINT: 'ftp://nope' } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems.join('\n');
    expect(problems).toContain('S3Only needs an object store');
    expect(problems).toContain('set both');
    expect(problems).toContain('storage.s3_endpoint');
    expect(problems).not.toContain('AKIDB_S3_SECRET_KEY=x');
  });
});

describe('loadConfig', () => {
  it('gives every default when nothing is set, and freezes the result', () => {
    const cwd = tempDir();
    const { config, file, sources } = loadConfig({ env: {}, cwd });
    expect(file).toBeNull();
    expect(config.server).toMatchObject({ host: '127.0.0.1', rest_port: 8080, grpc_port: 9090, timeout_seconds: 30 });
    expect(config.storage.data_dir).toBe(path.join(cwd, 'data'));
    expect(config.database.path).toBe(path.join(cwd, 'data', 'metadata.db'));
    expect(config.hnsw).toMatchObject({ m: 16, ef_construction: 64, threshold: 10000 });
    expect(config.logging).toEqual({ level: 'info', format: 'pretty' });
    expect(sources['server.rest_port']).toBe('default');
    expect(Object.isFrozen(config) && Object.isFrozen(config.server)).toBe(true);
  });

  it('takes flag over env over file over default', () => {
    const cwd = tempDir();
    fs.writeFileSync(path.join(cwd, 'config.toml'), '[server]\nrest_port = 1111\ngrpc_port = 2222\nhost = "0.0.0.0"\n[logging]\nlevel = "warn"\n');
    const { config, sources, file } = loadConfig({ cwd, env: { AKIDB_REST_PORT: '3333', AKIDB_GRPC_PORT: '4444', AKIDB_AUTH_ENABLED: 'true' }, flags: { 'rest-port': '5555' } });
    expect(file).toBe(path.join(cwd, 'config.toml'));
    expect(config.server.rest_port).toBe(5555);
    expect(config.server.grpc_port).toBe(4444);
    expect(config.server.host).toBe('0.0.0.0');
    expect(config.logging.level).toBe('warn');
    expect(sources['server.rest_port']).toBe('--rest-port');
    expect(sources['server.grpc_port']).toBe('AKIDB_GRPC_PORT=4444');
  });

  it("reads seed 000's config.toml word for word", () => {
    const cwd = tempDir();
    const file = path.join(cwd, 'prod.toml');
    fs.writeFileSync(
      file,
      `[server]\nhost = "0.0.0.0"\nrest_port = 8080\ngrpc_port = 9090\ntimeout_seconds = 30\n\n[database]\npath = "sqlite:///var/lib/akidb/data/metadata.db"\nmax_connections = 10\nconnection_timeout_seconds = 5\n\n[features]\nmetrics_enabled = true\nvector_persistence_enabled = true\nauto_initialize = true\n\n[hnsw]\nm = 32\nef_construction = 200\nthreshold = 10000\n\n[logging]\nlevel = "info"\nformat = "json"\n\n[storage]\nenable_background_compaction = true\n\n[storage.compaction]\nthreshold_bytes = 104857600\nthreshold_ops = 10000\n`,
    );
    // host = "0.0.0.0" with auth off is refused by protected mode (tested below); this deployment turns auth on.
    const { config } = loadConfig({ cwd, env: { AKIDB_CONFIG: file, AKIDB_AUTH_ENABLED: 'true' } });
    expect(config.database.path).toBe('/var/lib/akidb/data/metadata.db');
    expect(config.hnsw).toMatchObject({ m: 32, ef_construction: 200 });
    expect(config.logging.format).toBe('json');
  });

  it("reads seed 001's YAML layout (index.hnsw, api.validation, query)", () => {
    const cwd = tempDir();
    fs.writeFileSync(path.join(cwd, 'akidb.yaml'), 'index:\n  hnsw:\n    m: 24\n    ef_construction: 400\n    ef_search: 200\n    min_vectors_threshold: 100\napi:\n  validation:\n    collection_name_max_length: 255\n    vector_dimension_max: 4096\n    top_k_max: 1000\nquery:\n  max_filter_depth: 32\n  max_filter_clauses: 100\n');
    const { config } = loadConfig({ cwd, env: {} });
    expect(config.hnsw).toMatchObject({ m: 24, ef_construction: 400, ef_search: 200, threshold: 100 });
    expect(config.api.validation.top_k_max).toBe(1000);
  });

  it('names every bad key and why, all at once', () => {
    const cwd = tempDir();
    fs.writeFileSync(path.join(cwd, 'config.toml'), '[hnsw]\nmm = 3\nm = "big"\n[logging]\nformat = "xml"\n[server]\nrest_port = 70000\n');
    const problems = problemsOf(() => loadConfig({ cwd, env: { AKIDB_GRPC_PORT: 'abc', AKIDB_METRICS_ENABLED: 'maybe' }, flags: { 'log-level': 'loud', nope: '1' } }));
    expect(problems).toHaveLength(8);
    expect(problems).toContain("--nope: unknown option");
    expect(problems.join('\n')).toMatch(/hnsw\.mm \(config\.toml\): unknown key/);
    expect(problems.join('\n')).toMatch(/hnsw\.m \(config\.toml\): must be an integer/);
    expect(problems.join('\n')).toMatch(/logging\.format \(config\.toml\): must be one of json, pretty/);
    expect(problems.join('\n')).toMatch(/server\.rest_port \(config\.toml\): must be in 0\.\.65535, got 70000/);
    expect(problems.join('\n')).toMatch(/server\.grpc_port \(from AKIDB_GRPC_PORT=abc\)/);
    expect(problems.join('\n')).toMatch(/features\.metrics_enabled \(from AKIDB_METRICS_ENABLED=maybe\): must be true or false/);
    expect(problems.join('\n')).toMatch(/logging\.level \(from --log-level\)/);
  });

  it('refuses a named config file that does not exist, and one that does not parse', () => {
    const cwd = tempDir();
    expect(problemsOf(() => loadConfig({ cwd, env: {}, flags: { config: 'missing.toml' } }))[0]).toMatch(/not found/);
    fs.writeFileSync(path.join(cwd, 'bad.toml'), '[server\nrest_port = ');
    expect(problemsOf(() => loadConfig({ cwd, env: {}, flags: { config: 'bad.toml' } }))[0]).toMatch(/bad\.toml/);
  });

  it('parses booleans and numbers from the environment, and AKIDB_BIND_ADDRESS below AKIDB_HOST', () => {
    const cwd = tempDir();
    const { config } = loadConfig({ cwd, env: { AKIDB_INSECURE: 'true', AKIDB_METRICS_ENABLED: 'false', AKIDB_AUTO_INITIALIZE: '0', AKIDB_BIND_ADDRESS: '0.0.0.0:8181', AKIDB_DATA_DIR: 'd', AKIDB_DB_PATH: 'sqlite://cat.db' } });
    expect(config.features.metrics_enabled).toBe(false);
    expect(config.features.auto_initialize).toBe(false);
    expect(config.server).toMatchObject({ host: '0.0.0.0', rest_port: 8181 });
    expect(config.storage.data_dir).toBe(path.join(cwd, 'd'));
    expect(config.database.path).toBe(path.join(cwd, 'cat.db'));
    expect(loadConfig({ cwd, env: { AKIDB_BIND_ADDRESS: '0.0.0.0:8181', AKIDB_HOST: '127.0.0.2' } }).config.server.host).toBe('127.0.0.2');
  });

  it('protected mode: a non-loopback address with auth off is refused, saying how to enable auth or pass --insecure', () => {
    const cwd = tempDir();
    for (const host of ['0.0.0.0', '::', '10.1.2.3', '192.168.1.10']) {
      const err = (() => {
        try {
          loadConfig({ cwd, env: {}, flags: { host } });
          return null;
        } catch (e) {
          return e as ConfigError;
        }
      })();
      expect(err, host).toBeInstanceOf(ConfigError);
      expect(err!.problems.join('\n')).toMatch(/protected mode refuses to bind .* with authentication off.*AKIDB_AUTH_ENABLED=true.*--insecure/);
    }
    expect(() => loadConfig({ cwd, env: { AKIDB_ADMIN_BIND_ADDRESS: '0.0.0.0:0' } })).toThrow(/admin\.bind_address .*protected mode/);
    for (const host of ['127.0.0.1', '127.0.0.5', 'localhost', '::1']) expect(loadConfig({ cwd, env: {}, flags: { host } }).config.server.host).toBe(host);
    expect(loadConfig({ cwd, env: { AKIDB_INSECURE: 'true' }, flags: { host: '0.0.0.0' } }).config.server.insecure).toBe(true);
    expect(loadConfig({ cwd, env: { AKIDB_AUTH_ENABLED: 'true' }, flags: { host: '0.0.0.0' } }).config.auth.enabled).toBe(true);
  });

  it('checks AKIDB_API_KEYS without ever printing a key, and the JWT and TLS settings', () => {
    const cwd = tempDir();
    const problems = (env: Record<string, string>): string => {
      try {
        loadConfig({ cwd, env });
        return '';
      } catch (e) {
        return (e as ConfigError).problems.join('\n');
      }
    };
    expect(problems({ AKIDB_API_KEYS: 'short-key-123:admin' })).toMatch(/shorter than 16/);
    expect(problems({ AKIDB_API_KEYS: 'a-long-enough-secret-key:root' })).toMatch(/role "root" is not one of monitor, viewer, operator, admin/);
    expect(problems({ AKIDB_API_KEYS: 'a-long-enough-secret-key:viewer:bad/tenant' })).toMatch(/tenant "bad\/tenant" is not a valid name/);
    expect(problems({ AKIDB_API_KEYS: 'a-long-enough-secret-key,a-long-enough-secret-key:viewer' })).toMatch(/listed twice/);
    for (const env of [{ AKIDB_API_KEYS: 'a-long-enough-secret-key:root' }, { AKIDB_API_KEYS: 'a-long-enough-secret-key,a-long-enough-secret-key' }]) expect(problems(env)).not.toContain('a-long-enough-secret-key');
    expect(problems({ AKIDB_API_KEYS: 'a-long-enough-secret-key, another-long-secret-key:operator:acme' })).toBe('');
    expect(problems({ AKIDB_JWT_SECRET: 'too-short' })).toMatch(/at least 32 bytes/);
    expect(problems({ AKIDB_JWT_JWKS_URL: 'ftp://x/jwks' })).toMatch(/http\(s\) URL/);
    expect(problems({ AKIDB_TLS_CERT: '/x.crt' })).toMatch(/set both/);
  });
});

describe('config documentation', () => {
  it('config.example.toml is the rendered schema and loads to the defaults', () => {
    const text = fs.readFileSync(path.join(ROOT, 'config.example.toml'), 'utf8');
    expect(text).toBe(renderExampleToml());
    const cwd = tempDir();
    const fromExample = loadConfig({ cwd, env: {}, flags: { config: path.join(ROOT, 'config.example.toml') } }).config;
    expect(fromExample).toEqual(loadConfig({ cwd, env: {} }).config);
  });

  it('docs/configuration.md embeds the rendered table of every option', () => {
    const doc = fs.readFileSync(path.join(ROOT, 'docs/configuration.md'), 'utf8');
    expect(doc).toContain(renderConfigTable());
    for (const o of CONFIG_SCHEMA) if (o.env) expect(doc).toContain(o.env);
  });

  it("covers every env var of seed 000's table plus AKIDB_DATA_DIR", () => {
    const envs = new Set(CONFIG_SCHEMA.map((o) => o.env));
    for (const e of ['AKIDB_HOST', 'AKIDB_REST_PORT', 'AKIDB_GRPC_PORT', 'AKIDB_DB_PATH', 'AKIDB_LOG_LEVEL', 'AKIDB_LOG_FORMAT', 'AKIDB_METRICS_ENABLED', 'AKIDB_VECTOR_PERSISTENCE_ENABLED', 'AKIDB_AUTO_INITIALIZE', 'AKIDB_DATA_DIR']) expect(envs.has(e)).toBe(true);
  });
});
