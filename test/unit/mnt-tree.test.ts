// The mount tree of a mount namespace (src/kinds/namespaces/mnt-tree.ts):
// mountinfo lines to mnt_entry as criu writes them, how each mount comes
// back, the order they go into place, peer groups, and the refusals.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseMountinfo } from "../../src/proc/index.js";
import { MS } from "../../src/sys/constants.js";
import { AUTODETECTED, FSTYPE, MountRefusal, MountTree, autodetectExternal, entryOf, kdev, mountFlags, superFlags } from "../../src/kinds/namespaces/mnt-tree.js";

const entries = (text: string) => parseMountinfo(text).map((m) => entryOf(m, FSTYPE[m.fsType] ?? 0));

const NS = `100 50 254:0 /srv/root / rw,relatime - ext4 /dev/vda rw,discard
101 100 0:52 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
102 100 0:54 / /t rw,relatime shared:7 - tmpfs wl rw,size=1024k,mode=751
103 100 0:54 /sub /bd rw,relatime shared:7 - tmpfs wl rw,size=1024k,mode=751
104 100 0:54 / /sl rw,relatime master:7 - tmpfs wl rw,size=1024k,mode=751
105 100 254:0 /srv/root/data /hb ro,relatime - ext4 /dev/vda rw,discard
106 100 0:55 / /a/b rw - tmpfs x rw
107 100 0:56 / /a rw - tmpfs y rw
108 101 0:57 / /proc/sys/fs/fuse/connections rw - fusectl fusectl rw
`;

test("mount and super block options split as criu does", () => {
  assert.equal(mountFlags("rw,nosuid,relatime", "m"), MS.NOSUID | MS.RELATIME);
  assert.equal(mountFlags("ro", "m"), MS.RDONLY | MS.STRICTATIME, "neither relatime nor noatime: strictatime");
  assert.throws(() => mountFlags("rw,weird", "mount 1"), /mount 1 has the mount option weird/);
  assert.deepEqual(superFlags("ro,sync,size=4k,mode=755"), { flags: MS.RDONLY | MS.SYNCHRONOUS, options: "size=4k,mode=755" });
  const [e] = entries("102 100 0:54 / /t rw,relatime shared:7 - tmpfs wl rw,size=1024k\n");
  assert.deepEqual(e, {
    fstype: 5, mnt_id: 102, root_dev: kdev(0, 54), parent_mnt_id: 100, flags: MS.RELATIME | MS.SHARED, root: "/", mountpoint: "/t",
    source: "wl", options: "size=1024k", shared_id: 7, master_id: 0, sb_flags: 0,
  });
});

test("each mount's plan: the root, new file systems, binds of the root and of a file system's root mount", () => {
  const t = new MountTree(entries(NS).filter((e) => e.mnt_id !== 108));
  assert.equal(t.root.mnt_id, 100);
  assert.deepEqual(t.plans.get(100), { how: "root" });
  assert.deepEqual(t.plans.get(101), { how: "new" });
  assert.deepEqual(t.plans.get(102), { how: "new" });
  assert.deepEqual(t.plans.get(103), { how: "bind", from: 102, sub: "sub" });
  assert.deepEqual(t.plans.get(104), { how: "bind", from: 102, sub: "" });
  assert.deepEqual(t.plans.get(105), { how: "bind", from: 100, sub: "data" }, "a bind of the root's file system, relative to the root's root");
  // /a/b was mounted before /a covered it: it goes into place first.
  assert.deepEqual(t.order().map((e) => e.mnt_id), [100, 101, 102, 103, 104, 105, 106, 107]);
  const g = t.groups();
  assert.deepEqual(g.map((x) => [x.shared, x.master, x.mounts.map((m) => m.mnt_id)]), [[7, 0, [102, 103]], [0, 7, [104]]]);
});

