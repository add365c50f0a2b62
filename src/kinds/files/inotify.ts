// inotify: the instance's flags and its watches, from fdinfo ("inotify wd:
// ino: sdev: mask: ... f_handle:" lines). Each watched inode is kept as its
// exportfs file handle (as CRIU); the dump opens every handle once to make
// sure it still names a live inode. Restore (as CRIU): inotify_init1, then
// for each watch, lowest wd first, the task opens the handle through a mount
// of its filesystem and adds the watch on /proc/self/fd/N; the wd is forced
// with INOTIFY_IOC_SETNEXTWD where the kernel has it, else watches are added
// and removed until the kernel hands out the wanted number (the IN_IGNORED
// events that leaves are read away). Events queued but not read at dump are
// lost (CRIU drops them too).
import { closeSync, openSync, readFileSync, readlinkSync, statSync } from "node:fs";
import type { RestoreRun } from "../context.js";
import { restoreState, UnsupportedError } from "../context.js";
import { fd_types, type fh_entry, type inotify_wd_entry } from "../../images/index.js";
import { F, O, SYS } from "../../sys/constants.js";
import { check, EAGAIN, EPERM } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { ownedAtRestore } from "../namespaces/owned.js";
import { passFd } from "./inherit.js";
import { sys } from "../../sys/syscalls.js";
import { parseMountinfo, type MountInfo } from "../../proc/index.js";
import type { InotifyWatch } from "../../proc/fdinfo-kinds.js";
import { isAnon, type FdFacts, type FileKind } from "./file-kind.js";
import { kernelHas } from "../../kernel/facts.js";
import { RemoteError, type Remote } from "../../remote/remote.js";

/** _IOW('I', 0, __s32): needs CONFIG_CHECKPOINT_RESTORE. */
const INOTIFY_IOC_SETNEXTWD = 0x40044900;
const IN_ALL_EVENTS = 0xfff;
/** Flags the kernel keeps with a watch and shows in its mask. */
const IN_EXCL_UNLINK = 0x04000000;
const IN_ONESHOT = 0x80000000;
/** FS_EVENT_ON_CHILD: a kernel-internal bit some kernels show; CRIU strips it at dump. */
const FS_EVENT_ON_CHILD = 0x08000000;
/** MAX_HANDLE_SZ, and the u64 words fh_entry.handle carries (CRIU's fixed 16). */
const MAX_HANDLE = 128;
const HANDLE_WORDS = 16;
/** Bound on add/remove rounds when the wd cannot be set directly. */
const MAX_ROUNDS = 1 << 16;

const major = (sdev: number) => sdev >>> 20;
const minor = (sdev: number) => sdev & 0xfffff;

/** A mount of the filesystem `sdev` (kernel format) names, the one showing its whole tree preferred. */
function mountOf(mounts: MountInfo[], sdev: number): MountInfo | undefined {
  const of = mounts.filter((m) => m.major === major(sdev) && m.minor === minor(sdev));
  return of.find((m) => m.root === "/") ?? of[0];
}

const crestMounts = (): MountInfo[] => parseMountinfo(readFileSync("/proc/self/mountinfo", "utf8"));
/** Restore: crest's mounts, read once, to open watched inodes through. */
const mounts = restoreState("inotify mounts", crestMounts);

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

/**
 * Opens the watched inode from crest to check the handle still names it,
 * linked somewhere; returns its path, which criu's restore opens instead of
 * the handle (crest's opens the handle).
 */
function checkWatch(f: FdFacts, w: InotifyWatch, mounts: MountInfo[]): string {
  const at = `${f.what} (inotify) watch ${w.wd} on inode ${w.ino} of device ${major(w.sdev)}:${minor(w.sdev)}`;
  const fh = w.fhandle;
  if (!fh) throw new UnsupportedError(`${at}: fdinfo shows no file handle (kernel without CONFIG_EXPORTFS?); crest cannot find the inode`);
  if (fh.bytes > MAX_HANDLE) throw new UnsupportedError(`${at}: its file handle is ${fh.bytes} bytes; crest does not support handles over ${MAX_HANDLE}`);
  const m = mountOf(mounts, w.sdev);
  if (!m) throw new UnsupportedError(`${at}: no mount of that device is visible to crest; crest does not support it`);
  // Not O_PATH: open_by_handle_at refuses an O_PATH mount fd (EBADF).
  const mfd = openSync(m.mountPoint, O.RDONLY | O.DIRECTORY | O.CLOEXEC);
  try {
    const fd = sys(SYS.open_by_handle_at, mfd, packHandle(fh.bytes, fh.type, fh.handle), O.PATH | O.CLOEXEC);
    if (fd < 0) throw new UnsupportedError(`${at}: its file handle does not open (errno ${-fd}); crest cannot find the watched inode (nor can criu's irmap, with or without --force-irmap)`);
    try {
      const st = statSync(`/proc/self/fd/${fd}`, { bigint: true });
      if (st.ino !== w.ino) throw new UnsupportedError(`${at}: its file handle opens inode ${st.ino} instead`);
      if (st.nlink === 0n) throw new UnsupportedError(`${at}: the watched file is deleted; crest does not keep a watch on a deleted file yet (criu restores it on the file's ghost)`);
      return readlinkSync(`/proc/self/fd/${fd}`);
    } finally {
      closeSync(fd);
    }
  } finally {
    closeSync(mfd);
  }
}

