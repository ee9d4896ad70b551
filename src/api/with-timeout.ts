import { AkiError } from '../errors.js';

/**
 * Run `work`, failing with REQUEST_TIMEOUT if it outlasts `ms`. The work itself is not cancelled:
 * a write that reached the WAL still completes and stays durable.
 */
export async function withTimeout<T>(ms: number, work: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new AkiError('REQUEST_TIMEOUT', { timeoutMs: ms })), ms);
  });
  try {
    return await Promise.race([work(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
