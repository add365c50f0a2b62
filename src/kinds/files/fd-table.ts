// The fd table: which fd numbers a task has, which open file description
// each refers to (shared by dup'ed fds, and by tasks that inherited them;
// found with kcmp), and close-on-exec. What a description is belongs to the
// file kind that claims it (regfile.ts, pipe.ts, ...): it dumps it, opens it
// again, and answers for its own fields (the owner of its signals).
//
// Restore is one work queue over every task (open-queue.ts): each
// description is opened once, in the first task that needs it (a kind may
// answer "not yet" until another description is open), and any other task
// gets the same description with pidfd_getfd, run inside it. A description
// whose key the caller gave with --inherit-fd is taken from crest instead
// (inherit.ts). Files in flight (in a unix socket's queue) that no fd refers
// to are items too, opened in the task of the socket that carries them and
// held there until the end. Once every fd of every task is in place, the
// kinds settle what needs other fds (an epoll's targets, a queue's files in
// flight).
//
// Dump: a kind may hand the table files crest holds (files in flight, which
// the peek gave crest): they are dumped like any task's fd, deduplicated
// with kcmp against every description seen (kcmp works across crest and
// the tasks).
import { closeSync, readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import type { TaskKind, DumpTask, RestoreTask, DumpRun, RestoreRun } from "../context.js";
import { dumpState, UnsupportedError } from "../context.js";
import type { FdFacts, FileKind, OpenContext } from "./file-kind.js";
import { IMG, type fd_types, type fdinfo_entry, type file_entry, type fown_entry } from "../../images/index.js";
import { F, FD_CLOEXEC, KCMP, O, SYS } from "../../sys/constants.js";
import { sys } from "../../sys/syscalls.js";
import { parseFdinfo, classifyFdLink, type Fdinfo } from "../../proc/index.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { regFileKind } from "./regfile.js";
import { ttyKind } from "./tty.js";
import { fifoKind, pipeKind } from "./pipe.js";
import { memfdKind } from "./memfd.js";
import { eventfdKind } from "./eventfd.js";
import { mqueueFileKind } from "./mqueue.js";
import { signalfdKind } from "./signalfd.js";
import { timerfdKind } from "./timerfd.js";
import { pidfdKind } from "./pidfd.js";
import { nsFileKind } from "./nsfile.js";
import { fanotifyKind } from "./fanotify.js";
import { inotifyKind } from "./inotify.js";
import { eventpollKind } from "./eventpoll.js";
import { unixSocketKind } from "../sockets/unix.js";
import { inetSocketKind } from "../sockets/inet.js";
import { netlinkSocketKind } from "../sockets/netlink.js";
import { packetSocketKind } from "../sockets/packet.js";
import { describeSocket } from "../sockets/describe.js";
import { isWaiting, runOpenQueue, type Waiting } from "./open-queue.js";
import { inherited } from "./inherit.js";
import { Pending, type Remote } from "../../remote/remote.js";
import { faultPoint } from "../../fault.js";

/** The kinds of open files crest knows, tried in order. */
const FILE_KINDS: readonly FileKind[] = [
  pipeKind, fifoKind, memfdKind, ttyKind, mqueueFileKind, regFileKind, eventfdKind, signalfdKind, timerfdKind, pidfdKind, eventpollKind, inotifyKind, unixSocketKind, inetSocketKind,
  netlinkSocketKind, packetSocketKind, nsFileKind, fanotifyKind,
];

// --- dump -----------------------------------------------------------------------

/** An open file description already in files.img, and one fd that refers to it. */
interface DumpedDescription {
  id: number;
  type: fd_types;
  pid: number;
  fd: number;
  dev: number;
  ino: number;
}

/**
 * Dump: the descriptions seen so far in any task (or in crest: files in
 * flight), the fd tables (files_id) already dumped, and crest's own copies
 * of files in flight, closed at the end.
 */
const dumped = dumpState("fd tables", () => ({ descriptions: [] as DumpedDescription[], tables: new Set<number>(), held: [] as number[] }));

/** The owner of a file's async I/O signals (F_GETOWN_EX, F_GETSIG), asked inside the task. */
/**
 * The owner of an fd's async I/O signals. Asked with the task's other
 * questions (no stop of its own): the entry is filled in once they have
 * run, before any image is written.
 */
function fileOwner(r: Remote, fd: number, uid: number, euid: number): fown_entry {
  r.resetScratch();
  const own = r.alloc(8);
  r.later({ what: `read the owner of fd ${fd} of task ${r.pid}`, nr: SYS.fcntl, args: [fd, F.GETOWN_EX, own] });
  const signum = r.later({ what: `read the signal of fd ${fd} of task ${r.pid}`, nr: SYS.fcntl, args: [fd, F.GETSIG] });
  const entry: fown_entry = { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 };
  r.afterRun(() => {
    const b = r.read(own, 8);
    const pid = b.readInt32LE(4);
    Object.assign(entry, { uid: pid ? uid : 0, euid: pid ? euid : 0, signum: signum.value!, pid_type: b.readInt32LE(0), pid });
  });
  return entry;
}

/** The same, of a file crest holds (a file in flight), asked by crest itself. */
function ownFileOwner(fd: number, what: string): fown_entry {
  const b = Buffer.alloc(8);
  check(native.syscall(SYS.fcntl, fd, F.GETOWN_EX, b), `read the owner of ${what}`);
  const signum = check(native.syscall(SYS.fcntl, fd, F.GETSIG), `read the signal of ${what}`);
  const pid = b.readInt32LE(4);
  return { uid: pid ? process.getuid!() : 0, euid: pid ? process.geteuid!() : 0, signum, pid_type: b.readInt32LE(0), pid };
}

/** O_PATH fds have no file operations: fcntl's owner and signal calls say EBADF, and there is no owner to keep. */
const NO_OWNER: fown_entry = { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 };

function describe(f: FdFacts): string {
  switch (f.link.kind) {
    case "socket": return describeSocket(f.pid, f.fd, f.text);
    case "anon": return `an anonymous-inode object (${f.text})`;
    default: return f.text;
  }
}

/**
 * Dumps the description fd `fd` of process `pid` refers to (a task's fd, or
 * crest's own copy of a file in flight), unless an earlier fd's is the same;
 * `owner` reads the owner of its signals.
 */
function dumpDescription(run: DumpRun, pid: number, fd: number, what: string, owner: (info: Fdinfo) => fown_entry, table?: number): { d: DumpedDescription; shared: boolean; info: Fdinfo; text: string } {
  const { descriptions } = run.state(dumped);
  const via = `/proc/${pid}/fd/${fd}`;
  const text = readlinkSync(via);
  const st = statSync(via);
  const info = parseFdinfo(readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8"));
  // A description an earlier fd (of this or another task, or crest's) refers to too.
  const seen = descriptions.find((e) => e.dev === st.dev && e.ino === st.ino && sys(SYS.kcmp, e.pid, pid, KCMP.FILE, e.fd, fd) === 0);
  if (seen) return { d: seen, shared: true, info, text };
  const facts: FdFacts = {
    pid, fd, text, link: classifyFdLink(text), via, st, info, what, fown: info.flags & O.PATH ? NO_OWNER : owner(info), ...(table !== undefined ? { table } : {}),
  };
  const kind = FILE_KINDS.find((k) => k.claims(facts, run));
  if (!kind) throw new UnsupportedError(`${what} is ${describe(facts)}; crest does not support it yet`);
  // Files the kind found in flight are dumped once this description is recorded (it may be among them).
  const later: Array<() => void> = [];
  const id = kind.dump(facts, run, { dumpHeld: (heldFd, heldWhat, then) => later.push(() => then(dumpHeld(run, heldFd, heldWhat, table ?? pid))) });
  const d: DumpedDescription = { id, type: kind.type, pid, fd, dev: st.dev, ino: st.ino };
  descriptions.push(d);
  for (const f of later) f();
  return { d, shared: false, info, text };
}

/** A file in flight crest holds a copy of: dumped as a task's fd would be; crest's copy stays open (later fds are compared with it) until the end. */
function dumpHeld(run: DumpRun, fd: number, what: string, table: number): number {
  run.state(dumped).held.push(fd);
  return dumpDescription(run, process.pid, fd, what, () => ownFileOwner(fd, what), table).d.id;
}

function dumpFds(task: DumpTask, run: DumpRun): void {
  const pid = task.pid;
  const r = task.remotes[0]!;
  const creds = task.core[0]!.thread_core?.creds;
  const fds = readdirSync(`/proc/${pid}/fd`).map(Number).sort((a, b) => a - b);
  for (const fd of fds) {
    const what = `fd ${fd} of process ${pid}`;
    const { d, shared, info, text } = dumpDescription(run, pid, fd, what, () => fileOwner(r, fd, creds?.uid ?? 0, creds?.euid ?? 0));
    task.fds.push({ fd, id: d.id, info, shared, what: `${what} (${text})` });
    task.fdinfo.push({ id: d.id, flags: info.flags & O.CLOEXEC ? FD_CLOEXEC : 0, type: d.type, fd });
  }
}

// --- restore --------------------------------------------------------------------

/**
 * Moves an fd of the task above every fd number its table will have, so
 * placing those fds never closes it (fds kept to pass things to other tasks).
 */
export function parker(task: RestoreTask): (fd: number) => number {
  const r = task.remotes[0]!;
  const above = fdsAbove(task);
  return (fd) => {
    const moved = r.call(`move fd ${fd} of task ${task.vpid} out of the way`, SYS.fcntl, fd, F.DUPFD_CLOEXEC, above);
    r.later({ what: `close fd ${fd} of task ${task.vpid}`, nr: SYS.close, args: [fd] });
    return moved;
  };
}

/** The lowest fd above every fd of the task's table. */
function fdsAbove(task: RestoreTask): number {
  return Math.max(2, ...task.fdinfo.map((e) => e.fd)) + 1;
}

/** Like a parker, queued: the moved fd to come, for the calls after it. */
function parkQueued(task: RestoreTask, fd: Pending, what: string): Pending {
  const r = task.remotes[0]!;
  const moved = r.later({ what: `move ${what} of task ${task.vpid} out of the way`, nr: SYS.fcntl, args: [fd, F.DUPFD_CLOEXEC, fdsAbove(task)] });
  r.later({ what: `close the first fd of ${what} in task ${task.vpid}`, nr: SYS.close, args: [fd] });
  return moved;
}

/** One description a task's fd table needs, with the fds that refer to it there. */
interface TableItem {
  id: number;
  what: string;
  task: RestoreTask;
  entry: file_entry;
  kind: FileKind;
  fds: fdinfo_entry[];
}

/** One task's part of the work: its remote, and pidfds of other tasks to take their fds with pidfd_getfd. */
interface TableWork extends OpenContext {
  pidfds: Map<number, Pending>;
}

function kindOf(run: RestoreRun, entry: file_entry): FileKind {
  const kind = FILE_KINDS.find((k) => k.type === entry.type && (k.owns?.(entry) ?? true));
  if (!kind) throw run.images.invalid(IMG.files, undefined, `file ${entry.id} has type ${entry.type}, which crest cannot restore yet`);
  return kind;
}

/** A pidfd of task `vpid` in this task, above its fd table; queued, as everything taking a file from another task is (no stop of its own). */
function pidfdOf(w: TableWork, vpid: number): Pending {
  let fd = w.pidfds.get(vpid);
  if (fd === undefined) {
    const opened = w.r.later({ what: `open a pidfd of task ${vpid} in task ${w.task.vpid}`, nr: SYS.pidfd_open, args: [vpid, 0] });
    fd = parkQueued(w.task, opened, `a pidfd of task ${vpid}`);
    w.pidfds.set(vpid, fd);
  }
  return fd;
}

/** Opens (or takes from the task holding it) one description and puts it at each of its fds; null once done. */
function openItem(w: TableWork, item: TableItem): Waiting | null {
  const { r, task, run } = w;
  const held = run.opened.get(item.id);
  // In flight only, and open already (with the socket pair it is an end of).
  if (held && !item.fds.length) return null;
  let tmp: number | Pending;
  if (held) {
    // Its fd there may still be a queued dup3 of that task's.
    held.task.remotes[0]!.flush();
    const from = held.task.vpid;
    tmp = r.later({ what: `take file ${item.id} from task ${from} into task ${task.vpid}`, nr: SYS.pidfd_getfd, args: [pidfdOf(w, from), held.fd, 0] });
  } else {
    // Given by crest's caller (--inherit-fd), or made.
    const got = inherited(w, item.kind, item.entry) ?? item.kind.open(w, item.entry);
    if (isWaiting(got)) return got;
    tmp = got;
  }
  if (!item.fds.length) {
    // In flight only (no fd refers to it): held above the table's fds until the end, for whoever passes it.
    if (tmp instanceof Pending) r.flush();
    const kept = w.park(tmp instanceof Pending ? tmp.value! : tmp);
    run.opened.set(item.id, { task, fd: kept });
    run.transient.push({ task, fd: kept });
    setOwner(r, task, item.kind.fown(item.entry, run), kept);
    return null;
  }
  // Only the batch knows the fd (taken from another task, or opened queued): it is moved above the table, never at one of its fds.
  if (tmp instanceof Pending) tmp = parkQueued(task, tmp, `file ${item.id}`);
  // Queued: they run with the task's next call.
  for (const e of item.fds) {
    if (e.fd === tmp) r.later({ what: `set fd flags of fd ${e.fd} of task ${task.vpid}`, nr: SYS.fcntl, args: [e.fd, F.SETFD, e.flags & FD_CLOEXEC] });
    else r.later({ what: `place file ${item.id} at fd ${e.fd} of task ${task.vpid}`, nr: SYS.dup3, args: [tmp, e.fd, e.flags & FD_CLOEXEC ? O.CLOEXEC : 0], want: e.fd });
  }
  if (!item.fds.some((e) => e.fd === tmp)) r.later({ what: `close a temporary fd of task ${task.vpid}`, nr: SYS.close, args: [tmp] });
  // Others take it from here, unless another task holds it already (a parked copy of this task's own goes with the transients).
  if (!held || (held.task === task && run.transient.some((t) => t.task === task && t.fd === held.fd))) {
    run.opened.set(item.id, { task, fd: item.fds[0]!.fd });
  }
  setOwner(r, task, item.kind.fown(item.entry, run), item.fds[0]!.fd);
  return null;
}

/** F_SETOWN_EX / F_SETSIG as the description had them. */
function setOwner(r: Remote, task: RestoreTask, own: fown_entry | undefined, fd: number): void {
  if (!own || (!own.pid && !own.signum)) return;
  if (own.pid) {
    const b = Buffer.alloc(8);
    b.writeInt32LE(own.pid_type, 0);
    b.writeInt32LE(own.pid, 4);
    r.later({ what: `set the owner of fd ${fd} of task ${task.vpid}`, nr: SYS.fcntl, args: [fd, F.SETOWN_EX, r.put(b)] });
  }
  if (own.signum) r.later({ what: `set the signal of fd ${fd} of task ${task.vpid}`, nr: SYS.fcntl, args: [fd, F.SETSIG, own.signum] });
}

/** The descriptions of every task's fd table, tasks in tree order, each task's in the order of their first fd. */
/** The most fds a table can hold here (fs.nr_open): an fd number at or above it cannot be made. */
function nrOpen(): number {
  try {
    return Number(readFileSync("/proc/sys/fs/nr_open", "utf8"));
  } catch {
    return 1 << 20;
  }
}

function tableItems(tasks: readonly RestoreTask[], run: RestoreRun): TableItem[] {
  const items: TableItem[] = [];
  const limit = nrOpen();
  for (const task of tasks) {
    // Created with CLONE_FILES: its parent restores the table they share.
    if (task.sharesFiles) continue;
    const fdNumbers = new Set<number>();
    task.fdinfo.forEach((e, i) => {
      const bad = (detail: string) => run.images.invalid(IMG.fdinfo, task.ids.files_id, `entry ${i} of task ${task.vpid}: fd ${e.fd} ${detail}`);
      if (e.fd >= limit) throw bad(`is not below the kernel's limit of ${limit} fds (fs.nr_open)`);
      if (fdNumbers.has(e.fd)) throw bad("is named twice");
      fdNumbers.add(e.fd);
    });
    const byId = new Map<number, fdinfo_entry[]>();
    for (const e of task.fdinfo) byId.set(e.id, [...(byId.get(e.id) ?? []), e]);
    for (const [id, fds] of byId) {
      const entry = run.files.get(id);
      if (!entry) throw run.images.invalid(IMG.fdinfo, task.ids.files_id, `task ${task.vpid}'s fd ${fds[0]!.fd} names file ${id}, which is not in files.img`);
      items.push({ id, what: `file ${id} for fd ${fds[0]!.fd} of task ${task.vpid}`, task, entry, kind: kindOf(run, entry), fds });
    }
  }
  // Files in flight that no fd refers to: opened in the task of the description that carries them (which may carry more).
  const known = new Set(items.map((i) => i.id));
  for (let i = 0; i < items.length; i++) {
    const carrier = items[i]!;
    for (const id of carrier.kind.carries?.(carrier.entry, run) ?? []) {
      if (known.has(id)) continue;
      known.add(id);
      const entry = run.files.get(id);
      if (!entry) throw run.images.invalid(IMG.files, undefined, `file ${carrier.id} carries file ${id} in flight, which is not in files.img`);
      items.push({ id, what: `file ${id} in flight in file ${carrier.id} of task ${carrier.task.vpid}`, task: carrier.task, entry, kind: kindOf(run, entry), fds: [] });
    }
  }
  return items;
}

function restoreTables(tasks: readonly RestoreTask[], run: RestoreRun): void {
  const work = new Map<RestoreTask, TableWork>();
  const workOf = (task: RestoreTask): TableWork => {
    let w = work.get(task);
    if (!w) {
      w = { r: task.remotes[0]!, task, run, park: parker(task), pidfds: new Map() };
      work.set(task, w);
    }
    return w;
  };
  const items = tableItems(tasks, run);
  // The first of each description's items to open it: the one that settles it too.
  const openedBy = new Map<number, TableItem>();
  runOpenQueue(items, (item) => {
    const first = !run.opened.has(item.id);
    const wait = openItem(workOf(item.task), item);
    if (!wait && first) openedBy.set(item.id, item);
    return wait;
  }, (id) => run.opened.has(id));
  faultPoint("restore:files:opened");
  for (const item of openedBy.values()) item.kind.settle?.(workOf(item.task), item.entry, item.fds[0]?.fd ?? run.opened.get(item.id)!.fd);
  for (const w of work.values()) {
    for (const fd of w.pidfds.values()) w.r.later({ what: `close a pidfd in task ${w.task.vpid}`, nr: SYS.close, args: [fd] });
    w.r.resetScratch();
  }
}

/** Closes the fds tasks held only to pass descriptions on; once every task has what it needs. */
function closeTransient(run: RestoreRun): void {
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
    const { tables } = run.state(dumped);
    if (tables.has(task.ids.files_id)) return;
    tables.add(task.ids.files_id);
    dumpFds(task, run);
  },
  finishDump(run) {
    for (const k of FILE_KINDS) k.finishDump?.(run);
    const s = run.state(dumped);
    for (const fd of s.held) closeSync(fd);
    s.held = [];
  },
  plan(run) {
    for (const k of FILE_KINDS) k.plan?.(run);
    return 0;
  },
  restoreAll: restoreTables,
  finishRestore(run) {
    for (const k of FILE_KINDS) k.finishRestore?.(run);
    closeTransient(run);
  },
  resume(run) {
    for (const k of FILE_KINDS) k.resume?.(run);
  },
};
