// /proc/PID/limits: a fixed-width table (name 25 columns, soft and hard limit
// 20 each, units 10), one row per resource in RLIMIT_* order. Values are in
// the resource's own unit (seconds, bytes, us, ...), exactly what getrlimit
// returns: no scaling. The only way to read another process's limits here:
// prlimit(2) on another user's task needs CAP_SYS_RESOURCE.
import { ProcParseError } from "./error.js";
import { decimalBig, lines } from "./numbers.js";

/** RLIM_INFINITY, shown as "unlimited". */
export const RLIM_INFINITY = 0xffffffffffffffffn;

/** RLIMIT_* numbers (asm-generic/resource.h). */
export const RLIMIT = {
  CPU: 0, FSIZE: 1, DATA: 2, STACK: 3, CORE: 4, RSS: 5, NPROC: 6, NOFILE: 7, MEMLOCK: 8,
  AS: 9, LOCKS: 10, SIGPENDING: 11, MSGQUEUE: 12, NICE: 13, RTPRIO: 14, RTTIME: 15,
} as const;

export const RLIMIT_NAMES = [
  "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS",
  "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS",
  "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
] as const;

/** Row name and unit column of each row, by RLIMIT_* number (fs/proc/base.c lnames). */
const ROWS: ReadonlyArray<readonly [string, string]> = [
  ["Max cpu time", "seconds"], ["Max file size", "bytes"], ["Max data size", "bytes"],
  ["Max stack size", "bytes"], ["Max core file size", "bytes"], ["Max resident set", "bytes"],
  ["Max processes", "processes"], ["Max open files", "files"], ["Max locked memory", "bytes"],
  ["Max address space", "bytes"], ["Max file locks", "locks"], ["Max pending signals", "signals"],
  ["Max msgqueue size", "bytes"], ["Max nice priority", ""], ["Max realtime priority", ""],
  ["Max realtime timeout", "us"],
];

export interface Rlimit {
  /** Soft limit; RLIM_INFINITY for "unlimited". */
  cur: bigint;
  /** Hard limit; RLIM_INFINITY for "unlimited". */
  max: bigint;
}

const NAME_WIDTH = 25;

function value(line: string, s: string | undefined): bigint {
  return s === "unlimited" ? RLIM_INFINITY : decimalBig("limits", line, s, "a limit or \"unlimited\"");
}

/** The limits indexed by RLIMIT_* number (always 16 entries). */
export function parseLimits(text: string): Rlimit[] {
  const rows = lines(text);
  const header = rows.shift();
  if (header === undefined || !/^Limit\s+Soft Limit\s+Hard Limit\s+Units\s*$/.test(header)) {
    throw new ProcParseError("limits", header ?? "", "no \"Limit Soft Limit Hard Limit Units\" header");
  }
  if (rows.length !== ROWS.length) throw new ProcParseError("limits", text.slice(0, 80), `${rows.length} rows, expected ${ROWS.length}`);
  return rows.map((line, i) => {
    const [name, unit] = ROWS[i]!;
    if (line.slice(0, NAME_WIDTH).trimEnd() !== name || line[NAME_WIDTH] !== " ") {
      throw new ProcParseError("limits", line, `row ${i} should be "${name}" (${RLIMIT_NAMES[i]})`);
    }
    const cols = line.slice(NAME_WIDTH + 1).trim().split(/\s+/);
    if (cols.length !== (unit ? 3 : 2) || (unit && cols[2] !== unit)) {
      throw new ProcParseError("limits", line, `expected soft, hard${unit ? ` and "${unit}"` : ""}`);
    }
    return { cur: value(line, cols[0]), max: value(line, cols[1]) };
  });
}
