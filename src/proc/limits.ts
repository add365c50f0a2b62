// /proc/PID/limits: a fixed-width table, one row per resource in RLIMIT_*
// order. The only way to read another user's limits without CAP_SYS_RESOURCE.
import { ProcParseError } from "./error.js";

export const RLIM_INFINITY = 0xffffffffffffffffn;

/** Row names in /proc/PID/limits, by RLIMIT_* number. */
const ROWS = [
  "Max cpu time", "Max file size", "Max data size", "Max stack size", "Max core file size",
  "Max resident set", "Max processes", "Max open files", "Max locked memory", "Max address space",
  "Max file locks", "Max pending signals", "Max msgqueue size", "Max nice priority",
  "Max realtime priority", "Max realtime timeout",
];
export const RLIMIT_NAMES = [
  "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS",
  "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS",
  "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
];

export interface Rlimit {
  cur: bigint;
  max: bigint;
}

const value = (s: string): bigint => (s === "unlimited" ? RLIM_INFINITY : BigInt(s));

export function parseLimits(text: string): Rlimit[] {
  const out: Rlimit[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("Limit ")) continue;
    const idx = ROWS.findIndex((r) => line.startsWith(`${r} `));
    if (idx < 0) throw new ProcParseError("limits", line, "unknown limit");
    const cols = line.slice(ROWS[idx]!.length).trim().split(/\s+/);
    if (cols.length < 2) throw new ProcParseError("limits", line);
    out[idx] = { cur: value(cols[0]!), max: value(cols[1]!) };
  }
  if (out.length !== ROWS.length || out.some((l) => !l)) throw new ProcParseError("limits", text.slice(0, 80), `expected ${ROWS.length} limits`);
  return out;
}
