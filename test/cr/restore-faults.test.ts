// A restore that fails at any step leaves nothing behind (criu's
// CRIU_FAULT idea, as crest's CREST_FAULT): one dump of a workload holding a
// little of everything (mixed: files, a pipe, unix sockets and a socket file,
// SysV objects in its own IPC namespace, a flock, a TCP connection), then one
// restore failing at each point of RESTORE_FAULT_POINTS, each with criu's exit
// code and the fault named. After each: no task alive with the tree's PIDs,
// no process left to this (subreaper) test, no mount or mount yard of crest's,
// no new file in the workload's directory (socket file, pidfile) or its images,
// no SysV object out here, no file lock on its file, and the network lock as
// the dump left it (until the restore lifted it: from there on a failure loses
// the connections, as with criu). Then the same images restore and the
// workload finds everything as it was.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { sleepMs } from "../../src/sys/syscalls.js";
import { IMG, readImage } from "../../src/images/index.js";
import { RESTORE_FAULT_POINTS, afterNetworkUnlock } from "../../src/pipelines/restore/fault-points.js";
import { alive, crest, dumpLog, dumpWorkload, finish, imagesDir, restoreWorkload, startWorkload, stop, type Workload } from "./harness.js";

const OPTS = ["--file-locks", "--tcp-established"];

/** The network-lock tables (nftables) and rules (iptables) there are now. */
function netLocks(): string[] {
  const nft = spawnSync("nft", ["list", "tables"], { encoding: "utf8" }).stdout.split("\n").filter((l) => l.includes("CRIU-"));
  const ipt = ["iptables", "ip6tables"].flatMap((c) => spawnSync(c, ["-w", "-S"], { encoding: "utf8" }).stdout.split("\n").filter((l) => l.includes("0xc114")));
  return [...nft, ...ipt];
}

/** Processes whose parent is this test (the harness makes it a subreaper: a stub orphaned by crest would come here). */
function ourChildren(): string[] {
  return readdirSync("/proc").filter((d) => /^\d+$/.test(d)).flatMap((d) => {
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      return ppid === process.pid ? [`${d} ${stat.slice(stat.indexOf("("), stat.lastIndexOf(")") + 1)}`] : [];
    } catch {
      return [];
    }
  });
}

/** Files under dir, recursively, with their types (a socket file shows as such). */
function listing(dir: string, skip: (name: string) => boolean = () => false): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((f) => !skip(f)).sort().map((f) => {
    const st = statSync(join(dir, f), { throwIfNoEntry: false });
    return `${f} ${st?.isSocket() ? "socket" : st?.isDirectory() ? "dir" : "file"}`;
  });
}

