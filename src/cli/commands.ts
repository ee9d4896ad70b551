/** The flags each tool command takes (server commands take the config flags, checked by loadConfig). */
export const COMMAND_FLAGS: Readonly<Record<string, readonly string[]>> = {
  backup: ['url', 'out', 'api-key'],
  restore: ['from', 'data-dir'],
  verify: ['backup', 'data-dir'],
  export: ['url', 'data-dir', 'collection', 'output', 'tenant', 'database', 'api-key'],
  import: ['url', 'data-dir', 'file', 'collection', 'tenant', 'database', 'into-existing', 'api-key'],
  stats: ['data-dir'],
};

/** The flags of `command` that it does not take, as `--name`. */
export function unknownFlags(command: string, flags: Record<string, string>): string[] {
  const known = COMMAND_FLAGS[command] ?? [];
  return Object.keys(flags)
    .filter((f) => !known.includes(f))
    .map((f) => `--${f}`);
}
