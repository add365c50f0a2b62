// The criu conventions of the dump and restore command lines on real
// processes: -R, -s, --pidfile, foreground restore, -W, log endings, --timeout.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { alive, crest, crestAsync, dumpWorkload, finish, imagesDir, procState, restoreWorkload, startWorkload, stop, waitFor, waitGone } from "./harness.js";

test("dump -R leaves the process running; the images restore it later", () => {
  const w = startWorkload("loop");
  try {
    dumpWorkload(w, ["-R"]);
    assert.ok(alive(w.pid));
    assert.match(procState(w.pid).state, /[RS]/);
    assert.equal(finish(w), "PASS");
    restoreWorkload(w);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("dump -s leaves the process stopped", () => {
  const w = startWorkload("loop");
  try {
    dumpWorkload(w, ["-s"]);
    waitFor("the process to stop", () => procState(w.pid).state === "T");
    process.kill(w.pid, "SIGCONT");
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("restore without -d waits for the task and exits with its status; --pidfile names it", async () => {
  const w = startWorkload("loop");
  try {
    dumpWorkload(w);
    const pidfile = join(w.dir, "restored.pid");
    const run = crestAsync(["restore", "-D", imagesDir(w), "-o", "rst.log", "-v4", "--pidfile", pidfile]);
    waitFor("the pidfile", () => existsSync(pidfile) && readFileSync(pidfile, "utf8").length > 0);
    assert.equal(Number(readFileSync(pidfile, "utf8")), w.pid);
    const log = join(imagesDir(w), "rst.log");
    waitFor("the restored task", () => /Resuming tasks/.test(readFileSync(log, "utf8")) && procState(w.pid).tracer === 0);
    process.kill(w.pid, "SIGTERM");
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    assert.match(readFileSync(join(w.dir, "status"), "utf8"), /^PASS/);
    assert.match(readFileSync(log, "utf8"), /Restore finished successfully\. Resuming tasks\.\n$/);
  } finally {
    stop(w);
  }
});

test("restore without -d passes on a failing task's exit code", async () => {
  const w = startWorkload("loop");
  try {
    dumpWorkload(w);
    const run = crestAsync(["restore", "-D", imagesDir(w), "-o", "rst.log", "-v4"]);
    // Released: the log says so and crest no longer traces it (a bare PID could still be the stub).
    const log = join(imagesDir(w), "rst.log");
    waitFor("the restored task", () => existsSync(log) && /Resuming tasks/.test(readFileSync(log, "utf8")) && alive(w.pid) && procState(w.pid).tracer === 0);
    process.kill(w.pid, "SIGKILL");
    const r = await run;
    assert.equal(r.code, 128 + 9);
  } finally {
    stop(w);
  }
});

test("--pidfile is created exclusively: an existing file fails the restore and nothing runs", () => {
  const w = startWorkload("loop");
  try {
    dumpWorkload(w);
    const pidfile = join(w.dir, "taken.pid");
    writeFileSync(pidfile, "1");
    const r = crest(["restore", "-D", imagesDir(w), "-d", "--pidfile", pidfile]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot create pidfile/);
    assert.equal(alive(w.pid), false);
  } finally {
    stop(w);
  }
});

test("-W puts the log (and relative pidfile) in the work directory; dump log ends as criu's", () => {
  const w = startWorkload("loop");
  try {
    const work = join(w.dir, "work");
    mkdirSync(work);
    const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-W", work, "-o", "d.log", "-v4", "--pidfile", "p"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(existsSync(join(work, "p")), false, "dump leaves --pidfile alone, as criu");
    waitGone(w.pid);
    assert.match(readFileSync(join(work, "d.log"), "utf8"), /Dumping finished successfully\n$/);
    const r2 = crest(["restore", "-D", imagesDir(w), "-W", work, "-o", "r.log", "-d", "--pidfile", "p"]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(Number(readFileSync(join(work, "p"), "utf8")), w.pid);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("log levels: -v0 writes nothing but messages, -v4 writes debug lines", () => {
  const w = startWorkload("loop");
  try {
    dumpWorkload(w, ["-R"]);
    const quiet = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "q.log", "-v0", "-R"]);
    assert.equal(quiet.code, 0);
    assert.equal(readFileSync(join(imagesDir(w), "q.log"), "utf8"), "");
    assert.match(readFileSync(join(imagesDir(w), "dump.log"), "utf8"), /dumping memory of/);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("--timeout: a tree that cannot be frozen in time fails the dump and carries on untouched", () => {
  const w = startWorkload("vfork-hold");
  try {
    const child = Number(readFileSync(`/proc/${w.pid}/task/${w.pid}/children`, "utf8").trim());
    const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "--timeout", "1"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`freezing the tree of process ${w.pid} took longer than 1 s \\(--timeout\\)`));
    assert.equal(procState(w.pid).tracer, 0);
    assert.equal(procState(child).tracer, 0);
    process.kill(child, "SIGKILL");
    waitFor("the root to resume", () => readFileSync(w.status, "utf8").startsWith("PASS"));
    waitGone(w.pid);
    waitGone(child);
  } finally {
    stop(w);
  }
});
