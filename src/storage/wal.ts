import { crc32 } from 'node:zlib';
import { mkdir, open, readdir, readFile, rename, truncate, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { AkiError } from '../errors.js';
import { fsyncDir, fsyncFile } from './fs-util.js';

/** Frame: u32 body length | u32 crc32(body) | body = u64 lsn | payload. */
const FRAME_HEADER_BYTES = 8;
const LSN_BYTES = 8;
/** A frame longer than this is treated as corruption, not as a request to allocate it. */
export const MAX_WAL_RECORD_BYTES = 1 << 30;

const FILE_PATTERN = /^wal-(\d{20})\.log$/;

/** One record read back from the WAL. */
export interface WalRecord {
  lsn: number;
  payload: Buffer;
}

/** What replay found: the records in LSN order and what it had to skip. */
export interface WalReplay {
  records: WalRecord[];
  /** Number of files whose tail was torn or corrupt and was cut off. */
  corruptTails: number;
  /** Bytes dropped from those tails. */
  droppedBytes: number;
}

export interface WalOptions {
  /** Called once per corrupt tail that replay cuts off. */
  onCorruptTail?: (info: { file: string; offset: number; droppedBytes: number; reason: string }) => void;
  /** fsync after every group; false only for tests and benchmarks that measure without it. */
  sync?: boolean;
  /**
   * Called once per group after it is durable locally and before any of it is applied or
   * acknowledged (S3Only stores the bytes in the object store here). When it rejects, the group
   * is cut from the file again and every append of the group and of the queue behind it is
   * rejected with that error: nothing of them is applied, and their LSNs are handed out again.
   */
  commitHook?: WalCommitHook;
  /** With a commitHook: wait this long before writing a group, so concurrent appends share one hook call. */
  groupCommitMs?: number;
}

/** One group's bytes as appended to a WAL file: bytes [start, end) of `file`. */
export interface WalChunk {
  file: string;
  start: number;
  end: number;
  bytes: Buffer;
  firstLsn: number;
  lastLsn: number;
}

export type WalCommitHook = (chunk: WalChunk) => Promise<void>;

interface PendingAppend {
  kind: 'append';
  frame: Buffer;
  lsn: number;
  apply: ((lsn: number) => void) | undefined;
  resolve: (lsn: number) => void;
  reject: (err: unknown) => void;
}

interface PendingRotate {
  kind: 'rotate';
  onSwitch: (lastLsnInOldFile: number) => void;
  resolve: (lastLsnInOldFile: number) => void;
  reject: (err: unknown) => void;
}

type Pending = PendingAppend | PendingRotate;

/** Parse the frames of one WAL file; stops at the first torn or corrupt frame. */
export function parseWalFile(buf: Buffer, minLsnExclusive: number): { records: WalRecord[]; validBytes: number; reason?: string } {
  const records: WalRecord[] = [];
  let offset = 0;
  let lastLsn = minLsnExclusive;
  while (offset < buf.length) {
    if (buf.length - offset < FRAME_HEADER_BYTES) return { records, validBytes: offset, reason: 'torn frame header' };
    const len = buf.readUInt32LE(offset);
    const crc = buf.readUInt32LE(offset + 4);
    if (len < LSN_BYTES || len > MAX_WAL_RECORD_BYTES) return { records, validBytes: offset, reason: `bad frame length ${len}` };
    if (buf.length - offset - FRAME_HEADER_BYTES < len) return { records, validBytes: offset, reason: 'torn frame body' };
    const body = buf.subarray(offset + FRAME_HEADER_BYTES, offset + FRAME_HEADER_BYTES + len);
    if (crc32(body) !== crc) return { records, validBytes: offset, reason: 'checksum mismatch' };
    const rawLsn = body.readBigUInt64LE(0);
    // Above 2^53 an LSN no longer survives the trip through a number: the next one would repeat it.
    if (rawLsn > BigInt(Number.MAX_SAFE_INTEGER)) return { records, validBytes: offset, reason: `lsn ${rawLsn} out of range` };
    const lsn = Number(rawLsn);
    if (!(lsn > lastLsn)) return { records, validBytes: offset, reason: `non-increasing lsn ${lsn}` };
    records.push({ lsn, payload: body.subarray(LSN_BYTES) });
    lastLsn = lsn;
    offset += FRAME_HEADER_BYTES + len;
  }
  return { records, validBytes: offset };
}

function encodeFrame(lsn: number, payload: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + LSN_BYTES + payload.length);
  frame.writeUInt32LE(LSN_BYTES + payload.length, 0);
  frame.writeBigUInt64LE(BigInt(lsn), FRAME_HEADER_BYTES);
  payload.copy(frame, FRAME_HEADER_BYTES + LSN_BYTES);
  frame.writeUInt32LE(crc32(frame.subarray(FRAME_HEADER_BYTES)), 4);
  return frame;
}

