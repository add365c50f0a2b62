// Inodes kept as exportfs file handles, as criu keeps them for inotify
// watches and fanotify marks (fh_entry): the dump opens each handle once,
// through a mount of its filesystem, to make sure it still names a live,
// linked inode (its path goes into the image too, for criu's restore); the
// restore has the task open the handle through a mount of the filesystem
// (crest opens it and passes the fd in when the task, in a user namespace of
// its own, may not).
// In a tree with a mount namespace of its own the mount is looked for in
// every mount namespace of the tree (the holder's first), through a task of
// each (a watch may be on a tmpfs only a nested namespace shows, zdtm's
// inotify01), and the entry keeps that mount's id with the path there, as
// criu does; the restore opens that path in the namespace of the mount (a
// restored tmpfs has new inodes: a handle would not open).
import { closeSync, openSync, readFileSync, readlinkSync, statSync } from "node:fs";
import type { DumpRun, RestoreRun } from "../context.js";
import { restoreState, UnsupportedError } from "../context.js";
import type { fh_entry } from "../../images/index.js";
import { O, SYS } from "../../sys/constants.js";
import { check, EPERM } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { sys } from "../../sys/syscalls.js";
import { parseMountinfo, type MountInfo } from "../../proc/index.js";
import type { FileHandle } from "../../proc/fdinfo-kinds.js";
import { RemoteError, type Remote } from "../../remote/remote.js";
import { ownedAtRestore } from "../namespaces/owned.js";
import { holderOfMount } from "../namespaces/mnt.js";
import { passFd } from "./inherit.js";
import { ghostOfInode } from "./ghost.js";
import { dumpDeletedFile, openRegFile, regFile } from "./regfile.js";

/** MAX_HANDLE_SZ, and the u64 words fh_entry.handle carries (CRIU's fixed 16). */
const MAX_HANDLE = 128;
const HANDLE_WORDS = 16;

export const major = (sdev: number) => sdev >>> 20;
export const minor = (sdev: number) => sdev & 0xfffff;

/** A mount of the filesystem `sdev` (kernel format) names, the one showing its whole tree preferred. */
function mountOf(mounts: MountInfo[], sdev: number): MountInfo | undefined {
  const of = mounts.filter((m) => m.major === major(sdev) && m.minor === minor(sdev));
  return of.find((m) => m.root === "/") ?? of[0];
}

export const crestMounts = (): MountInfo[] => parseMountinfo(readFileSync("/proc/self/mountinfo", "utf8"));

/** A mount a handle may be opened through at dump: `task` (a pid) of its namespace, or undefined for crest's own. */
export interface HandleMount extends MountInfo {
  task?: number;
}

/**
 * Dump: the mounts to open the handles of task `pid`'s watches or marks
 * through: crest's own, or in a tree with a mount namespace of its own those
 * of each of the tree's namespaces, the task's own first.
 */
export function handleMounts(run: DumpRun, pid: number): HandleMount[] {
  if (!run.ownNamespaces.has("mnt")) return crestMounts();
  const holder = run.tasks.find((t) => t.pid === pid);
  const seen = new Set<number | undefined>();
  const out: HandleMount[] = [];
  for (const t of [holder ?? run.root, run.root, ...run.tasks]) {
    // A zombie has no mount namespace left to read (its mountinfo: EINVAL).
    if (t.zombie || seen.has(t.ids.mnt_ns_id)) continue;
    seen.add(t.ids.mnt_ns_id);
    for (const m of parseMountinfo(readFileSync(`/proc/${t.pid}/mountinfo`, "utf8"))) out.push({ ...m, task: t.pid });
  }
  return out;
}

