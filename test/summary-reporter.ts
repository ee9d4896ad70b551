import type { Reporter, TestModule } from 'vitest/node';

/**
 * Prints one closing line, `tests: N passed, N failed, N skipped`, and names every skipped test
 * loudly. Under AKIDB_REQUIRE_ALL_TIERS=1 a skipped test fails the run.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    const skipped: string[] = [];
    for (const m of modules) {
      for (const t of m.children.allTests()) {
        const state = t.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failed++;
        else if (state === 'skipped') skipped.push(`${m.moduleId.replace(process.cwd() + '/', '')} > ${t.fullName}`);
      }
      if (m.state() === 'failed' && [...m.children.allTests()].length === 0) failed++;
    }
    for (const s of skipped) process.stdout.write(`SKIPPED: ${s}\n`);
    if (skipped.length > 0 && process.env.AKIDB_REQUIRE_ALL_TIERS === '1') {
      process.stdout.write(`AKIDB_REQUIRE_ALL_TIERS=1: ${skipped.length} skipped test(s) count as failures\n`);
      failed += skipped.length;
      process.exitCode = 1;
    }
    this.#line = `tests: ${passed} passed, ${failed} failed, ${skipped.length} skipped`;
  }

  #line = '';

  // The default reporter prints its own summary after onTestRunEnd; print the closing line
  // when the process is done so it is the last line of the run.
  onInit(): void {
    process.once('exit', () => {
      if (this.#line) process.stdout.write(`\n${this.#line}\n`);
    });
  }
}
