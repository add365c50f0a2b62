// Time namespaces (issue 12): CLOCK_MONOTONIC and CLOCK_BOOTTIME go on after
// a restore from where they were at the dump, as criu restores them: for a
// tree in its own time namespace (timens-N.img) and for one in crest's
// (timens-0.img; criu gives the restored tree a namespace of its own then
// too). The workload checks its clocks across a pause between dump and
// restore; every image decodes with crit.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readlinkSync } from "node:fs";
import { assertDumpRefused, crest, critDecodeAll, dumpWorkload, finish, imagesDir, restoreWorkload, startWorkload, stop } from "./harness.js";
import { readImage, IMG } from "../../src/images/index.js";
import { sleepMs } from "../../src/sys/syscalls.js";
import { parseTimensOffsets } from "../../src/kinds/namespaces/time.js";

const PAUSE_MS = 3000;
const NSEC = 1_000_000_000n;

for (const ns of ["pid,time", undefined]) {
  test(`clocks go on across a restore ${ns ? "in the tree's own time namespace" : "of a tree in crest's time namespace"}`, () => {
    const w = startWorkload("timens", [String(PAUSE_MS)], ns ? { ns } : {});
    try {
      const own = readlinkSync(`/proc/${w.pid}/ns/time`) !== readlinkSync("/proc/self/ns/time");
      assert.equal(own, ns !== undefined, "the workload's time namespace is its own only through crest run --ns time");
      dumpWorkload(w);
      const rootPid = readImage(imagesDir(w), IMG.pstree)[0]!.pid;
      const key = ns ? readImage(imagesDir(w), IMG.ids, rootPid)[0]!.time_ns_id! : 0;
      const [clocks] = readImage(imagesDir(w), IMG.timens, key);
      assert.ok(clocks, `timens-${key}.img holds the clocks`);
      assert.deepEqual(critDecodeAll(imagesDir(w)), []);
      sleepMs(PAUSE_MS);
      restoreWorkload(w);
      assert.notEqual(readlinkSync(`/proc/${w.pid}/ns/time`), readlinkSync("/proc/self/ns/time"), "restored in a time namespace of its own");
      // The offsets make up for the pause (the dump was on this machine): about minus the time away, at least minus the pause.
      const off = parseTimensOffsets(readFileSync(`/proc/${w.pid}/timens_offsets`, "utf8"), "timens_offsets");
      const mine = parseTimensOffsets(readFileSync("/proc/self/timens_offsets", "utf8"), "timens_offsets");
      for (const k of ["monotonic", "boottime"] as const) {
        const d = off[k] - mine[k];
        assert.ok(d <= -BigInt(PAUSE_MS) * 1_000_000n && d > -60n * NSEC, `${k} offset ${d} ns relative to crest's`);
      }
      assert.equal(finish(w), "PASS");
    } finally {
      stop(w);
    }
  });
}

test("the timens check fails when the clocks jump (sabotage)", () => {
  for (const n of ["1", "2"]) {
    const w = startWorkload("timens", ["1000"], { ns: "pid,time", env: [`CREST_WL_SABOTAGE=${n}`] });
    try {
      dumpWorkload(w);
      sleepMs(1000);
      restoreWorkload(w);
      assert.match(finish(w), n === "1" ? /CLOCK_MONOTONIC jumped/ : /CLOCK_BOOTTIME went back/);
    } finally {
      stop(w);
    }
  }
});

test("a task that unshared a time namespace for its children only is refused by name", () => {
  assertDumpRefused("refused", ["timens-kids"], /process \d+ has unshared a time namespace for its future children \(time:\[\d+\]\); crest does not support that yet/);
});

test("crest run names time among its namespaces", () => {
  assert.match(crest(["run", "--ns", "bogus", "--", "true"]).stderr, /unknown namespace 'bogus' \(use pid, ipc, uts, net, mnt, time, user\)/);
});
