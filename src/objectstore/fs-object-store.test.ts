import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FsObjectStore, kindOfFsError } from './fs-object-store.js';
import { ObjectStoreError, type ObjectInfo } from './object-store.js';
import { runObjectStoreContract } from './object-store-contract.js';
import { useTempDirs } from '../test-support/temp-dirs.js';

const tempDir = useTempDirs('akidb-fsstore-');

// A root that does not exist yet: the first put creates it.
runObjectStoreContract('FsObjectStore', async () => ({ store: new FsObjectStore(path.join(tempDir(), 'root')) }));

/** Every file and directory under `dir`, relative, with `/` after directories, sorted. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const r = rel + e.name;
      if (e.isDirectory()) {
        out.push(`${r}/`);
        walk(path.join(d, e.name), `${r}/`);
      } else {
        out.push(r);
      }
    }
  };
  walk(dir, '');
  return out.sort();
}

async function collect(it: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const info of it) out.push(info);
  return out;
}

/** An object file as the store writes it (layout format 1): `AKO1`, u16 LE encoding length, encoding, body. */
function objectFile(body: Uint8Array, contentEncoding = ''): Buffer {
  const enc = Buffer.from(contentEncoding);
  const len = Buffer.alloc(2);
  len.writeUInt16LE(enc.length);
  return Buffer.concat([Buffer.from('AKO1'), len, enc, body]);
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => new Error('resolved, but a rejection was expected'),
    (e: unknown) => e,
  );
}

