// POSIX message queues of the tree's own IPC namespace (the mqueue file
// system is one per IPC namespace), with their messages. CRIU has no image
// for them: crest writes crest-mqueue-<ipc ns id>.json beside the images
// (covered by the manifest; crit never reads it).
//
// Dump, with the tree frozen: crest reaches the namespace's mqueue file
// system through a mount of its own that is mounted nowhere (fsopen in the
// namespace: the kernel keys the superblock by IPC namespace, so it is the
// namespace's one), lists the queues, and takes each queue's messages out
// (mq_timedreceive on an O_NONBLOCK fd: highest priority first, oldest
// first within one) and puts them all back in that sequence, which leaves
// the same order. A queue with a notification registered (mq_notify) is
// refused: a message sent to an empty queue would fire it, and crest cannot
// register it again for its task.
//
// Restore, right after the root is born in its new IPC namespace (its
// sysctls set by ipc.ts, its mqueue mounts made by mnt.ts): mq_open with
// O_CREAT|O_EXCL and the queue's maxmsg/msgsize from crest's thread moved
// into the namespace, fchown/fchmod, then each message sent again.
import { closeSync, fstatSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { dumpState, UnsupportedError, type DumpRun, type RestoreRun, type TaskKind } from "../context.js";
import { check, EAGAIN } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { inNamespaceOf } from "../../sys/namespace.js";
import { devMajor, devMinor } from "../../sys/dev.js";
import { kdev } from "./mnt-tree.js";
import { FSCONFIG, FSMOUNT_CLOEXEC, FSOPEN_CLOEXEC, O, SYS } from "../../sys/constants.js";
import { ownedAtRestore } from "./owned.js";

/** Version of crest's own mqueue file. */
const VERSION = 1;

export const mqueueFile = (ipcNsId: number): string => `crest-mqueue-${ipcNsId}.json`;

interface MqMessage {
  prio: number;
  /** The message's bytes, base64. */
  data: string;
}

interface MqQueue {
  /** Its name in the namespace, without the leading '/'. */
  name: string;
  /** Permission bits, and owner as crest sees it. */
  mode: number;
  uid: number;
  gid: number;
  maxmsg: number;
  msgsize: number;
  /** In the order mq_timedreceive gives them. */
  messages: MqMessage[];
}

interface MqFile {
  crest_mqueue: number;
  ipc_ns_id: number;
  queues: MqQueue[];
}

/** struct mq_attr: mq_flags, mq_maxmsg, mq_msgsize, mq_curmsgs (longs), then 4 reserved. */
const ATTR_SIZE = 64;

function attrOf(fd: number, what: string): { maxmsg: number; msgsize: number; curmsgs: number } {
  const a = Buffer.alloc(ATTR_SIZE);
  check(native.syscall(SYS.mq_getsetattr, fd, null, a), `read the attributes of ${what}`);
  return { maxmsg: Number(a.readBigInt64LE(8)), msgsize: Number(a.readBigInt64LE(16)), curmsgs: Number(a.readBigInt64LE(24)) };
}

/** The "QSIZE:.. NOTIFY:.. SIGNO:.. NOTIFY_PID:.." text reading a queue's file gives, as numbers. */
function queueStatus(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/([A-Z_]+):(-?\d+)/g)) out[m[1]!] = Number(m[2]);
  return out;
}

/**
 * Runs fn with crest's fd of a mount, mounted nowhere, of the mqueue file
 * system of the IPC namespace of process pid.
 */
function withMqueueFs<T>(pid: number, fn: (mfd: number) => T): T {
  const mfd = inNamespaceOf(pid, "ipc", () => {
    const fs = check(native.syscall(SYS.fsopen, "mqueue", FSOPEN_CLOEXEC), `open the mqueue file system of the IPC namespace of process ${pid}`);
    try {
      check(native.syscall(SYS.fsconfig, fs, FSCONFIG.CMD_CREATE, null, null, 0), `set up the mqueue file system of the IPC namespace of process ${pid}`);
      return check(native.syscall(SYS.fsmount, fs, FSMOUNT_CLOEXEC, 0), `mount the mqueue file system of the IPC namespace of process ${pid}`);
    } finally {
      closeSync(fs);
    }
  });
  try {
    return fn(mfd);
  } finally {
    closeSync(mfd);
  }
}

/** The device of the tree's own mqueue file system (undefined: the tree shares crest's IPC namespace), read once a dump. */
const treeMqueue = dumpState("tree mqueue fs", (run): { dev: number } | undefined =>
  run.ownNamespaces.has("ipc") ? withMqueueFs(run.root.pid, (mfd) => ({ dev: fstatSync(mfd).dev })) : undefined);

/** Whether device dev (as stat gives it) is the mqueue file system of the tree's own IPC namespace (whose queues crest keeps). */
export const isTreeMqueue = (run: DumpRun, dev: number): boolean => run.state(treeMqueue)?.dev === dev;

/** The same for a mount's root_dev (the kernel's MKDEV encoding, as mountinfo and mnt_entry have it). */
export function isTreeMqueueMount(run: DumpRun, rootDev: number): boolean {
  const dev = run.state(treeMqueue)?.dev;
  if (dev === undefined) return false;
  return kdev(devMajor(dev), devMinor(dev)) === rootDev;
}

/** Takes every message out of the queue at fd (O_NONBLOCK), in the order a reader would get them. */
function takeAll(fd: number, msgsize: number, what: string): Array<{ prio: number; data: Buffer }> {
  const out: Array<{ prio: number; data: Buffer }> = [];
  const buf = Buffer.alloc(msgsize);
  const prio = Buffer.alloc(4);
  for (;;) {
    const n = native.syscall(SYS.mq_timedreceive, fd, buf, msgsize, prio, null);
    if (n === -EAGAIN) return out; // empty
    check(n, `take message ${out.length} out of ${what}`);
    out.push({ prio: prio.readUInt32LE(0), data: Buffer.from(buf.subarray(0, n)) });
  }
}

