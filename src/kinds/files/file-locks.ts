// File locks (--file-locks): POSIX, OFD and flock locks and leases the tree
// holds, in filelocks.img as CRIU has them (flag, type, owning task's pid, the
// fd it takes the lock through, start, len).
//
// Dump reads the "lock:" lines of each fd's fdinfo (files.ts hands them over).
// A POSIX lock belongs to an fd table: it shows only in its owner's fdinfo, on
// the description it was taken through, and is kept for that task (once per
// description, dup'ed fds show it too). flock, OFD locks and leases belong to
// the open file description: they are kept once, with the first fd seen of it.
//
// Restore takes each lock in the task that held it, right after its files are
// back and before it runs, without waiting: a lock that cannot be taken (a
// conflict) fails the restore.
import { readFileSync } from "node:fs";
import type { TaskKind, DumpTask, DumpRun, RestoreRun, RestoreTask } from "../context.js";
import { once, UnsupportedError } from "../context.js";
import { IMG, imageExists, readImage, writeImage, type file_lock_entry, type EncodeInput } from "../../images/index.js";
import { SYS } from "../../sys/constants.js";
import { fileLockLength, parseProcLocks, type FileLock, type Fdinfo } from "../../proc/index.js";

/** criu/include/file-lock.h: file_lock_entry.flag. */
export const FL = { POSIX: 1, FLOCK: 2, OFD: 4, LEASE: 8 } as const;
/** file_lock_entry.type for POSIX, OFD and flock locks and leases (F_RDLCK, F_WRLCK). */
const F_RDLCK = 0, F_WRLCK = 1;
const F_SETLK = 6, F_OFD_SETLK = 37, F_SETLEASE = 1024;
const LOCK_SH = 1, LOCK_EX = 2, LOCK_NB = 4;

const ENTRIES = "file-locks";
const POSIX_SEEN = "file-locks:posix";

/** What one "lock:" line becomes in filelocks.img; refuses what crest cannot take back. */
export function lockEntry(l: FileLock, pid: number, fd: number, where: string): EncodeInput<file_lock_entry> {
  const desc = `${where} holds a file lock (${l.kind} ${l.mode} ${l.type})`;
  // A lease being broken waits for its holder to give it up (CRIU restores it and breaks it again); crest refuses.
  if (l.kind === "LEASE" && l.mode !== "ACTIVE") throw new UnsupportedError(`${desc}; crest does not support leases being broken yet`);
  const type = l.type === "READ" ? F_RDLCK : l.type === "WRITE" ? F_WRLCK : -1;
  if (type < 0) throw new UnsupportedError(`${desc}; crest does not support file locks of type ${l.type} yet`);
  if (l.mode === "MANDATORY") throw new UnsupportedError(`${desc}; crest does not support mandatory locks yet`);
  let flag: number;
  switch (l.kind) {
    case "POSIX": flag = FL.POSIX; break;
    case "OFDLCK": flag = FL.OFD; break;
    case "FLOCK": flag = FL.FLOCK; break;
    case "LEASE": flag = FL.LEASE; break;
    default:
      throw new UnsupportedError(`${desc}; crest does not support ${l.kind} locks yet`);
  }
  return { flag, type, pid, fd, start: l.start, len: fileLockLength(l) };
}

/**
 * Records the locks fd `fd` of `task` shows (files.ts, with --file-locks).
 * `descId` is the files.img id of its description, `seen` whether an earlier
 * fd (of any task) referred to that description already.
 */