test("refusals name the mount and what to do", () => {
  assert.throws(() => new MountTree(entries(NS)), (e: Error) => e instanceof MountRefusal && /mount 108 at \/proc\/sys\/fs\/fuse\/connections \(fusectl fusectl, root \/\): crest does not mount fusectl file systems.*--external mnt\[\/proc\/sys\/fs\/fuse\/connections\]:KEY/.test(e.message));
  assert.throws(() => new MountTree(entries("100 50 254:0 / / rw - ext4 /dev/vda rw\n101 100 254:1 /x /y rw - ext4 /dev/vdb rw\n")),
    /mount 101 at \/y \(ext4 \/dev\/vdb, root \/x\) is a bind mount of a file system the tree's mount namespace does not show from its root/);
  assert.throws(() => new MountTree(entries("100 50 254:0 / / rw - ext4 /dev/vda rw\n101 100 0:5 / /s rw master:9 - tmpfs t rw\n")).groups(),
    /mount 101 at \/s is a slave of peer group 9, which has no mount in the tree's mount namespace .*nor is it bound from the root or an external mount/);
  // Bound from a root that is a slave of the same group: the restore takes the master from --root.
  const fromRoot = new MountTree(entries("100 50 254:0 /srv / rw master:9 - ext4 /dev/vda rw\n101 100 254:0 /srv/x /s rw master:9 - ext4 /dev/vda rw\n")).groups();
  assert.deepEqual(fromRoot.map((g) => [g.master, g.mounts.map((m) => m.mnt_id), g.outside]), [[9, [100, 101], { root: true }]]);
  assert.throws(() => new MountTree(entries("100 50 254:0 / / rw - ext4 /dev/vda rw\n101 100 0:5 / /s rw - tmpfs t rw\n102 100 0:6 / /s rw - tmpfs u rw\n")),
    /mounts 101 and 102 are both mounted on \/s of mount 100/);
  const ext = entries("100 50 254:0 / / rw - ext4 /dev/vda rw\n101 100 254:1 /x /y rw - ext4 /dev/vdb rw\n102 100 254:1 /x/z /w rw - ext4 /dev/vdb rw\n");
  ext[1]!.ext_key = "data";
  const t = new MountTree(ext);
  assert.deepEqual(t.plans.get(101), { how: "external", key: "data", sub: "" });
  assert.deepEqual(t.plans.get(102), { how: "external", key: "data", sub: "z" }, "a bind of an external mount");
});

// crest's own namespace, as --ext-mount-map auto compares the tree's mounts with it.
const HOST = `20 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
21 20 0:60 / /mnt/shared rw shared:40 - tmpfs hs rw
22 20 0:61 / /mnt/master rw shared:41 - tmpfs hm rw
23 20 0:62 /in /mnt/slave rw master:42 - tmpfs hv rw
24 20 0:63 / /mnt/plain rw - tmpfs hp rw
`;

test("--ext-mount-map auto: a mount of a file system crest's namespace shows becomes external, bound from there (criu's autodetection)", () => {
  const tree = entries(`100 50 254:0 /srv/root / rw,relatime - ext4 /dev/vda rw,discard
101 100 0:52 / /proc rw - proc proc rw
102 100 254:0 /srv/data /data rw,relatime - ext4 /dev/vda rw,discard
103 100 0:63 /sub /p rw - tmpfs hp rw
104 100 0:60 / /s rw shared:40 - tmpfs hs rw
105 100 0:60 / /s2 rw shared:90 - tmpfs hs rw
106 100 0:61 / /m rw master:41 - tmpfs hm rw
107 100 0:62 /in/x /v rw master:42 - tmpfs hv rw
108 100 0:61 / /m2 rw master:77 - tmpfs hm rw
`);
  const host = entries(HOST);
  const plain = structuredClone(tree);
  // Private mounts only, without sharing and masters.
  const found = autodetectExternal(plain, host, 100, { sharing: false, masters: false });
  assert.deepEqual(found.map((e) => [e.mnt_id, e.ext_key, e.source]), [[102, AUTODETECTED, "/srv/data"], [103, AUTODETECTED, "mnt/plain/sub"]]);
  assert.equal(plain.find((e) => e.mnt_id === 100)!.ext_key, undefined, "never the root");
  assert.equal(plain.find((e) => e.mnt_id === 101)!.ext_key, undefined, "a file system crest's namespace does not show");
  // With sharing and masters: the shared mount in the outside group stays in it; one in a group of its own is internal sharing;
  // a slave of the outside mount's group, or of its master, is taken; a slave of another group is not.
  const all = structuredClone(tree);
  const more = autodetectExternal(all, host, 100, { sharing: true, masters: true });
  assert.deepEqual(more.map((e) => [e.mnt_id, e.source, e.internal_sharing ?? false]),
    [[102, "/srv/data", false], [103, "mnt/plain/sub", false], [104, "mnt/shared", false], [105, "mnt/shared", true], [106, "mnt/master", false], [107, "mnt/slave/x", false]]);
  assert.equal(all.find((e) => e.mnt_id === 108)!.ext_key, undefined);
  // An external mount given by name is left alone.
  const named = structuredClone(tree);
  named.find((e) => e.mnt_id === 103)!.ext_key = "P";
  assert.deepEqual(autodetectExternal(named, host, 100, { sharing: false, masters: false }).map((e) => e.mnt_id), [102]);

  // The restore binds each from its outside path; a slave of an outside master takes it from there; a shared one joins the outside group.
  // 108 (a slave of a group neither inside nor the outside mount's) is refused by name.
  assert.throws(() => new MountTree(all).groups(), /mount 108 at \/m2 is a slave of peer group 77/);
  const t = new MountTree(all.filter((e) => e.mnt_id !== 108));
  assert.deepEqual(t.plans.get(103), { how: "auto", dir: "/mnt/plain/sub" });
  assert.deepEqual(t.plans.get(102), { how: "auto", dir: "/srv/data" });
  // A bind of an auto-detected mount that is not one itself (a slave of a group inside, without masters) is bound from the same place.
  const slaves = entries(`100 50 254:0 /srv/root / rw,relatime - ext4 /dev/vda rw,discard
101 100 0:63 / /p rw shared:5 - tmpfs hp rw
102 100 0:63 /sub /q rw shared:6 master:5 - tmpfs hp rw
`);
  assert.deepEqual(autodetectExternal(slaves, host, 100, { sharing: true, masters: false }).map((e) => [e.mnt_id, e.internal_sharing]), [[101, true]]);
  assert.deepEqual(new MountTree(slaves).plans.get(102), { how: "auto", dir: "/mnt/plain/sub" });
  const groups = t.groups();
  const g = (shared: number, master: number) => groups.find((x) => x.shared === shared && x.master === master)!;
  assert.equal(g(40, 0).outsidePeer?.mnt_id, 104);
  assert.equal(g(90, 0).outsidePeer, undefined, "internal sharing: a group of its own");
  assert.deepEqual(g(0, 41).outside, { ext: all.find((e) => e.mnt_id === 106) });
});
