// The kind-specific lines of /proc/PID/fdinfo/N, one parser each. Most
// numbers here are hex even where nothing says so (eventfd-count, sigmask,
// every field of tfd:, inotify and fanotify lines but tfd itself and the
// epoll pos); the fdinfo module decides which line goes where.
import { ProcParseError } from "./error.js";
import { decimal, decimalBig, hex, hexBig } from "./numbers.js";

const FILE = "fdinfo";

/** One target of an epoll instance: "tfd: N events: HEX data: HEX  pos:N ino:HEX sdev:HEX". */
export interface EpollTarget {
  tfd: number;
  /** EPOLL* event bits, EPOLLET/EPOLLONESHOT/... included. */
  events: number;
  /** epoll_event.data as registered. */
  data: bigint;
  /** The target file's position, inode and kernel-format s_dev (absent before Linux 4.x). */
  pos?: bigint;
  ino?: bigint;
  sdev?: number;
}

const TFD = /^tfd:\s*(\d+)\s+events:\s*([0-9a-f]+)\s+data:\s*([0-9a-f]+)(?:\s+pos:(\d+)\s+ino:([0-9a-f]+)\s+sdev:([0-9a-f]+))?\s*$/;

export function parseEpollTarget(line: string): EpollTarget {
  const m = TFD.exec(line);
  if (!m) throw new ProcParseError(FILE, line, "bad epoll tfd: line");
  const t: EpollTarget = { tfd: decimal(FILE, line, m[1]), events: hex(FILE, line, m[2]), data: hexBig(FILE, line, m[3]) };
  if (m[4] !== undefined) {
    t.pos = decimalBig(FILE, line, m[4]);
    t.ino = hexBig(FILE, line, m[5]);
    t.sdev = hex(FILE, line, m[6]);
  }
  return t;
}

/** The words of "key:value key:value ..." (inotify and fanotify lines). */
function keyValues(line: string, words: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const w of words) {
    const colon = w.indexOf(":");
    if (colon <= 0) throw new ProcParseError(FILE, line, `expected key:value, got ${JSON.stringify(w)}`);
    out.set(w.slice(0, colon), w.slice(colon + 1));
  }
  return out;
}

/** An exportfs file handle, hex-encoded in inotify and fanotify lines. */
export interface FileHandle {
  /** fhandle-bytes */
  bytes: number;
  /** fhandle-type */
  type: number;
  handle: Buffer;
}

function fileHandle(line: string, kv: Map<string, string>): FileHandle | undefined {
  if (!kv.has("fhandle-bytes")) return undefined; // kernels without CONFIG_EXPORTFS print none
  const bytes = hex(FILE, line, kv.get("fhandle-bytes"), "fhandle-bytes");
  const text = kv.get("f_handle") ?? "";
  if (!/^[0-9a-f]*$/.test(text) || text.length !== 2 * bytes) throw new ProcParseError(FILE, line, `f_handle is not ${bytes} hex bytes`);
  return { bytes, type: hex(FILE, line, kv.get("fhandle-type"), "fhandle-type"), handle: Buffer.from(text, "hex") };
}

export interface InotifyWatch {
  /** Watch descriptor (printed in hex). */
  wd: number;
  ino: bigint;
  /** Kernel-format s_dev (major << 20 | minor). */
  sdev: number;
  /** IN_* bits, IN_ONESHOT/IN_EXCL_UNLINK/... included. */
  mask: number;
  ignoredMask: number;
  fhandle?: FileHandle;
}

export function parseInotifyWatch(line: string): InotifyWatch {
  const words = line.trim().split(/\s+/);
  if (words[0] !== "inotify") throw new ProcParseError(FILE, line, "not an inotify line");
  const kv = keyValues(line, words.slice(1));
  const w: InotifyWatch = {
    wd: hex(FILE, line, kv.get("wd"), "wd"), ino: hexBig(FILE, line, kv.get("ino"), "ino"),
    sdev: hex(FILE, line, kv.get("sdev"), "sdev"), mask: hex(FILE, line, kv.get("mask"), "mask"),
    ignoredMask: hex(FILE, line, kv.get("ignored_mask"), "ignored_mask"),
  };
  const fh = fileHandle(line, kv);
  if (fh) w.fhandle = fh;
  return w;
}

