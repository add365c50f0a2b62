// fanotify: the group's fanotify_init flags and event flags, and its marks,
// from fdinfo ("fanotify flags: event-flags:", then one line a mark), as
// criu's fanotify_file_entry. An inode mark keeps its inode as an exportfs
// file handle (fhandle.ts); a mount mark its mount's id and path, as the
// task sees it. Restore (as criu): fanotify_init, then for each mark
// fanotify_mark(FAN_MARK_ADD | its flags) of its mask and of its ignored
// mask, on the inode opened by its handle or on the mount's path. Events
// queued but not read at dump are lost (criu drops them too). A
// filesystem-wide mark (FAN_MARK_FILESYSTEM) is refused: criu's images have
// no place for it.
import { readFileSync } from "node:fs";
import { UnsupportedError } from "../context.js";
import { fd_types, mark_type, type fanotify_mark_entry } from "../../images/index.js";
import { AT_FDCWD, F, O, SYS } from "../../sys/constants.js";
import { parseMountinfo } from "../../proc/index.js";
import { isAnon, type FileKind } from "./file-kind.js";
import { handleMounts, dumpHandle, major, minor, openHandleInTask } from "./fhandle.js";

const FAN_CLOEXEC = 0x1;
const FAN_MARK_ADD = 0x1, FAN_MARK_MOUNT = 0x10, FAN_MARK_IGNORED_MASK = 0x20;

export const fanotifyKind: FileKind = {
  name: "fanotify",
  type: fd_types.FANOTIFY,
  claims: isAnon("fanotify"),
  dump(f, run) {
    const fa = f.info.fanotify;
    if (!fa) throw new UnsupportedError(`${f.what} (fanotify) shows no "fanotify flags:" line in its fdinfo; crest cannot tell what it is`);
    const id = run.nextId("file");
    const mounts = handleMounts(run, f.pid);
    let taskMounts: ReturnType<typeof parseMountinfo> | undefined;
    const mark = fa.marks.map((m, i): fanotify_mark_entry => {
      const at = `${f.what} (fanotify) mark ${i}`;
      if (m.kind === "inode") {
        return {
          id, type: mark_type.INODE, mflags: m.mflags, mask: m.mask, ignored_mask: m.ignoredMask, s_dev: m.sdev,
          ie: { i_ino: m.ino, f_handle: dumpHandle(run, at, m.fhandle, m.ino, m.sdev, mounts) },
        };
      }
      if (m.kind === "mount") {
        taskMounts ??= parseMountinfo(readFileSync(`/proc/${f.pid}/mountinfo`, "utf8"));
        const mi = taskMounts.find((x) => x.mntId === m.mntId);
        if (!mi) throw new UnsupportedError(`${at} is on mount ${m.mntId}, which process ${f.pid} does not see; crest cannot tell where it is`);
        return {
          id, type: mark_type.MOUNT, mflags: m.mflags, mask: m.mask, ignored_mask: m.ignoredMask, s_dev: (mi.major << 20) | mi.minor,
          me: { mnt_id: m.mntId, path: mi.mountPoint },
        };
      }
      throw new UnsupportedError(`${at} is a ${m.kind === "sb" ? "filesystem-wide (FAN_MARK_FILESYSTEM)" : "kind of"} mark crest does not support yet (criu's images keep inode and mount marks only)`);
    });
    run.files.push({ type: fd_types.FANOTIFY, id, ffy: { id, flags: f.info.flags & ~O.CLOEXEC, fown: f.fown, faflags: fa.flags, evflags: fa.eventFlags, mark } });
    run.log.info(`${f.what}: fanotify with ${mark.length} mark(s); events queued in it are not kept`);
    return id;
  },
  fown: (entry) => entry.ffy?.fown,
  open({ r, task, run }, entry) {
    const e = entry.ffy!;
    const what = `fanotify ${entry.id} in task ${task.vpid}`;
    // Close-on-exec is the fd table's to set, per fd.
    const fd = r.call(`create ${what}`, SYS.fanotify_init, e.faflags & ~FAN_CLOEXEC, e.evflags);
    e.mark.forEach((m, i) => {
      const at = `mark ${i} of ${what} (${m.type === mark_type.MOUNT ? `mount ${m.me?.path}` : `inode ${m.ie?.i_ino} of device ${major(m.s_dev)}:${minor(m.s_dev)}`})`;
      let flags = FAN_MARK_ADD | m.mflags;
      let close = () => {};
      let path: bigint;
      if (m.type === mark_type.MOUNT) {
        if (!m.me?.path) throw new Error(`restore ${at}: the image has no path for its mount`);
        flags |= FAN_MARK_MOUNT;
        r.resetScratch();
        path = r.putString(m.me.path);
      } else {
        if (!m.ie) throw new Error(`restore ${at}: the image has no inode for it`);
        const h = openHandleInTask(r, run, m.s_dev, m.ie.i_ino, m.ie.f_handle, at);
        close = h.close;
        path = r.putString(`/proc/self/fd/${h.fd}`);
      }
      try {
        if (m.mask) r.call(`add ${at}`, SYS.fanotify_mark, fd, flags, m.mask, AT_FDCWD, path);
        if (m.ignored_mask) r.call(`add the ignored mask of ${at}`, SYS.fanotify_mark, fd, flags | FAN_MARK_IGNORED_MASK, m.ignored_mask, AT_FDCWD, path);
      } finally {
        close();
      }
    });
    if (e.flags & (O.ASYNC | O.NONBLOCK)) r.call(`set the flags of ${what}`, SYS.fcntl, fd, F.SETFL, e.flags & (O.ASYNC | O.NONBLOCK));
    return fd;
  },
};
