// mountinfo of a mount namespace with shared, slave and unbindable mounts and
// mount points holding a space, a tab and a backslash.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { parseMountinfo, parseMountinfoLine, decodeOctalEscapes, ProcParseError } from "../../src/proc/index.js";

const fixture = (name: string): string => readFileSync(new URL(`../../../test/fixtures/proc/${name}`, import.meta.url), "utf8");
const mounts = parseMountinfo(fixture("mounts/mountinfo"));
const under = (suffix: string) => {
  const m = mounts.find((x) => x.mountPoint.endsWith(`/mnt/${suffix}`));
  assert.ok(m, suffix);
  return m;
};

test("mountinfo: the root mount and the common fields", () => {
  assert.equal(mounts.length, 27);
  assert.deepEqual(mounts[0], {
    mntId: 43, parentId: 42, major: 254, minor: 0, root: "/", mountPoint: "/", mountOptions: "rw,relatime",
    optionalFields: [], unbindable: false, fsType: "ext4", source: "/dev/vda",
    superOptions: "rw,discard,resv_strict,resuid=65534,resgid=65534",
  });
  const cg = mounts.find((m) => m.fsType === "cgroup2")!;
  assert.deepEqual([cg.mountPoint, cg.source, cg.major, cg.minor], ["/sys/fs/cgroup/unified", "cgroup2", 0, 38]);
});

test("mountinfo: octal escapes decoded in mount points and sources", () => {
  const spaced = under("with space");
  assert.equal(spaced.source, "crest src");
  assert.equal(spaced.superOptions, "rw,size=1024k,mode=750");
  assert.equal(under("tab\there").mountOptions, "ro,relatime");
  const sub = under("subtree");
  assert.deepEqual([sub.root, sub.major, sub.minor], ["/sub dir", spaced.major, spaced.minor], "a bind of a subdirectory");
  assert.equal(under("back\\slash").fsType, "tmpfs");
  assert.equal(decodeOctalEscapes("a\\040b\\011c\\012d\\134e"), "a b\tc\nd\\e");
  assert.equal(decodeOctalEscapes("caf\\303\\251"), "café", "escapes are bytes of UTF-8");
  assert.equal(decodeOctalEscapes("\\x41\\04"), "\\x41\\04", "only three octal digits make an escape");
});

test("mountinfo: shared, master and unbindable propagation", () => {
  const shared = under("with space"), bind = under("bind"), slave = under("slave");
  assert.deepEqual([shared.shared, shared.master, shared.optionalFields], [1, undefined, [{ tag: "shared", id: 1 }]]);
  assert.equal(bind.shared, 1, "a bind of a shared mount joins its peer group");
  assert.deepEqual([slave.shared, slave.master], [2, 1]);
  assert.deepEqual(slave.optionalFields, [{ tag: "shared", id: 2 }, { tag: "master", id: 1 }]);
  assert.equal(under("unbindable").unbindable, true);
  assert.equal(shared.unbindable, false);
  const [a, c] = parseMountinfo(fixture("mounts/mountinfo-chroot"));
  assert.deepEqual([a!.mountPoint, a!.shared, a!.master], ["/a", 3, undefined]);
  assert.deepEqual([c!.mountPoint, c!.shared, c!.master, c!.propagateFrom], ["/c", undefined, 4, 3],
    "a slave of a slave whose master is out of the reader's root sees the nearest visible peer group");
  assert.deepEqual(c!.optionalFields, [{ tag: "master", id: 4 }, { tag: "propagate_from", id: 3 }]);
  const odd = parseMountinfoLine("71 44 0:40 / /mnt/y rw future:9 - fuse.sshfs me@host:/ rw");
  assert.deepEqual([odd.optionalFields, odd.fsType, odd.source], [[{ tag: "other", text: "future:9" }], "fuse.sshfs", "me@host:/"]);
});

test("mountinfo: malformed lines throw ProcParseError", () => {
  assert.throws(() => parseMountinfo("44 43 254:0 / / rw,relatime ext4 /dev/vda rw\n"), /expected six fields/);
  assert.throws(() => parseMountinfo("44 43 254:0 / / rw - ext4 /dev/vda\n"), ProcParseError);
  assert.throws(() => parseMountinfo("44 43 fe:0 / / rw - ext4 /dev/vda rw\n"), /major:minor/);
  assert.throws(() => parseMountinfo("x 43 254:0 / / rw - ext4 /dev/vda rw\n"), /mount id/);
  assert.throws(() => parseMountinfo("44 43 254:0 / / rw shared:x - ext4 /dev/vda rw\n"), /peer group id in shared:x/);
});
