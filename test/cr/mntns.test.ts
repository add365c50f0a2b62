// A tree in its own mount namespace (crest run --ns mnt): the mount tree
// from mountinfo into mountpoints-N.img, tmpfs files into
// tmpfs-dev-N.tar.gz, restored under --root with the same mounts, binds,
// propagation and files, checked by the workload itself and by reading
// the restored task's mountinfo from outside; what crest cannot keep is
// refused by name and the tree runs on.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readImage, IMG } from "../../src/images/index.js";
import {
  crest, critDecodeAll, dumpLog, dumpWorkload, finish, imagesDir, procState, restoreWorkload, startWorkload, stop, type Workload,
} from "./harness.js";

/** mountinfo without mount ids, devices and peer group numbers (renumbered in order), sorted. */
function normalMountinfo(pid: number): string[] {
  const lines = readFileSync(`/proc/${pid}/mountinfo`, "utf8").trim().split("\n").map((l) => l.split(" "));
  const mp = new Map(lines.map((w) => [w[0]!, w[4]!]));
  const rows = lines.map((w) => [w[4], mp.get(w[1]!) ?? "-", w[3], ...w.slice(5)].join(" ")).sort();
  const groups = new Map<string, number>();
  return rows.map((r) => r.replace(/\b(shared|master):(\d+)/g, (_m, tag: string, n: string) => {
    if (!groups.has(n)) groups.set(n, groups.size + 1);
    return `${tag}:${groups.get(n)}`;
  }));
}

function start(args: string[] = [], env: string[] = [], ns = "mnt,ipc"): Workload {
  return startWorkload("mntns", args, { ns, ...(env.length ? { env } : {}) });
}

test("mntns: tmpfs with files, binds of a directory and a file, a read-only bind of the root fs, shared/slave/private, proc, devtmpfs, devpts, mqueue, binfmt_misc", () => {
  const w = start();
  try {
    const before = normalMountinfo(w.pid);
    dumpWorkload(w);
    const undecoded = critDecodeAll(imagesDir(w));
    assert.deepEqual(undecoded, []);
    const ids = readImage(imagesDir(w), IMG.ids, w.pid)[0]!;
    const mnts = readImage(imagesDir(w), IMG.mnts, ids.mnt_ns_id!);
    const byPoint = new Map(mnts.map((m) => [m.mountpoint, m]));
    assert.equal(byPoint.get("/proc")?.fstype, 1, "proc");
    assert.equal(byPoint.get("/dev")?.fstype, 3, "devtmpfs");
    assert.equal(byPoint.get(`${w.dir}/bm`)?.fstype, 4, "binfmt_misc");
    assert.match(byPoint.get("/dev/pts")?.options ?? "", /newinstance/, "a devpts of its own is mounted with newinstance");
    const t = byPoint.get(`${w.dir}/t`)!;
    assert.equal(t.fstype, 5);
    assert.ok(existsSync(join(imagesDir(w), `tmpfs-dev-${t.root_dev}.tar.gz.img`)), "the tmpfs's files, as criu names them");
    assert.equal(byPoint.get(`${w.dir}/bd`)?.root, "/sub");
    assert.ok(byPoint.get(`${w.dir}/sh`)!.shared_id! > 0);
    assert.equal(byPoint.get(`${w.dir}/sl`)!.master_id, byPoint.get(`${w.dir}/sh`)!.shared_id);

    const r = crest(["restore", "-D", imagesDir(w), "-o", "restore.log", "-d"]);
    assert.equal(r.code, 1, "a mount namespace needs --root");
    assert.match(r.stderr, /own mount namespace: give --root DIR/);

    restoreWorkload(w, ["--root", "/"]);
    assert.deepEqual(normalMountinfo(w.pid), before);
    assert.equal(finish(w), "PASS");
    assert.deepEqual(readdirTmp(), [], "the restore's yard is gone");
  } finally {
    stop(w);
  }
});

