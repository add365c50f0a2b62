// File locks (--file-locks): POSIX, OFD and flock locks and leases the tree
// holds, in filelocks.img as CRIU has them (flag, type, owning task's pid, the
// fd it takes the lock through, start, len).
//
// Dump reads the "lock:" lines of each fd's fdinfo, as the fd table found
// them (task.fds); without --file-locks a lock is refused, as CRIU refuses it.
// A POSIX lock belongs to an fd table: it shows only in its owner's fdinfo, on
// the description it was taken through, and is kept for that task (once per
// description, dup'ed fds show it too). flock, OFD locks and leases belong to
// the open file description: they are kept once, with the first fd seen of it.
//
// Restore takes each lock in the task that held it, right after its files are
// back and before it runs, without waiting: a lock that cannot be taken (a
// conflict) fails the restore.
import { closeSync, openSync, readFileSync, statSync } from "node:fs";
import { idInsideAtRestore } from "../namespaces/user.js";
import { ownedAtRestore } from "../namespaces/owned.js";
import type { TaskKind, DumpTask, DumpedFd, RestoreRun, RestoreTask } from "../context.js";
import { dumpState, restoreState, UnsupportedError } from "../context.js";
import { IMG, type file_lock_entry, type EncodeInput } from "../../images/index.js";
import { F, O, SIG, SYS } from "../../sys/constants.js";
import { errnoName } from "../../sys/errno.js";
import { fileLockLength, parseProcLocks, type FileLock } from "../../proc/index.js";

/** criu/include/file-lock.h: file_lock_entry.flag. */
export const FL = { POSIX: 1, FLOCK: 2, OFD: 4, LEASE: 8 } as const;
/** file_lock_entry.type for POSIX, OFD and flock locks and leases (F_RDLCK, F_WRLCK); a lease being broken: its target type (F_UNLCK, F_RDLCK) | LEASE_BREAKING. */
const F_RDLCK = 0, F_WRLCK = 1, F_UNLCK = 2, LEASE_BREAKING = 4;
const F_SETLK = 6, F_OFD_SETLK = 37, F_SETLEASE = 1024;
const LOCK_SH = 1, LOCK_EX = 2, LOCK_NB = 4;

/** Dump: filelocks.img's entries; "files_id:description" pairs whose POSIX locks are kept; locks waiting in /proc/locks. */
const dumped = dumpState("file locks", () => ({
  entries: [] as EncodeInput<file_lock_entry>[],
  posixSeen: new Set<string>(),
  blocked: parseProcLocks(readFileSync("/proc/locks", "utf8")).filter((l) => l.blocked),
}));
const restoring = restoreState("file locks", (run) => run.images.readOr(IMG.fileLocks, undefined, []));

