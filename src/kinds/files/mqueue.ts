// An fd of a POSIX message queue (mq_open, or open(2) of a file on an
// mqueue mount: the same description either way). The queue itself, with
// its messages, is the IPC namespace's (namespaces/mqueue.ts, created before
// any fd is opened); the fd keeps its access mode and O_NONBLOCK (the
// queue's mq_flags are the fd's) and is reopened with mq_open in the task,
// which is in that namespace. Written as a regular file entry (CRIU has no
// type for it) marked with crest's own `mqueue` field.
import { basename } from "node:path";
import { setAsync, type FileKind } from "./file-kind.js";
import { UnsupportedError } from "../context.js";
import { fd_types } from "../../images/index.js";
import { MQUEUE_MAGIC, O, SYS } from "../../sys/constants.js";
import { native } from "../../sys/native.js";
import { devMajor } from "../../sys/dev.js";
import { isTreeMqueue } from "../namespaces/mqueue.js";

/** Whether the file at path (a /proc/PID/fd/N link) is on an mqueue file system. */
function onMqueueFs(path: string): boolean {
  const b = Buffer.alloc(120);
  return native.syscall(SYS.statfs, path, b) === 0 && Number(b.readBigInt64LE(0)) === MQUEUE_MAGIC;
}

export const mqueueFileKind: FileKind = {
  name: "mqueue",
  type: fd_types.REG,
  // An mqueue file system is on an anonymous device (major 0): files on disks are not asked about.
  claims: (f) => f.link.kind === "path" && (f.info.flags & O.PATH) === 0 && devMajor(f.st.dev) === 0 && onMqueueFs(f.via),
  owns: (entry) => entry.reg?.mqueue === true,
  dump(f, run) {
    const path = f.link.kind === "path" ? f.link.path : f.text;
    const name = basename(path);
    if (f.link.kind === "path" && f.link.deleted) {
      throw new UnsupportedError(`${f.what} is the POSIX message queue /${name}, removed (mq_unlink) while open; crest keeps only queues that still have their name: keep it until after the dump`);
    }
    if (!isTreeMqueue(run, f.st.dev)) {
      throw new UnsupportedError(`${f.what} is the POSIX message queue /${name} (inode ${f.st.ino}) of an IPC namespace that is not the tree's own; crest keeps the queues of a tree that has its own IPC namespace only (start it with one: crest run --ns pid,ipc,...)`);
    }
    const id = run.nextId("file");
    run.files.push({ type: fd_types.REG, id, reg: { id, flags: f.info.flags & ~O.CLOEXEC, pos: f.info.pos < 0n ? 0n : f.info.pos, fown: f.fown, name: `/${name}`, build_id: [], mqueue: true } });
    return id;
  },
  fown: (entry) => entry.reg?.fown,
  open({ r, task }, entry) {
    const e = entry.reg!;
    const what = `POSIX message queue ${e.name} (file ${entry.id}) in task ${task.vpid}`;
    r.resetScratch();
    // mq_open takes the name without its '/'; the fd it gives is close-on-exec, as the fd table wants.
    const fd = r.call(`open ${what}`, SYS.mq_open, r.putString(e.name.slice(1)), e.flags & (O.ACCMODE | O.NONBLOCK), 0, 0);
    if (e.pos) r.call(`set the position of ${what}`, SYS.lseek, fd, e.pos, 0);
    setAsync(r, fd, e.flags, what);
    return fd;
  },
};