test("mntns with its own PID, IPC and UTS namespaces too: its /proc is its PID namespace's", () => {
  const w = start([], [], "pid,ipc,uts,mnt");
  try {
    const before = normalMountinfo(w.pid);
    dumpWorkload(w);
    restoreWorkload(w, ["--root", "/"]);
    assert.deepEqual(normalMountinfo(w.pid), before);
    assert.match(readFileSync(`/proc/${w.pid}/root/proc/1/status`, "utf8"), /^Name:\tmntns$/m, "PID 1 of its /proc is itself");
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("mntns: --external mnt[MOUNTPOINT]:KEY on dump, mnt[KEY]:DIR on restore binds another directory there; --ext-mount-map is the same", () => {
  const w = start();
  try {
    dumpWorkload(w, ["--external", `mnt[${w.dir}/hb]:HB`]);
    const ids = readImage(imagesDir(w), IMG.ids, w.pid)[0]!;
    const hb = readImage(imagesDir(w), IMG.mnts, ids.mnt_ns_id!).find((m) => m.mountpoint === `${w.dir}/hb`)!;
    assert.equal(hb.ext_key, "HB");
    const r = crest(["restore", "-D", imagesDir(w), "-o", "restore.log", "-d", "--root", "/"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /is the external mount HB: give --external mnt\[HB\]:DIR/);
    mkdirSync(join(w.dir, "src2"));
    writeFileSync(join(w.dir, "src2", "x"), "on the root fs");
    writeFileSync(join(w.dir, "src2", "only-in-src2"), "");
    restoreWorkload(w, ["--root", "/", "--ext-mount-map", `HB:${w.dir}/src2`]);
    assert.ok(existsSync(`/proc/${w.pid}/root${w.dir}/hb/only-in-src2`), "hb is a bind of the directory given on restore");
    // The workload checks hb's files (the same in src2) and sees that one difference in its mountinfo.
    const lines = finish(w).replace(/^FAIL: /, "").split("\n");
    assert.equal(lines.length, 2, lines.join("\n"));
    assert.match(lines[0]!, /^mountinfo: lost '\S+\/hb \/ \S+\/src ro,relatime /);
    assert.match(lines[1]!, /^mountinfo: now has '\S+\/hb \/ \S+\/src2 ro,relatime /);
  } finally {
    stop(w);
  }
});

test("mntns: --skip-mnt leaves a mount out, --enable-fs mounts a file system crest does not know anew", () => {
  const w = start(["ramfs"]);
  try {
    dumpWorkload(w, ["--enable-fs", "ramfs", "--skip-mnt", `${w.dir}/pv`]);
    const ids = readImage(imagesDir(w), IMG.ids, w.pid)[0]!;
    const mnts = readImage(imagesDir(w), IMG.mnts, ids.mnt_ns_id!);
    assert.equal(mnts.find((m) => m.mountpoint === `${w.dir}/pv`), undefined, "skipped");
    const rf = mnts.find((m) => m.mountpoint === `${w.dir}/rf`)!;
    assert.deepEqual([rf.fstype, rf.fsname], [16, "ramfs"], "criu's AUTO with the kernel's name");
    restoreWorkload(w, ["--root", "/"]);
    const restored = readFileSync(`/proc/${w.pid}/mountinfo`, "utf8");
    assert.match(restored, / \/tmp\/\S+\/rf rw,relatime - ramfs wl-ramfs /);
    assert.doesNotMatch(restored, /\/pv /);
    // The workload finds pv missing from its mountinfo.
    assert.match(finish(w), /^FAIL: mountinfo: lost .*\/pv /);
  } finally {
    stop(w);
  }
});

test("mntns hidden: a tmpfs covered whole by another mount keeps its files (read through a helper's copy of the namespace)", () => {
  const w = start(["hidden"]);
  try {
    const before = normalMountinfo(w.pid);
    dumpWorkload(w);
    restoreWorkload(w, ["--root", "/"]);
    assert.deepEqual(normalMountinfo(w.pid), before);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

function readdirTmp(): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((l) => l.includes("/.crest-mntns-"));
}

for (const n of [1, 2]) {
  test(`mntns: sabotage ${n} is caught`, () => {
    const w = start([], [`CREST_WL_SABOTAGE=${n}`]);
    try {
      dumpWorkload(w);
      restoreWorkload(w, ["--root", "/"]);
      assert.match(finish(w), /^FAIL/);
    } finally {
      stop(w);
    }
  });
}

test("mntns mq-queue: the mqueue mount of the tree's own IPC namespace keeps its queue (mqueue.test.ts has the rest)", () => {
  const w = start(["mq-queue"]);
  try {
    const before = normalMountinfo(w.pid);
    dumpWorkload(w);
    restoreWorkload(w, ["--root", "/"]);
    assert.deepEqual(normalMountinfo(w.pid), before);
    assert.deepEqual(readdirSync(`/proc/${w.pid}/root${w.dir}/mq`), ["wl-q"]);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

for (const [arg, what] of [
  ["ramfs", /mount \d+ at \S+\/rf \(ramfs wl-ramfs, root \/\): crest does not mount ramfs file systems/],
] as const) {
  test(`mntns ${arg}: refused by name, the tree runs on untouched`, () => {
    const w = start([arg]);
    try {
      const before = normalMountinfo(w.pid);
      const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log"]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, what);
      assert.match(dumpLog(w), /Dumping FAILED/);
      assert.equal(procState(w.pid).tracer, 0);
      assert.deepEqual(normalMountinfo(w.pid), before);
      assert.equal(finish(w), "PASS");
    } finally {
      stop(w);
    }
  });
}
