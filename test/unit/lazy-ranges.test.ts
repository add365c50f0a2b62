// The lazy-pages daemon's bookkeeping of the pages still to copy in: which
// runs are lazy (private anonymous mappings only, cut at mapping edges),
// and how munmap/MADV_DONTNEED and mremap events change them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { dropRange, lazyVma, remapRange, splitLazy, unixAddress } from "../../src/kinds/memory/lazy.js";
import type { vma_entry } from "../../src/images/index.js";

const VMA_REGULAR = 1, VMA_ANON_PRIVATE = 1 << 9, VMA_ANON_SHARED = 1 << 8, VMA_VDSO = 1 << 3, VMA_FILE_PRIVATE = 1 << 6;
const MAP_PRIVATE = 2, MAP_SHARED = 1, MAP_ANONYMOUS = 0x20, MAP_LOCKED = 0x2000, MAP_DROPPABLE = 0x08;
const K = 0x1000;

function vma(start: number, end: number, status: number, flags = MAP_PRIVATE | MAP_ANONYMOUS): vma_entry {
  return { start: BigInt(start), end: BigInt(end), pgoff: 0n, shmid: 0n, prot: 3, flags, status: VMA_REGULAR | status, fd: -1n };
}

test("lazy mappings: private anonymous memory, not the kernel's, droppable, locked or shared", () => {
  assert.equal(lazyVma(vma(0, K, VMA_ANON_PRIVATE)), true);
  assert.equal(lazyVma(vma(0, K, VMA_ANON_PRIVATE | VMA_VDSO)), false, "vDSO");
  assert.equal(lazyVma(vma(0, K, VMA_ANON_PRIVATE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED)), false, "mlock'ed: populated as it is mapped");
  assert.equal(lazyVma(vma(0, K, VMA_ANON_PRIVATE, MAP_DROPPABLE | MAP_ANONYMOUS)), false, "droppable");
  assert.equal(lazyVma(vma(0, K, VMA_ANON_SHARED, MAP_SHARED | MAP_ANONYMOUS)), false, "shared");
  assert.equal(lazyVma(vma(0, K, VMA_FILE_PRIVATE, MAP_PRIVATE)), false, "a file's private copy");
});

test("splitLazy: runs in lazy mappings go to the daemon, cut at each mapping's edge", () => {
  const vmas = [vma(0x10 * K, 0x20 * K, VMA_ANON_PRIVATE), vma(0x20 * K, 0x30 * K, VMA_ANON_PRIVATE), vma(0x30 * K, 0x40 * K, VMA_FILE_PRIVATE, MAP_PRIVATE)];
  // One run over all three mappings, at offset 0 of the pages file.
  const { lazy, eager } = splitLazy([{ vaddr: 0x18n * BigInt(K), len: 0x20 * K, off: 0 }], vmas);
  assert.deepEqual(lazy.map((p) => [Number(p.vaddr) / K, p.len / K, p.off / K]), [[0x18, 8, 0], [0x20, 0x10, 8]]);
  assert.deepEqual(eager.map((p) => [Number(p.vaddr) / K, p.len / K, p.off / K]), [[0x30, 8, 0x18]]);
});

test("dropRange cuts runs, keeping where the rest of their bytes are", () => {
  const iovs = [{ start: 0, end: 10 * K, layer: 0, off: 100 * K }, { start: 20 * K, end: 30 * K, layer: 1, off: 0 }];
  assert.deepEqual(dropRange(iovs, 2 * K, 4 * K), [
    { start: 0, end: 2 * K, layer: 0, off: 100 * K }, { start: 4 * K, end: 10 * K, layer: 0, off: 104 * K }, iovs[1],
  ]);
  assert.deepEqual(dropRange(iovs, 5 * K, 25 * K), [{ start: 0, end: 5 * K, layer: 0, off: 100 * K }, { start: 25 * K, end: 30 * K, layer: 1, off: 5 * K }]);
  assert.deepEqual(dropRange(iovs, 40 * K, 50 * K), iovs);
});

test("remapRange moves runs with mremap, dropping what was at the destination", () => {
  const iovs = [{ start: 0, end: 4 * K, layer: 0, off: 0 }, { start: 10 * K, end: 12 * K, layer: 0, off: 4 * K }];
  // The second half of the first run moves above the second, which it replaces in part.
  assert.deepEqual(remapRange(iovs, 2 * K, 11 * K, 2 * K), [
    { start: 0, end: 2 * K, layer: 0, off: 0 }, { start: 10 * K, end: 11 * K, layer: 0, off: 4 * K }, { start: 11 * K, end: 13 * K, layer: 0, off: 2 * K },
  ]);
});

test("the socket address: criu's layout, and a path too long refused by name", () => {
  const a = unixAddress("/w/lazy-pages.socket");
  assert.equal(a.readUInt16LE(0), 1);
  assert.equal(a.subarray(2, a.length - 1).toString(), "/w/lazy-pages.socket");
  assert.throws(() => unixAddress(`/${"d".repeat(120)}/lazy-pages.socket`), /longer than a unix socket address may be .* use a shorter --work-dir/);
});