function sendAll(fd: number, messages: ReadonlyArray<{ prio: number; data: Buffer }>, what: string): void {
  for (const [i, m] of messages.entries()) {
    check(native.syscall(SYS.mq_timedsend, fd, m.data, m.data.length, m.prio, null), `put message ${i} (priority ${m.prio}) back on ${what}`);
  }
}

function dumpQueues(run: DumpRun): MqFile {
  const pid = run.root.pid;
  return withMqueueFs(pid, (mfd) => {
    const dir = `/proc/self/fd/${mfd}`;
    const names = readdirSync(dir).sort();
    // Every refusal first, before any queue is touched.
    for (const name of names) {
      const s = queueStatus(readFileSync(join(dir, name), "utf8"));
      if (s.NOTIFY_PID) {
        throw new UnsupportedError(`POSIX message queue /${name} of the IPC namespace of process ${pid} has a notification registered by process ${s.NOTIFY_PID} (mq_notify, signal ${s.SIGNO}); crest cannot register it again at restore: have the process remove it (mq_notify with no sigevent) before the dump`);
      }
    }
    const queues: MqQueue[] = [];
    for (const name of names) {
      const what = `POSIX message queue /${name} of the IPC namespace of process ${pid}`;
      const st = statSync(join(dir, name));
      const fd = check(native.syscall(SYS.openat, mfd, name, O.RDWR | O.NONBLOCK | O.CLOEXEC), `open ${what}`);
      try {
        const { maxmsg, msgsize, curmsgs } = attrOf(fd, what);
        let messages: Array<{ prio: number; data: Buffer }> = [];
        try {
          messages = takeAll(fd, msgsize, what);
        } finally {
          // The tree is left as it was, whatever happened.
          sendAll(fd, messages, what);
        }
        if (messages.length !== curmsgs) throw new Error(`${what} held ${curmsgs} messages, crest took ${messages.length} out`);
        queues.push({
          name, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, maxmsg, msgsize,
          messages: messages.map((m) => ({ prio: m.prio, data: m.data.toString("base64") })),
        });
      } finally {
        closeSync(fd);
      }
    }
    return { crest_mqueue: VERSION, ipc_ns_id: run.root.ids.ipc_ns_id!, queues };
  });
}

// --- restore ------------------------------------------------------------------

function readQueues(run: RestoreRun, id: number): MqFile | undefined {
  const path = join(run.images.dir, mqueueFile(id));
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return undefined; // a dump of crest before queues were kept, or by criu: the namespace had none kept
  }
  let f: MqFile;
  try {
    f = JSON.parse(text) as MqFile;
  } catch (e) {
    throw new Error(`${path}: not JSON: ${(e as Error).message}`);
  }
  if (f.crest_mqueue !== VERSION || !Array.isArray(f.queues)) throw new Error(`${path}: not a crest mqueue file of version ${VERSION}`);
  return f;
}

function createQueue(q: MqQueue, what: string): void {
  const attr = Buffer.alloc(ATTR_SIZE);
  attr.writeBigInt64LE(BigInt(q.maxmsg), 8);
  attr.writeBigInt64LE(BigInt(q.msgsize), 16);
  const fd = check(native.syscall(SYS.mq_open, q.name, O.RDWR | O.CREAT | O.EXCL | O.NONBLOCK, q.mode & 0o777, attr), `create ${what}`);
  try {
    check(native.syscall(SYS.fchown, fd, q.uid, q.gid), `set the owner of ${what}`);
    // After fchown (which clears set-id bits); crest's umask cut the mode mq_open was given.
    check(native.syscall(SYS.fchmod, fd, q.mode), `set the mode of ${what}`);
    sendAll(fd, q.messages.map((m) => ({ prio: m.prio, data: Buffer.from(m.data, "base64") })), what);
  } finally {
    closeSync(fd);
  }
}

export const mqueueKind: TaskKind = {
  name: "mqueue",
  // After ipc namespace's (the tree is still frozen).
  finishDump(run) {
    if (!run.ownNamespaces.has("ipc")) return;
    const f = dumpQueues(run);
    run.images.writeFile(mqueueFile(f.ipc_ns_id), JSON.stringify(f));
    run.log.info(`POSIX message queues of the IPC namespace: ${f.queues.map((q) => `/${q.name} (${q.messages.length} messages)`).join(", ") || "none"}`);
  },
  // After ipc's born: the namespace's fs/mqueue sysctls are set. Before any task opens its queues (the fd table).
  born(task, run) {
    if (task !== run.tasks[0]) return;
    const id = task.ids.ipc_ns_id!;
    const f = readQueues(run, id);
    if (!f?.queues.length) return;
    if (!ownedAtRestore(run, "ipc")) {
      throw new Error(`${mqueueFile(id)} holds the POSIX message queues ${f.queues.map((q) => `/${q.name}`).join(", ")} of the tree's own IPC namespace, but this restore does not make one (its IPC namespace is given); crest recreates queues only in a new IPC namespace of the tree`);
    }
    // The queues are charged to crest's user (RLIMIT_MSGQUEUE), whose queues the dumped tree's were too when it ran as root.
    inNamespaceOf(task.pid, "ipc", () => {
      for (const q of f.queues) createQueue(q, `POSIX message queue /${q.name} of the IPC namespace ${id} (${mqueueFile(id)})`);
    });
  },
};
