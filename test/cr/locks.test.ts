// File locks with --file-locks (files-locked): POSIX locks of a parent and a
// child on one shared description, an OFD lock, a shared flock and a read
// lease go into filelocks.img once each, owned by the right task, and come
// back in that task before it runs; a lock the restore cannot take fails it
// with nothing left alive.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { readImage, IMG } from "../../src/images/index.js";
import {
  alive, critDecodeAll, crest, dumpWorkload, finish, imagesDir, restoreWorkload, startWorkload, stop, waitFor, type Workload,
} from "./harness.js";

const FL = { POSIX: 1, FLOCK: 2, OFD: 4, LEASE: 8 };

/** Dumps w with --file-locks (crit decodes every image); filelocks.img as sorted "flag type owner fd start len", the owner "parent" or "child". */
function dumpedLocks(w: Workload): string[] {
  const parent = w.pid;
  dumpWorkload(w, ["--file-locks"]);
  assert.deepEqual(critDecodeAll(imagesDir(w)), []);
  const child = readImage(imagesDir(w), IMG.pstree).find((e) => e.ppid === parent)!.pid;
  const owner = (pid: number) => (pid === parent ? "parent" : pid === child ? "child" : String(pid));
  return readImage(imagesDir(w), IMG.fileLocks).map((l) => `${l.flag} ${l.type} ${owner(l.pid)} ${l.fd} ${l.start} ${l.len}`).sort();
}

test("files-locked: POSIX (parent and child), OFD, flock and lease locks come back with --file-locks", () => {
  const w = startWorkload("files-locked");
  try {
    assert.deepEqual(dumpedLocks(w), [
      `${FL.POSIX} 0 parent 3 10 20`, `${FL.POSIX} 1 child 3 60 10`, `${FL.POSIX} 1 parent 3 40 10`,
      `${FL.FLOCK} 1 parent 5 0 0`, `${FL.OFD} 1 parent 4 100 0`, `${FL.LEASE} 0 parent 6 0 0`,
    ].sort(), "each lock once (the dup at fd 9 and the child's inherited fds add none), with its owner");
    restoreWorkload(w);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("files-locked: a lock the restore cannot take fails it, nothing left alive", () => {
  const w = startWorkload("files-locked");
  let holder: ChildProcess | undefined;
  try {
    const pids = (): number[] => readImage(imagesDir(w), IMG.pstree).map((e) => e.pid);
    dumpWorkload(w, ["--file-locks"]);
    // Someone else takes the flock of c while the tree is dumped.
    holder = spawn("flock", ["-x", join(w.dir, "c"), "sleep", "60"], { stdio: "ignore" });
    waitFor("the outside flock", () => (readFileSync("/proc/locks", "utf8").includes(`FLOCK  ADVISORY  WRITE ${holder!.pid} `) ? true : null));
    const r = crest(["restore", "-D", imagesDir(w), "-o", "restore.log", "-v4", "-d", "--file-locks"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /take the file lock \(flag 2, type 1, start 0, len 0\) on fd 5 of task \d+/);
    assert.match(r.stderr, /EWOULDBLOCK|EAGAIN|Resource temporarily unavailable/);
    for (const pid of pids()) assert.ok(!alive(pid), `process ${pid} of the failed restore is gone`);
  } finally {
    holder?.kill("SIGKILL");
    stop(w);
  }
});

// Leases being broken (zdtm file_lease02..04): kept with their target type and
// LEASE_BREAKING as criu keeps them, taken and broken again at restore, with no
// break signal of the restore's reaching the task.
const LEASE_BREAKING = 4, F_RDLCK = 0, F_UNLCK = 2;

test("files-leases: leases being broken come back breaking, to the same type, with no signal of the restore's", () => {
  const w = startWorkload("files-leases");
  try {
    assert.deepEqual(dumpedLocks(w), [
      `${FL.LEASE} ${F_UNLCK | LEASE_BREAKING} parent 3 0 0`, `${FL.LEASE} ${F_RDLCK | LEASE_BREAKING} parent 4 0 0`, `${FL.LEASE} ${F_UNLCK | LEASE_BREAKING} parent 5 0 0`,
      `${FL.LEASE} ${F_UNLCK | LEASE_BREAKING} child 6 0 0`,
    ].sort(), "e broken to UNLCK, f to READ, g (shared with the child) once, h the child's");
    restoreWorkload(w, ["--file-locks"]);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("files-leases: the workload sees a lease of the wrong type (sabotage 1)", () => {
  const w = startWorkload("files-leases", [], { env: ["CREST_WL_SABOTAGE=1"] });
  try {
    assert.match(finish(w), /^FAIL: f: the lease is 0, expected 2/);
  } finally {
    stop(w);
  }
});
