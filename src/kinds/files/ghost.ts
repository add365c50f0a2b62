// Ghost files: files open (or mapped, or the cwd) in a task after their last
// name was removed. As CRIU does, each such inode is dumped once to
// ghost-file-ID.img (owner, mode, times, and for a regular file its data,
// sparse files as chunks found with SEEK_DATA/SEEK_HOLE; a FIFO's data goes
// to fifo-data.img as for any FIFO), and remap-fpath.img
// ties every files.img entry of it to its ghost. At restore crest recreates
// the file at its old path (or a name beside it if that is taken), the tasks
// open it there like any file, and it is removed again once every task has
// what it needs. Held through mounts of two mount namespaces that show its
// directory at different paths (zdtm's mntns_link_ghost), it is made once
// and linked where the other namespace needs it, through a mount that
// shows both directories (linkGhost). On a file system of the tree's user
// namespace, which does not map crest's root, crest makes names as the
// file's owner (asOwner).
// A file whose name was removed while another name of it remains is not a
// ghost: with --link-remap it is linked back at dump under a new name in
// the directory it was in (link_remap.ID, criu's linked remap: a second
// files.img entry of that name, remap type LINKED), opened by that name at
// restore and the name removed once every task has opened it. A failed
// dump removes the names it made.
import {
  closeSync, fchownSync, fchmodSync, ftruncateSync, lchownSync, chmodSync, lstatSync, mkdirSync, openSync,
  readFileSync, readSync, rmdirSync, statSync, symlinkSync, unlinkSync, writeSync, constants as FS,
} from "node:fs";
import { dirname, basename } from "node:path";
import type { DumpRun, RestoreRun } from "../context.js";
import { dumpState, restoreState, UnsupportedError } from "../context.js";
import { IMG, fd_types, remap_type, type ghost_file_entry, type mnt_entry, type remap_file_path_entry, type GhostFile } from "../../images/index.js";
import { AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_FOLLOW, AT_SYMLINK_NOFOLLOW, MEM_MAJOR, MOUNT_ATTR_RDONLY, O, OPEN_TREE_CLONE, SEEK, SYS } from "../../sys/constants.js";
import { native } from "../../sys/native.js";
import { check } from "../../sys/errno.js";
import { ownedAtRestore, treePath } from "../namespaces/owned.js";
import { imageMounts, nestedHolderOfMount, taskOfNamespace } from "../namespaces/mnt.js";
import { cutRoot, isSubPath, kdev } from "../namespaces/mnt-tree.js";
import { parseMountinfo, type MountInfo } from "../../proc/index.js";
import { takeFd } from "../sockets/unix.js";
import type { Remote } from "../../remote/remote.js";

/** Below this size CRIU writes the data raw, without chunks. */
const CHUNKS_THRESH = 3 * 4096;
const ENXIO = 6, ENOENT = 2, EXDEV = 18, EROFS = 30, EOVERFLOW = 75;

type BigStats = ReturnType<typeof statBig>;
const statBig = (p: string) => statSync(p, { bigint: true });
const lstatBig = (p: string) => lstatSync(p, { bigint: true });

const S_IFMT = 0o170000n, S_IFREG = 0o100000n, S_IFDIR = 0o040000n, S_IFLNK = 0o120000n, S_IFCHR = 0o020000n, S_IFIFO = 0o010000n;

// --- dump -------------------------------------------------------------------

/** Dump: ghost ids by "dev:ino", and remap-fpath.img's entries. */
const dumped = dumpState("ghosts", () => ({ byInode: new Map<string, number>(), remaps: [] as remap_file_path_entry[], next: 1 }));

/** Writes remap-fpath.img, once every task is dumped, if any file was deleted. */
export function finishGhostsDump(run: DumpRun): void {
  const { remaps } = run.state(dumped);
  if (remaps.length) run.images.write(IMG.remapFpath, undefined, remaps);
}

/**
 * Stats the deleted file behind `via` (a /proc link) and refuses what
 * crest cannot bring back.
 */
