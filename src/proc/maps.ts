// /proc/PID/maps: one line per VMA,
//   start-end perms offset major:minor inode [padding path]
// Addresses are page-aligned, so even [vsyscall] (0xffffffffff600000) is an
// exact JS number: a page-aligned u64 has at most 52 significant bits.
import { ProcParseError } from "./error.js";
import { decimal, lines } from "./numbers.js";

export interface MapProt {
  read: boolean;
  write: boolean;
  exec: boolean;
}

export interface MapEntry {
  /** First byte (page-aligned). */
  start: number;
  /** One past the last byte (page-aligned). */
  end: number;
  prot: MapProt;
  /** "s" in the flags column (MAP_SHARED), as opposed to "p". */
  shared: boolean;
  /** File offset in bytes; for anonymous memory the kernel shows vm_pgoff << PAGE_SHIFT. */
  offset: bigint;
  /** Device of the mapped file (0:0 for anonymous memory). */
  major: number;
  minor: number;
  /** Inode of the mapped file; for SysV shm the segment id; 0 for plain anonymous memory. */
  inode: number;
  /**
   * File path, pseudo name kept as-is ([heap] [stack] [vdso] [vvar] [vvar_vclock]
   * [vsyscall] [anon:NAME] [anon_shmem:NAME]), "/dev/zero" or "/SYSV%08x" for
   * shared anonymous memory, "/memfd:NAME" for memfds, or "" for anonymous memory.
   * A newline in a file name appears as the four characters "\012" (not decoded:
   * a backslash is not escaped, so the text is ambiguous).
   */
  path: string;
  /** The path ended in " (deleted)" (stripped from path). */
  deleted: boolean;
}

const LINE = /^([0-9a-f]+)-([0-9a-f]+) ([r-])([w-])([x-])([sp]) ([0-9a-f]+) ([0-9a-f]+):([0-9a-f]+) (\d+)(?: +(.*))?$/;
const DELETED = " (deleted)";

function address(file: string, line: string, s: string): number {
  // Page alignment (low 12 bits zero) is what makes the number exact.
  if (s.length > 16 || !s.endsWith("000")) throw new ProcParseError(file, line, `address ${s} is not a page-aligned 64-bit value`);
  return parseInt(s, 16);
}

/** One maps line (also the header line of each smaps entry). */
export function parseMapsLine(line: string, file = "maps"): MapEntry {
  const m = LINE.exec(line);
  if (!m) throw new ProcParseError(file, line);
  const start = address(file, line, m[1]!);
  const end = address(file, line, m[2]!);
  if (end <= start) throw new ProcParseError(file, line, "end is not above start");
  let path = m[11] ?? "";
  const deleted = path.endsWith(DELETED);
  if (deleted) path = path.slice(0, -DELETED.length);
  return {
    start, end,
    prot: { read: m[3] === "r", write: m[4] === "w", exec: m[5] === "x" },
    shared: m[6] === "s",
    offset: BigInt(`0x${m[7]}`),
    major: parseInt(m[8]!, 16),
    minor: parseInt(m[9]!, 16),
    inode: decimal(file, line, m[10]!, "an inode number"),
    path, deleted,
  };
}

export function parseMaps(text: string): MapEntry[] {
  return lines(text).map((l) => parseMapsLine(l, "maps"));
}
