// epoll: an interest list of (file, fd number) targets. Dumped from fdinfo
// ("tfd:" lines) into files.img (type EVENTPOLL, targets inside, as CRIU 4.x
// does). A "tfd" is the fd number the target had in the owning task when it
// was added; the file may have moved since (dup'ed, then closed), so each
// target is checked with kcmp(KCMP_EPOLL_TFD) and, where needed, renamed to an
// fd of the task that holds the same file now, as CRIU does. A target the
// task no longer holds at all is refused.
// Restore: epoll_create1 where the description is first needed; the targets
// are added once every fd of every task is in place (the fd table's settle
// step, before the credentials drop: EPOLLWAKEUP needs CAP_BLOCK_SUSPEND).
// Nested epolls need nothing more: the inner one is an fd of the task like
// any other.
import { readdirSync } from "node:fs";
import { UnsupportedError } from "../context.js";
import { fd_types, type eventpoll_tfd_entry } from "../../images/index.js";
import { F, KCMP, O, SYS } from "../../sys/constants.js";
import { sys } from "../../sys/syscalls.js";
import { isAnon, type FdFacts, type FileKind } from "./file-kind.js";

const EPOLL_CTL_ADD = 1;
/** struct epoll_event, packed on x86_64. */
const EVENT_SIZE = 12;
const EPOLLONESHOT = 1 << 30;
/** EPOLLEXCLUSIVE | EPOLLWAKEUP | EPOLLONESHOT | EPOLLET: what a fired ONESHOT target keeps. */
const EP_PRIVATE_BITS = (1 << 28 | 1 << 29 | 1 << 30 | 1 << 31) >>> 0;
/** Every event bit poll reports (EPOLLIN ... EPOLLRDHUP). */
const ANY_EVENT = 0x3fff;

/** kcmp(KCMP_EPOLL_TFD): whether `fd` of `pid` is the file target (tfd, toff) of epoll `efd` of `epollPid`. */
function isTarget(pid: number, epollPid: number, efd: number, tfd: number, toff: number, fd: number): boolean {
  return sys(SYS.kcmp, pid, epollPid, KCMP.EPOLL_TFD, fd, new Uint32Array([efd, tfd, toff])) === 0;
}

/**
 * The targets of the epoll `f`, each under an fd number of its task that
 * holds that file now (for an epoll in flight, which crest holds: the task
 * whose socket carried it).
 */
function targets(f: FdFacts, id: number): eventpoll_tfd_entry[] {
  const list = f.info.epollTargets;
  const pid = f.table ?? f.pid;
  let fds: number[] | undefined;
  const seen = new Map<number, number>();
  const used = new Set<number>();
  return list.map((t) => {
    // toff: how many targets before this one (in the kernel's order) carry the same tfd.
    const toff = seen.get(t.tfd) ?? 0;
    seen.set(t.tfd, toff + 1);
    let fd = t.tfd;
    if (!isTarget(pid, f.pid, f.fd, t.tfd, toff, fd)) {
      fds ??= readdirSync(`/proc/${pid}/fd`).map(Number).sort((a, b) => a - b);
      const found = fds.find((n) => isTarget(pid, f.pid, f.fd, t.tfd, toff, n));
      if (found === undefined) {
        throw new UnsupportedError(
          `${f.what} is an epoll watching a file (added as fd ${t.tfd}, inode ${t.ino ?? "?"}) that process ${pid} no longer holds; ` +
          "crest does not support epoll targets held only by other processes or closed",
        );
      }
      fd = found;
    }
    // Renamed targets may land on one fd twice: epoll_ctl could not add both back.
    if (used.has(fd)) {
      throw new UnsupportedError(`${f.what} is an epoll watching fd ${fd} of process ${pid} under two fd numbers; crest does not support that`);
    }
    used.add(fd);
    const e: eventpoll_tfd_entry = { id, tfd: fd, events: t.events, data: t.data };
    if (t.sdev !== undefined) e.dev = t.sdev;
    if (t.ino !== undefined) e.inode = t.ino;
    if (t.pos !== undefined) e.pos = t.pos;
    return e;
  });
}

export const eventpollKind: FileKind = {
  name: "eventpoll",
  type: fd_types.EVENTPOLL,
  claims: isAnon("eventpoll"),
  dump(f, run) {
    const id = run.nextId("file");
    const tfd = targets(f, id);
    run.files.push({ type: fd_types.EVENTPOLL, id, epfd: { id, flags: f.info.flags & ~O.CLOEXEC, fown: f.fown, tfd } });
    return id;
  },
  fown: (entry) => entry.epfd?.fown,
  open({ r, task }, entry) {
    const e = entry.epfd!;
    const what = `epoll ${entry.id} in task ${task.vpid}`;
    const fd = r.call(`create ${what}`, SYS.epoll_create1, O.CLOEXEC);
    const fl = e.flags & (O.NONBLOCK | O.ASYNC);
    if (fl) r.call(`set the flags of ${what}`, SYS.fcntl, fd, F.SETFL, fl);
    return fd;
  },
  // The targets are fds of the task that made the epoll: added once all of them are in place.
  settle({ r, task, run }, entry, fd) {
    const what = `epoll ${entry.id} (fd ${fd}) in task ${task.vpid}`;
    const add = (t: eventpoll_tfd_entry, events: number): void => {
      r.resetScratch();
      const ev = Buffer.alloc(EVENT_SIZE);
      ev.writeUInt32LE(events >>> 0, 0);
      ev.writeBigUInt64LE(t.data, 4);
      r.call(`add fd ${t.tfd} to ${what}`, SYS.epoll_ctl, fd, EPOLL_CTL_ADD, t.tfd, r.put(ev));
    };
    // A ONESHOT target that fired keeps only its private bits; epoll_ctl
    // would add EPOLLERR | EPOLLHUP to it. Added first, listening to every
    // event, it fires once more on the next epoll_wait, which leaves it as
    // it was; only these are in the ready list then.
    const disarmed = entry.epfd!.tfd.filter((t) => t.events & EPOLLONESHOT && !(t.events & ~EP_PRIVATE_BITS));
    for (const t of disarmed) add(t, t.events | ANY_EVENT);
    if (disarmed.length) {
      r.resetScratch();
      const buf = r.alloc(EVENT_SIZE * disarmed.length);
      const fired = r.call(`disarm the fired ONESHOT targets of ${what}`, SYS.epoll_wait, fd, buf, disarmed.length, 0);
      // One not ready for anything stays armed for EPOLLERR | EPOLLHUP only (as with CRIU).
      if (fired < disarmed.length) run.log.warn(`${what}: ${disarmed.length - fired} fired ONESHOT target(s) not ready for any event stay armed for EPOLLERR | EPOLLHUP`);
    }
    for (const t of entry.epfd!.tfd) if (!disarmed.includes(t)) add(t, t.events);
  },
};
