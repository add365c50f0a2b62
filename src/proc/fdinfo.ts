// /proc/PID/fdinfo/N: position, open flags (octal; O_CLOEXEC there is the
// fd's close-on-exec flag), mount id and inode, then lines that depend on what
// the fd is. Which kind an fd is comes from its /proc/PID/fd link, not from
// here: an epoll or inotify fd with nothing registered prints no extra lines.
import { ProcParseError } from "./error.js";
import { parseFileLock, type FileLock } from "./file-lock.js";
import {
  parseEpollTarget, parseFanotifyHeader, parseFanotifyMark, parseInotifyWatch, parseTimespec,
  type EpollTarget, type EventfdInfo, type FanotifyInfo, type InotifyWatch, type PidfdInfo, type TimerfdInfo,
} from "./fdinfo-kinds.js";
import { decimal, decimalBig, hexBig, lines, octal } from "./numbers.js";

export interface Fdinfo {
  pos: bigint;
  /** O_* flags of the open file description, plus O_CLOEXEC for the fd. */
  flags: number;
  /** Mount id (-1 if the kernel printed none; 0 for memfds and other internal mounts). */
  mntId: number;
  /** Inode number (0 if the kernel printed none). */
  ino: bigint;
  /** POSIX, OFD, flock and lease locks on the file ("lock:" lines). */
  locks: FileLock[];
  /** epoll: registered targets ("tfd:" lines), in the kernel's (rbtree) order. */
  epollTargets: EpollTarget[];
  /** inotify: watches ("inotify wd:" lines), newest first. */
  inotifyWatches: InotifyWatch[];
  eventfd?: EventfdInfo;
  timerfd?: TimerfdInfo;
  /** signalfd: the signals it accepts. */
  signalfd?: { sigmask: bigint };
  fanotify?: FanotifyInfo;
  pidfd?: PidfdInfo;
  /** Every other "key: value" line (scm_fds, tty-index, io_uring's, ...); repeated keys keep each
   * value in order, and indented lines continue the value of the key before them. */
  extra: Map<string, string[]>;
}

const TIMERFD_KEYS = ["clockid", "ticks", "settime flags", "it_value", "it_interval"];

/** Single-valued keys this module types; any other key goes to `extra`. */
const KNOWN: ReadonlySet<string> = new Set([
  "pos", "flags", "mnt_id", "ino", "eventfd-count", "eventfd-id", "eventfd-semaphore",
  ...TIMERFD_KEYS, "sigmask", "Pid", "NSpid",
]);

export function parseFdinfo(text: string): Fdinfo {
  const info: Fdinfo = { pos: -1n, flags: -1, mntId: -1, ino: 0n, locks: [], epollTargets: [], inotifyWatches: [], extra: new Map() };
  const kv = new Map<string, { line: string; value: string }>();
  let fanotify: FanotifyInfo | undefined;
  let lastExtra: string[] | undefined;
  for (const line of lines(text)) {
    if (line.startsWith("lock:")) info.locks.push(parseFileLock(line.slice(5), "fdinfo"));
    else if (line.startsWith("tfd:")) info.epollTargets.push(parseEpollTarget(line));
    else if (line.startsWith("inotify ")) info.inotifyWatches.push(parseInotifyWatch(line));
    else if (line.startsWith("fanotify flags:")) fanotify = { ...parseFanotifyHeader(line), marks: [] };
    else if (line.startsWith("fanotify ")) {
      if (!fanotify) throw new ProcParseError("fdinfo", line, "fanotify mark before \"fanotify flags:\"");
      fanotify.marks.push(parseFanotifyMark(line));
    } else if (/^\s/.test(line) && lastExtra) lastExtra.push(line.trim());
    else {
      const m = /^([^:\s][^:]*):\s*(.*)$/.exec(line);
      if (!m) throw new ProcParseError("fdinfo", line, "not \"key: value\"");
      const key = m[1]!, value = m[2]!;
      if (KNOWN.has(key)) {
        if (kv.has(key)) throw new ProcParseError("fdinfo", line, `${key} twice`);
        kv.set(key, { line, value });
        lastExtra = undefined;
      } else {
        lastExtra = info.extra.get(key) ?? [];
        lastExtra.push(value);
        info.extra.set(key, lastExtra);
      }
    }
  }
  const get = (k: string): { line: string; value: string } | undefined => kv.get(k);
  const pos = get("pos"), flags = get("flags");
  if (!pos || !flags) throw new ProcParseError("fdinfo", text.slice(0, 80), "no pos: or flags: line");
  info.pos = decimalBig("fdinfo", pos.line, pos.value, "pos");
  info.flags = octal("fdinfo", flags.line, flags.value, "octal flags");
  const mnt = get("mnt_id");
  if (mnt) info.mntId = decimal("fdinfo", mnt.line, mnt.value, "mnt_id");
  const ino = get("ino");
  if (ino) info.ino = decimalBig("fdinfo", ino.line, ino.value, "ino");

  const count = get("eventfd-count");
  if (count) {
    info.eventfd = { count: hexBig("fdinfo", count.line, count.value, "eventfd-count") };
    const id = get("eventfd-id"), sem = get("eventfd-semaphore");
    if (id) info.eventfd.id = decimal("fdinfo", id.line, id.value);
    if (sem) {
      if (sem.value !== "0" && sem.value !== "1") throw new ProcParseError("fdinfo", sem.line, "expected 0 or 1");
      info.eventfd.semaphore = sem.value === "1";
    }
  }
  if (TIMERFD_KEYS.some((k) => kv.has(k))) {
    const need = (k: string): { line: string; value: string } => {
      const v = get(k);
      if (!v) throw new ProcParseError("fdinfo", text.slice(0, 80), `timerfd without a "${k}:" line`);
      return v;
    };
    const clockid = need("clockid"), ticks = need("ticks"), settime = need("settime flags");
    const value = need("it_value"), interval = need("it_interval");
    info.timerfd = {
      clockid: decimal("fdinfo", clockid.line, clockid.value),
      ticks: decimalBig("fdinfo", ticks.line, ticks.value),
      settimeFlags: octal("fdinfo", settime.line, settime.value),
      value: parseTimespec(value.line, value.value),
      interval: parseTimespec(interval.line, interval.value),
    };
  }
  const sigmask = get("sigmask");
  if (sigmask) info.signalfd = { sigmask: hexBig("fdinfo", sigmask.line, sigmask.value, "sigmask") };
  if (fanotify) info.fanotify = fanotify;
  const pid = get("Pid");
  if (pid) {
    const ns = get("NSpid");
    info.pidfd = {
      pid: decimal("fdinfo", pid.line, pid.value, "Pid"),
      nsPid: ns && ns.value ? ns.value.split(/\s+/).map((v) => decimal("fdinfo", ns.line, v, "NSpid")) : [],
    };
  }
  return info;
}