export function statDeleted(via: string, path: string, what: string, limit: number, linkRemap = false): BigStats {
  let st: BigStats;
  try {
    // The /proc link jumps to the inode itself, a symlink (O_PATH|O_NOFOLLOW fd) included.
    st = statBig(via);
  } catch (e) {
    throw new UnsupportedError(`${what} (the deleted file ${path}) cannot be examined: ${(e as Error).message}`);
  }
  // Kernel-internal files named like paths (the AIO ring is "/[aio]").
  if (path === "/[aio]") throw new UnsupportedError(`${what} is an AIO ring (io_setup); crest does not support AIO yet`);
  if (path.startsWith("/[")) throw new UnsupportedError(`${what} is the kernel object ${path}; crest does not support it yet`);
  const type = st.mode & S_IFMT;
  if (st.nlink > 0n && type !== S_IFDIR) {
    if (linkRemap) return st;
    throw new UnsupportedError(`${what} is ${path}, a path that was removed while the file still has ${st.nlink} other link(s); give --link-remap to have it linked back under a temporary name, as criu asks`);
  }
  if (type === S_IFCHR) {
    const major = Number((st.rdev >> 8n) & 0xfffn);
    if (major !== MEM_MAJOR) throw new UnsupportedError(`${what} is the deleted character device ${path} (${major}:${st.rdev & 0xffn}); crest supports only memory devices such as /dev/null so far`);
  } else if (type !== S_IFREG && type !== S_IFDIR && type !== S_IFLNK && type !== S_IFIFO) {
    const kind = type === 0o140000n ? "socket" : type === 0o060000n ? "block device" : "special file";
    throw new UnsupportedError(`${what} is the deleted ${kind} ${path}; crest does not support deleted ${kind}s yet`);
  }
  const used = st.blocks * 512n;
  if (type === S_IFREG && used > BigInt(limit)) {
    throw new UnsupportedError(
      `${what} is the deleted file ${path}, which takes ${used} bytes on disk (size ${st.size}), more than the ghost limit of ${limit} bytes; ` +
      "raise it with --ghost-limit",
    );
  }
  return st;
}

const timeval = (ns: bigint) => ({ tv_sec: ns / 1_000_000_000n, tv_usec: (ns % 1_000_000_000n) / 1000n });

/** The data extents of a file: SEEK_DATA/SEEK_HOLE where the file system knows them, else the whole file. */
function extents(fd: number, size: number, what: string): Array<{ off: number; len: number }> {
  const out: Array<{ off: number; len: number }> = [];
  let hole = 0;
  while (hole < size) {
    const data = native.syscall(SYS.lseek, fd, hole, SEEK.DATA);
    if (data === -ENXIO) break;
    if (data < 0) {
      if (hole !== 0) check(data, `find the data of ${what}`);
      return [{ off: 0, len: size }];
    }
    hole = Math.min(check(native.syscall(SYS.lseek, fd, data, SEEK.HOLE), `find the holes of ${what}`), size);
    if (hole > data) out.push({ off: data, len: hole - data });
  }
  return out;
}

function readAt(fd: number, off: number, len: number): Buffer {
  const b = Buffer.alloc(len);
  let done = 0;
  while (done < len) {
    const n = readSync(fd, b, done, len - done, off + done);
    if (n === 0) throw new Error(`file ended at ${off + done} while reading ${len} bytes at ${off}`);
    done += n;
  }
  return b;
}

