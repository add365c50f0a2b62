// A task of the tree in a mount namespace of its own (nested: it unshared
// CLONE_NEWNS after the tree's own was set up): its mounts (a tmpfs with
// files, a bind of a directory of it) kept in mountpoints-ID.img of its
// namespace's id, rebuilt at restore in a namespace it makes as it is born;
// its fd and cwd through those mounts reopened there, and an fd it got from
// its parent through the root's namespace reopened through that one; the root sees none of
// them; a shared tmpfs of the root's, whose copy in the nested namespace is
// its peer, stays one peer group across the two. Checked by the workload itself and from outside through
// /proc/PID/mountinfo.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { readImage, IMG } from "../../src/images/index.js";
import { assertDumpRefused, critDecodeAll, dumpWorkload, finish, imagesDir, restoreWorkload, startWorkload, stop } from "./harness.js";

/** The first child of pid (inner). */
function childOf(pid: number): number {
  const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").split(" ").filter(Boolean).map(Number);
  assert.equal(kids.length, 1, `one child of ${pid}`);
  return kids[0]!;
}

const mountPoints = (pid: number): string[] => readFileSync(`/proc/${pid}/mountinfo`, "utf8").trim().split("\n").map((l) => l.split(" ")[4]!).sort();

test("mntns-nested: a child's own mount namespace (a tmpfs with files, a bind of it, an fd and its cwd there) dumped as its own mountpoints image and made again", () => {
  const w = startWorkload("mntns-nested", [], { ns: "pid,mnt" });
  try {
    const inner = childOf(w.pid);
    const rootPoints = mountPoints(w.pid), innerPoints = mountPoints(inner);
    assert.ok(innerPoints.includes(`${w.dir}/n`) && !rootPoints.includes(`${w.dir}/n`));
    dumpWorkload(w);
    assert.deepEqual(critDecodeAll(imagesDir(w)), []);
    const pstree = readImage(imagesDir(w), IMG.pstree);
    assert.equal(pstree.length, 2);
    const rootIds = readImage(imagesDir(w), IMG.ids, pstree[0]!.pid)[0]!;
    const innerIds = readImage(imagesDir(w), IMG.ids, pstree[1]!.pid)[0]!;
    assert.notEqual(innerIds.mnt_ns_id, rootIds.mnt_ns_id, "inner's namespace has an id of its own");
    const rootMnts = readImage(imagesDir(w), IMG.mnts, rootIds.mnt_ns_id!);
    const innerMnts = readImage(imagesDir(w), IMG.mnts, innerIds.mnt_ns_id!);
    assert.equal(innerMnts.find((m) => m.mountpoint === `${w.dir}/n`)?.fstype, 5, "the nested tmpfs, in the nested namespace's image");
    assert.equal(innerMnts.find((m) => m.mountpoint === `${w.dir}/nb`)?.root, "/sub");
    assert.ok(!rootMnts.some((m) => m.mountpoint === `${w.dir}/n`), "not in the root's");
    const s = rootMnts.find((m) => m.mountpoint === `${w.dir}/s`)!, innerS = innerMnts.find((m) => m.mountpoint === `${w.dir}/s`)!;
    assert.ok(s.shared_id! > 0 && innerS.shared_id === s.shared_id, "s: one peer group across the two namespaces");
    const ids = new Set([...rootMnts, ...innerMnts].map((m) => m.mnt_id));
    assert.equal(ids.size, rootMnts.length + innerMnts.length, "mount ids unique across namespaces");

    restoreWorkload(w, ["--root", "/"]);
    const restoredInner = childOf(w.pid);
    assert.deepEqual(mountPoints(w.pid), rootPoints);
    assert.deepEqual(mountPoints(restoredInner), innerPoints);
    assert.notEqual(readFileSync(`/proc/${restoredInner}/root${w.dir}/n/f.txt`, "utf8"), "", "inner's tmpfs has its file");
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("mntns-nested pivot: the child pivots into its own tmpfs and detaches the old root, its program still mapped from there", () => {
  const w = startWorkload("mntns-nested", ["pivot"], { ns: "pid,mnt" });
  try {
    const innerPoints = mountPoints(childOf(w.pid));
    assert.ok(innerPoints.includes("/") && !innerPoints.includes(`${w.dir}/n`), "inner's root is its tmpfs");
    dumpWorkload(w);
    assert.deepEqual(critDecodeAll(imagesDir(w)), []);
    const pstree = readImage(imagesDir(w), IMG.pstree);
    const innerIds = readImage(imagesDir(w), IMG.ids, pstree[1]!.pid)[0]!;
    const root = readImage(imagesDir(w), IMG.mnts, innerIds.mnt_ns_id!).find((m) => m.mountpoint === "/" && m.fstype === 5);
    assert.ok(root, "the nested namespace's root is a tmpfs");
    restoreWorkload(w, ["--root", "/"]);
    assert.deepEqual(mountPoints(childOf(w.pid)), innerPoints);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("mntns-nested: each sabotage makes the workload's check fail", () => {
  const want = [/nb\/g\.txt reads -1 bytes|inner's mountinfo: lost/, /fd of n\/f\.txt reads 17 bytes/, /the root's mountinfo: now has/, /inner does not see the root's mount on s\/x/, /after: the fd of o\.txt opened in the root's namespace is through inner's own mount/];
  want.forEach((re, i) => {
    const w = startWorkload("mntns-nested", [], { ns: "pid,mnt", env: [`CREST_WL_SABOTAGE=${i + 1}`] });
    try {
      const verdict = finish(w);
      assert.match(verdict, /^FAIL/);
      assert.match(readFileSync(`${w.dir}/out.log`, "utf8") + verdict, re);
    } finally {
      stop(w);
    }
  });
});

test("mntns-nested: a nested mount namespace in a tree without one of its own is refused by name, the tree runs on", () => {
  assertDumpRefused("mntns-nested", ["flat"], /process \d+ is in mnt namespace mnt:\[\d+\], not the tree's .*crest keeps a nested mount namespace only in a tree with a mount namespace of its own/, { ns: "pid" });
});
