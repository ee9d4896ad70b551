import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CONFIG_SCHEMA } from '../config/config-schema.js';
import { COMMAND_FLAGS } from './commands.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SERVER_COMMANDS = new Set(['serve', 'rest', 'grpc']);
const SERVER_FLAGS = new Set(['config', 'help', ...CONFIG_SCHEMA.flatMap((o) => (o.flag ? [o.flag] : []))]);

/** Every `akidb …` command line in the fenced code blocks of the docs, the README and the deployment files. */
function documentedCommands(): { where: string; line: string }[] {
  const files = ['README.md', ...fs.readdirSync(path.join(ROOT, 'docs')).map((f) => `docs/${f}`)].filter((f) => f.endsWith('.md'));
  const out: { where: string; line: string }[] = [];
  for (const f of files) {
    const text = fs.readFileSync(path.join(ROOT, f), 'utf8');
    for (const block of text.matchAll(/```[a-z]*\n([\s\S]*?)```/g)) {
      for (const raw of block[1]!.split('\n')) {
        // Each command of a shell line (split at ; && || |), where it starts with akidb, after any
        // VAR=value assignments, sudo or npx; output lines such as `akidb serve: ...` are not commands.
        for (const part of raw.replace(/(^|\s)#.*$/, '').split(/;|&&|\|\||\||\$\(/)) {
          const m = /^\s*(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:sudo\s+(?:-u\s+\S+\s+)?)?(?:npx\s+)?(?:akidb|node\s+\S*dist\/cli\/main\.js)\s+([a-z][a-z-]*)(\s.*)?$/.exec(part);
          if (m) out.push({ where: f, line: `${m[1]}${m[2] ?? ''}` });
        }
      }
    }
  }
  return out;
}

describe('every akidb command in the docs is one the CLI takes', () => {
  const commands = documentedCommands();

  it('finds the documented commands', () => {
    const names = new Set(commands.map((c) => c.line.split(' ')[0]));
    expect(commands.length).toBeGreaterThan(15);
    for (const n of ['serve', 'backup', 'restore', 'verify', 'export', 'import', 'config']) expect(names, n).toContain(n);
  });

  it('each names a real command and only flags that command takes', () => {
    const problems: string[] = [];
    for (const { where, line } of commands) {
      const [name, ...rest] = line.trim().split(/\s+/);
      const flags = rest.filter((t) => t.startsWith('--')).map((t) => t.slice(2).split('=')[0]!);
      if (name === 'config') {
        if (!['example', 'check'].includes(rest[0] ?? '')) problems.push(`${where}: akidb ${line}: config takes example or check`);
        for (const f of flags) if (!SERVER_FLAGS.has(f)) problems.push(`${where}: akidb ${line}: --${f}`);
        continue;
      }
      const known = SERVER_COMMANDS.has(name!) ? SERVER_FLAGS : new Set(COMMAND_FLAGS[name!] ?? []);
      if (!SERVER_COMMANDS.has(name!) && !(name! in COMMAND_FLAGS)) {
        problems.push(`${where}: akidb ${line}: no command ${name}`);
        continue;
      }
      for (const f of flags) if (!known.has(f)) problems.push(`${where}: akidb ${line}: --${f} is not an option of ${name}`);
    }
    expect(problems).toEqual([]);
  });
});