function fileName(seq: number): string {
  return `wal-${String(seq).padStart(20, '0')}.log`;
}

/**
 * Write-ahead log of one collection: CRC-framed records in numbered files.
 *
 * Contract: `append` resolves only after its frame is written and fsynced; concurrent appends
 * share one write and one fsync (group commit). Each append's `apply` callback runs after the
 * fsync and before the promise resolves, strictly in LSN order, so state built from the WAL
 * never sees a record out of order or before it is durable. After a failed write or fsync the
 * WAL refuses further appends: what reached the disk is unknown until the next replay.
 */
export class Wal {
  readonly dir: string;
  #fh: FileHandle;
  #seq: number;
  #lastLsn: number;
  #lastLsnInFile: number;
  #bytesInFile: number;
  #queue: Pending[] = [];
  #writing: Promise<void> | null = null;
  #failed: unknown = null;
  #closed = false;
  readonly #sync: boolean;
  readonly #hook: WalCommitHook | undefined;
  readonly #groupCommitMs: number;
  /** Highest LSN held by each sealed (rotated-out) file, oldest first. */
  #sealed: { seq: number; lastLsn: number }[];

  private constructor(dir: string, fh: FileHandle, seq: number, lastLsn: number, sealed: { seq: number; lastLsn: number }[], sync: boolean, hook: WalCommitHook | undefined, groupCommitMs: number) {
    this.dir = dir;
    this.#fh = fh;
    this.#seq = seq;
    this.#lastLsn = lastLsn;
    this.#lastLsnInFile = lastLsn;
    this.#bytesInFile = 0;
    this.#sealed = sealed;
    this.#sync = sync;
    this.#hook = hook;
    this.#groupCommitMs = groupCommitMs;
  }

