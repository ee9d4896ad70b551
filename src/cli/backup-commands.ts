import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { BACKUP_MANIFEST, isSafeRelative, restoreBackup, verifyBackup, verifyDataDir, type BackupManifest, type VerifyReport } from '../backup/backup.js';

/** What a command prints and exits with. */
export type Out = { stdout: (s: string) => void; stderr: (s: string) => void };

/** A line of progress on stderr, rewritten in place on a terminal. */
export function progress(out: Out, label: string, done: number, total: number, bytes: number): void {
  const line = `${label}: ${done}/${total} files, ${(bytes / 1048576).toFixed(1)} MiB`;
  if (process.stderr.isTTY) out.stderr(`\r${line}${done === total ? '\n' : ''}`);
  else if (done === total || done % 50 === 0) out.stderr(`${line}\n`);
}

/** Credentials for a server with auth on: `--api-key`, else AKIDB_API_KEY. */
export function authHeaders(flags: Record<string, string>): Record<string, string> {
  const key = flags['api-key'] ?? process.env.AKIDB_API_KEY;
  return key ? { 'x-api-key': key } : {};
}

export async function failed(res: Response, what: string): Promise<Error> {
  const text = await res.text().catch(() => '');
  return new Error(`${what}: HTTP ${res.status} ${text.slice(0, 500)}`);
}

/**
 * Have the server at `url` stage a backup (of every collection, or of `collectionId`), download
 * every file into `dir` checking its SHA-256, write `backup.json` last and delete the staging.
 */
export async function downloadBackup(url: string, headers: Record<string, string>, dir: string, out: Out, label: string, collectionId?: string): Promise<{ manifest: BackupManifest; bytes: number }> {
  const res = await fetch(`${url}/admin/backups${collectionId ? `?collection_id=${collectionId}` : ''}`, { method: 'POST', headers });
  if (res.status !== 201) throw await failed(res, 'staging the backup failed');
  const m = (await res.json()) as BackupManifest;
  try {
    await mkdir(dir, { recursive: true });
    let bytes = 0;
    for (const [i, f] of m.files.entries()) {
      if (!isSafeRelative(f.path)) throw new Error(`the server listed an unsafe path ${JSON.stringify(f.path).slice(0, 100)}`);
      const to = path.join(dir, f.path);
      await mkdir(path.dirname(to), { recursive: true });
      const file = await fetch(`${url}/admin/backups/${m.backup_id}/files/${encodeURIComponent(f.path)}`, { headers });
      if (file.status !== 200 || !file.body) throw await failed(file, `downloading ${f.path} failed`);
      const hash = createHash('sha256');
      const body = Readable.fromWeb(file.body as WebReadableStream<Uint8Array>);
      body.on('data', (c: Buffer) => hash.update(c));
      await pipeline(body, createWriteStream(`${to}.part`));
      if (hash.digest('hex') !== f.sha256) throw new Error(`${f.path}: SHA-256 of the download differs from the server's`);
      await rename(`${to}.part`, to);
      bytes += f.bytes;
      progress(out, label, i + 1, m.files.length, bytes);
    }
    // Last: a directory with backup.json is a complete backup.
    await writeFile(path.join(dir, BACKUP_MANIFEST), `${JSON.stringify(m, null, 2)}\n`);
    return { manifest: m, bytes };
  } finally {
    await fetch(`${url}/admin/backups/${m.backup_id}`, { method: 'DELETE', headers }).catch(() => undefined);
  }
}

/** `akidb backup --url URL --out DIR`: a consistent online backup of a running server. */
export async function backupCommand(flags: Record<string, string>, out: Out): Promise<number> {
  const url = flags.url?.replace(/\/+$/, '');
  const dir = flags.out;
  if (!url || !dir) {
    out.stderr('akidb backup: --url URL and --out DIR are required\n');
    return 2;
  }
  if ((await readdir(dir).catch(() => [])).length > 0) {
    out.stderr(`akidb backup: ${dir} is not empty\n`);
    return 1;
  }
  const { manifest: m, bytes } = await downloadBackup(url, authHeaders(flags), dir, out, 'backup');
  out.stdout(`${JSON.stringify({ backup_id: m.backup_id, out: dir, created_at: m.created_at, collections: m.collections.length, files: m.files.length, bytes })}\n`);
  return 0;
}

/** `akidb restore --from DIR --data-dir DIR`: verify a backup, then rebuild a (new, empty) data directory from it. */
export async function restoreCommand(flags: Record<string, string>, out: Out): Promise<number> {
  const from = flags.from;
  const dataDir = flags['data-dir'];
  if (!from || !dataDir) {
    out.stderr('akidb restore: --from DIR and --data-dir DIR are required\n');
    return 2;
  }
  try {
    await mkdir(dataDir, { recursive: true });
    const m = await restoreBackup(from, dataDir, (done, total) => progress(out, 'restore', done, total, 0));
    out.stdout(`${JSON.stringify({ restored: m.backup_id, data_dir: dataDir, created_at: m.created_at, collections: m.collections.length })}\n`);
    return 0;
  } catch (err) {
    out.stderr(`akidb restore: ${(err as Error).message}\n`);
    return 1;
  }
}

/** `akidb verify --backup DIR` or `akidb verify --data-dir DIR` (a stopped node): exit 0 when every check passes, 1 otherwise. */
export async function verifyCommand(flags: Record<string, string>, out: Out): Promise<number> {
  let report: VerifyReport;
  try {
    if (flags.backup) report = await verifyBackup(flags.backup);
    else if (flags['data-dir']) report = await verifyDataDir(flags['data-dir']);
    else {
      out.stderr('akidb verify: --backup DIR or --data-dir DIR is required\n');
      return 2;
    }
  } catch (err) {
    report = { ok: false, problems: [(err as Error).message], checked: { files: 0, bytes: 0, segments: 0, manifests: 0 } };
  }
  out.stdout(`${JSON.stringify(report, null, 2)}\n`);
  return report.ok ? 0 : 1;
}
