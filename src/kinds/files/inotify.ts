// inotify: the instance's flags and its watches, from fdinfo ("inotify wd:
// ino: sdev: mask: ... f_handle:" lines). Each watched inode is kept as its
// exportfs file handle (as CRIU; fhandle.ts). Restore (as CRIU):
// inotify_init1, then for each watch, lowest wd first, the task opens the
// handle and adds the watch on /proc/self/fd/N; the wd is forced
// with INOTIFY_IOC_SETNEXTWD where the kernel has it, else watches are added
// and removed until the kernel hands out the wanted number (the IN_IGNORED
// events that leaves are read away). Events queued but not read at dump are
// lost (CRIU drops them too).
import type { RestoreRun } from "../context.js";
import { fd_types, type inotify_wd_entry } from "../../images/index.js";
import { F, O, SYS } from "../../sys/constants.js";
import { EAGAIN } from "../../sys/errno.js";
import { isAnon, type FileKind } from "./file-kind.js";
import { kernelHas } from "../../kernel/facts.js";
import type { Remote } from "../../remote/remote.js";
import { handleMounts, dumpHandle, major, minor, openHandleInTask } from "./fhandle.js";

/** _IOW('I', 0, __s32): needs CONFIG_CHECKPOINT_RESTORE. */
const INOTIFY_IOC_SETNEXTWD = 0x40044900;
const IN_ALL_EVENTS = 0xfff;
/** Flags the kernel keeps with a watch and shows in its mask. */
const IN_EXCL_UNLINK = 0x04000000;
const IN_ONESHOT = 0x80000000;
/** FS_EVENT_ON_CHILD: a kernel-internal bit some kernels show; CRIU strips it at dump. */
const FS_EVENT_ON_CHILD = 0x08000000;
/** Bound on add/remove rounds when the wd cannot be set directly. */
const MAX_ROUNDS = 1 << 16;

export const inotifyKind: FileKind = {
  name: "inotify",
  type: fd_types.INOTIFY,
  claims: isAnon("inotify"),
  dump(f, run) {
    const mounts = handleMounts(run, f.pid);
    const watches = [...f.info.inotifyWatches].sort((a, b) => a.wd - b.wd);
    const id = run.nextId("file");
    const wd: inotify_wd_entry[] = watches.map((w) => ({
      id, i_ino: w.ino, mask: (w.mask & ~FS_EVENT_ON_CHILD) >>> 0, ignored_mask: w.ignoredMask, s_dev: w.sdev, wd: w.wd,
      f_handle: dumpHandle(run, `${f.what} (inotify) watch ${w.wd}`, w.fhandle, w.ino, w.sdev, mounts),
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
  const h = openHandleInTask(r, run, w.s_dev, w.i_ino, w.f_handle, at);
  let strays = 0;
  try {
    const path = r.putString(`/proc/self/fd/${h.fd}`);
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
    h.close();
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