export function noteFileLocks(task: DumpTask, run: DumpRun, fd: number, info: Fdinfo, descId: number, seen: boolean, where: string): void {
  if (!info.locks.length) return;
  let list = run.objects.get(ENTRIES) as EncodeInput<file_lock_entry>[] | undefined;
  if (!list) {
    const items: EncodeInput<file_lock_entry>[] = [];
    run.objects.set(ENTRIES, items);
    run.deferred.push(() => writeImage(run.dir, IMG.fileLocks, undefined, items));
    list = items;
  }
  let posixSeen = run.objects.get(POSIX_SEEN) as Set<string> | undefined;
  if (!posixSeen) run.objects.set(POSIX_SEEN, (posixSeen = new Set()));
  const posixKey = `${task.ids.files_id}:${descId}`;
  const posixFirst = !posixSeen.has(posixKey);
  posixSeen.add(posixKey);
  for (const l of info.locks) {
    if (l.kind === "POSIX" ? !posixFirst : seen) continue;
    list.push(lockEntry(l, task.vpid, fd, where));
  }
}

/**
 * Refuses a lock blocked waiting for another (a "->" line of /proc/locks) whose
 * waiter is a task of the tree: CRIU refuses these too. A task seized inside
 * F_SETLKW or flock normally leaves the wait (its syscall is restarted after
 * restore), so this is what remains from a task that did not.
 */
function refuseBlocked(task: DumpTask, blocked: readonly FileLock[]): void {
  const w = blocked.find((l) => l.pid === task.pid);
  if (w) throw new UnsupportedError(`process ${task.pid} waits for a file lock (${w.kind} ${w.type} on inode ${w.inode ?? "?"}); crest does not support blocked lock requests yet`);
}

/** Restores the task's locks: those whose owner pid is this task's. */
function restoreLocks(task: RestoreTask, run: RestoreRun): void {
  const all = once(run, ENTRIES, () => (imageExists(run.dir, IMG.fileLocks) ? readImage(run.dir, IMG.fileLocks) : []));
  const mine = all.filter((e) => e.pid === task.vpid);
  if (!mine.length) return;
  const r = task.remotes[0]!;
  for (const e of mine) {
    const what = `take the file lock (flag ${e.flag}, type ${e.type}, start ${e.start}, len ${e.len}) on fd ${e.fd} of task ${task.vpid}`;
    if (!task.fdinfo.some((f) => f.fd === e.fd)) throw new Error(`filelocks.img: task ${task.vpid} has no fd ${e.fd} to ${what}`);
    if (e.type !== F_RDLCK && e.type !== F_WRLCK) throw new Error(`filelocks.img: unknown lock type ${e.type}; cannot ${what}`);
    if (e.flag & FL.FLOCK) {
      r.call(what, SYS.flock, e.fd, (e.type === F_WRLCK ? LOCK_EX : LOCK_SH) | LOCK_NB);
    } else if (e.flag & (FL.POSIX | FL.OFD)) {
      // struct flock: l_type, l_whence (SEEK_SET), l_start, l_len, l_pid (0: OFD locks require it).
      const b = Buffer.alloc(32);
      b.writeInt16LE(e.type, 0);
      b.writeBigInt64LE(e.start, 8);
      b.writeBigInt64LE(e.len, 16);
      r.resetScratch();
      r.call(what, SYS.fcntl, e.fd, e.flag & FL.POSIX ? F_SETLK : F_OFD_SETLK, r.put(b));
    } else if (e.flag & FL.LEASE) {
      r.call(what, SYS.fcntl, e.fd, F_SETLEASE, e.type);
    } else {
      throw new Error(`filelocks.img: unknown lock flag ${e.flag}; cannot ${what}`);
    }
  }
  run.log.info(`task ${task.vpid}: ${mine.length} file lock(s) taken`);
}

export const fileLocksKind: TaskKind = {
  name: "file-locks",
  dump(task, run) {
    if (!run.opts.fileLocks) return;
    let blocked = run.objects.get("file-locks:blocked") as FileLock[] | undefined;
    if (!blocked) {
      blocked = readBlocked();
      run.objects.set("file-locks:blocked", blocked);
    }
    refuseBlocked(task, blocked);
  },
  restore: restoreLocks,
};

function readBlocked(): FileLock[] {
  return parseProcLocks(readFileSync("/proc/locks", "utf8")).filter((l) => l.blocked);
}