/** readlinkat(fd, "") on an O_PATH fd of the symlink itself. */
function symlinkTarget(via: string): string {
  // Without O_NOFOLLOW: the /proc link itself is followed, to the symlink, which is not.
  const fd = openSync(via, O.PATH);
  try {
    const buf = Buffer.alloc(4097);
    const n = check(native.syscall(SYS.readlinkat, fd, "", buf, buf.length), `read the deleted symlink ${via}`);
    return buf.subarray(0, n).toString();
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes the ghost of the deleted file behind `via` once per inode and ties
 * files.img entry `fileId` to it. `st` comes from statDeleted.
 */
export function dumpGhost(run: DumpRun, fileId: number, via: string, path: string, st: BigStats, what: string, mountNs?: number, mntId?: number): void {
  const s = run.state(dumped);
  const key = `${st.dev}:${st.ino}`;
  let id = s.byInode.get(key);
  // One ghost is made again once, in the directory of its first path: held through a mount of another mount namespace too,
  // where that directory is not the same one, the restore links it into this one's through a mount that shows both (criu's
  // rfi_remap links through the mount the two are bound from); without one it is refused here.
  const first = ghostNamespaces.get(s)?.get(key);
  // Seen from the namespace of the mount: the root's through the root task (a nested task may hold an fd of the root's mounts).
  const pid = mountNs === run.root.ids.mnt_ns_id ? String(run.root.pid) : /^\/proc\/(\d+)\//.exec(via)?.[1];
  if (id !== undefined && mountNs !== undefined && first !== undefined && first.ns !== mountNs && !sameDirIn(dirname(first.path), first.pid, pid)) {
    const all = run.state(mountsOfTree);
    const a = first.mntId === undefined ? undefined : all.get(first.mntId)?.m, b = mntId === undefined ? undefined : all.get(mntId)?.m;
    const common = a && b && commonMount([...all.values()].map((x) => asMount(x.m)), asMount(a), first.path, asMount(b), path);
    if (!common) {
      throw new UnsupportedError(`${what} is ${path}, a removed file also held as ${first.path} through a mount of another mount namespace of the tree (${first.ns}, this one ${mountNs}), ` +
        `whose directory this namespace does not show at that path, and no mount of the tree shows both directories to link it through; crest cannot make the removed file again in both`);
    }
    run.log.info(`${what}: ${path} is the ghost of ${first.path} too; the restore links it there through mount ${common.mntId} (${common.mountpoint})`);
  }
  if (mountNs !== undefined && pid !== undefined) {
    const m = ghostNamespaces.get(s) ?? new Map<string, { ns: number; pid: string; path: string; mntId?: number }>();
    if (!m.has(key)) m.set(key, { ns: mountNs, pid, path, mntId });
    ghostNamespaces.set(s, m);
  }
  if (id === undefined) {
    id = s.next++;
    const type = st.mode & S_IFMT;
    const entry: ghost_file_entry = {
      uid: Number(st.uid), gid: Number(st.gid), mode: Number(st.mode),
      dev: Number(st.dev & 0xffffffffn), ino: st.ino,
      ...(type === S_IFCHR ? { rdev: Number(st.rdev & 0xffffffffn) } : {}),
      atim: timeval(st.atimeNs), mtim: timeval(st.mtimeNs),
    };
    const g: GhostFile = { entry };
    if (type === S_IFLNK) entry.symlnk_target = symlinkTarget(via);
    if (type === S_IFREG) {
      const size = Number(st.size);
      const fd = openSync(via, "r");
      try {
        if (size >= CHUNKS_THRESH) {
          entry.chunks = true;
          entry.size = st.size;
          g.chunks = extents(fd, size, `${what} (${path})`).map((e) => ({ chunk: { off: BigInt(e.off), len: BigInt(e.len) }, data: readAt(fd, e.off, e.len) }));
        } else {
          g.data = readAt(fd, 0, size);
        }
      } finally {
        closeSync(fd);
      }
    }
    run.images.write(IMG.ghostFile, id, g);
    s.byInode.set(key, id);
    run.log.info(`${what}: deleted ${path} dumped as ghost ${id}`);
  }
  s.remaps.push({ orig_id: fileId, remap_id: id, remap_type: remap_type.GHOST });
}

/** The mount namespace each ghost (by "dev:ino") was first held through, by which task, at which path and mount, per dump. */
const ghostNamespaces = new WeakMap<object, Map<string, { ns: number; pid: string; path: string; mntId?: number }>>();

/** Dump: the mounts of every mount namespace of the tree by id, each with a task (pid) of its namespace. */
export const mountsOfTree = dumpState("mounts of the tree", (run) => {
  const out = new Map<number, { m: MountInfo; pid: number }>();
  const seen = new Set<number | undefined>();
  for (const t of run.tasks) {
    // A zombie has no mount namespace left to read (its mountinfo: EINVAL).
    if (t.zombie || seen.has(t.ids.mnt_ns_id)) continue;
    seen.add(t.ids.mnt_ns_id);
    for (const m of parseMountinfo(readFileSync(`/proc/${t.pid}/mountinfo`, "utf8"))) out.set(m.mntId, { m, pid: t.pid });
  }
  return out;
});

/** What commonMount needs of a mount, from mountinfo (dump) or mnt_entry (restore). */
interface MountView {
  mntId: number;
  dev: number;
  root: string;
  mountpoint: string;
}

const asMount = (m: MountInfo): MountView => ({ mntId: m.mntId, dev: kdev(m.major, m.minor), root: m.root, mountpoint: m.mountPoint });
const asEntry = (e: mnt_entry): MountView => ({ mntId: e.mnt_id, dev: e.root_dev, root: e.root, mountpoint: e.mountpoint });

/** `path` (under mount m) as a path of m's file system, from its root. */
function fsPath(m: MountView, path: string): string | undefined {
  if (!isSubPath(path, m.mountpoint)) return undefined;
  const rel = cutRoot(path, m.mountpoint);
  return rel === "" ? m.root : `${m.root === "/" ? "" : m.root}/${rel}`;
}

/**
 * A mount (of any namespace of the tree) of the file system of mounts a
 * and b that shows both pa (under a) and pb (under b), the one of the
 * whole file system first: the ghost made at pa is linked at pb through it.
 */
function commonMount(all: MountView[], a: MountView, pa: string, b: MountView, pb: string): MountView | undefined {
  const fa = fsPath(a, pa), fb = fsPath(b, pb);
  if (a.dev !== b.dev || fa === undefined || fb === undefined) return undefined;
  const fits = all.filter((m) => m.dev === a.dev && isSubPath(dirname(fa), m.root) && isSubPath(dirname(fb), m.root));
  return fits.find((m) => m.root === "/") ?? fits[0];
}

/** Whether directory `dir` is the same one in the roots of tasks a and b. */
function sameDirIn(dir: string, a: string, b: string | undefined): boolean {
  if (b === undefined) return false;
  try {
    const x = statSync(`/proc/${a}/root${dir}`), y = statSync(`/proc/${b}/root${dir}`);
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}

/** Whether statDeleted's file is one --link-remap links back (other names of it remain) rather than a ghost. */
export const needsLinkRemap = (st: BigStats): boolean => st.nlink > 0n && (st.mode & S_IFMT) !== S_IFDIR;

/**
 * --link-remap: links the file behind `via` (a /proc link of task `pid`)
 * back as link_remap.ID in the directory `path` was in, or the nearest one
 * above that still exists (as criu does); adds that name to files.img and
 * ties files.img entry `fileId` to it (remap type LINKED). One name per
 * entry, as criu makes them: criu's restore removes a name once the one
 * entry that uses it is open.
 */
export function dumpLinkRemap(run: DumpRun, fileId: number, via: string, path: string, st: BigStats, what: string, inRootOf?: string): void {
  const id = run.nextId("file");
  // The task whose root the name is made in: the holder's by default (regfile.ts linkRemapRoot picks).
  const pid = inRootOf ?? /^\/proc\/(\d+)\//.exec(via)?.[1];
  const seen = (p: string) => (pid === undefined ? p : `/proc/${pid}/root${p}`);
  let dir = dirname(path);
  let name: string;
  for (;;) {
    name = `${dir === "/" ? "" : dir}/link_remap.${id}`;
    // linkat through the /proc link (AT_SYMLINK_FOLLOW): the inode itself, which still has a name.
    const r = native.syscall(SYS.linkat, AT_FDCWD, via, AT_FDCWD, seen(name), AT_SYMLINK_FOLLOW);
    if (r === 0) break;
    // An overlay's lower-layer file (what a container's image holds) is another file system's inode: it cannot be linked here.
    if (r === -EXDEV || (r === -ENOENT && dir === "/")) {
      throw new UnsupportedError(`${what} is ${path}, removed while ${st.nlink} other link(s) remain, but crest cannot link it back in ${dirname(path)} ` +
        `(errno ${-r}: the file is on another file system than the directory it was in, as an overlay's lower-layer file is); criu cannot either`);
    }
    // A file system mounted in the tree's user namespace (a tmpfs there): crest's fsuid is not mapped in it, so the kernel
    // refuses crest the new name (may_create's EOVERFLOW); made again as the file's owner, whom it maps (criu's linkat_hard).
    if (r === -EOVERFLOW) {
      const again = asOwner(Number(st.uid), Number(st.gid), () => native.syscall(SYS.linkat, AT_FDCWD, via, AT_FDCWD, seen(name), AT_SYMLINK_FOLLOW));
      if (again === 0) break;
      check(again, `link ${what} (${path}, removed) back as ${name}, as its owner ${st.uid}:${st.gid}`);
    }
    if (r !== -ENOENT) check(r, `link ${what} (${path}, removed) back as ${name}`);
    dir = dirname(dir);
  }
  const target = seen(name);
  // criu's delete_link_remaps: a dump that fails takes the name back; one that succeeds leaves it for the restore.
  run.failed.push(() => unlinkSync(target));
  run.files.push({ type: fd_types.REG, id, reg: { id, flags: 0, pos: 0n, fown: { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 }, name, build_id: [] } });
  run.log.info(`${what}: ${path}, removed while ${st.nlink} other link(s) remain, linked back as ${name} (file ${id})`);
  run.state(dumped).remaps.push({ orig_id: fileId, remap_id: id, remap_type: remap_type.LINKED });
}

/**
 * A file of /proc/PID of a process that has exited (proc-path.ts): criu's
 * PROCFS remap names the PID, once for all the files of that PID, as criu
 * writes it; the restore makes a helper with that PID while files are opened.
 */
export function noteDeadProcess(run: DumpRun, fileId: number, pid: number): void {
  const s = run.state(dumped);
  if (s.remaps.some((r) => r.remap_type === remap_type.PROCFS && r.remap_id === pid)) return;
  s.remaps.push({ orig_id: fileId, remap_id: pid, remap_type: remap_type.PROCFS });
}

/** Restore: the PIDs of the processes that had exited whose /proc files the tree holds (criu's PROCFS remaps). */
export function deadProcesses(remaps: readonly remap_file_path_entry[]): number[] {
  return remaps.filter((r) => r.remap_type === remap_type.PROCFS).map((r) => r.remap_id);
}

// --- restore ----------------------------------------------------------------

interface Created {
  /** The task's path. */
  path: string;
  /** crest's way to it (through the root task's /proc/PID/root in a tree with its own mount namespace). */
  seen: string;
  dir: boolean;
  removed: boolean;
  ino: bigint;
  /** The mount the file it was made for was open through (files.img mnt_id), in a tree with a mount namespace of its own. */
  mntId?: number;
}

/** Restore: remap-fpath.img by files.img id, the ghosts recreated so far by ghost id, the link remaps used by files.img id. */
const restoring = restoreState("ghosts", (run) => {
  const s = {
    remaps: new Map(run.images.readOr(IMG.remapFpath, undefined, []).map((e) => [e.orig_id, e])),
    created: new Map<number, Created>(),
    /** More names of ghosts, linked where another mount namespace needs them (linkGhost), by "ghost id@namespace". */
    names: new Map<string, Created>(),
    linked: new Map<number, { seen: string; ino: bigint }>(),
    /** crest's writable copies of read-only mounts, by the directory they show (writableDir). */
    views: new Map<string, number>(),
  };
  // A failed restore takes the ghosts' names away again (through the views, closed after).
  run.cleanup.push(() => {
    for (const c of [...s.names.values(), ...s.created.values()]) {
      try {
        remove(c);
      } catch {
        // best effort: the restore has already failed
      }
    }
    closeViews(s.views);
  });
  return s;
});

function closeViews(views: Map<string, number>): void {
  for (const fd of views.values()) closeSync(fd);
  views.clear();
}

/** crest's fd of a detached copy of the mount at `path` as the task of `r` sees it (open_tree there, the fd taken over). */
function treeCopyIn(r: Remote, path: string, what: string): number {
  r.resetScratch();
  const clone = r.call(`copy ${what}`, SYS.open_tree, AT_FDCWD, r.putString(path), OPEN_TREE_CLONE | O.CLOEXEC);
  try {
    return takeFd(r.pid, clone, `the copy of ${what}`);
  } finally {
    r.call(`close the copy of ${what}`, SYS.close, clone);
  }
}

/**
 * A writable view of directory `dir` (the tree's path) on a read-only
 * mount: a detached copy of the mount from there (open_tree's clone) with
 * its read-only flag cleared, which a detached copy allows. The copy shows
 * the same file system, so a ghost made through it is in the tree's
 * directory while the tree's mount stays read-only throughout (criu
 * remounts the mount writable for the while instead, and not at all in
 * crest's own mount namespace). In a mount namespace of the tree's own the
 * root task makes the copy, there; crest holds it until the ghosts are gone.
 */
function writableDir(run: RestoreRun, dir: string): string {
  const views = run.state(restoring).views;
  let fd = views.get(dir);
  if (fd === undefined) {
    const what = `the mount of ${dir} (to recreate a ghost file there)`;
    if (ownedAtRestore(run, "mnt")) {
      fd = treeCopyIn(run.tasks[0]!.remotes[0]!, dir, what);
    } else {
      fd = check(native.syscall(SYS.open_tree, AT_FDCWD, dir, OPEN_TREE_CLONE | O.CLOEXEC), `copy ${what}`);
    }
    // struct mount_attr: attr_set, attr_clr, propagation, userns_fd.
    const attr = Buffer.alloc(32);
    attr.writeBigUInt64LE(MOUNT_ATTR_RDONLY, 8);
    const r = native.syscall(SYS.mount_setattr, fd, "", AT_EMPTY_PATH, attr, attr.length);
    if (r < 0) closeSync(fd);
    check(r, `make crest's copy of ${what} writable`);
    views.set(dir, fd);
  }
  return `/proc/self/fd/${fd}`;
}

/**
 * Removes the ghosts' names again, and the link remaps' (criu removes
 * those once their files are open), once every task has opened what it
 * needs. A failed restore leaves the link remaps for another try.
 */
export function finishGhostsRestore(run: RestoreRun): void {
  const s = run.state(restoring);
  for (const c of [...s.names.values(), ...s.created.values()]) remove(c);
  closeViews(s.views);
  for (const l of s.linked.values()) {
    try {
      if (lstatBig(l.seen).ino === l.ino) unlinkSync(l.seen);
    } catch {
      // gone already: another restore of the same images removed it
    }
  }
  s.linked.clear();
}

const exists = (p: string): boolean => {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
};

/** Sets owner, mode and times as the ghost had them (chown first: it clears set-id bits). */
function applyMetadata(path: string, e: ghost_file_entry, isLink: boolean): void {
  lchownSync(path, e.uid, e.gid);
  if (!isLink) chmodSync(path, e.mode & 0o7777);
  if (!e.atim || !e.mtim) return;
  const ts = Buffer.alloc(32);
  ts.writeBigInt64LE(e.atim.tv_sec, 0);
  ts.writeBigInt64LE(e.atim.tv_usec * 1000n, 8);
  ts.writeBigInt64LE(e.mtim.tv_sec, 16);
  ts.writeBigInt64LE(e.mtim.tv_usec * 1000n, 24);
  check(native.syscall(SYS.utimensat, AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), `set the times of ghost ${path}`);
}

function writeAll(fd: number, data: Buffer, off: number): void {
  let done = 0;
  while (done < data.length) done += writeSync(fd, data, done, data.length - done, off + done);
}

/** Creates the ghost's inode at `path`; false if its directory does not exist. */
function createAt(path: string, g: GhostFile): boolean {
  const e = g.entry;
  const type = BigInt(e.mode) & S_IFMT;
  try {
    if (type === S_IFDIR) mkdirSync(path, e.mode & 0o7777);
    else if (type === S_IFLNK) symlinkSync(e.symlnk_target ?? "", path);
    else if (type === S_IFCHR) check(native.syscall(SYS.mknodat, AT_FDCWD, path, e.mode, e.rdev ?? 0), `create the ghost device ${path}`);
    // A FIFO's queued data is in fifo-data.img, written by pipe.ts through crest's own end.
    else if (type === S_IFIFO) check(native.syscall(SYS.mknodat, AT_FDCWD, path, e.mode, 0), `create the ghost FIFO ${path}`);
    else {
      const fd = openSync(path, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL, e.mode & 0o7777);
      try {
        if (e.chunks) {
          ftruncateSync(fd, Number(e.size ?? 0n));
          for (const c of g.chunks ?? []) writeAll(fd, c.data, Number(c.chunk.off));
        } else if (g.data) {
          writeAll(fd, g.data, 0);
        }
        fchownSync(fd, e.uid, e.gid);
        fchmodSync(fd, e.mode & 0o7777);
      } catch (err) {
        unlinkSync(path);
        throw err;
      } finally {
        closeSync(fd);
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as { errno?: number }).errno === 2) return false;
    throw err;
  }
  return true;
}

/** EOVERFLOW, from node:fs or from a syscall crest made: crest's fsuid is not mapped in the user namespace of the file system. */
const isUnmapped = (e: unknown): boolean => (e as NodeJS.ErrnoException).code === "EOVERFLOW" || (e as { errno?: number }).errno === EOVERFLOW;

/** _LINUX_CAPABILITY_VERSION_3. */
const CAP_V3 = 0x20080522;

/**
 * Runs fn with the fsuid and fsgid of crest's thread set to uid and gid
 * (ids a user namespace of the tree maps: its file systems refuse crest's
 * own unmapped root, EOVERFLOW, as they refuse criu's), the capabilities
 * that change drops raised again (criu's linkat_hard does the same).
 * crest's file calls are made on this thread.
 */
function asOwner<T>(uid: number, gid: number, fn: () => T): T {
  const hdr = Buffer.alloc(8);
  hdr.writeUInt32LE(CAP_V3, 0);
  // Two struct __user_cap_data_struct: effective, permitted, inheritable.
  const caps = Buffer.alloc(24);
  check(native.syscall(SYS.capget, hdr, caps), "read crest's capabilities");
  const oldGid = native.syscall(SYS.setfsgid, gid), oldUid = native.syscall(SYS.setfsuid, uid);
  try {
    const raised = Buffer.from(caps);
    raised.writeUInt32LE(caps.readUInt32LE(4), 0);
    raised.writeUInt32LE(caps.readUInt32LE(16), 12);
    check(native.syscall(SYS.capset, hdr, raised), `raise crest's capabilities as owner ${uid}:${gid}`);
    return fn();
  } finally {
    native.syscall(SYS.setfsuid, oldUid);
    native.syscall(SYS.setfsgid, oldGid);
    native.syscall(SYS.capset, hdr, caps);
  }
}

/** createAt, as the ghost's owner where the file system is of a user namespace that does not map crest's ids. */
function createAsNeeded(run: RestoreRun, path: string, g: GhostFile): boolean {
  try {
    return createAt(path, g);
  } catch (e) {
    if (!isUnmapped(e) || !ownedAtRestore(run, "user")) throw e;
    return asOwner(g.entry.uid, g.entry.gid, () => createAt(path, g));
  }
}

/** EROFS, from node:fs or from a syscall crest made. */
const isReadOnly = (e: unknown): boolean => (e as NodeJS.ErrnoException).code === "EROFS" || (e as { errno?: number }).errno === EROFS;

/** Recreates ghost `id` near `orig` (its old path) and returns where it now is. */
function create(run: RestoreRun, id: number, orig: string, mntId: number | undefined): Created {
  const g = run.images.read(IMG.ghostFile, id);
  // The tasks' paths, in their mount namespace: the root's, or the nested one of the mount the file was open through.
  const nested = nestedHolderOfMount(run, mntId);
  const seen = (p: string) => (nested ? `/proc/${nested.pid}/root${p}` : treePath(run, p));
  // The old path if it is free, else a name beside it (as CRIU names its ghosts).
  let path = orig;
  /** crest's path to it: seen(path), or through a writable copy of a read-only mount. */
  let made: string;
  for (;;) {
    if (exists(seen(path))) path = `${path}.cr.${id.toString(16)}.ghost`;
    if (exists(seen(path))) throw new Error(`ghost ${id} of ${orig}: both ${orig} and ${path} are taken`);
    let at: string | undefined = seen(path);
    try {
      if (!createAsNeeded(run, at, g)) at = undefined;
    } catch (err) {
      // A read-only mount (of a writable file system): made through a writable copy of it.
      if (!isReadOnly(err)) throw err;
      at = `${writableDir(run, dirname(path))}/${basename(path)}`;
      try {
        if (!createAsNeeded(run, at, g)) at = undefined;
      } catch (again) {
        if (!isReadOnly(again)) throw again;
        throw new Error(`ghost ${id} of ${orig}: the file system of ${dirname(path)} is read-only itself (not only its mount), so the deleted file cannot be made there again; criu cannot either`);
      }
    }
    if (at !== undefined) {
      made = at;
      break;
    }
    // Its directory is gone too: as CRIU does, try in the one above.
    const dir = dirname(dirname(path));
    if (dir === dirname(path)) throw new Error(`ghost ${id} of ${orig}: no directory to create it in`);
    path = `${dir === "/" ? "" : dir}/${basename(orig)}`;
  }
  const type = BigInt(g.entry.mode) & S_IFMT;
  const c: Created = { path, seen: made, dir: type === S_IFDIR, removed: false, ino: lstatBig(made).ino, mntId };
  try {
    applyMetadata(c.seen, g.entry, type === S_IFLNK);
  } catch (err) {
    remove(c);
    throw err;
  }
  run.log.info(`ghost ${id} of ${orig} created at ${path}${made !== seen(path) ? " (through a writable copy of its read-only mount)" : ""}`);
  return c;
}

function remove(c: Created): void {
  if (c.removed) return;
  c.removed = true;
  try {
    if (lstatBig(c.seen).ino !== c.ino) return;
  } catch {
    return;
  }
  if (c.dir) rmdirSync(c.seen);
  else unlinkSync(c.seen);
}

/**
 * Where the file of files.img entry `fileId` (dumped at `orig`) is to be
 * opened: its ghost's path (created on first use) if it was deleted, else
 * undefined.
 */
export function ghostPath(run: RestoreRun, fileId: number, orig: string): string | undefined {
  const s = run.state(restoring);
  const rp = s.remaps.get(fileId);
  if (!rp) return undefined;
  const type = rp.remap_type ?? remap_type.LINKED;
  if (type === remap_type.LINKED) return linkedPath(run, rp.remap_id, orig, run.files.get(fileId)?.reg?.mnt_id);
  // A /proc file of a process that had exited: its own path, while the helper with that PID lives.
  if (type === remap_type.PROCFS) return undefined;
  if (type !== remap_type.GHOST) {
    throw run.images.invalid(IMG.remapFpath, undefined, `file ${fileId} (${orig}) has remap type ${type}; crest restores ghost files, link remaps and dead processes' /proc files only`);
  }
  const mntId = run.files.get(fileId)?.reg?.mnt_id;
  let c = s.created.get(rp.remap_id);
  if (!c) {
    c = create(run, rp.remap_id, orig, mntId);
    s.created.set(rp.remap_id, c);
  }
  return nameInNamespace(run, c, rp.remap_id, orig, mntId);
}

/**
 * The ghost's name for a file opened through mount `mntId`: its own path
 * when the namespace of that mount shows the ghost there, else a name made
 * by linkGhost (once per namespace).
 */
function nameInNamespace(run: RestoreRun, c: Created, id: number, orig: string, mntId: number | undefined): string {
  if (mntId === undefined || c.mntId === undefined || mntId === c.mntId) return c.path;
  const mine = nestedHolderOfMount(run, mntId), made = nestedHolderOfMount(run, c.mntId);
  if (mine?.ids.mnt_ns_id === made?.ids.mnt_ns_id) return c.path;
  const seen = mine ? `/proc/${mine.pid}/root${c.path}` : treePath(run, c.path);
  try {
    if (lstatBig(seen).ino === c.ino) return c.path;
  } catch {
    // not there in this namespace
  }
  const names = run.state(restoring).names;
  const key = `${id}@${mine?.ids.mnt_ns_id ?? "root"}`;
  let n = names.get(key);
  if (!n) {
    n = linkGhost(run, c, id, orig, mntId);
    names.set(key, n);
  }
  return n.path;
}

/**
 * Links ghost `id` (made as c) at `orig` as the namespace of mount `mntId`
 * sees it (or a name beside it if that is taken), through a mount of any
 * namespace of the tree that shows both directories (criu's rfi_remap
 * links through the mount the two are bound from): a detached copy of it
 * (open_tree's clone, made by a task of its namespace, with no mounts on it
 * and its read-only flag cleared), so that both names are on one mount as
 * linkat wants. The name is removed with the ghost's.
 */
function linkGhost(run: RestoreRun, c: Created, id: number, orig: string, mntId: number): Created {
  const at = `ghost ${id} of ${orig}`;
  const all = run.state(imageMounts);
  const a = all.find((x) => x.entry.mnt_id === c.mntId)?.entry, b = all.find((x) => x.entry.mnt_id === mntId)?.entry;
  if (!a || !b) throw run.images.invalid(IMG.files, undefined, `${at}: mount ${a ? mntId : c.mntId} is in no mount image`);
  const t = commonMount(all.map((x) => asEntry(x.entry)), asEntry(a), c.path, asEntry(b), orig);
  const via = t && all.find((x) => x.entry.mnt_id === t.mntId);
  const task = via && taskOfNamespace(run, via.ns);
  if (!t || !task) throw new Error(`restore ${at}: no mount of the tree shows both ${c.path} (mount ${c.mntId}) and ${orig} (mount ${mntId}) to link it through`);
  const copy = mountCopy(run, task.remotes[0]!, t.mountpoint, `mount ${t.mntId} at ${t.mountpoint} (to link ${at} in another mount namespace)`);
  const relFrom = cutRoot(fsPath(asEntry(a), c.path)!, t.root);
  let relTo = cutRoot(fsPath(asEntry(b), orig)!, t.root);
  const from = `${copy.path}/${relFrom}`;
  if (lstatBig(from).ino !== c.ino) throw new Error(`restore ${at}: mount ${t.mntId} at ${t.mountpoint} does not show it at ${from}`);
  let path = orig;
  if (exists(`${copy.path}/${relTo}`)) {
    path = `${orig}.cr.${id.toString(16)}.ghost`;
    relTo = `${relTo}.cr.${id.toString(16)}.ghost`;
    if (exists(`${copy.path}/${relTo}`)) throw new Error(`restore ${at}: both ${orig} and ${path} are taken in the namespace of mount ${mntId}`);
  }
  const to = `${copy.path}/${relTo}`;
  let r = native.syscall(SYS.linkat, AT_FDCWD, from, AT_FDCWD, to, 0);
  if (r === -EOVERFLOW && ownedAtRestore(run, "user")) {
    const e = run.images.read(IMG.ghostFile, id).entry;
    r = asOwner(e.uid, e.gid, () => native.syscall(SYS.linkat, AT_FDCWD, from, AT_FDCWD, to, 0));
  }
  check(r, `link ${at} as ${path} in the mount namespace of mount ${mntId}`);
  run.log.info(`${at} linked as ${path} for the mount namespace of mount ${mntId}, through mount ${t.mntId}`);
  return { path, seen: to, dir: false, removed: false, ino: c.ino, mntId };
}

/** crest's path to a detached copy of mount `mountpoint` of the namespace of the task of `r`, writable; held until the ghosts are gone. */
function mountCopy(run: RestoreRun, r: Remote, mountpoint: string, what: string): { fd: number; path: string } {
  const views = run.state(restoring).views;
  const key = `copy ${r.pid}:${mountpoint}`;
  let fd = views.get(key);
  if (fd === undefined) {
    fd = treeCopyIn(r, mountpoint, what);
    views.set(key, fd);
    // struct mount_attr: attr_set, attr_clr, propagation, userns_fd: read-only cleared (a detached copy allows it).
    const attr = Buffer.alloc(32);
    attr.writeBigUInt64LE(MOUNT_ATTR_RDONLY, 8);
    check(native.syscall(SYS.mount_setattr, fd, "", AT_EMPTY_PATH, attr, attr.length), `make crest's copy of ${what} writable`);
  }
  return { fd, path: `/proc/self/fd/${fd}` };
}

/**
 * The files.img id of a file remapped to the ghost of inode `ino` on device
 * `dev` (st_dev's encoding), if any: a watch or mark on a deleted file is
 * put back on its ghost, found as criu finds it, by device and inode.
 */
export function ghostOfInode(run: RestoreRun, dev: number, ino: bigint): number | undefined {
  return run.state(ghostInodes).get(`${dev}:${ino}`);
}

/** Restore: the files remapped to ghosts, by their ghost's "dev:ino" (each ghost image read once). */
const ghostInodes = restoreState("ghost inodes", (run) => {
  const out = new Map<string, number>();
  for (const rp of run.state(restoring).remaps.values()) {
    if ((rp.remap_type ?? remap_type.LINKED) !== remap_type.GHOST) continue;
    const g = run.images.read(IMG.ghostFile, rp.remap_id).entry;
    if (g.dev !== undefined && g.ino !== undefined) out.set(`${g.dev}:${g.ino}`, rp.orig_id);
  }
  return out;
});

/** The name a link remap (files.img entry `id`) gave the file dumped at `orig`; it must be there, and is removed after the restore. */
function linkedPath(run: RestoreRun, id: number, orig: string, mntId: number | undefined): string {
  const entry = run.files.get(id);
  if (!entry?.reg) throw run.images.invalid(IMG.files, undefined, `the link remap ${id} of ${orig} has no file entry`);
  const name = entry.reg.name;
  const s = run.state(restoring);
  if (!s.linked.has(id)) {
    // Linked back on a mount of a nested mount namespace: seen through a task of that namespace.
    const nested = nestedHolderOfMount(run, mntId);
    const seen = nested ? `/proc/${nested.pid}/root${name}` : treePath(run, name);
    let ino: bigint;
    try {
      ino = lstatBig(seen).ino;
    } catch {
      throw new Error(`${orig} (removed at dump while other links remained) was linked back as ${name}, which is gone: it must stay until the restore (the dump's --link-remap made it)`);
    }
    s.linked.set(id, { seen, ino });
  }
  return name;
}