/** The mount id of an fd of crest's (its fdinfo). */
function mntIdOf(fd: number): number {
  const m = /^mnt_id:\s*(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"));
  return m ? Number(m[1]) : -1;
}

/** crest's fd (not O_PATH: open_by_handle_at refuses one, EBADF) of mount `m` itself, or undefined (overmounted, gone). */
function openMount(m: HandleMount): number | undefined {
  let fd: number;
  try {
    fd = openSync(m.task === undefined ? m.mountPoint : `/proc/${m.task}/root${m.mountPoint}`, O.RDONLY | O.DIRECTORY | O.CLOEXEC);
  } catch {
    return undefined;
  }
  if (m.task === undefined || mntIdOf(fd) === m.mntId) return fd;
  closeSync(fd);
  return undefined;
}
/** Restore: crest's mounts, read once, to open handles through. */
const mounts = restoreState("file handle mounts", crestMounts);

/** struct file_handle: handle_bytes, handle_type, f_handle[]. */
function packHandle(bytes: number, type: number, handle: Buffer): Buffer {
  const b = Buffer.alloc(8 + bytes);
  b.writeUInt32LE(bytes, 0);
  b.writeInt32LE(type, 4);
  handle.copy(b, 8, 0, bytes);
  return b;
}

/** fh_entry.handle: the handle's bytes as 16 little-endian u64 words, zero-padded. */
function handleWords(h: Buffer): bigint[] {
  const b = Buffer.alloc(HANDLE_WORDS * 8);
  h.copy(b);
  return Array.from({ length: HANDLE_WORDS }, (_, i) => b.readBigUInt64LE(i * 8));
}

function handleBytes(fh: fh_entry): Buffer {
  const b = Buffer.alloc(HANDLE_WORDS * 8);
  fh.handle.slice(0, HANDLE_WORDS).forEach((w, i) => b.writeBigUInt64LE(w, i * 8));
  return b.subarray(0, fh.bytes);
}

/** st_dev's encoding of a device the kernel names (major << 20 | minor, as fdinfo shows it). */
const userDev = (sdev: number): number => (((major(sdev) & 0xfff) << 8) | (minor(sdev) & 0xff) | ((minor(sdev) & 0xfff00) << 12)) >>> 0;

/**
 * The fh_entry of inode `ino` of `sdev` (from fdinfo), checked: the handle
 * opens that inode; its path is the entry's (criu's restore opens the path,
 * crest's the handle). A deleted inode is dumped as a ghost file (a
 * files.img entry no fd names), which the restore finds by device and
 * inode, as criu does. `at` names the watch or mark in messages.
 */
export function dumpHandle(run: DumpRun, at: string, fh: FileHandle | undefined, ino: bigint, sdev: number, mounts: HandleMount[]): fh_entry {
  at = `${at} on inode ${ino} of device ${major(sdev)}:${minor(sdev)}`;
  if (!fh) throw new UnsupportedError(`${at}: fdinfo shows no file handle (kernel without CONFIG_EXPORTFS?); crest cannot find the inode`);
  if (fh.bytes > MAX_HANDLE) throw new UnsupportedError(`${at}: its file handle is ${fh.bytes} bytes; crest does not support handles over ${MAX_HANDLE}`);
  const of = mounts.filter((m) => m.major === major(sdev) && m.minor === minor(sdev));
  // The one showing the file system's whole tree first (criu tries each in turn too).
  of.sort((a, b) => Number(b.root === "/") - Number(a.root === "/"));
  if (!of.length) {
    const where = run.ownNamespaces.has("mnt") ? "in any mount namespace of the tree" : "to crest";
    throw new UnsupportedError(`${at}: no mount of that device is visible ${where}; crest does not support it`);
  }
  const handle = packHandle(fh.bytes, fh.type, fh.handle);
  let errno = 0;
  for (const m of of) {
    const mfd = openMount(m);
    if (mfd === undefined) continue;
    let fd: number;
    try {
      fd = sys(SYS.open_by_handle_at, mfd, handle, O.PATH | O.CLOEXEC);
    } finally {
      closeSync(mfd);
    }
    if (fd < 0) {
      errno = -fd;
      continue;
    }
    try {
      const st = statSync(`/proc/self/fd/${fd}`, { bigint: true });
      if (st.ino !== ino) throw new UnsupportedError(`${at}: its file handle opens inode ${st.ino} instead`);
      // The path in the namespace of the mount (the kernel names a mount of another namespace from that one's root).
      let path = readlinkSync(`/proc/self/fd/${fd}`);
      if (st.nlink === 0n) {
        path = path.replace(/ \(deleted\)$/, "");
        // Read through a reopened fd (an O_PATH one reads nothing): its contents go to the ghost.
        const rfd = openSync(`/proc/self/fd/${fd}`, O.RDONLY | O.CLOEXEC);
        try {
          dumpDeletedFile(run, { path, flags: O.RDONLY, pos: 0n }, `/proc/self/fd/${rfd}`, at);
        } finally {
          closeSync(rfd);
        }
        return { bytes: fh.bytes, type: fh.type, handle: handleWords(fh.handle), path };
      }
      if (m.task === undefined) return { bytes: fh.bytes, type: fh.type, handle: handleWords(fh.handle), path };
      // The restore opens the path in the mount's namespace: it must lead to the inode there.
      let there: bigint | undefined;
      try {
        there = statSync(`/proc/${m.task}/root${path}`, { bigint: true }).ino;
      } catch {
        there = undefined;
      }
      if (there !== ino) continue;
      return { bytes: fh.bytes, type: fh.type, handle: handleWords(fh.handle), path, mnt_id: m.mntId };
    } finally {
      closeSync(fd);
    }
  }
  if (errno) throw new UnsupportedError(`${at}: its file handle does not open (errno ${errno}); crest cannot find the inode (nor can criu's irmap, with or without --force-irmap)`);
  throw new UnsupportedError(`${at}: no mount of that device leads to the inode by a path in its mount namespace (${of.map((m) => `mount ${m.mntId} at ${m.mountPoint}`).join(", ")}); crest cannot put the watch back`);
}

/** Opens the inode of a handle in the task (O_PATH), or its ghost if it was deleted; `close` closes it there. */
export function openHandleInTask(r: Remote, run: RestoreRun, sdev: number, ino: bigint, fh: fh_entry, at: string): { fd: number; close: () => void } {
  const ghost = ghostOfInode(run, userDev(sdev), ino);
  if (ghost !== undefined) {
    const fd = openRegFile(r, regFile(run, ghost), O.PATH | O.CLOEXEC);
    return { fd, close: () => void r.syscall(SYS.close, fd) };
  }
  if (fh.mnt_id !== undefined && fh.path !== undefined && ownedAtRestore(run, "mnt")) return openPathInNamespace(r, run, fh.mnt_id, fh.path, at);
  const m = mountOf(run.state(mounts), sdev);
  if (!m) throw new Error(`restore ${at}: no mount of that device`);
  r.resetScratch();
  const mfd = r.call(`open mount ${m.mountPoint} for ${at}`, SYS.openat, -100, r.putString(m.mountPoint), O.RDONLY | O.DIRECTORY | O.CLOEXEC, 0);
  try {
    const handle = packHandle(fh.bytes, fh.type, handleBytes(fh));
    const got = r.syscall(SYS.open_by_handle_at, mfd, r.put(handle), O.PATH | O.CLOEXEC);
    // In a user namespace of its own the task may not (CAP_DAC_READ_SEARCH counts in the first one only): crest opens it and hands it over.
    const fd = got === -EPERM && ownedAtRestore(run, "user") ? openByHandleForTask(r, m.mountPoint, handle, at) : got;
    if (fd < 0) throw new RemoteError(`open the inode of ${at} by its handle`, -fd);
    return { fd, close: () => void r.syscall(SYS.close, fd) };
  } finally {
    r.syscall(SYS.close, mfd);
  }
}

/**
 * The inode at `path` in the mount namespace of mount `mntId` (criu's
 * mnt_id and path of fh_entry), O_PATH, in the task: opened by the task in
 * its own namespace, else by crest through a task of that one and passed in.
 */
function openPathInNamespace(r: Remote, run: RestoreRun, mntId: number, path: string, at: string): { fd: number; close: () => void } {
  const task = run.tasks.find((t) => t.pid === r.pid);
  if (!task) throw new Error(`restore ${at}: process ${r.pid} is not a task of the tree`);
  // A task (born already) of the mount's namespace when that is not this task's.
  const there = holderOfMount(run, task, mntId);
  let fd: number;
  if (there) {
    const mine = openSync(`/proc/${there.pid}/root${path}`, O.PATH | O.CLOEXEC);
    try {
      fd = passFd(r, task.vpid, mine, `the inode of ${at}`);
    } finally {
      closeSync(mine);
    }
  } else {
    r.resetScratch();
    fd = r.call(`open ${path} for ${at}`, SYS.openat, -100, r.putString(path), O.PATH | O.CLOEXEC, 0);
  }
  return { fd, close: () => void r.syscall(SYS.close, fd) };
}

/** open_by_handle_at from crest, on the mount as the task sees it; the fd passed into the task. */
function openByHandleForTask(r: Remote, mountPoint: string, handle: Buffer, at: string): number {
  const mfd = openSync(`/proc/${r.pid}/root${mountPoint}`, O.RDONLY | O.DIRECTORY | O.CLOEXEC);
  try {
    const fd = check(native.syscall(SYS.open_by_handle_at, mfd, handle, O.PATH | O.CLOEXEC), `open the inode of ${at} by its handle (from crest)`);
    try {
      return passFd(r, r.pid, fd, `the inode of ${at}`);
    } finally {
      closeSync(fd);
    }
  } finally {
    closeSync(mfd);
  }
}