export const inotifyKind: FileKind = {
  name: "inotify",
  type: fd_types.INOTIFY,
  claims: isAnon("inotify"),
  dump(f, run) {
    const mounts = crestMounts();
    const watches = [...f.info.inotifyWatches].sort((a, b) => a.wd - b.wd);
    const id = run.nextId("file");
    const wd: inotify_wd_entry[] = watches.map((w) => ({
      id, i_ino: w.ino, mask: (w.mask & ~FS_EVENT_ON_CHILD) >>> 0, ignored_mask: w.ignoredMask, s_dev: w.sdev, wd: w.wd,
      f_handle: { bytes: w.fhandle!.bytes, type: w.fhandle!.type, handle: handleWords(w.fhandle!.handle), path: checkWatch(f, w, mounts) },
    }));
    run.files.push({ type: fd_types.INOTIFY, id, ify: { id, flags: f.info.flags & ~O.CLOEXEC, fown: f.fown, wd } });
    run.log.info(`${f.what}: inotify with ${wd.length} watch(es); events queued in it are not kept`);
    return id;
  },
  fown: (entry) => entry.ify?.fown,
  open({ r, task, run }, entry) {
    const e = entry.ify!;
    const what = `inotify ${entry.id} in task ${task.vpid}`;
    // Non-blocking while watches are added: removed strays leave IN_IGNORED events to drain.
    const fd = r.call(`create ${what}`, SYS.inotify_init1, O.CLOEXEC | O.NONBLOCK);
    let strays = 0;
    for (const w of [...e.wd].sort((a, b) => a.wd - b.wd)) strays += addWatch(r, run, fd, w, what);
    if (strays) drain(r, fd, what);
    if ((e.flags & (O.ASYNC | O.NONBLOCK)) !== O.NONBLOCK) r.call(`set the flags of ${what}`, SYS.fcntl, fd, F.SETFL, e.flags & (O.ASYNC | O.NONBLOCK));
    return fd;
  },
};

/** Adds one watch under its wd; returns how many stray watches it added and removed on the way. */
function addWatch(r: Remote, run: RestoreRun, ifd: number, w: inotify_wd_entry, what: string): number {
  const at = `watch ${w.wd} of ${what} (inode ${w.i_ino} of device ${major(w.s_dev)}:${minor(w.s_dev)})`;
  const m = mountOf(run.state(mounts), w.s_dev);
  if (!m) throw new Error(`restore ${at}: no mount of that device`);
  r.resetScratch();
  const mfd = r.call(`open mount ${m.mountPoint} for ${at}`, SYS.openat, -100, r.putString(m.mountPoint), O.RDONLY | O.DIRECTORY | O.CLOEXEC, 0);
  let hfd = -1;
  let strays = 0;
  try {
    const h = w.f_handle;
    const handle = packHandle(h.bytes, h.type, handleBytes(h));
    const got = r.syscall(SYS.open_by_handle_at, mfd, r.put(handle), O.PATH | O.CLOEXEC);
    // In a user namespace of its own the task may not (CAP_DAC_READ_SEARCH counts in the first one only): crest opens it and hands it over.
    hfd = got === -EPERM && ownedAtRestore(run, "user") ? openByHandleForTask(r, m.mountPoint, handle, at) : got;
    if (hfd < 0) throw new RemoteError(`open the watched inode of ${at} by its handle`, -hfd);
    const path = r.putString(`/proc/self/fd/${hfd}`);
    // The mask as the kernel shows it: events plus the flags it keeps (CRIU keeps only the events).
    const mask = (w.mask & (IN_ALL_EVENTS | IN_EXCL_UNLINK | IN_ONESHOT)) >>> 0;
    // Where the kernel cannot set the next wd (no CONFIG_CHECKPOINT_RESTORE), the loop below walks up to it.
    if (kernelHas("inotify_setnextwd")) r.call(`set the next wd of ${what} to ${w.wd}`, SYS.ioctl, ifd, INOTIFY_IOC_SETNEXTWD, w.wd);
    for (let round = 0; ; round++) {
      const got = r.call(`add ${at}`, SYS.inotify_add_watch, ifd, path, mask);
      if (got === w.wd) return strays;
      if (got > w.wd || round >= MAX_ROUNDS) throw new Error(`restore ${at}: the kernel gave wd ${got} instead`);
      r.call(`remove the stray wd ${got} of ${what}`, SYS.inotify_rm_watch, ifd, got);
      strays++;
    }
  } finally {
    if (hfd >= 0) r.syscall(SYS.close, hfd);
    r.syscall(SYS.close, mfd);
  }
}

/** open_by_handle_at from crest, on the mount as the task sees it; the fd passed into the task. */
function openByHandleForTask(r: Remote, mountPoint: string, handle: Buffer, at: string): number {
  const mfd = openSync(`/proc/${r.pid}/root${mountPoint}`, O.RDONLY | O.DIRECTORY | O.CLOEXEC);
  try {
    const fd = check(native.syscall(SYS.open_by_handle_at, mfd, handle, O.PATH | O.CLOEXEC), `open the watched inode of ${at} by its handle (from crest)`);
    try {
      return passFd(r, r.pid, fd, `the watched inode of ${at}`);
    } finally {
      closeSync(fd);
    }
  } finally {
    closeSync(mfd);
  }
}

/** Reads away the IN_IGNORED events the removed strays queued, so the queue starts empty. */
function drain(r: Remote, fd: number, what: string): void {
  r.resetScratch();
  const buf = r.alloc(4096);
  for (;;) {
    const n = r.syscall(SYS.read, fd, buf, 4096);
    if (n === -EAGAIN) return;
    if (n <= 0) throw new Error(`drain the queue of ${what}: read gave ${n}`);
  }
}
