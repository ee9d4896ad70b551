import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { AkiConfig } from '../config/config-schema.js';

export type { Logger };

/** Request headers and fields that may carry credentials; never written to a log. */
export const REDACTED_PATHS = ['req.headers.authorization', 'req.headers["x-api-key"]', 'req.headers.cookie', '*.secret', '*.password', '*.token', '*.apiKey', '*.api_key'];

/** The server's logger: JSON lines, or pretty for a terminal; both on stdout. */
export function createLogger(cfg: AkiConfig['logging'], destination: NodeJS.WritableStream = process.stdout): Logger {
  const options = { level: cfg.level, base: { service: 'akidb' }, redact: { paths: REDACTED_PATHS, censor: '[redacted]' }, timestamp: pino.stdTimeFunctions.isoTime };
  if (cfg.format === 'pretty') return pino(options, pretty({ destination, sync: true, colorize: false, translateTime: 'SYS:standard' }));
  return pino(options, destination);
}