  /**
   * Open the WAL in `dir`, replaying every record with an LSN above `afterLsn`. Torn or corrupt
   * tails are cut off (reported through `onCorruptTail` and counted), never thrown.
   * New appends always go to a fresh file.
   */
  static async open(dir: string, afterLsn: number, options: WalOptions = {}): Promise<{ wal: Wal; replay: WalReplay }> {
    await mkdir(dir, { recursive: true });
    const files = (await readdir(dir))
      .map((name) => ({ name, m: FILE_PATTERN.exec(name) }))
      .filter((f): f is { name: string; m: RegExpExecArray } => f.m !== null)
      .map((f) => ({ name: f.name, seq: Number(f.m[1]) }))
      .sort((a, b) => a.seq - b.seq);
    const replay: WalReplay = { records: [], corruptTails: 0, droppedBytes: 0 };
    const sealed: { seq: number; lastLsn: number }[] = [];
    let lastLsn = afterLsn;
    let maxLsnSeen = afterLsn;
    /** Last LSN of the previous file that held records: the next file must continue from it. */
    let chainEnd: number | null = null;
    let previousFileCut = false;
    for (let fi = 0; fi < files.length; fi++) {
      const f = files[fi]!;
      const full = path.join(dir, f.name);
      const buf = await readFile(full);
      // LSNs at or below the checkpoint are already in segments; parse them (to validate the
      // chain) but keep only the newer ones.
      const parsed = parseWalFile(buf, 0);
      const first = parsed.records[0]?.lsn;
      // A file that does not continue the chain means records in between were lost (a corrupt
      // record in an older file, or a missing file). Replaying past the gap would build a state
      // that never existed: stop here and set the rest aside, counted as one corrupt tail.
      const gap = first !== undefined && ((chainEnd !== null && first !== chainEnd + 1) || (chainEnd === null && first > afterLsn + 1));
      if (gap) {
        const rest = files.slice(fi);
        let dropped = 0;
        for (const r of rest) {
          const from = path.join(dir, r.name);
          dropped += (await readFile(from)).length;
          await rename(from, `${from}.orphaned`);
        }
        // A gap right after a cut tail is that same damage, already counted.
        if (!previousFileCut) replay.corruptTails += 1;
        replay.droppedBytes += dropped;
        options.onCorruptTail?.({ file: full, offset: 0, droppedBytes: dropped, reason: `LSN gap: expected ${(chainEnd ?? afterLsn) + 1}, found ${first}; ${rest.length} later WAL file(s) set aside as .orphaned` });
        files.length = fi;
        break;
      }
      if (parsed.reason !== undefined) {
        const dropped = buf.length - parsed.validBytes;
        replay.corruptTails += 1;
        replay.droppedBytes += dropped;
        options.onCorruptTail?.({ file: full, offset: parsed.validBytes, droppedBytes: dropped, reason: parsed.reason });
        await truncate(full, parsed.validBytes);
        await fsyncFile(full);
      }
      previousFileCut = parsed.reason !== undefined;
      let fileLast = 0;
      for (const r of parsed.records) {
        fileLast = r.lsn;
        if (r.lsn > lastLsn) {
          replay.records.push(r);
          lastLsn = r.lsn;
        }
      }
      if (fileLast > 0) chainEnd = fileLast;
      maxLsnSeen = Math.max(maxLsnSeen, fileLast);
      sealed.push({ seq: f.seq, lastLsn: fileLast });
    }
    const seq = (files.at(-1)?.seq ?? 0) + 1;
    const fh = await open(path.join(dir, fileName(seq)), 'a');
    await fsyncDir(dir);
    const wal = new Wal(dir, fh, seq, Math.max(lastLsn, maxLsnSeen), sealed, options.sync ?? true, options.commitHook, options.groupCommitMs ?? 0);
    return { wal, replay };
  }

  /** Highest LSN handed out so far. */
  get lastLsn(): number {
    return this.#lastLsn;
  }

