import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { startFaultProxy } from '../test-support/fault-proxy.js';
import { startS3Server } from '../test-support/s3-server.js';
import { http, startServerProcess } from '../test-support/server-process.js';

// The operations kit in monitoring/: Grafana dashboards and Prometheus alert rules may only name
// metrics a real `akidb serve` exports, must be well-formed, and must pass promtool (Debian's
// `prometheus` package; .ci/run installs it). Without promtool its test is skipped, which
// test/summary-reporter.ts reports by name and fails under AKIDB_REQUIRE_ALL_TIERS=1.

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const DASHBOARD_DIR = path.join(REPO, 'monitoring/grafana/dashboards');
const PROMETHEUS_DIR = path.join(REPO, 'monitoring/prometheus');
const ALERTS_FILE = path.join(PROMETHEUS_DIR, 'alerts.yaml');

/** The dashboards seed 004 US-710 asks for, and the panels each must have (seed 004, seed 000). */
const DASHBOARDS: Record<string, { title: string; panels: string[] }> = {
  'akidb-overview.json': { title: 'AkiDB Overview', panels: ['Collections', 'Vectors', 'Query QPS', 'Insert QPS', 'Error rate', 'P95 latency', 'P50 / P95 / P99 latency', 'S3 upload success rate', 'Index builds per hour', 'CPU', 'Memory'] },
  'akidb-s3-storage.json': { title: 'AkiDB S3 Storage', panels: ['Upload throughput', 'Retry rate', 'DLQ size', 'Circuit breaker state', 'Upload success rate', 'Compaction frequency'] },
  'akidb-performance.json': { title: 'AkiDB Performance', panels: ['Insert latency P50 / P95 / P99', 'Query latency P50 / P95 / P99', 'Cache hit rate'] },
};

/** seed 000's and seed 004's alerts (some merged or renamed, as alerts.yaml explains), and the docs/operations.md runbook each points at. */
const ALERTS: Record<string, string> = {
  AkiDBHighErrorRate: 'docs/operations.md#logs',
  AkiDBHighLatency: 'docs/operations.md#metrics',
  HighMemoryUsage: 'docs/operations.md#object-storage-tiers-outages-and-disaster-recovery',
  HealthCheckFailing: 'docs/operations.md#health',
  HighDLQSize: 'docs/operations.md#runbook-high-dlq',
  HighS3FailureRate: 'docs/operations.md#runbook-high-dlq',
  CircuitBreakerOpen: 'docs/operations.md#runbook-circuit-breaker-tripped',
  SlowInserts: 'docs/operations.md#runbook-slow-inserts',
  LowCacheHitRate: 'docs/operations.md#object-storage-tiers-outages-and-disaster-recovery',
  S3UploadQueueBacklog: 'docs/operations.md#object-storage-tiers-outages-and-disaster-recovery',
  DLQFlushFailing: 'docs/operations.md#object-storage-tiers-outages-and-disaster-recovery',
};

/**
 * Referenced metrics the traffic below cannot give a series (their families are still declared in
 * the scrape): a cache miss needs an S3Only collection idle for 30 s and evicted, a backpressure
 * wait a bucket that is up but slower than the writes.
 */
const NOT_PRODUCED = new Set(['storage_cache_misses', 'storage_upload_backpressure_waits']);

// ------------------------------------------------------------------ PromQL

interface Matcher {
  label: string;
  op: '=' | '!=' | '=~' | '!~';
  value: string;
}

/** A metric selector found in an expression: `name{matchers}`. */
interface Selector {
  name: string;
  matchers: Matcher[];
}

const AGGREGATIONS = ['sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile', 'limitk', 'limit_ratio'];
const KEYWORDS = new Set([...AGGREGATIONS, 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'atan2', 'inf', 'nan']);
/** Keywords a parenthesised list of label names follows. */
const LABEL_LISTS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);

/** Index just past the bracket closing the one at `open`, skipping quoted strings. */
function closing(s: string, open: number): number {
  const pair: Record<string, string> = { '(': ')', '{': '}', '[': ']' };
  const want = pair[s[open]!]!;
  let depth = 0;
  for (let i = open; i < s.length; i++) {
    const c = s[i]!;
    if (c === '"' || c === "'" || c === '`') {
      const str = /^(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)/.exec(s.slice(i));
      if (!str) throw new Error(`unterminated string at ${i} in ${s}`);
      i += str[0].length - 1;
    } else if (c === s[open]) depth++;
    else if (c === want && --depth === 0) return i + 1;
  }
  throw new Error(`unbalanced ${s[open]} at ${open} in ${s}`);
}

