// --inherit-fd fd[N]:KEY, as criu's: a description whose key (the kind's
// inheritKey: pipe:[INO], socket:[INO], a regular file's path without its
// leading '/') is exactly KEY is not recreated; the task gets crest's own
// fd N instead, at every fd that referred to it (the fd table places it as
// any other description). crest passes the file into the task over a
// socket pair the task makes (SCM_RIGHTS): it works whatever the task's
// PID namespace or credentials. A pipe is reopened through /proc with the
// flags of each dumped end (criu's reopen_pipe), so both ends of a pipe
// named by one key get their own access mode; anything else is the
// caller's description itself, with its flags and position.
import type { FileKind, OpenContext } from "./file-kind.js";
import type { Remote } from "../../remote/remote.js";
import type { file_entry } from "../../images/index.js";
import { AT_FDCWD, F, O, SYS } from "../../sys/constants.js";
import { check } from "../../sys/errno.js";
import { AF_UNIX } from "../sockets/unix-diag.js";
import { sendWithFiles } from "../sockets/queue.js";
import { takeFd } from "../sockets/unix.js";
import { closeSync, openSync } from "node:fs";
import type { RestoreRun } from "../context.js";
import { ownedAtRestore } from "../namespaces/owned.js";

const SOCK_DGRAM = 2, SOCK_CLOEXEC = O.CLOEXEC, MSG_CMSG_CLOEXEC = 0x40000000;
const SOL_SOCKET = 1, SCM_RIGHTS = 1;

/**
 * The task's fd for `entry` if the caller gave it with --inherit-fd
 * (placed in the task now), undefined if not.
 */
export function inherited(c: OpenContext, kind: FileKind, entry: file_entry): number | undefined {
  const k = kind.inheritKey?.(entry, c.run);
  if (!k) return undefined;
  const given = c.run.opts.inheritFd.find((i) => i.key === k.key);
  if (!given) return undefined;
  c.run.log.info(`File ${entry.id} (${k.key}) of task ${c.task.vpid} is restored from inherit fd ${given.fd}`);
  const fd = giveFd(c, given.fd, `crest's fd ${given.fd} (--inherit-fd fd[${given.fd}]:${k.key})`);
  if (k.reopen === undefined) return fd;
  const { r, task } = c;
  // O_NONBLOCK: a pipe's read end opened alone would wait for a writer; the flags are set as dumped after.
  r.resetScratch();
  const path = r.putString(`/proc/self/fd/${fd}`);
  const mine = r.call(`reopen ${k.key} in task ${task.vpid}`, SYS.openat, AT_FDCWD, path, (k.reopen & ~(O.CREAT | O.TRUNC)) | O.NONBLOCK | O.CLOEXEC, 0);
  r.call(`set the flags of ${k.key} in task ${task.vpid}`, SYS.fcntl, mine, F.SETFL, k.reopen & (O.NONBLOCK | O.ASYNC | O.DIRECT | O.APPEND));
  r.later({ what: `close ${k.key} as given in task ${task.vpid}`, nr: SYS.close, args: [fd] });
  return mine;
}

/** Puts crest's fd `mine` into the task: the task makes a socket pair, crest sends the file from one end, the task receives it at the other. */
export function giveFd({ r, task }: Pick<OpenContext, "r" | "task">, mine: number, what: string): number {
  return passFd(r, task.vpid, mine, what);
}

/** giveFd for a task known by its Remote (r.pid, as crest sees it) and its PID in the tree (`vpid`, for messages). */
export function passFd(r: Remote, vpid: number, mine: number, what: string): number {
  const task = { pid: r.pid, vpid };
  r.resetScratch();
  const pairAt = r.alloc(8);
  r.call(`make a socket pair in task ${task.vpid} to pass ${what}`, SYS.socketpair, AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pairAt);
  const pair = r.read(pairAt, 8);
  const rx = pair.readInt32LE(0), tx = pair.readInt32LE(4);
  try {
    const sender = takeFd(task.pid, tx, `the socket passing ${what}`);
    try {
      check(sendWithFiles(sender, Buffer.from([0]), [mine], 0), `pass ${what} into task ${task.vpid}`);
    } finally {
      closeSync(sender);
    }
    // struct msghdr with one byte of data and room for one fd.
    r.resetScratch();
    const byte = r.alloc(8);
    const control = r.alloc(24);
    const iov = Buffer.alloc(16);
    iov.writeBigUInt64LE(byte, 0);
    iov.writeBigUInt64LE(1n, 8);
    const msg = Buffer.alloc(56);
    msg.writeBigUInt64LE(r.put(iov), 16);
    msg.writeBigUInt64LE(1n, 24);
    msg.writeBigUInt64LE(control, 32);
    msg.writeBigUInt64LE(24n, 40);
    r.call(`receive ${what} in task ${task.vpid}`, SYS.recvmsg, rx, r.put(msg), MSG_CMSG_CLOEXEC);
    const cmsg = r.read(control, 24);
    if (cmsg.readInt32LE(8) !== SOL_SOCKET || cmsg.readInt32LE(12) !== SCM_RIGHTS) throw new Error(`task ${task.vpid} did not receive ${what}`);
    return cmsg.readInt32LE(16);
  } finally {
    r.later({ what: `close a socket of task ${task.vpid}`, nr: SYS.close, args: [rx] });
    r.later({ what: `close a socket of task ${task.vpid}`, nr: SYS.close, args: [tx] });
  }
}

/**
 * Opens, for the task, a path under crest's /proc (a file of another task
 * named by crest's PID for it): by the task itself where its /proc is
 * crest's, otherwise (a tree with its own mount namespace, whose /proc is
 * its own or absent) opened by crest and passed in. Returns the task's fd.
 */
export function openCrestProcPath(run: RestoreRun, r: Remote, vpid: number, path: string, flags: number, what: string): number {
  if (!ownedAtRestore(run, "mnt")) {
    r.resetScratch();
    return r.call(() => `open ${path} in task ${vpid}`, SYS.openat, AT_FDCWD, r.putString(path), flags | O.CLOEXEC, 0);
  }
  const mine = openSync(path, flags & ~O.CLOEXEC);
  try {
    return passFd(r, vpid, mine, what);
  } finally {
    closeSync(mine);
  }
}