/** The common part of every fanotify mark. */
interface FanotifyMarkBase {
  /** FAN_MARK_* flags of the mark as the kernel keeps them (e.g. 0x40 ignored-survives-modify). */
  mflags: number;
  mask: number;
  ignoredMask: number;
}

export type FanotifyMark =
  | (FanotifyMarkBase & { kind: "inode"; ino: bigint; sdev: number; fhandle?: FileHandle })
  | (FanotifyMarkBase & { kind: "mount"; /** printed in hex */ mntId: number })
  | (FanotifyMarkBase & { kind: "sb"; sdev: number })
  | { kind: "other"; fields: Record<string, string> };

export interface FanotifyInfo {
  /** fanotify_init flags (FAN_CLASS_*, FAN_CLOEXEC, ...). */
  flags: number;
  /** fanotify_init event_f_flags (O_* of the event fds). */
  eventFlags: number;
  marks: FanotifyMark[];
}

export function parseFanotifyHeader(line: string): { flags: number; eventFlags: number } {
  const words = line.trim().split(/\s+/);
  const kv = keyValues(line, words.slice(1));
  return { flags: hex(FILE, line, kv.get("flags"), "flags"), eventFlags: hex(FILE, line, kv.get("event-flags"), "event-flags") };
}

export function parseFanotifyMark(line: string): FanotifyMark {
  const words = line.trim().split(/\s+/);
  if (words[0] !== "fanotify") throw new ProcParseError(FILE, line, "not a fanotify line");
  const kv = keyValues(line, words.slice(1));
  const first = words[1]!.slice(0, words[1]!.indexOf(":"));
  if (first !== "ino" && first !== "mnt_id" && first !== "sdev") return { kind: "other", fields: Object.fromEntries(kv) };
  const base: FanotifyMarkBase = {
    mflags: hex(FILE, line, kv.get("mflags"), "mflags"), mask: hex(FILE, line, kv.get("mask"), "mask"),
    ignoredMask: hex(FILE, line, kv.get("ignored_mask"), "ignored_mask"),
  };
  if (first === "mnt_id") return { kind: "mount", mntId: hex(FILE, line, kv.get("mnt_id"), "mnt_id"), ...base };
  const sdev = hex(FILE, line, kv.get("sdev"), "sdev");
  if (first === "sdev") return { kind: "sb", sdev, ...base };
  const mark: FanotifyMark = { kind: "inode", ino: hexBig(FILE, line, kv.get("ino"), "ino"), sdev, ...base };
  const fh = fileHandle(line, kv);
  if (fh) mark.fhandle = fh;
  return mark;
}

export interface EventfdInfo {
  /** The counter (printed in hex). */
  count: bigint;
  /** Kernel-wide id of the eventfd (6.x); shared by dup'ed fds. */
  id?: number;
  /** EFD_SEMAPHORE (6.x). */
  semaphore?: boolean;
}

export interface Timespec {
  sec: number;
  nsec: number;
}

export interface TimerfdInfo {
  clockid: number;
  /** Expirations not read yet. */
  ticks: bigint;
  /** TFD_TIMER_ABSTIME (1) | TFD_TIMER_CANCEL_ON_SET (2), printed in octal. */
  settimeFlags: number;
  /** Time left to the next expiry (relative even for an absolute timer); 0 when disarmed. */
  value: Timespec;
  interval: Timespec;
}

export function parseTimespec(line: string, s: string): Timespec {
  const m = /^\((\d+), (\d+)\)$/.exec(s);
  if (!m) throw new ProcParseError(FILE, line, "expected (sec, nsec)");
  return { sec: decimal(FILE, line, m[1]), nsec: decimal(FILE, line, m[2]) };
}

export interface PidfdInfo {
  /** The pid in the reader's PID namespace; -1 once the process is reaped, 0 if not visible there. */
  pid: number;
  /** Its pids from the reader's namespace inward ([-1] or absent for a reaped process, by kernel version). */
  nsPid: number[];
}

/**
 * The pid a pidfd names in the process's innermost PID namespace (the last
 * NSpid); -1 once it is reaped, 0 if the reader cannot see it.
 */
export function pidfdNsPid(p: PidfdInfo): number {
  if (p.pid <= 0) return p.pid;
  return p.nsPid.at(-1) ?? p.pid;
}
