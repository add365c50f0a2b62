// Remote lazy pages: which pagemap entries a page server holds (lazy.ts's
// remoteRuns, for the daemon) and which it serves (lazy-server.ts's lazyRunsOf).
import { test } from "node:test";
import assert from "node:assert/strict";
import { remoteRuns, REMOTE } from "../../src/kinds/memory/lazy.js";
import { lazyRunsOf } from "../../src/kinds/memory/lazy-server.js";

const P = 4096;
const e = (vaddr: number, pages: number, flags: number) => ({ vaddr: BigInt(vaddr), compat_nr_pages: pages, nr_pages: BigInt(pages), flags });
// PE_PRESENT alone (the stack pointer's page), PE_LAZY alone (left in the task), PE_LAZY|PE_PRESENT (in the file too), PE_PARENT.
const entries = [e(0x1000, 1, 4), e(0x2000, 2, 2), e(0x4000, 3, 2), e(0x10000, 4, 6), e(0x20000, 1, 1)];

test("remoteRuns: PE_LAZY alone, or with `all` PE_LAZY|PE_PRESENT too, as runs of the REMOTE layer whose off is their address", () => {
  assert.deepEqual(remoteRuns(entries, false), [
    { vaddr: 0x2000n, len: 2 * P, off: 0x2000, layer: REMOTE },
    { vaddr: 0x4000n, len: 3 * P, off: 0x4000, layer: REMOTE },
  ]);
  assert.deepEqual(remoteRuns(entries, true).map((r) => r.vaddr), [0x2000n, 0x4000n, 0x10000n]);
});

test("lazyRunsOf: what a dump serves (PE_LAZY alone, adjacent entries merged), what a page server --lazy-pages serves (PE_LAZY|PE_PRESENT)", () => {
  assert.deepEqual(lazyRunsOf(entries, false), [{ start: 0x2000, end: 0x7000 }]);
  assert.deepEqual(lazyRunsOf(entries, true), [{ start: 0x10000, end: 0x14000 }]);
  // Entries without flags are PE_PRESENT (old images): never lazy.
  assert.deepEqual(lazyRunsOf([{ vaddr: 0x1000n, compat_nr_pages: 1, nr_pages: 1n }], true), []);
});
