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
import { existsSync, readFileSync } from "node:fs";
import { readImage, IMG, fd_types, remap_type } from "../../src/images/index.js";
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

/** The mnt_ns_id of inner's namespace and the ids of its mounts, from the images. */
function innerMounts(w: { dir: string }, dir: string): { ns: number; ids: Set<number>; rootIds: Set<number> } {
  const pstree = readImage(dir, IMG.pstree);
  const rootNs = readImage(dir, IMG.ids, pstree[0]!.pid)[0]!.mnt_ns_id!;
  const ns = readImage(dir, IMG.ids, pstree[1]!.pid)[0]!.mnt_ns_id!;
  void w;
  return { ns, ids: new Set(readImage(dir, IMG.mnts, ns).map((m) => m.mnt_id)), rootIds: new Set(readImage(dir, IMG.mnts, rootNs).map((m) => m.mnt_id)) };
}

test("mntns-nested inotify: the root's watches on a tmpfs only the child's namespace shows, found and put back through that namespace's mount (zdtm inotify01)", () => {
  const w = startWorkload("mntns-nested", ["inotify"], { ns: "pid,mnt" });
  try {
    dumpWorkload(w);
    assert.deepEqual(critDecodeAll(imagesDir(w)), []);
    const inner = innerMounts(w, imagesDir(w));
    const ify = readImage(imagesDir(w), IMG.files).filter((f) => f.type === fd_types.INOTIFY).map((f) => f.ify!);
    assert.equal(ify.length, 1);
    const wds = [...ify[0]!.wd].sort((a, b) => a.wd - b.wd);
    assert.deepEqual(wds.map((x) => x.f_handle.path), [`${w.dir}/n/sub`, `${w.dir}/n/sub/w.txt`], "the watched inodes' paths in inner's namespace");
    for (const x of wds) assert.ok(inner.ids.has(x.f_handle.mnt_id!), `watch ${x.wd} kept with a mount of inner's namespace (${x.f_handle.mnt_id})`);
    const w_txt = readImage(imagesDir(w), IMG.files).find((f) => f.reg?.name === `${w.dir}/n/sub/w.txt`);
    assert.ok(w_txt && inner.ids.has(w_txt.reg!.mnt_id!), "the root's fd of w.txt kept with inner's mount");
    restoreWorkload(w, ["--root", "/"]);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

// In a user namespace of the tree's own the tmpfs of the file is the namespace's, which does not map crest's root: crest makes
// the names there as the file's owner. The root is then a bind of D/u, D bound in it from outside (mntns-nested.c).
for (const [mode, opts] of [["ghost", []], ["remap", ["--link-remap"]]] as const) {
  test(`mntns-nested ${mode} in a user namespace of its own: the removed file on a tmpfs of that namespace made again and linked there as its owner`, () => {
    const w = startWorkload("mntns-nested", [mode], { ns: "pid,mnt,user" });
    try {
      dumpWorkload(w, [...opts, "--external", `mnt[${w.dir}]:D`]);
      assert.deepEqual(critDecodeAll(imagesDir(w)), []);
      restoreWorkload(w, ["--root", `${w.dir}/u`, "--external", `mnt[D]:${w.dir}`, ...opts]);
      assert.equal(finish(w), "PASS");
    } finally {
      stop(w);
    }
  });
}

for (const [mode, ns, opts] of [["ghost", "pid,mnt", []], ["remap", "pid,mnt", ["--link-remap"]]] as const) {
  const zdtm = mode === "ghost" ? "mntns_link_ghost" : "mntns_link_remap";
  test(`mntns-nested ${mode}: a removed file held through mounts of two namespaces that show its directory at different paths is made once and opened through each (zdtm ${zdtm})`, () => {
    const w = startWorkload("mntns-nested", [mode], { ns });
    try {
      dumpWorkload(w, [...opts]);
      assert.deepEqual(critDecodeAll(imagesDir(w)), []);
      const inner = innerMounts(w, imagesDir(w));
      const files = readImage(imagesDir(w), IMG.files);
      const remaps = readImage(imagesDir(w), IMG.remapFpath);
      const held = files.filter((f) => f.reg && [`${w.dir}/g1/F`, `${w.dir}/g2/F`].includes(f.reg.name)).map((f) => f.reg!);
      assert.equal(held.length, 2, "two files.img entries of F");
      assert.ok(inner.rootIds.has(held.find((r) => r.name.endsWith("g1/F"))!.mnt_id!), "g1/F through the root's mount");
      assert.ok(inner.ids.has(held.find((r) => r.name.endsWith("g2/F"))!.mnt_id!), "g2/F through inner's");
      const of = held.map((r) => remaps.find((x) => x.orig_id === r.id));
      if (mode === "ghost") {
        assert.deepEqual(of.map((x) => x?.remap_type), [remap_type.GHOST, remap_type.GHOST]);
        assert.equal(of[0]!.remap_id, of[1]!.remap_id, "one ghost for both");
      } else {
        assert.deepEqual(of.map((x) => x?.remap_type), [remap_type.LINKED, remap_type.LINKED]);
      }
      restoreWorkload(w, ["--root", "/", ...opts]);
      assert.equal(finish(w), "PASS");
    } finally {
      stop(w);
    }
  });
}

for (const [mode, ns, re] of [
  ["inotify", "pid,mnt", /no IN_CREATE of new\.txt from the watch/],
  ["ghost", "pid,mnt", /g1\/F's fd is inode \d+, g2\/F's \d+: not one file/],
  ["remap", "pid,mnt", /g1\/F's fd is inode \d+, g2\/F's \d+: not one file/],
  ["remap", "pid,mnt,user", /g1\/F's fd is inode \d+, g2\/F's \d+: not one file/],
] as const) {
  test(`mntns-nested ${mode} (--ns ${ns}): sabotage 6 makes the workload's check fail after a restore`, () => {
    const w = startWorkload("mntns-nested", [mode], { ns, env: ["CREST_WL_SABOTAGE=6"] });
    try {
      const opts = mode === "remap" ? ["--link-remap"] : [];
      const userns = ns.endsWith("user");
      dumpWorkload(w, [...opts, ...(userns ? ["--external", `mnt[${w.dir}]:D`] : [])]);
      restoreWorkload(w, [...(userns ? ["--root", `${w.dir}/u`, "--external", `mnt[D]:${w.dir}`] : ["--root", "/"]), ...opts]);
      const verdict = finish(w);
      assert.match(verdict, /^FAIL/);
      // In a user namespace the workload logs to out-userns.log (mntns-nested.c).
      const log = ["out.log", "out-userns.log"].map((n) => (existsSync(`${w.dir}/${n}`) ? readFileSync(`${w.dir}/${n}`, "utf8") : "")).join("");
      assert.match(log + verdict, re);
    } finally {
      stop(w);
    }
  });
}

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