/** Everything a failed restore could leave behind, outside the tree's own namespaces. */
function leftovers(wdir: string, lockIno: bigint) {
  return {
    children: ourChildren(),
    mounts: readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((l) => l.includes("crest")),
    yards: readdirSync("/tmp").filter((f) => f.startsWith(".crest-mntns-") || f.startsWith("crest-net-")),
    // The workload's directory, its images but their restore log.
    files: listing(wdir, (f) => f === "imgs/restore.log"),
    // SysV objects of the workload's keys (0x5eed, 0x5eee) in this IPC namespace: its own died with it.
    sysv: ["shm", "sem", "msg"].flatMap((k) => readFileSync(`/proc/sysvipc/${k}`, "utf8").split("\n").filter((l) => / (24301|24302) /.test(` ${l.trim().split(/\s+/)[0]} `))),
    fileLocks: readFileSync("/proc/locks", "utf8").split("\n").filter((l) => l.includes(`:${lockIno} `)),
  };
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

test("restore-faults: every point lists a distinct name", () => {
  assert.equal(new Set(RESTORE_FAULT_POINTS).size, RESTORE_FAULT_POINTS.length);
  assert.ok(RESTORE_FAULT_POINTS.includes("restore:forked") && RESTORE_FAULT_POINTS.includes("restore:tcp-repair"));
});

/**
 * Dumps the workload once, then fails a restore of its images at every point
 * and checks what is left each time; then restores it for good.
 */
function faultEveryPoint(w: Workload, dumpOpts: string[], restoreOpts: string[], lockFile?: string): void {
  const before = netLocks();
  let ours: string[] = [];
  try {
    dumpWorkload(w, dumpOpts);
    const dir = imagesDir(w);
    ours = netLocks().filter((l) => !before.includes(l));
    const tcp = dumpOpts.includes("--tcp-established");
    assert.equal(ours.length, tcp ? 1 : 0, "the dump locked the network of its connection");
    // In the tree's own PID namespace the images' PIDs are not PIDs out here: ourChildren() sees its root.
    const pids = readImage(dir, IMG.pstree)[0]!.pid === w.pid ? readImage(dir, IMG.pstree).flatMap((e) => e.threads) : [];
    const lockIno = lockFile ? statSync(join(w.dir, lockFile), { bigint: true }).ino : -1n;
    const clean = leftovers(w.dir, lockIno);
    const pidfile = join(w.dir, "fault.pid");
    for (const point of RESTORE_FAULT_POINTS) {
      if (point === "restore:tcp-repair" && !tcp) continue;
      const r = crest(["restore", "-D", dir, "-o", "restore.log", "-v4", "-d", "--pidfile", pidfile, ...restoreOpts], { CREST_FAULT: point });
      assert.equal(r.code, 1, `${point}: exit code ${r.code}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`injected fault at ${escape(point)}`), point);
      assert.doesNotMatch(r.stderr, /^\s+at /m, `${point}: no JavaScript stack`);
      const log = dumpLog(w, "restore.log");
      assert.match(log, new RegExp(`injected fault at ${escape(point)}`), `${point}: the log names the fault`);
      assert.match(log, /Restoring FAILED/, `${point}: the log says the restore failed`);
      for (const pid of pids) assert.equal(alive(pid), false, `${point}: PID ${pid} of the tree is not alive`);
      // Another run of crest on this machine may have a yard of its own for a moment: a leak is still there a while later.
      let left = leftovers(w.dir, lockIno);
      for (let i = 0; i < 20 && !isDeepStrictEqual(left, clean); i++) {
        sleepMs(100);
        left = leftovers(w.dir, lockIno);
      }
      assert.deepEqual(left, clean, `${point}: nothing left behind`);
      assert.equal(existsSync(pidfile), false, `${point}: no pidfile of a failed restore`);
      const locked = netLocks().filter((l) => ours.includes(l)).length;
      assert.equal(locked, tcp && !afterNetworkUnlock(point) ? 1 : 0, `${point}: the network lock ${afterNetworkUnlock(point) ? "is lifted" : "stays for the next restore"}`);
    }
    restoreWorkload(w, restoreOpts);
    assert.equal(finish(w), "PASS");
    assert.deepEqual(netLocks().filter((l) => !before.includes(l)), [], "no network lock left");
  } finally {
    stop(w);
    // A test that failed before its restore leaves the dump's lock: lifted here, as nothing will restore these images.
    for (const l of netLocks().filter((x) => ours.includes(x) && x.startsWith("table "))) spawnSync("nft", ["delete", ...l.split(" ").slice(0, 3)]);
  }
}

test("restore-faults: files, pipe, unix sockets, SysV, flock and a TCP connection: nothing left behind at any point, then restored", () => {
  const w = startWorkload("mixed", ["tcp"], { ns: "ipc" });
  assert.ok(listing(w.dir).includes("sock socket"), "the socket file is there");
  faultEveryPoint(w, OPTS, OPTS, "lock");
});

test("restore-faults: a tree with its own PID, IPC, UTS, mount and network namespaces: nothing left behind at any point, then restored", () => {
  faultEveryPoint(startWorkload("mntns", [], { ns: "pid,ipc,uts,mnt,net", loUp: true }), [], ["--root", "/"]);
});

for (const n of [1, 2]) {
  test(`restore-faults: mixed's sabotage ${n} is caught`, () => {
    const w = startWorkload("mixed", [], { ns: "ipc", env: [`CREST_WL_SABOTAGE=${n}`] });
    try {
      dumpWorkload(w, ["--file-locks"]);
      restoreWorkload(w, ["--file-locks"]);
      assert.match(finish(w), n === 1 ? /^FAIL: pipe/ : /^FAIL: lock: a new description could flock it/);
    } finally {
      stop(w);
    }
  });
}
