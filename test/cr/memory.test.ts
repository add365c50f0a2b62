// Memory objects and mapping attributes (maps-objects workload): a memfd
// shorter than a page, shared anonymous memory mapped in parts by two
// processes, the open mode of mapped files, mlock, MAP_DROPPABLE and
// madvise flags. The workload checks itself; the images must decode with crit
// and say what criu's would. Guard regions (maps-guard workload): recorded
// as criu records them, never read, installed again. Copy-on-write memory
// (cow workload): a forked child's unchanged pages stay shared after restore.
// Many batches of page reads with shared memory dumped among them (maps-runs
// workload, zdtm transition/maps007's layout).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { readImage, IMG } from "../../src/images/index.js";
import { critDecodeAll, cycle, dumpWorkload, finish, imagesDir, procState, restoreWorkload, startWorkload, stop, waitFor } from "./harness.js";

const MAP_LOCKED = 0x2000, MAP_DROPPABLE = 0x08, MAP_PRIVATE = 0x02;
const VMA_MEMFD = 1 << 14, VMA_FILE_SHARED = 1 << 7, VMA_ANON_SHARED = 1 << 8, VMA_AREA_GUARD = 1 << 16;
const PAGE_SIZE = 4096n;
const O_RDWR = 2;

test("maps-objects: dump, restore, carry on", () => {
  const w = startWorkload("maps-objects");
  try {
    dumpWorkload(w);
    const dir = imagesDir(w);
    assert.deepEqual(critDecodeAll(dir), [], "crit decodes every image");
    const vmas = readImage(dir, IMG.mm, w.pid)[0]!.vmas;
    assert.ok(vmas.some((v) => v.flags & MAP_LOCKED), "a locked VMA has MAP_LOCKED");
    const drop = vmas.find((v) => (v.flags & 0x0f) === MAP_DROPPABLE);
    if (drop) {
      assert.equal(drop.flags & MAP_PRIVATE, 0, "MAP_DROPPABLE replaces MAP_PRIVATE");
      const pages = readImage(dir, IMG.pagemap, w.pid).entries;
      assert.ok(!pages.some((e) => e.vaddr >= drop.start && e.vaddr < drop.end), "droppable pages are not dumped");
    }
    const memfd = readImage(dir, IMG.memfdInode).find((e) => e.name === "maps-objects");
    assert.equal(memfd?.size, 12n, "the memfd keeps its size in bytes");
    assert.ok(vmas.some((v) => v.status & VMA_FILE_SHARED && v.fdflags === O_RDWR), "a shared read-only mapping of a file opened O_RDWR says O_RDWR");
    assert.ok(vmas.some((v) => v.status & VMA_MEMFD && v.fdflags === O_RDWR), "the memfd mapping says O_RDWR");
    restoreWorkload(w);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("maps-guard: guard regions are recorded, not read, and come back", () => {
  const w = startWorkload("maps-guard");
  try {
    dumpWorkload(w);
    const dir = imagesDir(w);
    assert.deepEqual(critDecodeAll(dir), [], "crit decodes every image");
    const vmas = readImage(dir, IMG.mm, w.pid)[0]!.vmas;
    const first = vmas.findIndex((v) => v.status & VMA_AREA_GUARD);
    assert.ok(first >= 0, "guard regions are in mm.img");
    const guards = vmas.slice(first);
    const real = vmas.slice(0, first);
    for (const g of guards) {
      assert.equal(g.status, VMA_AREA_GUARD, "a guard entry has VMA_AREA_GUARD alone, after every real VMA (as criu writes it)");
      assert.deepEqual([g.prot, g.flags, g.pgoff, g.shmid, g.fd], [0, 0, 0n, 0n, -1n]);
      assert.ok(real.some((v) => v.start <= g.start && g.start < v.end), `guard 0x${g.start.toString(16)} lies in a mapping`);
    }
    // 9 guard pages, 8 where this kernel has no guards in shared file mappings.
    const pages = guards.reduce((n, g) => n + (g.end - g.start) / PAGE_SIZE, 0n);
    assert.ok(pages === 9n || pages === 8n, `guard pages: ${pages}`);
    const dumped = readImage(dir, IMG.pagemap, w.pid).entries;
    for (const e of dumped) {
      const end = e.vaddr + BigInt(e.nr_pages ?? BigInt(e.compat_nr_pages)) * PAGE_SIZE;
      assert.ok(!guards.some((g) => g.start < end && e.vaddr < g.end), `pages at 0x${e.vaddr.toString(16)} include no guard page`);
    }
    restoreWorkload(w);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

/** Sum of Pss (KiB) over a process and its children. */
function treePss(pid: number): number {
  const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  return [pid, ...kids].reduce((sum, p) => sum + Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p}/smaps_rollup`, "utf8"))![1]), 0);
}

test("cow: a parent's private memory stays shared with its forked children", () => {
  const w = startWorkload("cow");
  try {
    const before = treePss(w.pid);
    dumpWorkload(w);
    const dir = imagesDir(w);
    assert.deepEqual(critDecodeAll(dir), [], "crit decodes every image");
    assert.equal(readImage(dir, IMG.pstree).length, 4);
    restoreWorkload(w);
    const after = treePss(w.pid);
    // 64 MiB shared by 4 processes: about 64 MiB in all, 256 MiB if each had its own copy.
    assert.ok(after < 96 * 1024, `Pss of the tree after restore: ${after} KiB (before the dump: ${before} KiB)`);
    const stats = readImage(dir, IMG.stats, "restore")[0]!.restore!;
    // Each child compares its 16384 pages (all but the 5 it dropped or the parent never had) and keeps the equal ones.
    assert.ok(stats.pages_skipped_cow >= 3n * 16_000n, `pages_skipped_cow ${stats.pages_skipped_cow}`);
    assert.ok(stats.pages_compared >= stats.pages_skipped_cow, `pages_compared ${stats.pages_compared}`);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

// A dump that leaves the tree in place reads its pages without taking them
// apart: the kernel copies a copy-on-write page before anyone may pin it, as
// process_vm_readv does, so shared pages are read through /proc/PID/mem.
test("cow: a dump that leaves the tree stopped (-s) keeps its copy-on-write pages shared", () => {
  const w = startWorkload("cow");
  try {
    const before = treePss(w.pid);
    dumpWorkload(w, ["-s"]);
    const tree = [w.pid, ...readFileSync(`/proc/${w.pid}/task/${w.pid}/children`, "utf8").trim().split(/\s+/).map(Number)];
    waitFor("the tree to stop", () => tree.every((p) => procState(p).state === "T"));
    const after = treePss(w.pid);
    // 64 MiB shared by 4 processes; each with a copy of its own, 256 MiB.
    assert.ok(after < before + 16 * 1024, `Pss of the tree after the dump: ${after} KiB (before: ${before} KiB)`);
    for (const p of tree) process.kill(p, "SIGCONT");
    // The workload checks that unchanged pages are still one physical page in parent and child.
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

// The shared object's pages are dumped while the task's own pages writer
// still holds pages it has read but not yet written: each needs a buffer of
// its own (they once shared one, and the shared pages overwrote the others).
test("maps-runs: private pages read in many batches, shared memory dumped among them, all come back", () => {
  cycle("maps-runs", [], (w) => {
    const dir = imagesDir(w);
    const shmem = readImage(dir, IMG.mm, w.pid)[0]!.vmas.filter((v) => v.status & VMA_ANON_SHARED);
    assert.equal(shmem.length, 1, "one shared anonymous mapping");
    assert.ok(readImage(dir, IMG.pagemap, w.pid).entries.length > 1024, "more runs of pages than one batch of reads takes");
  });
});
