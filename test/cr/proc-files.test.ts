// Files under /proc/PID of the tree's own processes and threads (icewm's
// /proc/self/net/dev): restored as the same file of the restored process,
// in crest's PID namespace and in a tree with its own, where the PID /proc
// names the process by changes with every restore.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { readImage, IMG, fd_types, type reg_file_entry } from "../../src/images/index.js";
import { assertDumpRefused, crest, critDecodeAll, cycle, finish, imagesDir, startWorkload, stop, waitTreeGone, type Workload } from "./harness.js";

/** The reg-file entries under /proc/N of the dump in `dir`. */
function procEntries(dir: string): reg_file_entry[] {
  return readImage(dir, IMG.files).filter((f) => f.type === fd_types.REG && /^\/proc\/\d+/.test(f.reg!.name)).map((f) => f.reg!);
}

/**
 * Each of the workload's /proc files names its process (or thread) by the
 * PID crest saw, `outside`, and by its PID in the tree, `inside`: the root's
 * files proc_vpid `inside`; the second thread's stat a proc_vtid too.
 */
function checkProcEntries(dir: string, outside: number, inside: number): void {
  const regs = procEntries(dir);
  const own = regs.filter((r) => r.name.startsWith(`/proc/${outside}/`) || r.name === `/proc/${outside}`);
  for (const tail of ["/net/dev", "/status", "/task/" + String(outside) + "/comm", ""]) {
    const r = own.find((e) => e.name === `/proc/${outside}${tail}`);
    assert.ok(r, `files.img has /proc/${outside}${tail}: ${regs.map((e) => e.name).join(", ")}`);
    assert.equal(r.proc_vpid, inside, `${r.name}: proc_vpid`);
    assert.equal(r.proc_vtid, tail.startsWith("/task/") ? inside : undefined, `${r.name}: proc_vtid`);
  }
  const thread = own.find((e) => /\/task\/\d+\/stat$/.test(e.name));
  assert.ok(thread, "the second thread's stat is in files.img");
  assert.equal(thread.proc_vpid, inside);
  assert.ok(thread.proc_vtid !== undefined && thread.proc_vtid !== inside, `the second thread's stat has its own proc_vtid (${thread.proc_vtid})`);
  // The child's fd of its parent's status (PPid as /proc names it): the same process.
  assert.equal(regs.filter((e) => e.name === `/proc/${outside}/status`).length, 2, "the child's /proc/PARENT/status is a description of its own");
}

test("files-proc: its own /proc files (net/dev, status, a thread's stat, thread-self, the directory, its parent's from a child) read the restored process's", () => {
  cycle("files-proc", [], (w) => checkProcEntries(imagesDir(w), w.pid, w.pid));
});

test("files-proc in its own PID namespace: the paths name the restored processes under their new PIDs outside", () => {
  cycle("files-proc", [], (w) => checkProcEntries(imagesDir(w), w.pid, 1), { ns: "pid,ipc,uts" });
});

test("files-proc in its own PID namespace, three checkpoints in a row (each restore's PIDs outside differ)", () => {
  const w: Workload = startWorkload("files-proc", [], { ns: "pid,ipc,uts" });
  try {
    for (let i = 0; i < 3; i++) {
      const dir = imagesDir(w, `imgs${i}`);
      const before = w.pid;
      const r = crest(["dump", "-t", String(w.pid), "-D", dir, "-o", "dump.log", "-v4"]);
      assert.equal(r.code, 0, `dump ${i}: ${r.stderr}`);
      waitTreeGone(w, dir);
      assert.deepEqual(critDecodeAll(dir), []);
      checkProcEntries(dir, before, 1);
      const pidfile = `${w.dir}/restored-${i}.pid`;
      const rr = crest(["restore", "-D", dir, "-o", "restore.log", "-v4", "-d", "--pidfile", pidfile]);
      assert.equal(rr.code, 0, `restore ${i}: ${rr.stderr}`);
      w.pid = Number(readFileSync(pidfile, "utf8"));
      assert.notEqual(w.pid, before, "the root has another PID outside after the restore");
    }
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("files-proc dead: a file of the /proc directory of a process reaped since comes back (a stand-in has the PID while it is opened), and still reads ESRCH", () => cycle("files-proc", ["dead"]));

test("files-proc dead in a PID namespace of its own, with crest's /proc: refused by name, the process untouched", () => {
  assertDumpRefused("files-proc", ["dead"], /fd \d+ of process \d+ is \/proc\/\d+\/status, of a process that has exited, numbered by a \/proc of another PID namespace than the tree's/, { ns: "pid" });
});
