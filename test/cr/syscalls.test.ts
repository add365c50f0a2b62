// Threads caught in interruptible syscalls (project issue 7): after a restore
// (or left running) each carries on with its call as if nothing happened:
// syscalls-blocked checks the calls themselves; here the images hold each
// call restarted, and the dump log warns, naming the thread and the call,
// exactly where the restart cannot be exact (a relative timeout the kernel
// keeps only in its restart block). And `tail -f`, the case the issue found.
import { test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, openSync, appendFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readImage, IMG } from "../../src/images/index.js";
import { native } from "../../src/sys/native.js";
import { SIG, SYS } from "../../src/sys/constants.js";
import { sleepMs } from "../../src/sys/syscalls.js";
import {
  alive, dumpLog, dumpWorkload, finish, imagesDir, restoreWorkload, startWorkload, stop, waitFor,
  type Workload,
} from "./harness.js";

/** The cases whose restart cannot be exact: their timeout starts over (see the workload). */
const INEXACT: Record<string, string> = {
  "poll-timeout": "poll", "epoll-timeout": "epoll_wait", "nanosleep-norem": "nanosleep", "futex-timeout": "futex",
};

function cases(w: Workload): Map<string, number> {
  const lines = readFileSync(join(w.dir, "cases"), "utf8").trim().split("\n");
  return new Map(lines.map((l) => l.split(" ")).map(([name, tid]) => [name!, Number(tid)]));
}

const warnings = (log: string): string[] => log.split("\n").filter((l) => l.includes("Warn: "));

function checkLog(w: Workload): void {
  const warns = warnings(dumpLog(w));
  for (const [name, tid] of cases(w)) {
    const mine = warns.filter((l) => new RegExp(`thread ${tid} of process ${w.pid}\\b`).test(l));
    if (INEXACT[name]) {
      assert.equal(mine.length, 1, `one warning for ${name} (thread ${tid}): ${warns.join("\n")}`);
      assert.match(mine[0]!, new RegExp(`is in ${INEXACT[name]}: ${INEXACT[name]} restarts with its .*timeout from the start: `));
    } else {
      assert.deepEqual(mine, [], `no warning for ${name} (thread ${tid}), whose restart is exact`);
    }
  }
  assert.equal(warns.filter((l) => l.includes("interrupted system call")).length, 0, "no call is left failing with EINTR");
}

function checkImages(w: Workload): void {
  const dir = imagesDir(w);
  const regs = (tid: number) => readImage(dir, IMG.core, tid)[0]!.thread_info!.gpregs;
  const c = cases(w);
  // poll (restart block), epoll_wait (EINTR), read (ERESTARTSYS): each saved
  // about to run its own syscall again.
  for (const [name, nr] of [["poll", 7n], ["epoll", 232n], ["read", 0n], ["sigsuspend", 130n]] as const) {
    const g = regs(c.get(name)!);
    assert.equal(g.ax, nr, `${name}: ax holds its syscall number to run it again`);
    assert.equal(g.orig_ax, nr);
  }
  // nanosleep(req, rem) restarts as nanosleep(rem, rem): the time it had left.
  const ns = regs(c.get("nanosleep")!);
  assert.equal(ns.ax, 35n);
  assert.equal(ns.di, ns.si, "the request is the buffer holding the time left");
  // The main thread waits in ppoll with SIGTERM unblocked; its real mask blocks it.
  const SIGTERM_BIT = 1n << 14n;
  const main = readImage(dir, IMG.core, w.pid)[0]!;
  assert.ok(main.thread_core!.blk_sigset! & SIGTERM_BIT, "the saved mask is the thread's own, not ppoll's temporary one");
}

/** Started and ready; the timed calls then sleep 1.5 s of their 6 before crest interrupts them. */
function started(args: string[] = []): Workload {
  const w = startWorkload("syscalls-blocked", args);
  sleepMs(1500);
  return w;
}

