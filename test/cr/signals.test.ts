// Signals, scheduling and the process tree's odd members: SIGTRAP (which
// crest's own traps raise) caught, ignored or pending; zombies of every kind
// of death; each thread's scheduling; membarrier registrations; stopped
// processes. Each workload checks its own state after the restore.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { readImage, IMG } from "../../src/images/index.js";
import { TASK_STATE } from "../../src/kinds/task/task-state.js";
import {
  crest, critDecodeAll, cycle, dumpLog, dumpWorkload, finish, imagesDir, procState, startWorkload, stop,
  type Workload,
} from "./harness.js";

const maps = (pid: number): string => readFileSync(`/proc/${pid}/maps`, "utf8");

test("a caught SIGTRAP keeps its handler through dump and restore", () => cycle("sig-trap", ["handler"]));

test("an ignored SIGTRAP stays ignored (crest's int3 would reset it)", () => cycle("sig-trap", ["ignore"], (w) => {
  const sa = readImage(imagesDir(w), IMG.core, w.pid)[0]!.tc!.sigactions[4]!;
  assert.equal(sa.sigaction, 1n, "SIGTRAP's action in the image is SIG_IGN");
}));

test("a pending SIGTRAP: the dump is refused and the signal stays pending", () => {
  const w = startWorkload("sig-trap", ["pending"]);
  try {
    const before = maps(w.pid);
    const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log", "-v4"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`process ${w.pid} has a pending SIGTRAP; crest does not dump a pending SIGTRAP`));
    assert.match(dumpLog(w), /Dumping FAILED/);
    assert.equal(maps(w.pid), before, "no mapping left behind");
    assert.equal(procState(w.pid).tracer, 0);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("zombies killed by SIGKILL, SIGSEGV and SIGUSR1 or exited come back with their status", () => cycle("sig-zombies"));

test("each thread's scheduling policy, priority and nice value", () => cycle("sched-policy", [], (w) => {
  const dir = imagesDir(w);
  const tids = readImage(dir, IMG.pstree)[0]!.threads;
  const got = tids.map((t) => readImage(dir, IMG.core, t)[0]!.thread_core!).map((th) => [th.sched_policy, th.sched_prio ?? 0, th.sched_nice]);
  // In thread creation order: main, rr (with SCHED_RESET_ON_FORK), fifo, idle, other.
  assert.deepEqual(got, [[3, 0, 5], [0x40000002, 3, 0], [1, 9, 4], [5, 0, 0], [0, 0, -3]]);
}));

test("membarrier registrations", () => cycle("sched-membarrier", [], (w) => {
  const tc = readImage(imagesDir(w), IMG.core, w.pid)[0]!.tc!;
  assert.ok(tc.membarrier_registration_mask, "the registrations are in the image");
}));

/** The stopped child of a sig-stopped workload. */
function stoppedChild(w: Workload): number {
  return Number(readFileSync(`/proc/${w.pid}/task/${w.pid}/children`, "utf8").trim());
}

test("a stopped process: a failed dump and a dump with -R leave it stopped, untouched", () => {
  const w = startWorkload("sig-stopped");
  try {
    const child = stoppedChild(w);
    const before = maps(child);
    for (const point of ["dump:frozen", "dump:signals", "dump:images"]) {
      const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w)], { CREST_FAULT: point });
      assert.equal(r.code, 1, point);
      assert.deepEqual(procState(child), { state: "T", tracer: 0 }, `stopped and not traced after a fault at ${point}`);
      assert.equal(maps(child), before, `no mapping left behind after a fault at ${point}`);
    }
    dumpWorkload(w, ["-R"]);
    assert.deepEqual(procState(child), { state: "T", tracer: 0 }, "still stopped after dump -R");
    const tc = readImage(imagesDir(w), IMG.core, child)[0]!.tc!;
    assert.equal(tc.task_state, TASK_STATE.STOPPED);
    assert.equal(tc.stop_signo, 19);
    assert.deepEqual(critDecodeAll(imagesDir(w)), [], "crit decodes every image");
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

for (const sig of ["STOP", "TSTP"]) {
  test(`a process stopped by SIG${sig} comes back stopped by it`, () => {
    cycle("sig-stopped", [sig]);
  });
}
