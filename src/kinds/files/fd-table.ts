// The fd table: which fd numbers a task has, which open file description
// each refers to (shared by dup'ed fds, and by tasks that inherited them;
// found with kcmp), and close-on-exec. What a description is belongs to the
// file kind that claims it (regfile.ts, pipe.ts, ...).
//
// Restore opens each description once, in the first task that needs it; any
// other task gets the same description with pidfd_getfd, run inside it.
import { readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import type { TaskKind, DumpTask, RestoreTask, DumpRun, RestoreRun } from "../context.js";
import { UnsupportedError } from "../context.js";
import type { FdFacts, FileKind } from "./file-kind.js";
import type { fd_types, fdinfo_entry, file_entry, fown_entry } from "../../images/index.js";
import { F, FD_CLOEXEC, KCMP, O, SYS } from "../../sys/constants.js";
import { sys } from "../../sys/syscalls.js";
import { parseFdinfo, classifyFdLink, type Fdinfo } from "../../proc/index.js";
import { regFileKind } from "./regfile.js";
import { fifoKind, pipeKind } from "./pipe.js";
import { memfdKind } from "./memfd.js";
import { eventfdKind } from "./eventfd.js";
import { signalfdKind } from "./signalfd.js";
import { timerfdKind } from "./timerfd.js";
import { pidfdKind } from "./pidfd.js";
import { inotifyKind } from "./inotify.js";
import { noteFileLocks } from "./file-locks.js";
import { addEpollTargets, eventpollKind } from "./eventpoll.js";
import type { Remote } from "../../remote/remote.js";

/** The kinds of open files crest knows, tried in order. */
const FILE_KINDS: readonly FileKind[] = [pipeKind, fifoKind, memfdKind, regFileKind, eventfdKind, signalfdKind, timerfdKind, pidfdKind, eventpollKind, inotifyKind];

/** The owner of a file's async I/O signals (F_GETOWN_EX, F_GETSIG), asked inside the task. */
function fileOwner(r: Remote, fd: number, uid: number, euid: number): fown_entry {
  r.resetScratch();
  const own = r.alloc(8);
  r.call(`read the owner of fd ${fd} of task ${r.pid}`, SYS.fcntl, fd, F.GETOWN_EX, own);
  const b = r.read(own, 8);
  const signum = r.call(`read the signal of fd ${fd} of task ${r.pid}`, SYS.fcntl, fd, F.GETSIG);
  const pid = b.readInt32LE(4);
  return { uid: pid ? uid : 0, euid: pid ? euid : 0, signum, pid_type: b.readInt32LE(0), pid };
}

/** O_PATH fds have no file operations: fcntl's owner and signal calls say EBADF, and there is no owner to keep. */
const NO_OWNER: fown_entry = { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 };

/**
 * Without --file-locks, a task holding file locks (POSIX, OFD, flock, leases)
 * is refused, as CRIU refuses it.
 */
function refuseLocks(info: Fdinfo, what: string, text: string): void {
  const l = info.locks[0];
  if (!l) return;
  const range = l.kind === "FLOCK" || l.kind === "LEASE" ? "the whole file" : `bytes ${l.start}-${l.end ?? "EOF"}`;
  throw new UnsupportedError(
    `${what} (${text}) holds a file lock (${l.kind} ${l.type} on ${range})${info.locks.length > 1 ? ` and ${info.locks.length - 1} more` : ""}; ` +
    "dumping file locks needs --file-locks",
  );
}

function describe(text: string): string {
  const kind = classifyFdLink(text);
  switch (kind.kind) {
    case "socket": return `a socket (${text})`;
    case "anon": return `an anonymous-inode object (${text})`;
    case "path": return text;
    default: return text;
  }
}

function dumpFds(task: DumpTask, run: DumpRun): fdinfo_entry[] {
  const pid = task.pid;
  const r = task.remotes[0]!;
  const creds = task.core[0]!.thread_core?.creds;
  const fds = readdirSync(`/proc/${pid}/fd`).map(Number).sort((a, b) => a - b);
  const out: fdinfo_entry[] = [];
  for (const fd of fds) {
    const via = `/proc/${pid}/fd/${fd}`;
    const what = `fd ${fd} of process ${pid}`;
    const text = readlinkSync(via);
    const st = statSync(via);
    const info = parseFdinfo(readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8"));
    // Every fd, shared or not: a POSIX lock shows only in its owner's fdinfo.
    if (!run.opts.fileLocks) refuseLocks(info, what, text);
    // A description an earlier fd (of this or another task) refers to too.
    const same = run.descriptions.find((d) => d.dev === st.dev && d.ino === st.ino && sys(SYS.kcmp, d.pid, pid, KCMP.FILE, d.fd, fd) === 0);
    let id: number, type: fd_types;
    if (same) {
      id = same.id;
      type = run.files.find((f) => f.id === id)!.type;
    } else {
      const facts: FdFacts = {
        pid, fd, text, link: classifyFdLink(text), via, st, info, what,
        fown: info.flags & O.PATH ? NO_OWNER : fileOwner(r, fd, creds?.uid ?? 0, creds?.euid ?? 0),
      };
      const kind = FILE_KINDS.find((k) => k.claims(facts));
      if (!kind) throw new UnsupportedError(`${what} is ${describe(text)}; crest does not support it yet`);
      id = kind.dump(facts, run);
      type = kind.type;
      run.descriptions.push({ id, pid, fd, dev: st.dev, ino: st.ino });
    }
    if (run.opts.fileLocks) noteFileLocks(task, run, fd, info, id, same !== undefined, `${what} (${text})`);
    out.push({ id, flags: info.flags & O.CLOEXEC ? FD_CLOEXEC : 0, type, fd });
  }
  return out;
}

/**
 * Moves an fd of the task above every fd number its table will have, so
 * placing those fds never closes it (fds kept to pass things to other tasks).
 */
export function parker(task: RestoreTask): (fd: number) => number {
  const r = task.remotes[0]!;
  const above = Math.max(2, ...task.fdinfo.map((e) => e.fd)) + 1;
  return (fd) => {
    const moved = r.call(`move fd ${fd} of task ${task.vpid} out of the way`, SYS.fcntl, fd, F.DUPFD_CLOEXEC, above);
    r.call(`close fd ${fd} of task ${task.vpid}`, SYS.close, fd);
    return moved;
  };
}

/** What restoring one fd table needs along the way. */
interface FdTableWork {
  task: RestoreTask;
  r: Remote;
  /** pidfds of other tasks, to take their fds with pidfd_getfd. */
  pidfds: Map<number, number>;
  /** Moves an fd above every fd the task will have, so placing fds never closes it. */
  park: (fd: number) => number;
}

function pidfdOf(w: FdTableWork, vpid: number): number {
  let fd = w.pidfds.get(vpid);
  if (fd === undefined) {
    fd = w.park(w.r.call(`open a pidfd of task ${vpid} in task ${w.task.vpid}`, SYS.pidfd_open, vpid, 0));
    w.pidfds.set(vpid, fd);
  }
  return fd;
}

/** An fd in the task referring to description `id`: opened anew, or taken from the task that has it. */
function obtain(w: FdTableWork, run: RestoreRun, entry: file_entry): number {
  const held = run.opened.get(entry.id);
  if (held) {
    return w.r.call(`take file ${entry.id} from task ${held.vpid} into task ${w.task.vpid}`, SYS.pidfd_getfd, pidfdOf(w, held.vpid), held.fd, 0);
  }
  const kind = FILE_KINDS.find((k) => k.type === entry.type);
  if (!kind) throw new Error(`files.img: file ${entry.id} has type ${entry.type}, which crest cannot restore yet`);
  return kind.open(w.r, w.task, run, entry, w.park);
}

function restoreFds(task: RestoreTask, run: RestoreRun): void {
  const r = task.remotes[0]!;
  const byId = new Map<number, fdinfo_entry[]>();
  for (const e of task.fdinfo) byId.set(e.id, [...(byId.get(e.id) ?? []), e]);
  const w: FdTableWork = { task, r, pidfds: new Map(), park: parker(task) };
  for (const [id, entries] of byId) {
    const entry = run.files.get(id);
    if (!entry) throw new Error(`fdinfo of task ${task.vpid}: file ${id} is not in files.img`);
    const tmp = obtain(w, run, entry);
    for (const e of entries) {
      if (e.fd === tmp) r.call(`set fd flags of fd ${e.fd} of task ${task.vpid}`, SYS.fcntl, e.fd, F.SETFD, e.flags & FD_CLOEXEC);
      else r.call(`place file ${id} at fd ${e.fd} of task ${task.vpid}`, SYS.dup3, tmp, e.fd, e.flags & FD_CLOEXEC ? O.CLOEXEC : 0);
    }
    if (!entries.some((e) => e.fd === tmp)) r.call(`close a temporary fd of task ${task.vpid}`, SYS.close, tmp);
    if (!run.opened.has(id) || run.transient.some((t) => t.task === task && t.fd === run.opened.get(id)!.fd)) {
      run.opened.set(id, { vpid: task.vpid, fd: entries[0]!.fd });
    }
    setOwner(r, task, run, entry, entries[0]!.fd);
  }
  // Epoll targets are fds of this task: added once all of them are in place.
  addEpollTargets(task, run);
  for (const fd of w.pidfds.values()) r.call(`close a pidfd in task ${task.vpid}`, SYS.close, fd);
}

/** F_SETOWN_EX / F_SETSIG as the description had them. */
function setOwner(r: Remote, task: RestoreTask, run: RestoreRun, entry: file_entry, fd: number): void {
  const own = entry.reg?.fown ?? entry.pipe?.fown ?? entry.memfd?.fown ?? entry.efd?.fown ?? entry.sgfd?.fown ?? entry.tfd?.fown ?? entry.pidfd?.fown ?? entry.epfd?.fown ?? (entry.fifo?.regf_id !== undefined ? run.files.get(entry.fifo.regf_id)?.reg?.fown : undefined);
  if (!own || (!own.pid && !own.signum)) return;
  if (own.pid) {
    r.resetScratch();
    const b = Buffer.alloc(8);
    b.writeInt32LE(own.pid_type, 0);
    b.writeInt32LE(own.pid, 4);
    r.call(`set the owner of fd ${fd} of task ${task.vpid}`, SYS.fcntl, fd, F.SETOWN_EX, r.put(b));
  }
  if (own.signum) r.call(`set the signal of fd ${fd} of task ${task.vpid}`, SYS.fcntl, fd, F.SETSIG, own.signum);
}

/** Closes the fds a task held only to pass descriptions on; once every task has what it needs. */
export function closeTransient(run: RestoreRun): void {
  for (const { task, fd } of run.transient) {
    if (task.fdinfo.some((e) => e.fd === fd)) continue;
    task.remotes[0]!.call(`close a temporary fd of task ${task.vpid}`, SYS.close, fd);
  }
  run.transient = [];
}

export const filesKind: TaskKind = {
  name: "files",
  dump(task, run) {
    // A task sharing its parent's fd table (CLONE_FILES) has nothing to add.
    if (run.fdTables.has(task.ids.files_id)) return;
    run.fdTables.add(task.ids.files_id);
    task.fdinfo = dumpFds(task, run);
  },
  restore(task, run) {
    if (!task.sharesFiles) restoreFds(task, run);
  },
};
