// Files beyond the plain ones of areas.test.ts: O_PATH fds (a symlink itself
// among them), a chrooted process, one pipe behind many descriptions (dups and /proc reopens, in
// two processes), file locks, which crest refuses to dump, leaving the
// process as it was, and deleted files (ghosts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { readImage, IMG, fd_types, remap_type } from "../../src/images/index.js";
import { O } from "../../src/sys/constants.js";
import { crest, cycle, dumpWorkload, finish, imagesDir, procState, restoreWorkload, startWorkload, stop } from "./harness.js";

const maps = (pid: number): string => readFileSync(`/proc/${pid}/maps`, "utf8");

test("files-opath: O_PATH fds (file, directory, symlink itself, FIFO, socket file, device) come back O_PATH", () => cycle("files-opath", [], (w) => {
  const regs = readImage(imagesDir(w), IMG.files).filter((f) => f.type === fd_types.REG && f.reg!.flags & O.PATH);
  const link = regs.find((f) => f.reg!.name.endsWith("/link") && f.reg!.flags & O.NOFOLLOW);
  assert.ok(link, "the symlink's fd is a reg-file with O_PATH|O_NOFOLLOW");
  assert.equal(link.reg!.mode! & 0o170000, 0o120000, "its mode is a symlink's");
}));

test("chroot: a chrooted child keeps its root, its working directory in it, and files opened outside and inside", () => cycle("chroot", [], (w) => {
  const files = readImage(imagesDir(w), IMG.files).filter((f) => f.type === fd_types.REG).map((f) => f.reg!.name);
  assert.ok(files.includes(join(w.dir, "jail")), "the jail is a root directory in files.img, named from the namespace's root");
  assert.ok(files.includes(join(w.dir, "jail/sub")), "so is the working directory in it");
}));

test("files-pipes: dups and /proc reopens of both ends of a pipe, shared with a child", () => cycle("files-pipes"));

for (const [kind, what] of [["posix", /holds a file lock \(POSIX READ on bytes 10-29\)/], ["ofd", /holds a file lock \(OFDLCK WRITE on bytes 100-EOF\)/], ["flock", /holds a file lock \(FLOCK WRITE on the whole file\)/], ["lease", /holds a file lock \(LEASE READ on the whole file\)/]] as const) {
  test(`files-locks ${kind}: a held lock is refused by name, the process untouched`, () => {
    const w = startWorkload("files-locks", [kind]);
    try {
      const before = maps(w.pid);
      const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log"]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, new RegExp(`fd 3 of process ${w.pid} \\(${w.dir}/locked\\) `));
      assert.match(r.stderr, what);
      assert.match(r.stderr, /dumping file locks needs --file-locks/);
      assert.match(readFileSync(join(imagesDir(w), "dump.log"), "utf8"), /Dumping FAILED/);
      assert.equal(maps(w.pid), before, "no mapping left behind");
      assert.equal(procState(w.pid).tracer, 0);
      assert.equal(finish(w), "PASS");
    } finally {
      stop(w);
    }
  });
}

test("files-ghost: deleted files (data, sparse, mapped, name reused, removed cwd) come back as ghosts and go again", () => cycle("files-ghost", [], (w) => {
  const dir = imagesDir(w);
  const remaps = readImage(dir, IMG.remapFpath);
  const files = readImage(dir, IMG.files);
  const ghosts = new Set(remaps.map((r) => r.remap_id));
  assert.ok(remaps.every((r) => r.remap_type === remap_type.GHOST), "every remap is a ghost");
  // data (one inode, three descriptions), sparse, mapped (fd and two mappings), reused, gone.
  assert.equal(ghosts.size, 5, "one ghost per deleted inode");
  const nameOf = (r: { orig_id: number }) => files.find((f) => f.id === r.orig_id)!.reg!.name;
  assert.equal(remaps.filter((r) => nameOf(r).endsWith("/g/data")).length, 2, "the dup shares the first open's entry");
  const ghostOf = (name: string) => readImage(dir, IMG.ghostFile, remaps.find((r) => nameOf(r).endsWith(`/g/${name}`))!.remap_id);
  const data = ghostOf("data").entry;
  assert.equal(data.mode, 0o104751);
  assert.deepEqual([data.uid, data.gid], [1234, 5678]);
  assert.deepEqual(data.mtim, { tv_sec: 1200000000n, tv_usec: 987654n });
  const sparse = ghostOf("sparse");
  assert.deepEqual(sparse.chunks!.map((c) => [c.chunk.off, c.chunk.len]), [[0n, 4096n], [1048576n, 8192n]], "holes are not dumped");
  assert.equal(ghostOf("gone").entry.mode & 0o170000, 0o040000, "the removed cwd is a ghost directory");
  assert.deepEqual(readdirSync(join(w.dir, "g")), ["reused"], "nothing left in g/ after the dump");
}));

