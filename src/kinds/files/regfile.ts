// Regular files, directories and memory character devices (/dev/null and
// friends): what an fd, a file mapping, the cwd/root or the exe link refers
// to. Dumped as reg_file_entry (path, flags, position, size, mode) in
// files.img; restored by opening the path again inside the task. A file
// that was deleted also gets a ghost (ghost.ts), recreated for the restore;
// one under /proc/PID of a task of the tree is opened under the restored
// task's PID (proc-path.ts).
import { closeSync, lstatSync, openSync, readFileSync, readlinkSync, statSync, type Stats } from "node:fs";
import { parseMountinfo } from "../../proc/index.js";
import { ownedAtRestore, treePath } from "../namespaces/owned.js";
import { holderOfMount } from "../namespaces/mnt.js";
import { native } from "../../sys/native.js";
import { passFd } from "./inherit.js";
import { EACCES, EPERM } from "../../sys/errno.js";
import type { DumpRun, RestoreRun } from "../context.js";
import { dumpState, UnsupportedError } from "../context.js";
import type { reg_file_entry } from "../../images/index.js";
import { IMG, fd_types } from "../../images/index.js";
import { AT_FDCWD, AT_SYMLINK_NOFOLLOW, MEM_MAJOR, O, SEEK, SYS } from "../../sys/constants.js";
import { RemoteError, type Pending, type Remote } from "../../remote/remote.js";
import type { FileKind } from "./file-kind.js";
import { isMemfdPath } from "./memfd.js";
import { devMajor } from "../../sys/dev.js";
import { deadProcPid, procfsPath, procOwner, withRestoredProc } from "./proc-path.js";
import { mountsOfTree, dumpGhost, dumpLinkRemap, finishGhostsDump, finishGhostsRestore, ghostPath, needsLinkRemap, noteDeadProcess, statDeleted } from "./ghost.js";

/** The statx mask bit for stx_mnt_id. */
const STATX_MNT_ID = 0x1000;

/** What a dumped file is: enough to open it again. */
export interface RegFileFacts {
  path: string;
  /** open(2) flags of the description, without O_CLOEXEC (that belongs to the fd). */
  flags: number;
  pos: bigint;
  mntId?: number;
  fown?: reg_file_entry["fown"];
}

const NO_OWNER: reg_file_entry["fown"] = { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 };

/**
 * Checks that `path` (as the kernel named it, possibly with " (deleted)")
 * is something this kind can reopen, and stats it through `via` (a
 * /proc/PID/fd/N or map_files link, which reaches the file even when the
 * path does not). Throws UnsupportedError naming `what` otherwise.
 * `anyType`: an O_PATH fd, which opening never sets in motion (no device
 * open, no FIFO wait), so any kind of inode, a symlink itself included, will do.
 */