test("syscalls-blocked: every blocked call carries on after a restore, warned where its timeout starts over", () => {
  const w = started();
  try {
    dumpWorkload(w);
    checkLog(w);
    checkImages(w);
    restoreWorkload(w);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("syscalls-blocked left running (-R): no call sees crest's interrupt", () => {
  const w = started(["live"]);
  try {
    dumpWorkload(w, ["-R"]);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

const threadState = (pid: number, tid: number): string => {
  const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2)[0]!;
};

test("syscalls-blocked stopped with signals pending for pause and sigsuspend: their handlers run first once it continues", () => {
  const w = started(["stopped"]);
  try {
    const c = cases(w);
    process.kill(w.pid, "SIGSTOP");
    for (const tid of c.values()) waitFor(`thread ${tid} to stop`, () => threadState(w.pid, tid) === "T");
    native.syscall(SYS.tgkill, w.pid, c.get("pause")!, SIG.USR2, 0, 0);
    native.syscall(SYS.tgkill, w.pid, c.get("sigsuspend")!, SIG.USR1, 0, 0);
    dumpWorkload(w);
    // pause's SIGUSR2 is unblocked: it fails with EINTR after the handler, as
    // the kernel has it. sigsuspend's SIGUSR1 is blocked but by sigsuspend:
    // it restarts with the thread's own mask, and its call takes the signal.
    assert.match(dumpLog(w), new RegExp(`thread ${c.get("pause")} of process ${w.pid} is in pause: signal ${SIG.USR2} is pending: its handler runs first and pause fails with EINTR`));
    assert.doesNotMatch(dumpLog(w), new RegExp(`thread ${c.get("sigsuspend")} of process ${w.pid} is in rt_sigsuspend: signal`));
    restoreWorkload(w);
    assert.equal(threadState(w.pid, w.pid), "T", "restored stopped");
    process.kill(w.pid, "SIGCONT");
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

/** `tail -f FILE` in its own session, its output in a file. */
function startTail(): { w: Workload; file: string; out: string } {
  const dir = mkdtempSync("/tmp/crest-tail-");
  const file = join(dir, "watched"), out = join(dir, "out.log");
  writeFileSync(file, "first line\n");
  const nul = openSync("/dev/null", "r"), fd = openSync(out, "a");
  const pid = native.spawn({ path: "/usr/bin/tail", argv: ["tail", "-f", file], env: ["PATH=/usr/bin:/bin", "LANG=C"], setsid: 1, fds: [nul, fd, fd], cwd: dir });
  closeSync(nul);
  closeSync(fd);
  assert.ok(pid > 0, `cannot start tail: errno ${-pid}`);
  const w: Workload = { name: "tail", pid, dir, status: join(dir, "status"), log: out };
  waitFor("tail to print the file", () => readFileSync(out, "utf8").includes("first line"));
  // Wait until it blocks in poll (syscall 7), where the issue caught it.
  waitFor("tail to block in poll", () => readFileSync(`/proc/${pid}/syscall`, "utf8").startsWith("7 "));
  return { w, file, out };
}

function checkTailFollows(t: { w: Workload; file: string; out: string }, line: string): void {
  appendFileSync(t.file, `${line}\n`);
  waitFor(`tail to print '${line}'`, () => readFileSync(t.out, "utf8").includes(line), 5000);
  sleepMs(200);
  assert.ok(alive(t.w.pid), `tail is still running: ${readFileSync(t.out, "utf8")}`);
  assert.doesNotMatch(readFileSync(t.out, "utf8"), /tail:/, "tail printed no error");
}

test("tail -f blocked in poll follows its file after a restore", () => {
  const t = startTail();
  try {
    dumpWorkload(t.w);
    assert.deepEqual(warnings(dumpLog(t.w)), []);
    restoreWorkload(t.w);
    checkTailFollows(t, "written after the restore");
  } finally {
    stop(t.w);
  }
});

test("tail -f left running by a dump, then dumped and restored, still follows its file", () => {
  const t = startTail();
  try {
    dumpWorkload(t.w, ["-R"]);
    checkTailFollows(t, "written after the dump -R");
    // Left running, it is back in poll itself, not in restart_syscall (which
    // a later dump could only turn into EINTR).
    waitFor("tail to block in poll again", () => readFileSync(`/proc/${t.w.pid}/syscall`, "utf8").startsWith("7 "));
    dumpWorkload(t.w);
    assert.deepEqual(warnings(dumpLog(t.w)), []);
    restoreWorkload(t.w);
    checkTailFollows(t, "written after the restore");
  } finally {
    stop(t.w);
  }
});
