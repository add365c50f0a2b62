// One file lock as fs/locks.c prints it, in /proc/PID/fdinfo/N ("lock:\t" + this)
// and in /proc/locks:
//   ID: [-> ]KIND MODE TYPE PID MAJ:MIN:INODE START END
//   1: POSIX  ADVISORY  WRITE 5479 fe:00:2171739 0 99
//   2: OFDLCK ADVISORY  READ -1 fe:00:2171739 200 EOF
import { ProcParseError } from "./error.js";
import { decimal, decimalBig, lines } from "./numbers.js";

export type FileLockKind = "POSIX" | "FLOCK" | "OFDLCK" | "LEASE" | "DELEG" | "ACCESS";

export interface FileLock {
  /** Position in the kernel's list (per file for fdinfo, global for /proc/locks). */
  id: number;
  /** "->": a request waiting for this lock (only in /proc/locks). */
  blocked: boolean;
  kind: FileLockKind;
  /** ADVISORY or MANDATORY for POSIX/OFD/FLOCK; ACTIVE, BREAKING or BREAKER for leases. */
  mode: string;
  /** READ, WRITE or UNLCK. */
  type: string;
  /** Owner pid in the reader's PID namespace; -1 for OFD locks (owned by a file, not a process). */
  pid: number;
  /** null when the kernel prints no inode ("<none>"). */
  major: number | null;
  minor: number | null;
  inode: bigint | null;
  start: bigint;
  /** Last byte locked; null for "EOF" (to the end of the file, also flock and leases). */
  end: bigint | null;
}

const KINDS: ReadonlySet<string> = new Set<FileLockKind>(["POSIX", "FLOCK", "OFDLCK", "LEASE", "DELEG", "ACCESS"]);

export function parseFileLock(text: string, file = "locks"): FileLock {
  const t = text.trim().split(/\s+/);
  const id = /^(\d+):$/.exec(t[0] ?? "");
  if (!id) throw new ProcParseError(file, text, "no \"ID:\"");
  const blocked = t[1] === "->";
  const [kind, mode, type, pid, dev, start, end, ...more] = t.slice(blocked ? 2 : 1);
  if (end === undefined || more.length) throw new ProcParseError(file, text, "expected KIND MODE TYPE PID DEV:INODE START END");
  if (!KINDS.has(kind!)) throw new ProcParseError(file, text, `unknown lock kind ${JSON.stringify(kind)}`);
  let major: number | null = null, minor: number | null = null, inode: bigint | null = null;
  const d = /^([0-9a-f]+):([0-9a-f]+):(\d+)$/.exec(dev!);
  if (d) {
    major = parseInt(d[1]!, 16);
    minor = parseInt(d[2]!, 16);
    inode = BigInt(d[3]!);
  } else if (!dev!.startsWith("<none>")) throw new ProcParseError(file, text, `bad device:inode ${JSON.stringify(dev)}`);
  return {
    id: decimal(file, text, id[1]), blocked, kind: kind as FileLockKind, mode: mode!, type: type!,
    pid: decimal(file, text, pid, "a pid"), major, minor, inode,
    start: decimalBig(file, text, start, "a start offset"),
    end: end === "EOF" ? null : decimalBig(file, text, end, "an end offset or EOF"),
  };
}

/** /proc/locks: every lock of the reader's namespace, blocked requests after the lock they wait for. */
export function parseProcLocks(text: string): FileLock[] {
  return lines(text).map((l) => parseFileLock(l, "locks"));
}

/** CRIU's file_lock_entry.len: 0 means "to EOF". */
export function fileLockLength(l: FileLock): bigint {
  return l.end === null ? 0n : l.end - l.start + 1n;
}
