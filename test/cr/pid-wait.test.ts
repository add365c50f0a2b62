// A restore right after the dump (README's two lines): the dumped process's
// PID is still held by its zombie until its parent reaps it. Here the parent
// is a helper that reaps only 2 s after the death, as a busy PID 1 would
// (this test process, a subreaper, would reap at once). Restore waits for that
// zombie, and only for it: a live process or another zombie on the PID is
// refused at once.
import { test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { native } from "../../src/sys/native.js";
import { CORPSE_WAIT_MS } from "../../src/pipelines/restore/pid-wait.js";
import {
  WORKLOADS, crest, dumpLog, dumpWorkload, finish, imagesDir, procState, restoreWorkload, startWorkload, stop, waitFor, waitGone,
  type Workload,
} from "./harness.js";

// Forks the workload in its own session, then reaps it 2 s after it dies.
const LATE_REAPER = `
import os, sys, time
pid = os.fork()
if pid == 0:
    os.setsid()
    os.execv(sys.argv[1], sys.argv[1:])
os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
time.sleep(2)
os.waitpid(pid, 0)
`;

/** Starts a workload as the child of a late reaper; returns it and the reaper's PID. */
function startUnderLateReaper(name: string): { w: Workload; reaper: number } {
  const dir = mkdtempSync(`/tmp/crest-${name}-`);
  const w: Workload = { name, pid: 0, dir, status: join(dir, "status"), log: join(dir, "out.log") };
  const nul = openSync("/dev/null", "r");
  const out = openSync(w.log, "a");
  const reaper = native.spawn({
    path: "/usr/bin/python3", argv: ["python3", "-c", LATE_REAPER, join(WORKLOADS, name), w.status],
    env: ["PATH=/usr/bin:/bin", "LANG=C"], fds: [nul, out, out], cwd: dir,
  });
  closeSync(nul);
  closeSync(out);
  if (reaper < 0) throw new Error(`cannot start the late reaper: errno ${-reaper}`);
  w.pid = waitFor(`${name} under the reaper`, () => Number(readFileSync(`/proc/${reaper}/task/${reaper}/children`, "utf8").trim()));
  waitFor(`${name} to get ready`, () => existsSync(w.status) && readFileSync(w.status, "utf8").startsWith("ready"));
  return { w, reaper };
}

test("restore right after dump waits for the dumped process's zombie to be reaped, then restores it", () => {
  const { w, reaper } = startUnderLateReaper("loop");
  try {
    const d = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log", "-v4"]);
    assert.equal(d.code, 0, d.stderr);
    assert.equal(procState(w.pid).state, "Z", "the dumped process lingers as a zombie");
    const t0 = Date.now();
    restoreWorkload(w);
    assert.ok(Date.now() - t0 < CORPSE_WAIT_MS, "restored before the wait's end");
    assert.match(dumpLog(w, "restore.log"), new RegExp(`PID ${w.pid} is held by the zombie of the dumped process; waiting for its parent ${reaper} to reap it`));
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
    waitGone(reaper);
  }
});

test("a PID held by a live process, or by a zombie that is not the dumped one, is refused at once", () => {
  const w = startWorkload("loop");
  try {
    dumpWorkload(w); // waits until the PID is free
    for (const [what, path, argv] of [["a live process", "/bin/sleep", ["sleep", "60"]], ["another zombie", "/bin/true", ["true"]]] as const) {
      const holder = native.spawn({ path, argv: [...argv], env: [], fds: [], pid: w.pid });
      assert.equal(holder, w.pid, `${what} on PID ${w.pid}`);
      try {
        if (path === "/bin/true") waitFor("true to exit", () => procState(holder).state === "Z");
        const t0 = Date.now();
        const r = crest(["restore", "-D", imagesDir(w), "-o", "restore.log", "-v4", "-d"]);
        assert.equal(r.code, 1, what);
        assert.ok(Date.now() - t0 < CORPSE_WAIT_MS / 2, `${what}: refused without waiting`);
        assert.match(r.stderr, new RegExp(`PID ${w.pid} is taken by process ${w.pid} \\(${argv[0]}\\): stop it first`), what);
        assert.doesNotMatch(dumpLog(w, "restore.log"), /waiting for its parent/, what);
      } finally {
        process.kill(holder, "SIGKILL");
        waitGone(holder);
      }
    }
    restoreWorkload(w);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});
