#!/usr/bin/env node
import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const HELP = `akidb ${pkg.version}: a vector database for Node.js

Usage: akidb <command> [options]

Commands:
  stats --data-dir DIR    print every collection's document count and index state

Options:
  --help       show this help
  --version    print the version
`;

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--version')) {
    process.stdout.write(`${pkg.version}\n`);
    return 0;
  }
  const [command] = argv;
  if (command === undefined || argv.includes('--help')) {
    process.stdout.write(HELP);
    return command === undefined && !argv.includes('--help') ? 1 : 0;
  }
  if (command === 'stats') {
    const i = argv.indexOf('--data-dir');
    const dataDir = i >= 0 ? argv[i + 1] : undefined;
    if (!dataDir) {
      process.stderr.write('akidb stats: --data-dir DIR is required\n');
      return 2;
    }
    const { AkiDB } = await import('../index.js');
    const db = await AkiDB.open({ dataDir, compaction: { enableBackground: false } });
    try {
      for (const t of await db.listTenants()) {
        for (const d of await db.listDatabases(t.name)) {
          for (const c of await db.database(t.name, d.name).listCollections()) {
            const col = await db.database(t.name, d.name).getCollection(c.name);
            process.stdout.write(`${JSON.stringify({ tenant: t.name, database: d.name, collection: c.name, ...col.stats() })}\n`);
          }
        }
      }
    } finally {
      await db.close();
    }
    return 0;
  }
  process.stderr.write(`akidb: unknown command ${command}\n\n${HELP}`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`akidb: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
