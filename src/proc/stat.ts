// /proc/PID/stat and /proc/PID/task/TID/stat (see proc(5)). comm may hold
// spaces and parentheses, so the fields after it start at the last ')'.
import { ProcParseError } from "./error.js";

export interface ProcStat {
  pid: number; comm: string; state: string; ppid: number; pgrp: number; session: number;
  ttyNr: number; tpgid: number; flags: number; minflt: number; cminflt: number; majflt: number;
  cmajflt: number; utime: number; stime: number; cutime: number; cstime: number; priority: number;
  nice: number; numThreads: number; itrealvalue: number; starttime: number; vsize: number; rss: number;
  rsslim: bigint; startCode: number; endCode: number; startStack: number; kstkesp: number;
  kstkeip: number; signal: number; blocked: number; sigignore: number; sigcatch: number; wchan: number;
  nswap: number; cnswap: number; exitSignal: number; processor: number; rtPriority: number;
  policy: number; delayacctBlkioTicks: number; guestTime: number; cguestTime: number;
  startData: number; endData: number; startBrk: number; argStart: number; argEnd: number;
  envStart: number; envEnd: number; exitCode: number;
}

const NAMES = [
  "state", "ppid", "pgrp", "session", "ttyNr", "tpgid", "flags", "minflt", "cminflt", "majflt",
  "cmajflt", "utime", "stime", "cutime", "cstime", "priority", "nice", "numThreads", "itrealvalue",
  "starttime", "vsize", "rss", "rsslim", "startCode", "endCode", "startStack", "kstkesp", "kstkeip",
  "signal", "blocked", "sigignore", "sigcatch", "wchan", "nswap", "cnswap", "exitSignal", "processor",
  "rtPriority", "policy", "delayacctBlkioTicks", "guestTime", "cguestTime", "startData", "endData",
  "startBrk", "argStart", "argEnd", "envStart", "envEnd", "exitCode",
] as const;

export function parseStat(text: string): ProcStat {
  const line = text.trimEnd();
  const open = line.indexOf(" (");
  const close = line.lastIndexOf(")");
  if (open < 0 || close < open) throw new ProcParseError("stat", line);
  const rest = line.slice(close + 2).split(" ");
  if (rest.length < NAMES.length) throw new ProcParseError("stat", line, `${rest.length + 2} fields, expected 52`);
  const out: Record<string, unknown> = { pid: Number(line.slice(0, open)), comm: line.slice(open + 2, close) };
  NAMES.forEach((name, i) => {
    const v = rest[i]!;
    out[name] = name === "state" ? v : name === "rsslim" ? BigInt(v) : Number(v);
  });
  return out as unknown as ProcStat;
}