  /** Name of the file appends go to now. */
  get activeFile(): string {
    return fileName(this.#seq);
  }

  /** Bytes appended to the active file since it was opened. */
  get activeFileBytes(): number {
    return this.#bytesInFile;
  }

  /**
   * Append one record; resolves with its LSN once durable. `apply` runs after the fsync, in LSN
   * order, before the promise resolves.
   */
  append(payload: Buffer, apply?: (lsn: number) => void): Promise<number> {
    if (this.#closed) return Promise.reject(new AkiError('CLOSED', { wal: this.dir }));
    if (this.#failed !== null) return Promise.reject(new AkiError('STORAGE_IO', { wal: this.dir }, 'The WAL failed earlier and refuses writes until reopened', { cause: this.#failed }));
    if (payload.length + LSN_BYTES > MAX_WAL_RECORD_BYTES) return Promise.reject(new AkiError('PAYLOAD_TOO_LARGE', { bytes: payload.length }));
    const lsn = ++this.#lastLsn;
    const frame = encodeFrame(lsn, payload);
    return new Promise<number>((resolve, reject) => {
      this.#queue.push({ kind: 'append', frame, lsn, apply, resolve, reject });
      this.#kick();
    });
  }

  /**
   * Seal the active file and start a new one, between two groups. `onSwitch` runs at the exact
   * switch point: every record of the old file has been applied, none of the new file has.
   */
  rotate(onSwitch: (lastLsnInOldFile: number) => void): Promise<number> {
    if (this.#closed) return Promise.reject(new AkiError('CLOSED', { wal: this.dir }));
    return new Promise<number>((resolve, reject) => {
      this.#queue.push({ kind: 'rotate', onSwitch, resolve, reject });
      this.#kick();
    });
  }

  /** Delete sealed files whose records are all at or below `lsn` (they are in segments now). */
  async deleteThrough(lsn: number): Promise<void> {
    const keep: { seq: number; lastLsn: number }[] = [];
    for (const s of this.#sealed) {
      if (s.lastLsn <= lsn) await unlink(path.join(this.dir, fileName(s.seq))).catch(() => undefined);
      else keep.push(s);
    }
    this.#sealed = keep;
    await fsyncDir(this.dir);
  }

  /** Wait for queued appends, then close the file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#writing) await this.#writing;
    await this.#fh.close();
  }

  #kick(): void {
    if (this.#writing) return;
    this.#writing = this.#drain().finally(() => {
      this.#writing = null;
      if (this.#queue.length > 0 && this.#failed === null) this.#kick();
    });
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      if (this.#hook && this.#groupCommitMs > 0 && this.#queue[0]!.kind === 'append') await new Promise((r) => setTimeout(r, this.#groupCommitMs));
      const rotateAt = this.#queue.findIndex((p) => p.kind === 'rotate');
      const group = this.#queue.splice(0, rotateAt === -1 ? this.#queue.length : rotateAt) as PendingAppend[];
      if (group.length > 0) await this.#commit(group);
      if (this.#failed !== null) {
        for (const p of this.#queue.splice(0)) p.reject(new AkiError('STORAGE_IO', { wal: this.dir }, 'The WAL failed', { cause: this.#failed }));
        return;
      }
      const head = this.#queue[0];
      if (head?.kind === 'rotate') {
        this.#queue.shift();
        await this.#switchFile(head);
      }
    }
  }

  async #commit(group: PendingAppend[]): Promise<void> {
    try {
      const buf = group.length === 1 ? group[0]!.frame : Buffer.concat(group.map((p) => p.frame));
      let written = 0;
      while (written < buf.length) {
        const { bytesWritten } = await this.#fh.write(buf, written, buf.length - written);
        written += bytesWritten;
      }
      if (this.#sync) await this.#fh.datasync();
      if (this.#hook) {
        const start = this.#bytesInFile;
        try {
          await this.#hook({ file: fileName(this.#seq), start, end: start + buf.length, bytes: buf, firstLsn: group[0]!.lsn, lastLsn: group.at(-1)!.lsn });
        } catch (hookErr) {
          await this.#rollBack(start, group, hookErr);
          return;
        }
      }
      this.#bytesInFile += buf.length;
      this.#lastLsnInFile = group.at(-1)!.lsn;
    } catch (err) {
      this.#failed = err;
      const wrapped = new AkiError('STORAGE_IO', { wal: this.dir, op: 'append' }, 'WAL write or fsync failed', { cause: err });
      for (const p of group) p.reject(wrapped);
      return;
    }
    for (const p of group) {
      try {
        p.apply?.(p.lsn);
      } catch (err) {
        p.reject(err);
        continue;
      }
      p.resolve(p.lsn);
    }
  }

  /** The commit hook refused `group`: cut it from the file, and reject it and every append queued behind it (their LSNs follow it). */
  async #rollBack(start: number, group: PendingAppend[], cause: unknown): Promise<void> {
    const queued = this.#queue.filter((p): p is PendingAppend => p.kind === 'append');
    this.#queue = this.#queue.filter((p) => p.kind !== 'append');
    try {
      await this.#fh.truncate(start);
      if (this.#sync) await this.#fh.datasync();
      this.#lastLsn = this.#lastLsnInFile;
    } catch (err) {
      this.#failed = err;
    }
    for (const p of [...group, ...queued]) p.reject(cause);
    // The refused bytes may still land remotely (an upload that timed out): never write other
    // bytes at those offsets of this file again. Later appends go to a new file.
    if (this.#failed === null) await this.#switchFile({ kind: 'rotate', onSwitch: () => undefined, resolve: () => undefined, reject: () => undefined });
  }

  async #switchFile(r: PendingRotate): Promise<void> {
    try {
      const oldSeq = this.#seq;
      const lastInOld = this.#lastLsnInFile;
      const nextSeq = oldSeq + 1;
      const fh = await open(path.join(this.dir, fileName(nextSeq)), 'a');
      await fsyncDir(this.dir);
      await this.#fh.close();
      this.#fh = fh;
      this.#seq = nextSeq;
      this.#bytesInFile = 0;
      this.#sealed.push({ seq: oldSeq, lastLsn: lastInOld });
      r.onSwitch(lastInOld);
      r.resolve(lastInOld);
    } catch (err) {
      this.#failed = err;
      r.reject(new AkiError('STORAGE_IO', { wal: this.dir, op: 'rotate' }, 'WAL rotation failed', { cause: err }));
    }
  }
}
