// One process per area, dumped, killed, restored with the same PID, and
// asked to check its own state (see test/workloads/). Every image written
// must decode with Debian's crit, and stats-dump must match the pages written.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { readImage, IMG } from "../../src/images/index.js";
import { critDecodeAll, dumpWorkload, finish, imagesDir, restoreWorkload, startWorkload, stop } from "./harness.js";

const VMA_AREA_VDSO = 1 << 3;
const AREAS = ["loop", "mem", "fpu", "signals", "timers", "files", "identity", "seccomp-tsync"];

for (const name of AREAS) {
  test(`${name}: dump, restore, carry on`, () => {
    const w = startWorkload(name);
    try {
      dumpWorkload(w);
      const dir = imagesDir(w);
      assert.deepEqual(critDecodeAll(dir), [], "crit decodes every image");
      const stats = readImage(dir, IMG.stats, "dump")[0]!.dump!;
      const pageBytes = readdirSync(dir).filter((f) => /^pages-\d+\.img$/.test(f)).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
      assert.equal(Number(stats.pages_written + (stats.shpages_written ?? 0n)), pageBytes / 4096, "stats-dump counts the pages written");
      restoreWorkload(w);
      const restored = readImage(dir, IMG.stats, "restore")[0]!.restore!;
      // The vDSO's pages are dumped (as criu does) but not written back: the task gets this kernel's vDSO.
      const v = readImage(dir, IMG.mm, w.pid)[0]!.vmas.find((v) => v.status & VMA_AREA_VDSO)!;
      const vdso = Number(v.end - v.start) / 4096;
      const inPagemap = readImage(dir, IMG.pagemap, w.pid).entries.filter((e) => e.vaddr >= v.start && e.vaddr < v.end).reduce((n, e) => n + Number(e.nr_pages), 0);
      assert.equal(inPagemap, vdso, "the vDSO's pages are in the pagemap, as criu has them");
      assert.equal(Number(restored.pages_restored), pageBytes / 4096 - vdso, "stats-restore counts every page read back");
      assert.equal(finish(w), "PASS");
    } finally {
      stop(w);
    }
  });
}
