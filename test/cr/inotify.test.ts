// inotify (fds-inotify): watches on a directory, a file and a one-shot
// directory, with wds that do not start at 1, come back with the same wds,
// masks and inodes, as files.img INOTIFY entries crit decodes. And the case
// crest refuses: a watch on a deleted file (criu finds it again through the
// ghost file of the same inode, which the task holds open).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { readImage, IMG, fd_types } from "../../src/images/index.js";
import { CRIT, cycle, imagesDir, type Workload } from "./harness.js";

const IN_MODIFY = 0x2, IN_ATTRIB = 0x4, IN_CREATE = 0x100, IN_DELETE = 0x200, IN_EXCL_UNLINK = 0x04000000, IN_ONESHOT = 0x80000000;

function checkImages(w: Workload): void {
  const ify = readImage(imagesDir(w), IMG.files).filter((f) => f.type === fd_types.INOTIFY).map((f) => f.ify!);
  assert.equal(ify.length, 1, "one inotify description (the dup shares it)");
  const e = ify[0]!;
  assert.ok(e.flags & 0o4000, "O_NONBLOCK");
  assert.deepEqual(e.wd.map((x) => [x.wd, x.mask >>> 0]), [[3, IN_CREATE | IN_DELETE], [5, IN_MODIFY], [6, (IN_ATTRIB | IN_ONESHOT | IN_EXCL_UNLINK) >>> 0]]);
  assert.ok(e.wd.every((x) => x.id === e.id && x.f_handle.bytes > 0 && x.f_handle.handle.length === 16), "each watch has its file handle");
  const r = spawnSync("/usr/bin/python3", [CRIT, "decode", "-i", join(imagesDir(w), "files.img")], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const entries = (JSON.parse(r.stdout) as { entries: Array<{ type: string; ify?: { wd: Array<{ wd: number }> } }> }).entries;
  assert.deepEqual(entries.filter((x) => x.type === "INOTIFY").map((x) => x.ify?.wd.map((y) => y.wd)), [[3, 5, 6]]);
}

test("fds-inotify: watches come back with their wds, masks and inodes", () => cycle("fds-inotify", [], checkImages));

test("fds-inotify in its own PID namespace", () => cycle("fds-inotify", [], checkImages, { ns: "pid,ipc,uts" }));

test("fds-inotify deleted: a watch on a file deleted while open comes back on the file's ghost, with the fd's, and reports a write", () => cycle("fds-inotify", ["deleted"], (w) => {
  const ify = readImage(imagesDir(w), IMG.files).filter((f) => f.type === fd_types.INOTIFY).map((f) => f.ify!);
  const ghosts = readImage(imagesDir(w), IMG.remapFpath, undefined);
  assert.equal(ify.length, 1);
  assert.ok(ghosts.length >= 2, "the open file and the watched inode are each a file remapped to a ghost");
  assert.equal(new Set(ghosts.map((g) => g.remap_id)).size, 1, "one ghost: the same inode");
}));