export function checkReopenable(path: string, via: string, what: string, anyType = false, evasiveDevices = false, inRootOf?: string): Stats {
  if (path.endsWith(" (deleted)")) {
    // Open files, mappings and the cwd take the ghost path (dumpDeletedFile) before this.
    throw new UnsupportedError(`${what} is the deleted file ${path.slice(0, -10)}; crest does not support it here yet (deleted files are restored only as open files, mappings and the current directory)`);
  }
  if (!path.startsWith("/")) throw new UnsupportedError(`${what} is ${path}, not a file in the file system; crest does not support mapping or reopening it yet`);
  let st: Stats;
  try {
    st = statSync(via);
  } catch (e) {
    throw new UnsupportedError(`${what} (${path}) cannot be examined: ${(e as Error).message}`);
  }
  if (anyType) {
    // nothing to open: the path alone is kept
  } else if (st.isCharacterDevice()) {
    const major = devMajor(st.rdev);
    if (major !== MEM_MAJOR) {
      throw new UnsupportedError(`${what} is the character device ${path} (${major}:${st.rdev & 0xff}); crest supports only memory devices such as /dev/null and the terminals criu keeps (ptys, /dev/tty, /dev/console, virtual consoles /dev/tty1-63, serial terminals) so far`);
    }
  } else if (!st.isFile() && !st.isDirectory()) {
    throw new UnsupportedError(`${what} is ${path}, a ${st.isFIFO() ? "FIFO" : st.isSocket() ? "socket" : st.isBlockDevice() ? "block device" : "special file"}; crest does not support it yet`);
  }
  // The path must still lead to the same file, or a restore would open another one.
  try {
    // The kernel's path has no symlink in it, but may be one (O_PATH|O_NOFOLLOW).
    // It is the task's path: looked up in its mount namespace.
    // `inRootOf`: a task of the mount namespace of the fd's mount, when that is not the holder's.
    const seen = inRootOf !== undefined ? inTaskRoot(path, inRootOf) : inTaskNamespace(path, /^\/proc\/(\d+)\//.exec(via)?.[1]);
    const now = st.isSymbolicLink() ? lstatSync(seen) : statSync(seen);
    // --evasive-devices: another file of the same device number will do, as criu takes it.
    const sameDevice = evasiveDevices && (st.isCharacterDevice() || st.isBlockDevice()) && now.rdev === st.rdev;
    if ((now.ino !== st.ino || now.dev !== st.dev) && !sameDevice) throw new Error("replaced");
  } catch {
    throw new UnsupportedError(`${what} is ${path}, but that path now leads elsewhere (the file was renamed or replaced, or, for a task of a nested mount ` +
      "namespace, its mount is not in that namespace: a root it pivoted away from); crest cannot restore it yet");
  }
  return st;
}

/**
 * checkReopenable for a mapping or the executable of `task`: a task of a
 * nested mount namespace that pivoted away from the root it was made with
 * (zdtm's mntns_pivot_root) still maps its program from there; the file is
 * taken when the root's namespace shows it at that path (the restore
 * inherits such a mapping from the parent, or opens the file by path).
 */
export function checkMappedReopenable(run: DumpRun, task: { pid: number; ids: { mnt_ns_id?: number } }, path: string, via: string, what: string): Stats {
  try {
    return checkReopenable(path, via, what);
  } catch (e) {
    if (!(e instanceof UnsupportedError) || !run.ownNamespaces.has("mnt") || task.ids.mnt_ns_id === run.root.ids.mnt_ns_id || !path.startsWith("/")) throw e;
    const st = statSync(via);
    let there: Stats;
    try {
      there = statSync(treePath(run, path));
    } catch {
      throw e;
    }
    if (there.dev !== st.dev || there.ino !== st.ino) throw e;
    run.log.info(`${what} is ${path}, not in the task's mount namespace but in the root's: kept by that path`);
    return st;
  }
}

/**
 * A task's absolute path as crest reaches it: through /proc/PID/root, so
 * that it is looked up in the task's mount namespace (the same file as
 * crest's own path when the task shares crest's). For a task restored here,
 * not chrooted yet (fs.ts chroots it after its files are open).
 */
export function inTaskRoot(path: string, pid: number | string | undefined): string {
  return pid === undefined || !path.startsWith("/") ? path : `/proc/${pid}/root${path}`;
}

/**
 * Dump: the same for a task that may be chrooted. The kernel names a
 * chrooted task's files from its mount namespace's root, not from its
 * chroot, which /proc/PID/root leads to: the path climbs back out of it
 * (`..` through that link is not held at the chroot, crest's own root being
 * elsewhere).
 */
function inTaskNamespace(path: string, pid: string | undefined): string {
  if (pid === undefined || !path.startsWith("/")) return path;
  const root = `/proc/${pid}/root`;
  let chroot: string;
  try {
    chroot = readlinkSync(root);
  } catch {
    return `${root}${path}`;
  }
  return `${root}${"/..".repeat(chroot.split("/").filter(Boolean).length)}${path}`;
}

const isAppendLog = (flags: number): boolean => (flags & O.ACCMODE) === O.WRONLY && (flags & O.APPEND) !== 0;

/** Adds a file to files.img and returns its id; `what` names it in messages. */
export function dumpRegFile(run: DumpRun, f: RegFileFacts, st: Stats, what = `the file ${f.path}`): number {
  const id = run.nextId("file");
  const reg: reg_file_entry = {
    id,
    flags: f.flags & ~O.CLOEXEC,
    pos: f.pos,
    fown: f.fown ?? NO_OWNER,
    name: f.path,
    // Like CRIU: the size tells at restore that it is the same file, except
    // for append-only logs, which others may legitimately have written to.
    ...(st.isFile() && !isAppendLog(f.flags) ? { size: BigInt(st.size) } : {}),
    mode: st.mode,
    build_id: [],
    // As criu: the mount only for a tree in its own mount namespace (criu's restore looks a link remap's mount up by it, and
    // knows no mounts otherwise).
    ...(f.mntId !== undefined && run.ownNamespaces.has("mnt") ? { mnt_id: f.mntId } : {}),
    // Under /proc/PID of one of the tree's tasks: which one, in the tree's namespace (proc-path.ts).
    ...procOwner(run, f.path, st, what),
  };
  run.files.push({ type: fd_types.REG, id, reg });
  return id;
}

/**
 * Adds a deleted file (reached through `via`, a /proc link) to files.img
 * under its old path, with its ghost, and returns its id.
 */
export function dumpDeletedFile(run: DumpRun, f: RegFileFacts, via: string, what: string): number {
  const st = statDeleted(via, f.path, what, run.opts.dump.ghostLimit, run.opts.features.linkRemap);
  const id = dumpRegFile(run, f, statSync(via));
  if (needsLinkRemap(st)) dumpLinkRemap(run, id, via, f.path, st, what, linkRemapRoot(run, f, via));
  else dumpGhost(run, id, via, f.path, st, what, mountNamespaceOf(run, f, via), f.mntId);
  return id;
}

/** The mount namespace (mnt_ns_id) of the mount an fd is through: the root's, or its holder's nested one; undefined without nested ones. */
function mountNamespaceOf(run: DumpRun, f: RegFileFacts, via: string): number | undefined {
  const pid = /^\/proc\/(\d+)\//.exec(via)?.[1];
  if (!run.ownNamespaces.has("mnt") || pid === undefined) return undefined;
  const holder = run.tasks.find((t) => t.pid === Number(pid));
  if (!holder || holder.ids.mnt_ns_id === run.root.ids.mnt_ns_id || (f.mntId !== undefined && run.state(treeMounts).has(f.mntId))) return run.root.ids.mnt_ns_id;
  return holder.ids.mnt_ns_id;
}

/**
 * The task in whose root a removed file is linked back (--link-remap): the
 * holder's, or the root's when the holder is in a nested mount namespace
 * but the fd is through a mount of the root's (the restore reopens it
 * there, mnt_id; ghost.ts linkedPath finds the name in the namespace of
 * the file's mount).
 */
function linkRemapRoot(run: DumpRun, f: RegFileFacts, via: string): string | undefined {
  const pid = /^\/proc\/(\d+)\//.exec(via)?.[1];
  if (!run.ownNamespaces.has("mnt") || pid === undefined) return pid;
  const holder = run.tasks.find((t) => t.pid === Number(pid));
  if (!holder || holder.ids.mnt_ns_id === run.root.ids.mnt_ns_id) return pid;
  if (f.mntId !== undefined && run.state(treeMounts).has(f.mntId)) return String(run.root.pid);
  return pid;
}

/**
 * Looks up a regular file of files.img by id; a deleted one comes with the
 * path of its ghost, which is created on first use.
 */
export function regFile(run: RestoreRun, id: number): reg_file_entry {
  const entry = run.files.get(id);
  if (!entry) throw run.images.invalid(IMG.files, undefined, `no file with id ${id}`);
  if (entry.type !== fd_types.REG || !entry.reg) throw run.images.invalid(IMG.files, undefined, `file ${id} is not a regular file (type ${entry.type})`);
  return withGhost(run, entry.reg);
}

function withGhost(run: RestoreRun, reg: reg_file_entry): reg_file_entry {
  const path = ghostPath(run, reg.id, reg.name);
  return path === undefined ? withRestoredProc(run, reg) : { ...reg, name: path };
}

/**
 * Opens a dumped file inside the task and returns the task's fd. The file
 * must still be there, of the same type and permissions and (where the
 * image recorded it) the same size.
 */
export function openRegFile(r: Remote, reg: reg_file_entry, flagsOverride?: number): number {
  const fd = queueOpenRegFile(r, reg, flagsOverride);
  r.flush();
  return fd.value!;
}

/** Like openRegFile, queued: the fd to come, for the calls queued after it (no stop of its own). */
export function queueOpenRegFile(r: Remote, reg: reg_file_entry, flagsOverride?: number): Pending {
  let flags = (flagsOverride ?? reg.flags) & ~(O.CREAT | O.EXCL | O.TRUNC);
  // An O_TMPFILE file (a ghost now) is reopened as the regular file it is, as CRIU does.
  if (flags & O.TMPFILE) flags &= ~(O.TMPFILE | O.DIRECTORY);
  const ofImage = `(regular file ${reg.id} of files.img)`;
  let st: Stats;
  try {
    // O_NOFOLLOW (with O_PATH) opens a symlink itself: check the link, not its target.
    const seen = inTaskRoot(reg.name, r.pid);
    st = flags & O.NOFOLLOW ? lstatSync(seen) : statSync(seen);
  } catch {
    throw new Error(`file ${reg.name} is missing: it must exist at restore as it did at dump ${ofImage}`);
  }
  if (reg.size !== undefined && BigInt(st.size) !== reg.size) {
    throw new Error(`file ${reg.name} has size ${st.size}, but it had ${reg.size} when dumped: it is not the same file ${ofImage}`);
  }
  if (reg.mode !== undefined && st.mode !== reg.mode) {
    throw new Error(`file ${reg.name} has mode 0${st.mode.toString(8)}, but it had 0${reg.mode.toString(8)} when dumped ${ofImage}`);
  }
  r.resetScratch();
  const fd = r.later({ what: () => `open ${reg.name} in task ${r.pid} ${ofImage}`, nr: SYS.openat, args: [AT_FDCWD, r.putString(reg.name), flags, 0] });
  if (reg.pos && !(flags & O.PATH)) r.later({ what: () => `seek ${reg.name} to ${reg.pos} in task ${r.pid} ${ofImage}`, nr: SYS.lseek, args: [fd, reg.pos, SEEK.SET] });
  return fd;
}

/**
 * In a user namespace of its own, a task may be refused a file it had open
 * (given to it from outside the namespace, as a log): crest opens it then,
 * as it is in the task's root, and passes it in.
 */
function openInOwnUserns(r: Remote, reg: reg_file_entry, vpid: number): number {
  r.flush(); // what others queued fails as theirs
  const fd = queueOpenRegFile(r, reg);
  try {
    r.flush();
    return fd.value!;
  } catch (e) {
    if (!(e instanceof RemoteError) || (e.errno !== EACCES && e.errno !== EPERM)) throw e;
  }
  return openForTask(r, reg, vpid, r.pid);
}

/** crest opens the file in the root of task `rootOf` (the task's own, or one of another mount namespace) and passes it to the task. */
function openForTask(r: Remote, reg: reg_file_entry, vpid: number, rootOf: number): number {
  let flags = reg.flags & ~(O.CREAT | O.EXCL | O.TRUNC);
  if (flags & O.TMPFILE) flags &= ~(O.TMPFILE | O.DIRECTORY);
  const mine = openSync(inTaskRoot(reg.name, rootOf), flags | O.CLOEXEC | O.NOCTTY);
  try {
    const theirs = passFd(r, vpid, mine, reg.name);
    if (reg.pos && !(flags & O.PATH)) r.call(`seek ${reg.name} to ${reg.pos} in task ${vpid}`, SYS.lseek, theirs, reg.pos, SEEK.SET);
    return theirs;
  } finally {
    closeSync(mine);
  }
}

/** The mount ids of the tree's own mount namespace. */
const treeMounts = dumpState("tree mounts", (run) => new Set(parseMountinfo(readFileSync(`/proc/${run.root.pid}/mountinfo`, "utf8")).map((m) => m.mntId)));

/**
 * A task of the mount namespace of mount `mntId` when that is another of
 * the tree's than task `pid`'s (an fd opened through /proc/PID/fd of a task
 * of a nested namespace, zdtm's inotify01): the fd's path is checked there,
 * and the restore reopens it there (mnt_id). undefined otherwise.
 */
function otherNamespaceOf(run: DumpRun, pid: number, mntId: number | undefined): string | undefined {
  if (mntId === undefined || !run.ownNamespaces.has("mnt")) return undefined;
  const there = run.state(mountsOfTree).get(mntId)?.pid;
  if (there === undefined) return undefined;
  const mine = run.tasks.find((t) => t.pid === pid), theirs = run.tasks.find((t) => t.pid === there);
  return mine && theirs && mine.ids.mnt_ns_id !== theirs.ids.mnt_ns_id ? String(there) : undefined;
}

/**
 * In a mount namespace of the tree's own, a file is reopened through the
 * mount its path leads to: it must be the one the fd was opened through (a
 * mount since put over it would give the file another mount, which the
 * task would see, e.g. in umount's EBUSY). criu refuses these too. A file
 * opened through a mount of another namespace is reopened by its path.
 */
function checkSameMount(run: DumpRun, path: string, mntId: number, what: string): void {
  // An fd opened outside the namespace (crest run's /dev/null) is reopened there by its path, as before.
  if (!run.state(treeMounts).has(mntId)) return;
  const stx = Buffer.alloc(256);
  // The mount the path leads to, in the tree's namespace: statx's stx_mnt_id (offset 144).
  if (native.syscall(SYS.statx, AT_FDCWD, treePath(run, path), AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, stx) < 0) return;
  const now = Number(stx.readBigUInt64LE(144));
  if ((stx.readUInt32LE(0) & STATX_MNT_ID) && now !== mntId) {
    throw new UnsupportedError(`${what} is ${path}, open through mount ${mntId}, but that path now leads through mount ${now} (a mount put over it since): ` +
      "crest cannot reopen it through the same mount; criu cannot either");
  }
}

/**
 * A file of /proc/PID of process `pid`, which has exited (proc-path.ts
 * deadProcPid): kept under its path (without procfs's " (deleted)"), with
 * criu's PROCFS remap naming the PID. Returns its id.
 */
export function dumpDeadProcFile(run: DumpRun, f: RegFileFacts, via: string, pid: number, what: string): number {
  const path = f.path.endsWith(" (deleted)") ? f.path.slice(0, -" (deleted)".length) : f.path;
  // The stand-in gets the PID in the tree's PID namespace: the /proc the path is in must number processes there.
  if (run.ownNamespaces.has("pid") && !procOfTree(Number(/^\/proc\/(\d+)\//.exec(via)![1]))) {
    throw new UnsupportedError(`${what} is ${path}, of a process that has exited, numbered by a /proc of another PID namespace than the tree's; ` +
      "crest can bring such a file back only from a /proc of the tree's own PID namespace (mount one in the tree)");
  }
  const id = dumpRegFile(run, { ...f, path }, statSync(via), what);
  noteDeadProcess(run, id, pid);
  run.log.info(`${what} is ${path}, of process ${pid}, which has exited: the restore opens it while a helper with that PID lives`);
  return id;
}

/**
 * Whether the /proc task `pid` sees numbers the processes of its own PID
 * namespace: crest, outside it, has no /proc/self there.
 */
function procOfTree(pid: number): boolean {
  try {
    readlinkSync(`/proc/${pid}/root/proc/self`);
    return false;
  } catch {
    return true;
  }
}

/** Regular files, directories and memory devices behind fds. */
export const regFileKind: FileKind = {
  name: "regular file",
  type: fd_types.REG,
  // O_PATH fds of FIFOs are paths like any other (no data, no pipe behind them).
  claims: (f) => f.link.kind === "path" && (!f.st.isFIFO() || (f.info.flags & O.PATH) !== 0) && !(f.link.deleted && isMemfdPath(f.link.path)),
  dump(f, run) {
    const dead = deadProcPid(f.text, f.via, f.pid);
    if (dead !== null) return dumpDeadProcFile(run, { path: f.text, flags: f.info.flags, pos: f.info.pos, mntId: f.info.mntId, fown: f.fown }, f.via, dead, f.what);
    // A /proc file procfs calls deleted while it is there (proc-path.ts) keeps its path.
    const path = procfsPath(f.text, f.st, f.what);
    if (f.link.kind === "path" && f.link.deleted && path === f.text) {
      return dumpDeletedFile(run, { path: f.link.path, flags: f.info.flags, pos: f.info.pos, mntId: f.info.mntId, fown: f.fown }, f.via, f.what);
    }
    const st = checkReopenable(path, f.via, f.what, (f.info.flags & O.PATH) !== 0, run.opts.features.evasiveDevices, otherNamespaceOf(run, f.pid, f.info.mntId));
    if (f.info.mntId !== undefined && run.ownNamespaces.has("mnt")) checkSameMount(run, path, f.info.mntId, f.what);
    return dumpRegFile(run, { path, flags: f.info.flags, pos: f.info.pos, mntId: f.info.mntId, fown: f.fown }, st, f.what);
  },
  // remap-fpath.img and the ghosts' names belong to the deleted regular files (and FIFOs, and mappings) that need them.
  finishDump: finishGhostsDump,
  fown: (entry) => entry.reg?.fown,
  // criu's key: the path without its leading '/' ('.' for the root); the caller's description is used as it is.
  inheritKey: (entry) => (entry.reg ? { key: entry.reg.name === "/" ? "." : entry.reg.name.replace(/^\//, "") } : undefined),
  open: ({ r, run, task }, entry) => {
    const reg = regFile(run, entry.id);
    // Opened through a mount of another mount namespace of the tree (one the task's came from): reopened there.
    const there = holderOfMount(run, task, reg.mnt_id);
    if (there) {
      r.flush(); // what others queued fails as theirs
      return openForTask(r, reg, task.vpid, there.pid);
    }
    return ownedAtRestore(run, "user") ? openInOwnUserns(r, reg, task.vpid) : queueOpenRegFile(r, reg);
  },
  finishRestore: finishGhostsRestore,
};
