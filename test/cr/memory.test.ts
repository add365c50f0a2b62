// Memory objects and mapping attributes (maps-objects workload): a memfd
// shorter than a page, shared anonymous memory mapped in parts by two
// processes, the open mode of mapped files, mlock, MAP_DROPPABLE and
// madvise flags. The workload checks itself; the images must decode with crit
// and say what criu's would.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readImage, IMG } from "../../src/images/index.js";
import { critDecodeAll, dumpWorkload, finish, imagesDir, restoreWorkload, startWorkload, stop } from "./harness.js";

const MAP_LOCKED = 0x2000, MAP_DROPPABLE = 0x08, MAP_PRIVATE = 0x02;
const VMA_MEMFD = 1 << 14, VMA_FILE_SHARED = 1 << 7;
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