/** What one "lock:" line becomes in filelocks.img; refuses what crest cannot take back. */
export function lockEntry(l: FileLock, pid: number, fd: number, where: string): EncodeInput<file_lock_entry> {
  const desc = `${where} holds a file lock (${l.kind} ${l.mode} ${l.type})`;
  if (l.kind === "LEASE" && l.mode === "BREAKING") {
    // Its holder has been told to give it up, to what /proc/locks shows (the
    // kernel's target type): kept as criu keeps it, that type with LEASE_BREAKING.
    const target = l.type === "UNLCK" ? F_UNLCK : l.type === "READ" ? F_RDLCK : -1;
    if (target < 0) throw new UnsupportedError(`${desc}; crest does not support a lease being broken to ${l.type}`);
    return { flag: FL.LEASE, type: target | LEASE_BREAKING, pid, fd, start: l.start, len: fileLockLength(l) };
  }
  if (l.kind === "LEASE" && l.mode !== "ACTIVE") throw new UnsupportedError(`${desc}; crest does not support ${l.mode} leases yet`);
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
 * Records the locks fd `f` of `task` shows (with --file-locks). A POSIX
 * lock is kept once per fd table and description, the others once per
 * description (with its first fd, of any task).
 */
function noteLocks(task: DumpTask, f: DumpedFd, s: { entries: EncodeInput<file_lock_entry>[]; posixSeen: Set<string> }): void {
  if (!f.info.locks.length) return;
  const posixKey = `${task.ids.files_id}:${f.id}`;
  const posixFirst = !s.posixSeen.has(posixKey);
  s.posixSeen.add(posixKey);
  for (const l of f.info.locks) {
    if (l.kind === "POSIX" ? !posixFirst : f.shared) continue;
    s.entries.push(lockEntry(l, task.vpid, f.fd, f.what));
  }
}

/** Without --file-locks, a task holding file locks (POSIX, OFD, flock, leases) is refused, as CRIU refuses it. */
function refuseLocks(f: DumpedFd): void {
  const l = f.info.locks[0];
  if (!l) return;
  const range = l.kind === "FLOCK" || l.kind === "LEASE" ? "the whole file" : `bytes ${l.start}-${l.end ?? "EOF"}`;
  throw new UnsupportedError(
    `${f.what} holds a file lock (${l.kind} ${l.type} on ${range})${f.info.locks.length > 1 ? ` and ${f.info.locks.length - 1} more` : ""}; ` +
    "dumping file locks needs --file-locks",
  );
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

/** Takes a lease of `type` on fd of the task. */
function setLease(task: RestoreTask, run: RestoreRun, fd: number, type: number, what: string): void {
  const r = task.remotes[0]!;
  // Only the file's owner may take a lease in a user namespace (CAP_LEASE counts in the first one only): the task's fsuid is the owner's meanwhile.
  const st = ownedAtRestore(run, "user") ? statSync(`/proc/${task.pid}/fd/${fd}`, { throwIfNoEntry: false }) : undefined;
  const owner = st && idInsideAtRestore(run, "uid", st.uid);
  if (owner !== undefined) r.call(`${what}: take the file owner's fsuid ${owner}`, SYS.setfsuid, owner);
  try {
    r.call(what, SYS.fcntl, fd, F_SETLEASE, type);
  } finally {
    if (owner !== undefined) r.call(`${what}: fsuid back to 0`, SYS.setfsuid, 0);
  }
}

/**
 * A lease that was being broken, as criu brings it back: taken as the fd's
 * access mode allowed it before the break (read for O_RDONLY, else write),
 * then broken again by an open with O_NONBLOCK that conflicts as far as the
 * `target` type (O_WRONLY to give it up, O_RDONLY to downgrade it), which
 * fails with EWOULDBLOCK; crest opens the file from outside, through the
 * task's fd. The break's signal goes to the file's owner, restored already
 * (with the fd) and perhaps another task: the lease is taken with no owner,
 * which makes the task the owner, and the signal, which the owner had before
 * the dump, is taken off the task's queue (it blocks every signal while crest
 * drives it) before the owner is put back.
 */
function restoreBreakingLease(task: RestoreTask, run: RestoreRun, fd: number, target: number, what: string): void {
  if (target !== F_UNLCK && target !== F_RDLCK) throw run.images.invalid(IMG.fileLocks, undefined, `a lease being broken to type ${target}; cannot ${what}`);
  const r = task.remotes[0]!;
  r.resetScratch();
  const own = r.alloc(8);
  r.call(`${what}: read the fd's owner`, SYS.fcntl, fd, F.GETOWN_EX, own);
  const owner = r.read(own, 8);
  r.call(`${what}: clear the fd's owner`, SYS.fcntl, fd, F.SETOWN, 0);
  const mode = r.call(`${what}: read the fd's flags`, SYS.fcntl, fd, F.GETFL) & O.ACCMODE;
  setLease(task, run, fd, mode === O.RDONLY ? F_RDLCK : F_WRLCK, what);
  const sig = r.call(`${what}: read the fd's signal`, SYS.fcntl, fd, F.GETSIG) || SIG.IO;
  let breaker: number | undefined;
  try {
    breaker = openSync(`/proc/${task.pid}/fd/${fd}`, (target === F_UNLCK ? O.WRONLY : O.RDONLY) | O.NONBLOCK);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EAGAIN") throw new Error(`${what}: cannot break the lease again: ${(e as Error).message}`, { cause: e });
  }
  if (breaker !== undefined) {
    closeSync(breaker);
    throw new Error(`${what}: the lease did not conflict with the open that should break it`);
  }
  r.resetScratch();
  const set = Buffer.alloc(8);
  set.writeBigUInt64LE(1n << BigInt(sig - 1));
  const got = r.syscall(SYS.rt_sigtimedwait, r.put(set), 0, r.put(Buffer.alloc(16)), 8);
  if (got !== sig) throw new Error(`${what}: the lease's break did not signal the task (${got < 0 ? errnoName(-got) : `signal ${got}`})`);
  if (owner.readInt32LE(4)) r.call(`${what}: put the fd's owner back`, SYS.fcntl, fd, F.SETOWN_EX, r.put(owner));
  else r.call(`${what}: clear the fd's owner`, SYS.fcntl, fd, F.SETOWN, 0);
  run.log.debug(`task ${task.vpid}: the lease on fd ${fd} is being broken again; its signal ${sig} taken off the task's queue`);
}

/** Restores the task's locks: those whose owner pid is this task's. */
function restoreLocks(task: RestoreTask, run: RestoreRun): void {
  const mine = run.state(restoring).filter((e) => e.pid === task.vpid);
  if (!mine.length) return;
  const r = task.remotes[0]!;
  for (const e of mine) {
    const what = `take the file lock (flag ${e.flag}, type ${e.type}, start ${e.start}, len ${e.len}) on fd ${e.fd} of task ${task.vpid}`;
    if (!task.fdinfo.some((f) => f.fd === e.fd)) throw run.images.invalid(IMG.fileLocks, undefined, `task ${task.vpid} has no fd ${e.fd} to ${what}`);
    const breaking = e.flag & FL.LEASE && e.type & LEASE_BREAKING;
    if (!breaking && e.type !== F_RDLCK && e.type !== F_WRLCK) throw run.images.invalid(IMG.fileLocks, undefined, `unknown lock type ${e.type}; cannot ${what}`);
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
      if (breaking) restoreBreakingLease(task, run, e.fd, e.type & ~LEASE_BREAKING, what);
      else setLease(task, run, e.fd, e.type, what);
    } else {
      throw run.images.invalid(IMG.fileLocks, undefined, `unknown lock flag ${e.flag}; cannot ${what}`);
    }
  }
  run.log.info(`task ${task.vpid}: ${mine.length} file lock(s) taken`);
}

export const fileLocksKind: TaskKind = {
  name: "file-locks",
  dump(task, run) {
    if (!run.opts.features.fileLocks) {
      task.fds.forEach(refuseLocks);
      return;
    }
    const s = run.state(dumped);
    for (const f of task.fds) noteLocks(task, f, s);
    refuseBlocked(task, s.blocked);
  },
  finishDump(run) {
    if (!run.opts.features.fileLocks) return;
    const { entries } = run.state(dumped);
    if (entries.length) run.images.write(IMG.fileLocks, undefined, entries);
  },
  restore: restoreLocks,
};
