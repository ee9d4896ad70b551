import { CONFIG_SCHEMA, type OptionSpec } from './config-schema.js';

const fmtDefault = (o: OptionSpec): string => (o.default === null ? '(derived)' : typeof o.default === 'string' ? `"${o.default}"` : String(o.default));

function typeOf(o: OptionSpec): string {
  if (o.type === 'enum') return o.values!.map((v) => `"${v}"`).join(' \\| ');
  const range = o.min !== undefined || o.max !== undefined ? ` ${o.min ?? ''}..${o.max ?? ''}` : '';
  return `${o.type}${range}`;
}

/** The Markdown reference table of every server option, as docs/configuration.md embeds it. */
export function renderConfigTable(): string {
  const rows = CONFIG_SCHEMA.map((o) => {
    const [section, ...rest] = o.key.split('.');
    const key = `\`[${[section, ...rest.slice(0, -1)].join('.')}] ${rest.at(-1)}\``;
    const also = o.aliases?.length ? ` (YAML also: ${o.aliases.map((a) => `\`${a}\``).join(', ')})` : '';
    return `| ${key}${also} | ${typeOf(o)} | \`${fmtDefault(o)}\` | ${o.env ? `\`${o.env}\`` : ''} | ${o.flag ? `\`--${o.flag}\`` : ''} | ${o.help}${o.reloadable ? ' (SIGHUP)' : ''} |`;
  });
  return ['| key | type | default | env | flag | meaning |', '|---|---|---|---|---|---|', ...rows].join('\n');
}

/** config.example.toml: every option, commented, at its default. */
export function renderExampleToml(): string {
  const out = ['# AkiDB server configuration: every option at its default.', '# Precedence: command-line flag > AKIDB_* environment variable > this file > default.', '# Generated from src/config/config-schema.ts (`akidb config example`).', ''];
  let section = '';
  for (const o of CONFIG_SCHEMA) {
    const parts = o.key.split('.');
    const sec = parts.slice(0, -1).join('.');
    if (sec !== section) {
      if (section !== '') out.push('');
      out.push(`[${sec}]`);
      section = sec;
    }
    out.push(`# ${o.help}${o.env ? ` Env: ${o.env}.` : ''}${o.type === 'enum' ? ` One of: ${o.values!.join(', ')}.` : ''}`);
    const value = o.default === '' ? (o.example ?? '') : (o.default ?? o.example ?? '');
    const line = `${parts.at(-1)} = ${typeof value === 'string' ? `"${value}"` : String(value)}`;
    // Derived defaults and empty ("not set") ones are shown commented, with an example value.
    out.push(o.default === null || (o.default === '' && o.example !== undefined) ? `# ${line}` : line);
  }
  return `${out.join('\n')}\n`;
}
