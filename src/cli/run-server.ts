import { ConfigError, loadConfig, type ConfigInput } from '../config/load-config.js';
import { isAkiError } from '../errors.js';
import { createLogger } from '../observability/logger.js';
import { startServer, StartupRefused, type ServerMode } from '../server/server.js';

/**
 * Run a server until SIGTERM / SIGINT; resolves with the exit code. A bad config or a locked
 * data directory stops the start with a message on stderr and exit code 1 (2 for usage errors).
 */
export async function runServer(mode: ServerMode, flags: Record<string, string>, version: string): Promise<number> {
  const input: ConfigInput = { flags };
  let loaded;
  try {
    loaded = loadConfig(input);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`akidb ${mode}: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const { config } = loaded;
  const logger = createLogger(config.logging);
  if (loaded.file) logger.info({ file: loaded.file }, 'Loaded config file');
  let server;
  try {
    server = await startServer(config, mode, logger, version);
  } catch (err) {
    if (isAkiError(err, 'DATA_DIR_LOCKED')) {
      process.stderr.write(`akidb ${mode}: ${err.message}. Stop that process, or give this one another --data-dir.\n`);
      return 1;
    }
    if (err instanceof StartupRefused) {
      process.stderr.write(`akidb ${mode}: ${err.message}\n`);
      return 1;
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES') {
      process.stderr.write(`akidb ${mode}: cannot bind ${config.server.host}: ${(err as Error).message}\n`);
      return 1;
    }
    throw err;
  }
  return new Promise<number>((resolve) => {
    const onStop = (signal: NodeJS.Signals): void => {
      server.stop(signal).then(
        () => resolve(0),
        (err: unknown) => {
          logger.error({ err }, 'Shutdown failed');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', onStop);
    process.on('SIGINT', onStop);
    process.on('SIGHUP', () => {
      try {
        const next = loadConfig(input).config;
        logger.level = next.logging.level;
        logger.info({ logLevel: next.logging.level }, 'Reloaded config (log level)');
      } catch (err) {
        logger.error({ problems: err instanceof ConfigError ? err.problems : String(err) }, 'Config reload failed; keeping the running config');
      }
    });
  });
}
