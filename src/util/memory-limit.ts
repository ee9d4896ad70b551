import { totalmem } from 'node:os';

/** The memory this process may use: its cgroup limit when there is a real one, else the machine's RAM. */
export function memoryLimitBytes(): number {
  const constrained = process.constrainedMemory?.() ?? 0;
  // Without a cgroup limit Node reports 0 or a huge sentinel (2^64); neither is a limit.
  return constrained !== undefined && constrained > 0 && constrained < Number.MAX_SAFE_INTEGER ? Math.min(constrained, totalmem()) : totalmem();
}
