#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { CONFIG_SCHEMA } from '../config/config-schema.js';
import { unknownFlags } from './commands.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const HELP = `akidb ${pkg.version}: a vector database for Node.js

Usage: akidb <command> [options]

Commands:
  serve                   run the REST and gRPC servers in one process
  rest                    run only the REST server
  grpc                    run only the gRPC server
  stats --data-dir DIR    print every collection's document count and index state (server stopped)
  config example          print config.example.toml: every option at its default
  config check [options]  load the configuration as \`serve\` would and print it, or every problem
  backup --url URL --out DIR [--api-key KEY]
                          consistent online backup of a running server (catalog, manifests, segments; SHA-256 checked)
  restore --from DIR --data-dir DIR
                          verify a backup, then rebuild an empty data directory from it
  verify --backup DIR | --data-dir DIR
                          check a backup or a stopped node: checksums, catalog integrity_check, manifests, segments
  export (--url URL | --data-dir DIR) --collection NAME --output FILE [--tenant T --database D]
                          one collection as a .akipkg file (schema, index parameters, every document; checksummed)
  import (--url URL | --data-dir DIR) --file FILE [--collection NAME] [--into-existing]
                          create the collection and load a .akipkg; an existing name is refused unless --into-existing

Server options (each overrides its AKIDB_* variable, which overrides the config file):
  --config FILE           config.toml, akidb.yaml or .json (default: AKIDB_CONFIG, else ./config.toml or ./akidb.yaml if present)
${CONFIG_SCHEMA.filter((o) => o.flag !== undefined)
  .map((o) => `  --${`${o.flag!} ${o.type === 'integer' ? 'N' : o.type === 'enum' ? 'LEVEL' : o.type === 'boolean' ? '' : 'VALUE'}`.padEnd(22)}${o.env ? `${o.env}, ` : ''}default ${o.default === null ? '(derived)' : String(o.default)}`)
  .join('\n')}

Options:
  --help       show this help
  --version    print the version

Signals: SIGTERM / SIGINT drain and stop; SIGHUP re-reads the log level from the config file.
`;

/** `--name value` and `--name=value` pairs; a bare `--name` is an error. */
function parseFlags(args: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('--')) throw new UsageError(`unexpected argument ${a}`);
    const eq = a.indexOf('=');
    if (eq > 0) out[a.slice(2, eq)] = a.slice(eq + 1);
    else {
      const v = args[i + 1];
      const boolean = SWITCHES.has(a.slice(2)) || CONFIG_SCHEMA.some((o) => o.flag === a.slice(2) && o.type === 'boolean');
      if (boolean && (v === undefined || v.startsWith('--'))) {
        out[a.slice(2)] = 'true';
        continue;
      }
      if (v === undefined || v.startsWith('--')) throw new UsageError(`${a} needs a value`);
      out[a.slice(2)] = v;
      i++;
    }
  }
  return out;
}

class UsageError extends Error {}

/** Flags that take no value, beyond the boolean config options. */
const SWITCHES = new Set(['into-existing']);

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
  if (command === 'serve' || command === 'rest' || command === 'grpc') {
    let flags: Record<string, string>;
    try {
      flags = parseFlags(argv.slice(1));
    } catch (err) {
      process.stderr.write(`akidb ${command}: ${(err as Error).message}\n`);
      return 2;
    }
    const { runServer } = await import('./run-server.js');
    return runServer(command, flags, pkg.version);
  }
  if (command === 'config') {
    const sub = argv[1];
    if (sub === 'example') {
      const { renderExampleToml } = await import('../config/config-docs.js');
      process.stdout.write(renderExampleToml());
      return 0;
    }
    if (sub === 'check') {
      const { ConfigError, loadConfig, redactConfig } = await import('../config/load-config.js');
      try {
        const loaded = loadConfig({ flags: parseFlags(argv.slice(2)) });
        process.stdout.write(`${JSON.stringify({ file: loaded.file, config: redactConfig(loaded.config), sources: loaded.sources }, null, 2)}\n`);
        return 0;
      } catch (err) {
        if (err instanceof ConfigError || err instanceof UsageError) {
          process.stderr.write(`akidb config check: ${err.message}\n`);
          return 2;
        }
        throw err;
      }
    }
    process.stderr.write('akidb config: use `config example` or `config check [--config FILE]`\n');
    return 2;
  }
  if (command === 'export' || command === 'import') {
    let flags: Record<string, string>;
    try {
      flags = parseFlags(argv.slice(1));
    } catch (err) {
      process.stderr.write(`akidb ${command}: ${(err as Error).message}\n`);
      return 2;
    }
    const unknown = unknownFlags(command, flags);
    if (unknown.length > 0) {
      process.stderr.write(`akidb ${command}: unknown option ${unknown.join(', ')}\n`);
      return 2;
    }
    const cmds = await import('./package-commands.js');
    const out = { stdout: (t: string) => void process.stdout.write(t), stderr: (t: string) => void process.stderr.write(t) };
    return command === 'export' ? cmds.exportCommand(flags, out, pkg.version) : cmds.importCommand(flags, out);
  }
  if (command === 'backup' || command === 'restore' || command === 'verify') {
    let flags: Record<string, string>;
    try {
      flags = parseFlags(argv.slice(1));
    } catch (err) {
      process.stderr.write(`akidb ${command}: ${(err as Error).message}\n`);
      return 2;
    }
    const unknown = unknownFlags(command, flags);
    if (unknown.length > 0) {
      process.stderr.write(`akidb ${command}: unknown option ${unknown.join(', ')}\n`);
      return 2;
    }
    const cmds = await import('./backup-commands.js');
    const out = { stdout: (t: string) => void process.stdout.write(t), stderr: (t: string) => void process.stderr.write(t) };
    return command === 'backup' ? cmds.backupCommand(flags, out) : command === 'restore' ? cmds.restoreCommand(flags, out) : cmds.verifyCommand(flags, out);
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