test("fifo-ghost: a deleted FIFO (read-write, read, O_PATH, a child's write end) comes back with its data and goes again", () => cycle("fifo-ghost", [], (w) => {
  const dir = imagesDir(w);
  const files = readImage(dir, IMG.files);
  const remaps = readImage(dir, IMG.remapFpath);
  const fifos = files.filter((f) => f.type === fd_types.FIFO);
  assert.equal(fifos.length, 3, "O_RDWR, O_RDONLY and the child's O_WRONLY are fifo entries");
  assert.equal(new Set(fifos.map((f) => f.fifo!.pipe_id)).size, 1, "one FIFO");
  const ghosts = new Set(remaps.map((r) => r.remap_id));
  assert.equal(ghosts.size, 1, "one ghost for the inode, the O_PATH fd's included");
  assert.ok(fifos.every((f) => remaps.some((r) => r.orig_id === f.fifo!.regf_id)), "every FIFO's reg-file is remapped to it");
  const g = readImage(dir, IMG.ghostFile, [...ghosts][0]!);
  assert.equal(g.entry.mode, 0o010640);
  assert.deepEqual([g.entry.uid, g.entry.gid], [1234, 5678]);
  assert.ok(!g.data?.length && !g.chunks?.length, "a FIFO ghost has no contents");
  assert.equal(readImage(dir, IMG.fifoData)[0]!.entry.bytes, 5000);
  assert.deepEqual(readdirSync(join(w.dir, "f")), [], "nothing left in f/ after the dump");
}));

test("files-ghost large: over the ghost limit the dump is refused by name, the process untouched; --ghost-limit raises it", () => {
  const w = startWorkload("files-ghost", ["large"]);
  const limit = (size: string) => crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log", "-R", "--ghost-limit", size]);
  try {
    const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`fd \\d+ of process ${w.pid} is the deleted file ${w.dir}/g/big, which takes \\d+ bytes on disk \\(size 2097152\\), more than the ghost limit of 1048576 bytes; raise it with --ghost-limit`));
    assert.equal(procState(w.pid).tracer, 0);
    assert.match(limit("2000K").stderr, /more than the ghost limit of 2048000 bytes/);
    assert.equal(limit("3M").code, 0, "3 MiB is enough");
    assert.equal(procState(w.pid).tracer, 0);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("files-ghost: a failed restore leaves no ghost behind; the next one works", () => {
  const w = startWorkload("files-ghost");
  try {
    dumpWorkload(w);
    for (const point of ["restore:memory", "restore:files", "restore:fs"]) {
      const r = crest(["restore", "-D", imagesDir(w), "-d"], { CREST_FAULT: point });
      assert.equal(r.code, 1, `restore with ${point} fails`);
      assert.match(r.stderr, new RegExp(`injected fault at ${point}`));
      assert.deepEqual(readdirSync(join(w.dir, "g")), ["reused"], `no ghost left after ${point}`);
    }
    restoreWorkload(w);
    assert.deepEqual(readdirSync(join(w.dir, "g")), ["reused"], "the ghosts are gone once restored");
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

// runc passes --evasive-devices: a container's /dev is made anew at each start, so a device's path may lead to another
// node of the same device number by dump time. Refused without it; with it, dumped by that path, as criu does.
test("--evasive-devices: an fd of /dev/null whose path now names another node of the same device is dumped by the path", () => {
  const dir = mkdtempSync("/tmp/crest-evasive-");
  const node = join(dir, "null");
  const mknod = (): void => void assert.equal(spawnSync("mknod", ["-m", "666", node, "c", "1", "3"]).status, 0);
  mknod();
  const fd = openSync(node, "r+");
  const w = startWorkload("loop", [], { fds: [fd] });
  closeSync(fd);
  try {
    // The node the fd holds covered by another of the same device (as a container's /dev covers the host's).
    assert.equal(spawnSync("mount", ["-t", "tmpfs", "evasive", dir]).status, 0);
    mknod();
    const refused = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log"]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr + readFileSync(join(imagesDir(w), "dump.log"), "utf8"), /that path now leads elsewhere/);
    assert.equal(procState(w.pid).tracer, 0, "the refused dump left the workload untraced");
    dumpWorkload(w, ["--evasive-devices"]);
    restoreWorkload(w);
    const st = statSync(`/proc/${w.pid}/fd/3`);
    assert.deepEqual([readlinkSync(`/proc/${w.pid}/fd/3`), st.isCharacterDevice(), st.rdev], [node, true, statSync("/dev/null").rdev]);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
    spawnSync("umount", [dir]);
    rmSync(dir, { recursive: true, force: true });
  }
});
