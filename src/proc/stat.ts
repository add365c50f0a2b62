// /proc/PID/stat and /proc/PID/task/TID/stat: 52 space-separated fields (proc(5)).
// comm (field 2) is in parentheses and may itself hold spaces and parentheses,
// so the fields after it start at the LAST ')'. comm is printed raw: it can
// even hold a newline, so the text is not split into lines.
import { ProcParseError } from "./error.js";
import { decimal, decimalBig } from "./numbers.js";

export interface ProcStat {
  pid: number;
  comm: string;
  /** One letter: R S D Z T t X I ... */
  state: string;
  ppid: number; pgrp: number; session: number;
  /** Controlling terminal as a kernel dev_t (minor bits 31..20 and 7..0, major 15..8). */
  ttyNr: number;
  tpgid: number;
  /** PF_* task flags. */
  flags: number;
  minflt: number; cminflt: number; majflt: number; cmajflt: number;
  /** Clock ticks. */
  utime: number; stime: number; cutime: number; cstime: number;
  priority: number; nice: number; numThreads: number; itrealvalue: number;
  /** Clock ticks after boot. */
  starttime: number;
  /** Bytes. */
  vsize: number;
  /** Pages. */
  rss: number;
  /** RLIMIT_RSS soft limit in bytes; RLIM_INFINITY is 2^64-1. */
  rsslim: bigint;
  startCode: number; endCode: number; startStack: number;
  kstkesp: number; kstkeip: number;
  /** Legacy signal words (only the low 31 bits, in decimal); use status for full masks. */
  signal: number; blocked: number; sigignore: number; sigcatch: number;
  wchan: number; nswap: number; cnswap: number;
  exitSignal: number; processor: number; rtPriority: number;
  /** SCHED_* policy. */
  policy: number;
  delayacctBlkioTicks: number; guestTime: number; cguestTime: number;
  /** Zero for zombies and kernel threads, like the other mm addresses. */
  startData: number; endData: number; startBrk: number;
  argStart: number; argEnd: number; envStart: number; envEnd: number;
  /** wait(2) status of a zombie (exit code << 8 | signal), else 0. */
  exitCode: number;
}

type NumericKey = Exclude<keyof ProcStat, "pid" | "comm" | "state" | "rsslim">;

/** Fields 4..52 in order (field 3, state, and field 25, rsslim, handled apart). */
const AFTER_STATE: ReadonlyArray<NumericKey | "rsslim"> = [
  "ppid", "pgrp", "session", "ttyNr", "tpgid", "flags", "minflt", "cminflt", "majflt",
  "cmajflt", "utime", "stime", "cutime", "cstime", "priority", "nice", "numThreads", "itrealvalue",
  "starttime", "vsize", "rss", "rsslim", "startCode", "endCode", "startStack", "kstkesp", "kstkeip",
  "signal", "blocked", "sigignore", "sigcatch", "wchan", "nswap", "cnswap", "exitSignal", "processor",
  "rtPriority", "policy", "delayacctBlkioTicks", "guestTime", "cguestTime", "startData", "endData",
  "startBrk", "argStart", "argEnd", "envStart", "envEnd", "exitCode",
];

export function parseStat(text: string): ProcStat {
  const line = text.endsWith("\n") ? text.slice(0, -1) : text;
  const open = line.indexOf(" (");
  const close = line.lastIndexOf(")");
  if (open < 0 || close < open + 1 || line[close + 1] !== " ") throw new ProcParseError("stat", line, "no (comm)");
  const rest = line.slice(close + 2).split(" ");
  // Newer kernels may append fields; fewer than 52 means a format we do not know.
  if (rest.length < AFTER_STATE.length + 1) throw new ProcParseError("stat", line, `${rest.length + 2} fields, expected 52`);
  const state = rest[0]!;
  if (!/^[A-Za-z]$/.test(state)) throw new ProcParseError("stat", line, `bad state ${JSON.stringify(state)}`);
  const out: Record<string, unknown> = {
    pid: decimal("stat", line, line.slice(0, open), "a pid"),
    comm: line.slice(open + 2, close),
    state,
  };
  AFTER_STATE.forEach((name, i) => {
    const v = rest[i + 1];
    out[name] = name === "rsslim" ? decimalBig("stat", line, v, name) : decimal("stat", line, v, name);
  });
  return out as unknown as ProcStat;
}