/** The string a PromQL string literal stands for. */
function unquote(lit: string): string {
  return lit.startsWith('`') ? lit.slice(1, -1) : lit.slice(1, -1).replace(/\\(.)/g, '$1');
}

function parseMatchers(body: string): Matcher[] {
  const out: Matcher[] = [];
  const re = /\s*([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)\s*,?/y;
  let read = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(body))) {
    out.push({ label: m[1]!, op: m[2] as Matcher['op'], value: unquote(m[3]!) });
    read = re.lastIndex;
  }
  if (body.slice(read).trim() !== '') throw new Error(`cannot read label matchers {${body}}`);
  return out;
}

/**
 * The metric selectors of a PromQL expression (Grafana variables such as `$__rate_interval`
 * allowed): identifiers that are not functions (followed by `(`), aggregations, keywords or
 * label names (in `by (...)`, `on (...)`, matchers), with their label matchers.
 */
function selectors(expr: string): Selector[] {
  const out: Selector[] = [];
  let last: Selector | null = null;
  let i = 0;
  while (i < expr.length) {
    const rest = expr.slice(i);
    let m: RegExpExecArray | null;
    if ((m = /^\s+/.exec(rest))) {
      i += m[0].length;
    } else if ((m = /^#[^\n]*/.exec(rest))) {
      i += m[0].length;
    } else if (rest[0] === '{') {
      const end = closing(expr, i);
      const matchers = parseMatchers(expr.slice(i + 1, end - 1));
      if (last) last.matchers = matchers;
      else {
        const byName = matchers.find((x) => x.label === '__name__' && x.op === '=');
        if (byName) out.push({ name: byName.value, matchers: matchers.filter((x) => x !== byName) });
      }
      i = end;
      last = null;
    } else if (rest[0] === '[') {
      i = closing(expr, i);
      last = null;
    } else if ((m = /^(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`|\$\{[^}]*\}|\$\w+|0x[0-9a-fA-F]+|\d[\w.]*|\.\d\w*)/.exec(rest))) {
      // Strings, Grafana variables, numbers and durations.
      i += m[0].length;
      last = null;
    } else if ((m = /^[a-zA-Z_:][\w:]*/.exec(rest))) {
      i += m[0].length;
      const word = m[0];
      const open = /^\s*\(/.exec(expr.slice(i));
      if (LABEL_LISTS.has(word.toLowerCase()) && open) {
        i = closing(expr, i + open[0].length - 1);
        last = null;
      } else if (open || KEYWORDS.has(word.toLowerCase())) {
        last = null;
      } else {
        last = { name: word, matchers: [] };
        out.push(last);
      }
    } else {
      i++;
      last = null;
    }
  }
  return out;
}

const metricNames = (expr: string): string[] => [...new Set(selectors(expr).map((s) => s.name))];

// ------------------------------------------------------------------ the artefacts

interface Expression {
  /** Where it is, for messages: `akidb-overview.json: "Query QPS" A`. */
  where: string;
  expr: string;
}

interface Panel {
  id?: number;
  type?: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  gridPos?: { h: number; w: number; x: number; y: number };
  targets?: { expr?: string; refId?: string; datasource?: { uid?: string } }[];
}

interface Dashboard {
  title?: string;
  uid?: string;
  schemaVersion?: number;
  __inputs?: { name: string; type: string; pluginId: string }[];
  templating?: { list?: { name: string; type: string; query?: unknown; datasource?: { uid?: string } }[] };
  panels?: Panel[];
}

interface AlertRule {
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const readDashboard = (file: string): Dashboard => JSON.parse(fs.readFileSync(path.join(DASHBOARD_DIR, file), 'utf8')) as Dashboard;

/** Every panel query and every variable query of every dashboard. */
function dashboardExpressions(): Expression[] {
  const out: Expression[] = [];
  for (const file of Object.keys(DASHBOARDS)) {
    const d = readDashboard(file);
    for (const p of d.panels ?? []) for (const t of p.targets ?? []) out.push({ where: `${file}: "${p.title}" ${t.refId}`, expr: t.expr ?? '' });
    for (const v of d.templating?.list ?? []) {
      if (v.type !== 'query') continue;
      const q = typeof v.query === 'string' ? v.query : (v.query as { query: string }).query;
      const lv = /^label_values\((.*),\s*\w+\s*\)$/s.exec(q);
      out.push({ where: `${file}: variable ${v.name}`, expr: lv ? lv[1]! : q });
    }
  }
  return out;
}

function alertRules(): AlertRule[] {
  const doc = parseYaml(fs.readFileSync(ALERTS_FILE, 'utf8')) as { groups: { name: string; rules: AlertRule[] }[] };
  return doc.groups.flatMap((g) => g.rules);
}

/** GitHub's anchor for a Markdown heading. */
const slug = (heading: string): string => heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');

// ------------------------------------------------------------------ promtool

function onPath(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const file = path.join(dir, cmd);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {
      // Not in this directory.
    }
  }
  return null;
}
const PROMTOOL = onPath('promtool');

function promtool(...args: string[]): { code: number | null; out: string } {
  const r = spawnSync(PROMTOOL!, args, { cwd: REPO, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

// ------------------------------------------------------------------ the scrape

interface Sample {
  labels: Record<string, string>;
  value: number;
}

/** The series names a Prometheus text exposition declares (by its TYPE lines), and its samples by series name. */
function readExposition(text: string): { declared: Set<string>; samples: Map<string, Sample[]> } {
  const declared = new Set<string>();
  const samples = new Map<string, Sample[]>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\w+)$/.exec(line);
    if (type) {
      const [, family, kind] = type as unknown as [string, string, string];
      const names = kind === 'histogram' ? ['_bucket', '_sum', '_count'] : kind === 'summary' ? ['', '_sum', '_count'] : [''];
      for (const suffix of names) declared.add(family + suffix);
      continue;
    }
    const sample = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!sample) continue;
    const labels: Record<string, string> = {};
    for (const l of (sample[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, '$1');
    const list = samples.get(sample[1]!) ?? [];
    list.push({ labels, value: Number(sample[3]) });
    samples.set(sample[1]!, list);
  }
  return { declared, samples };
}

/** Whether a sample's labels satisfy a matcher (Prometheus regexes are anchored). */
function satisfies(labels: Record<string, string>, m: Matcher): boolean {
  const v = labels[m.label] ?? '';
  switch (m.op) {
    case '=':
      return v === m.value;
    case '!=':
      return v !== m.value;
    case '=~':
      return new RegExp(`^(?:${m.value})$`).test(v);
    case '!~':
      return !new RegExp(`^(?:${m.value})$`).test(v);
  }
}

// ------------------------------------------------------------------ tests

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'akidb-monitoring-'));
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  // Last started, first stopped: the server, the proxy, s3rver; even when the test failed.
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  fs.rmSync(root, { recursive: true, force: true });
});

describe('monitoring artefacts', () => {
  it('the PromQL reader finds metric selectors, and not functions, keywords, label names, variables or numbers', () => {
    expect(metricNames('sum by (le, kind) (rate(a_bucket{x=~"$v", y="}{"}[$__rate_interval])) / on(instance) group_left b offset 5m > 1e-3 and c or vector(0)')).toEqual(['a_bucket', 'b', 'c']);
    expect(metricNames('histogram_quantile(0.95, akidb_request_duration_seconds)')).toEqual(['akidb_request_duration_seconds']);
    expect(metricNames('max without (collection_id) (dlq_size) > bool 0 unless count(sum_of_things) == 0x1F')).toEqual(['dlq_size', 'sum_of_things']);
    expect(metricNames('time() - max by (collection_id) (storage_last_snapshot_timestamp{instance=~"${instance}"} @ end())')).toEqual(['storage_last_snapshot_timestamp']);
    expect(metricNames('{__name__="up", job="akidb"}')).toEqual(['up']);
    expect(selectors('rate(akidb_requests_total{status="error", endpoint=~".*/[qQ]uery"}[5m])')).toEqual([
      { name: 'akidb_requests_total', matchers: [{ label: 'status', op: '=', value: 'error' }, { label: 'endpoint', op: '=~', value: '.*/[qQ]uery' }] },
    ]);
  });

  it('the three dashboards are importable Grafana JSON: title, uid, schemaVersion 39, the DS_PROMETHEUS input and variable, and every panel with a query on it', () => {
    expect(fs.readdirSync(DASHBOARD_DIR).sort()).toEqual(Object.keys(DASHBOARDS).sort());
    const uids = new Set<string>();
    for (const [file, want] of Object.entries(DASHBOARDS)) {
      const d = readDashboard(file);
      expect(d.title, file).toBe(want.title);
      expect(d.uid, file).toMatch(/^[a-z0-9-]{1,40}$/);
      uids.add(d.uid!);
      expect(d.schemaVersion, file).toBe(39);
      expect(d.__inputs, file).toContainEqual(expect.objectContaining({ name: 'DS_PROMETHEUS', type: 'datasource', pluginId: 'prometheus' }));
      // File provisioning ignores __inputs; this variable is what resolves ${DS_PROMETHEUS} then.
      expect(d.templating?.list, file).toContainEqual(expect.objectContaining({ name: 'DS_PROMETHEUS', type: 'datasource', query: 'prometheus' }));
      for (const v of d.templating?.list ?? []) if (v.type === 'query') expect(v.datasource?.uid, `${file}: variable ${v.name}`).toBe('${DS_PROMETHEUS}');

      const panels = d.panels ?? [];
      const ids = panels.map((p) => p.id);
      expect(new Set(ids).size, `${file}: panel ids are unique`).toBe(ids.length);
      const queried = panels.filter((p) => p.type !== 'row');
      expect(queried.length, file).toBeGreaterThanOrEqual(want.panels.length);
      for (const p of queried) {
        const where = `${file}: "${p.title}"`;
        expect(p.title, where).toMatch(/\S/);
        expect(p.datasource, where).toEqual({ type: 'prometheus', uid: '${DS_PROMETHEUS}' });
        expect(p.gridPos!.x + p.gridPos!.w, where).toBeLessThanOrEqual(24);
        expect(p.targets?.length, where).toBeGreaterThanOrEqual(1);
        const refIds = p.targets!.map((t) => t.refId);
        expect(new Set(refIds).size, `${where}: refIds are unique`).toBe(refIds.length);
        for (const t of p.targets!) {
          expect(t.expr, `${where} ${t.refId}`).toMatch(/\S/);
          expect(t.datasource?.uid, `${where} ${t.refId}`).toBe('${DS_PROMETHEUS}');
          expect(metricNames(t.expr!).length, `${where} ${t.refId} names a metric`).toBeGreaterThan(0);
        }
      }
      expect(queried.map((p) => p.title)).toEqual(expect.arrayContaining(want.panels));
    }
    expect(uids.size).toBe(3);
  });

  it('alerts.yaml holds the seed alerts, each with for, a severity, a summary, a description and its runbook in docs/operations.md', () => {
    const rules = alertRules();
    expect(rules.map((r) => r.alert).sort()).toEqual(Object.keys(ALERTS).sort());
    const headings = new Set(fs.readFileSync(path.join(REPO, 'docs/operations.md'), 'utf8').split('\n').filter((l) => /^#{1,6} /.test(l)).map((l) => slug(l.replace(/^#+/, ''))));
    for (const r of rules) {
      const name = r.alert!;
      expect(r.for, name).toMatch(/^\d+[smh]$/);
      expect(r.labels?.severity, name).toMatch(/^(critical|warning|info)$/);
      expect(r.annotations?.summary, name).toMatch(/\S/);
      expect(r.annotations?.description, name).toMatch(/\S/);
      expect(r.annotations?.runbook_url, name).toBe(ALERTS[name]);
      const anchor = r.annotations!.runbook_url!.split('#')[1]!;
      expect(headings, `${name}: docs/operations.md#${anchor}`).toContain(anchor);
      expect(metricNames(r.expr).length, name).toBeGreaterThan(0);
    }
  });

  it.skipIf(!PROMTOOL)(
    'promtool (Debian package prometheus) accepts alerts.yaml, passes its unit tests, parses every dashboard query and the example scrape config',
    () => {
      const rules = promtool('check', 'rules', ALERTS_FILE);
      expect(rules.code, rules.out).toBe(0);
      expect(rules.out).toContain(`SUCCESS: ${Object.keys(ALERTS).length} rules found`);

      const unit = promtool('test', 'rules', path.join(PROMETHEUS_DIR, 'alerts.test.yaml'));
      expect(unit.code, unit.out).toBe(0);
      expect(unit.out).toContain('SUCCESS');

      // Grafana's variables replaced by what they expand to, each query becomes a recording rule
      // for promtool to parse.
      const exprs = dashboardExpressions().filter((e) => !e.where.includes(': variable '));
      const record = { groups: [{ name: 'dashboards', rules: exprs.map((e, i) => ({ record: `dashboard:query:${i}`, expr: e.expr.replaceAll('$__rate_interval', '1m').replaceAll('$instance', '.*') })) }] };
      const file = path.join(root, 'dashboard-queries.yaml');
      fs.writeFileSync(file, JSON.stringify(record));
      const parsed = promtool('check', 'rules', file);
      expect(parsed.code, parsed.out).toBe(0);
      expect(parsed.out).toContain(`SUCCESS: ${exprs.length} rules found`);

      const config = promtool('check', 'config', path.join(PROMETHEUS_DIR, 'prometheus.example.yml'));
      expect(config.code, config.out).toBe(0);
      expect(config.out).toContain('SUCCESS');
    },
  );

  it('a real server (auth on, an s3rver bucket, traffic, a 403 and a 503 outage) exports every metric the dashboards and alerts name, to a monitor key (the least role that may scrape)', async () => {
    const exprs: Expression[] = [...dashboardExpressions(), ...alertRules().map((r) => ({ where: `alerts.yaml: ${r.alert}`, expr: r.expr }))];
    const uses = new Map<string, string[]>();
    for (const e of exprs) for (const name of metricNames(e.expr)) uses.set(name, [...(uses.get(name) ?? []), e.where]);
    expect(uses.size).toBeGreaterThan(30);

    const s3 = await startS3Server({ bucket: 'akidb' });
    cleanups.push(() => s3.stop());
    const proxy = await startFaultProxy(s3.port);
    cleanups.push(() => proxy.stop());
    const admin = 'monitoring-admin-key-0123456789';
    const monitor = 'monitoring-monitor-key-0123456789';
    const configFile = path.join(root, 'config.toml');
    fs.writeFileSync(
      configFile,
      [
        '[storage]\ns3_sync_interval_ms = 100\ns3_request_timeout_seconds = 2',
        '[storage.compaction]\nidle_flush_ms = 200',
        '[storage.retry]\nmax_retries = 1\nbase_backoff_secs = 0.05\nmax_backoff_secs = 0.1',
        '[storage.circuit_breaker]\nwindow_seconds = 5\ncooldown_seconds = 1\nhalf_open_successes = 1\nminimum_requests = 3',
        '[storage.dlq]\nmax_size = 2\nflush_interval_seconds = 0.2',
        '[storage.s3_upload]\ncompression = "gzip"',
        '[hnsw]\nthreshold = 10',
      ].join('\n\n') + '\n',
    );
    const server = await startServerProcess({
      dataDir: path.join(root, 'data'),
      args: ['--config', configFile],
      env: {
        AKIDB_AUTH_ENABLED: 'true',
        AKIDB_API_KEYS: `${admin}:admin,${monitor}:monitor`,
        AKIDB_S3_BUCKET: 'akidb',
        AKIDB_S3_ENDPOINT: proxy.endpoint,
        AKIDB_S3_ACCESS_KEY: s3.credentials.accessKeyId,
        AKIDB_S3_SECRET_KEY: s3.credentials.secretAccessKey,
      },
    });
    cleanups.push(() => server.stop('SIGKILL'));
    const call = async (method: string, route: string, body?: unknown, want = 200): Promise<unknown> => {
      const res = await http(server.restUrl, method, route, body, { 'x-api-key': admin });
      expect(res.status, `${method} ${route}: ${res.text}`).toBe(want);
      return res.body;
    };
    const docs = (batch: number, n = 20) => Array.from({ length: n }, (_, i) => ({ doc_id: `d${batch}-${i}`, vector: [i + 1, batch + 1, (i * 7) % 5, 1], metadata: { batch } }));
    // Prometheus sends `authorization: { credentials: KEY }` as a bearer token.
    const scrape = async (): Promise<string> => {
      const res = await http(server.restUrl, 'GET', '/metrics', undefined, { authorization: `Bearer ${monitor}` });
      expect(res.status, res.text).toBe(200);
      return res.text;
    };
    /** The sum of a metric's samples, or null when it has none. */
    const total = async (name: string): Promise<number | null> => readExposition(await scrape()).samples.get(name)?.reduce((n, x) => n + x.value, 0) ?? null;
    /** Run `step` until `done` holds (20 s at most). */
    const until = async (what: string, done: () => Promise<boolean>, step: () => Promise<unknown> = () => sleep(100)): Promise<void> => {
      const end = Date.now() + 20_000;
      while (!(await done())) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await step();
      }
    };

    expect((await http(server.restUrl, 'GET', '/metrics')).status).toBe(401);

    for (const [name, tieringPolicy] of [['mem', 'Memory'], ['backed', 'MemoryS3'], ['remote', 'S3Only']] as const) {
      await call('POST', '/api/v1/collections', { name, dimension: 4, metric: 'l2', tiering_policy: tieringPolicy }, 201);
      for (let b = 0; b < 3; b++) await call('POST', `/api/v1/collections/${name}/upsert`, { documents: docs(b) });
      await call('POST', `/api/v1/collections/${name}/insert`, { doc_id: 'one', vector: [1, 2, 3, 4] });
      await call('POST', `/api/v1/collections/${name}/query`, { query_vector: [1, 1, 1, 1], top_k: 5 });
      await call('POST', `/api/v1/collections/${name}/delete`, { doc_ids: ['d0-0'] });
      await call('POST', `/admin/collections/${name}/compact`);
      await call('POST', `/api/v1/collections/${name}/query`, { query_vector: [2, 1, 0, 1], top_k: 3, filter: { batch: { $gte: 1 } } });
    }
    await call('POST', '/api/v1/collections/missing/query', { query_vector: [1, 1, 1, 1], top_k: 1 }, 404);
    await call('GET', '/admin/health');
    await until('the bucket to hold a snapshot of both tiered collections', async () => readExposition(await scrape()).samples.get('storage_last_snapshot_timestamp')?.length === 2);

    // Writes keep coming (one small batch a sync tick) while the bucket misbehaves.
    let batch = 3;
    const write = async (): Promise<void> => {
      await call('POST', '/api/v1/collections/backed/upsert', { documents: docs(batch++, 2) });
      await sleep(100);
    };
    // A revoked key: uploads are refused for good and dead-lettered, past the queue's 2 entries.
    proxy.failAll(403);
    await until('dead letters evicted from a full queue', async () => ((await total('dlq_evictions')) ?? 0) > 0, write);
    // A 503 storm: uploads are retried, then the circuit opens.
    proxy.failAll(503);
    await until('retries and an open circuit', async () => ((await total('storage_s3_retries')) ?? 0) > 0 && ((await total('circuit_breaker_transitions')) ?? 0) > 0, write);
    proxy.pass();

    const text = await scrape();
    const { declared, samples } = readExposition(text);
    expect(samples.get('akidb_collections_total')).toEqual([{ labels: {}, value: 3 }]);
    expect(samples.get('health_check_status')).toEqual([{ labels: {}, value: 1 }]);

    const undeclared = [...uses].filter(([name]) => !declared.has(name)).map(([name, where]) => `${name} (${where.join('; ')})`);
    expect(undeclared, 'metrics named by a dashboard or an alert that the server does not export').toEqual([]);
    const silent = [...uses.keys()].filter((name) => !samples.has(name) && !NOT_PRODUCED.has(name));
    expect(silent, 'metrics the traffic should have given a sample').toEqual([]);
    // A histogram is queried through its _bucket / _sum / _count series, never its bare name.
    expect(declared.has('akidb_request_duration_seconds')).toBe(false);
    expect(declared.has('akidb_request_duration_seconds_bucket')).toBe(true);

    // Every fixed label matcher (endpoint regexes, status="error", ...) selects a real series.
    for (const e of exprs) {
      for (const sel of selectors(e.expr)) {
        const fixed = sel.matchers.filter((m) => !m.value.includes('$'));
        const series = samples.get(sel.name);
        if (fixed.length === 0 || !series) continue;
        expect(series.some((x) => fixed.every((m) => satisfies(x.labels, m))), `${e.where}: ${sel.name}{${fixed.map((m) => `${m.label}${m.op}"${m.value}"`).join(', ')}} selects no series`).toBe(true);
      }
    }
  });
});