describe('FsObjectStore on disk', () => {
  it('describes itself as file:// and the absolute root', () => {
    const root = tempDir();
    expect(new FsObjectStore(root).description).toBe(`file://${root}`);
    expect(new FsObjectStore(path.relative(process.cwd(), root)).description).toBe(`file://${root}`);
  });

  it('lays objects out as documented, so that data written by one version is found by the next', async () => {
    const root = tempDir();
    const store = new FsObjectStore(root);
    await store.put('a', Buffer.from('1'));
    await store.put('a/b', Buffer.from('22'), { contentEncoding: 'gzip' });
    await store.put('ab', Buffer.from(''));
    await store.put('e/', Buffer.from(''));
    await store.put(`l/${'x'.repeat(300)}`, Buffer.from(''));
    expect(tree(root)).toEqual([
      'a.d/',
      'a.d/b.o',
      'a.o',
      'ab.o',
      'e.d/',
      'e.d/.o',
      'l.d/',
      `l.d/${'x'.repeat(240)}.c/`,
      `l.d/${'x'.repeat(240)}.c/${'x'.repeat(60)}.o`,
    ]);
    expect(fs.readFileSync(path.join(root, 'a.o'))).toEqual(objectFile(Buffer.from('1')));
    expect(fs.readFileSync(path.join(root, 'a.d/b.o'))).toEqual(objectFile(Buffer.from('22'), 'gzip'));
  });

  it('splits a long multi-byte segment between code points, never inside one', async () => {
    const root = tempDir();
    const store = new FsObjectStore(root);
    // 1021 bytes; after the leading 'x', a cut at byte 240 would fall inside a 3-byte '€'.
    const key = `x${'€'.repeat(340)}`;
    await store.put(key, Buffer.from('x'));
    const names = tree(root).map((p) => p.split('/').filter(Boolean).pop() ?? '');
    for (const n of names) expect(Buffer.byteLength(n)).toBeLessThanOrEqual(255);
    expect(names.join('').replace(/\.[co]/g, '')).toBe(key);
    expect(await collect(store.list(''))).toEqual([{ key, size: 1 }]);
  });

  it('reads what another instance wrote to the same root (a restart)', async () => {
    const root = tempDir();
    await new FsObjectStore(root).put('seg/1', Buffer.from('persisted'), { contentEncoding: 'gzip' });
    const reopened = new FsObjectStore(root);
    expect(Buffer.from((await reopened.get('seg/1')) ?? [])).toEqual(Buffer.from('persisted'));
    expect(await reopened.head('seg/1')).toEqual({ key: 'seg/1', size: 9, contentEncoding: 'gzip' });
  });

  it('a crash between writing the temp file and renaming it leaves the old object, whole', async () => {
    const root = tempDir();
    const store = new FsObjectStore(root);
    await store.put('col/seg', Buffer.from('old body'));
    // What a put killed before its rename leaves: a temp file (partly written) beside the target.
    fs.writeFileSync(path.join(root, 'col.d', '0123456789abcdef.t'), objectFile(Buffer.from('new bo')));
    fs.writeFileSync(path.join(root, 'col.d', 'fedcba9876543210.t'), Buffer.from('AK'));

    const reopened = new FsObjectStore(root);
    expect(Buffer.from((await reopened.get('col/seg')) ?? [])).toEqual(Buffer.from('old body'));
    expect(await reopened.head('col/seg')).toEqual({ key: 'col/seg', size: 8 });
    expect(await collect(reopened.list(''))).toEqual([{ key: 'col/seg', size: 8 }]);

    // The leftovers do not get in the way of the next put of that key.
    await reopened.put('col/seg', Buffer.from('new body'));
    expect(Buffer.from((await reopened.get('col/seg')) ?? [])).toEqual(Buffer.from('new body'));
    expect(await collect(reopened.list('col/'))).toEqual([{ key: 'col/seg', size: 8 }]);
  });

  it('a crash before the first rename of a key leaves nothing', async () => {
    const root = tempDir();
    fs.mkdirSync(path.join(root, 'col.d'), { recursive: true });
    fs.writeFileSync(path.join(root, 'col.d', '0123456789abcdef.t'), objectFile(Buffer.from('never acknowledged')));
    const store = new FsObjectStore(root);
    expect(await store.get('col/seg')).toBeNull();
    expect(await store.head('col/seg')).toBeNull();
    expect(await collect(store.list(''))).toEqual([]);
  });

  it('does not list files and directories that are not objects of this layout', async () => {
    const root = tempDir();
    const store = new FsObjectStore(root);
    await store.put('real', Buffer.from('r'));
    fs.writeFileSync(path.join(root, 'README'), 'stranger');
    fs.writeFileSync(path.join(root, 'x.tmp'), 'stranger');
    fs.writeFileSync(path.join(root, 'y.d'), 'a file named like a directory');
    fs.mkdirSync(path.join(root, 'z.o'));
    fs.writeFileSync(path.join(root, 'z.o', 'w.o'), objectFile(Buffer.from('inside a directory named like a file')));
    expect(await collect(store.list(''))).toEqual([{ key: 'real', size: 1 }]);
  });

  it('a put that fails after writing its temp file removes it and stores nothing', async () => {
    const root = tempDir();
    const store = new FsObjectStore(root);
    // A non-empty directory where the object file belongs: the rename over it fails.
    fs.mkdirSync(path.join(root, 'k.o', 'in-the-way'), { recursive: true });
    const err = await rejection(store.put('k', Buffer.from('body')));
    expect(err).toBeInstanceOf(ObjectStoreError);
    expect(err).toMatchObject({ kind: 'permanent', operation: 'put', key: 'k', cause: { code: 'EISDIR' } });
    expect(tree(root)).toEqual(['k.o/', 'k.o/in-the-way/']);
  });

  it('refuses keys that try to leave the root, and stores dotted but legal keys inside it', async () => {
    const parent = tempDir();
    const root = path.join(parent, 'root');
    const store = new FsObjectStore(root);
    for (const key of ['../escape', 'a/../../escape', '..', '/etc/passwd', `..${path.sep}..`, './x']) {
      const err = await rejection(store.put(key, Buffer.from('x')));
      expect(err, key).toBeInstanceOf(ObjectStoreError);
      expect(err).toMatchObject({ kind: 'permanent', operation: 'put', key });
    }
    expect(fs.readdirSync(parent)).toEqual([]);

    const legal = ['..escape', 'a/..b', '...', 'b/.../c', '..\\..\\x'];
    for (const key of legal) await store.put(key, Buffer.from('in'));
    expect(fs.readdirSync(parent)).toEqual(['root']);
    expect((await collect(store.list(''))).map((i) => i.key).sort()).toEqual([...legal].sort());
    for (const p of tree(root)) expect(path.resolve(root, p).startsWith(root + path.sep)).toBe(true);
  });

  it('delete removes the directories it emptied, not the root, and a later put recreates them', async () => {
    const root = tempDir();
    const store = new FsObjectStore(root);
    await store.put('x/y/z', Buffer.from('1'));
    await store.put('x/w', Buffer.from('2'));
    await store.delete('x/y/z');
    expect(tree(root)).toEqual(['x.d/', 'x.d/w.o']);
    await store.delete('x/w');
    expect(tree(root)).toEqual([]);
    expect(fs.existsSync(root)).toBe(true);
    await store.put('x/y/z', Buffer.from('3'));
    expect(Buffer.from((await store.get('x/y/z')) ?? [])).toEqual(Buffer.from('3'));
  });

  it('a put racing the delete that empties and removes its directory still lands', async () => {
    const root = tempDir();
    const store = new FsObjectStore(root);
    for (let round = 0; round < 50; round++) {
      await store.put('race/dir/old', Buffer.from([round]));
      // The delete empties race.d/dir.d/ and removes it (and race.d/) while the put is creating them.
      await Promise.all([store.delete('race/dir/old'), store.put('race/dir/new', Buffer.from([round, round]))]);
      expect(await store.get('race/dir/old')).toBeNull();
      expect(Buffer.from((await store.get('race/dir/new')) ?? [])).toEqual(Buffer.from([round, round]));
      await store.delete('race/dir/new');
    }
    expect(tree(root)).toEqual([]);
  });

  it('a root that is a file fails every operation permanently (ENOTDIR), not as a missing key', async () => {
    const file = path.join(tempDir(), 'a-file');
    fs.writeFileSync(file, '');
    const store = new FsObjectStore(path.join(file, 'root'));
    const errors = await Promise.all([
      rejection(store.put('k', Buffer.from('x'))),
      rejection(store.get('k')),
      rejection(store.head('k')),
      rejection(collect(store.list(''))),
    ]);
    for (const [i, operation] of (['put', 'get', 'head', 'list'] as const).entries()) {
      expect(errors[i]).toBeInstanceOf(ObjectStoreError);
      expect(errors[i]).toMatchObject({ kind: 'permanent', operation, status: undefined, cause: { code: 'ENOTDIR' } });
    }
  });

  it('a file without the object header is reported as permanent, not returned as a body', async () => {
    const root = tempDir();
    fs.writeFileSync(path.join(root, 'bad.o'), 'no header here');
    const store = new FsObjectStore(root);
    const errors = await Promise.all([rejection(store.get('bad')), rejection(store.head('bad')), rejection(collect(store.list('')))]);
    for (const err of errors) {
      expect(err).toBeInstanceOf(ObjectStoreError);
      expect(err).toMatchObject({ kind: 'permanent', key: expect.stringMatching(/^(bad|)$/) as unknown });
    }
  });

  it('classifies fs error codes: resource and I/O errors transient, permission and path errors permanent', () => {
    for (const code of ['ENOSPC', 'EIO', 'EMFILE', 'ENFILE', 'EAGAIN', 'EDQUOT', 'EBUSY', 'EINTR', 'ETIMEDOUT', 'ESTALE', 'ESOMETHINGNEW']) {
      expect(kindOfFsError(code), code).toBe('transient');
    }
    for (const code of ['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EISDIR', 'ENAMETOOLONG', 'ELOOP', 'EINVAL', 'EXDEV']) {
      expect(kindOfFsError(code), code).toBe('permanent');
    }
  });
});
