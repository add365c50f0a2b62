// /proc/PID/status and /proc/PID/task/TID/status: "Key:\tvalue" lines.
// Identity, credentials, capability and signal sets, namespace pids, umask,
// seccomp and no_new_privs are typed; every line also stays in `fields`, so
// keys a newer kernel adds are not lost.
import { ProcParseError } from "./error.js";
import { decimal, hexBig, lines, octal } from "./numbers.js";

/** The memory lines (kB) of a task that has an mm; zombies and kernel threads have none. */
export interface StatusVm {
  peak: number; size: number; lck: number; pin: number; hwm: number; rss: number;
  rssAnon: number; rssFile: number; rssShmem: number; data: number; stk: number;
  exe: number; lib: number; pte: number; swap: number;
}

export interface ProcStatus {
  /** comm, with the kernel's "\n" and "\\" escapes decoded. */
  name: string;
  /** Absent for zombies (the task has no fs_struct any more). */
  umask?: number;
  /** One letter (R S D Z T t X I ...). */
  state: string;
  /** The word after it: "sleeping", "zombie", ... */
  stateName: string;
  tgid: number;
  ngid: number;
  pid: number;
  ppid: number;
  tracerPid: number;
  /** real, effective, saved, fs */
  uid: [number, number, number, number];
  gid: [number, number, number, number];
  fdSize: number;
  groups: number[];
  /** This task's ids in each PID namespace it is in, outermost first. */
  nsTgid: number[];
  nsPid: number[];
  nsPgid: number[];
  nsSid: number[];
  /** Absent on kernels before 6.0. */
  kthread?: boolean;
  vm?: StatusVm;
  threads: number;
  /** Queued signals of the task's user, and its RLIMIT_SIGPENDING. */
  sigQ: { queued: number; limit: number };
  sigPnd: bigint; shdPnd: bigint; sigBlk: bigint; sigIgn: bigint; sigCgt: bigint;
  capInh: bigint; capPrm: bigint; capEff: bigint; capBnd: bigint; capAmb: bigint;
  noNewPrivs: boolean;
  /** SECCOMP_MODE_*: 0 disabled (also when the kernel has no seccomp), 1 strict, 2 filter. */
  seccomp: number;
  seccompFilters?: number;
  speculationStoreBypass?: string;
  speculationIndirectBranch?: string;
  /** Every line as text, keyed by its name (the known ones too). */
  fields: Record<string, string>;
}

const VM_KEYS: ReadonlyArray<[keyof StatusVm, string]> = [
  ["peak", "VmPeak"], ["size", "VmSize"], ["lck", "VmLck"], ["pin", "VmPin"], ["hwm", "VmHWM"],
  ["rss", "VmRSS"], ["rssAnon", "RssAnon"], ["rssFile", "RssFile"], ["rssShmem", "RssShmem"],
  ["data", "VmData"], ["stk", "VmStk"], ["exe", "VmExe"], ["lib", "VmLib"], ["pte", "VmPTE"],
  ["swap", "VmSwap"],
];

/** status escapes only newline and backslash in Name (tabs and other bytes are raw). */
function unescapeName(s: string): string {
  return s.replace(/\\([n\\])/g, (_, c: string) => (c === "n" ? "\n" : "\\"));
}

export function parseStatus(text: string): ProcStatus {
  const f: Record<string, string> = {};
  let rawName: string | undefined;
  for (const line of lines(text)) {
    const colon = line.indexOf(":");
    if (colon <= 0) throw new ProcParseError("status", line, "no \"Key:\"");
    const key = line.slice(0, colon);
    if (key in f) throw new ProcParseError("status", line, `${key} twice`);
    // Name keeps its own whitespace: only the separating tab goes.
    if (key === "Name") rawName = line.slice(colon + 1).replace(/^\t/, "");
    f[key] = line.slice(colon + 1).trim();
  }
  const need = (k: string): string => {
    const v = f[k];
    if (v === undefined) throw new ProcParseError("status", text.slice(0, 80), `no ${k}: line`);
    return v;
  };
  const line = (k: string): string => `${k}:\t${f[k] ?? ""}`;
  const num = (k: string): number => decimal("status", line(k), need(k), k);
  const ints = (k: string): number[] => {
    const v = need(k);
    return v ? v.split(/\s+/).map((x) => decimal("status", line(k), x, k)) : [];
  };
  const four = (k: string): [number, number, number, number] => {
    const v = ints(k);
    if (v.length !== 4) throw new ProcParseError("status", line(k), "expected four ids");
    return v as [number, number, number, number];
  };
  const mask = (k: string): bigint => {
    const v = need(k);
    if (!/^[0-9a-f]{16}$/.test(v)) throw new ProcParseError("status", line(k), "expected 16 hex digits");
    return hexBig("status", line(k), v);
  };
  const kb = (k: string): number => {
    const m = /^(\d+) kB$/.exec(need(k));
    if (!m) throw new ProcParseError("status", line(k), "expected \"N kB\"");
    return decimal("status", line(k), m[1]);
  };
  const flag = (k: string): boolean => {
    const v = need(k);
    if (v !== "0" && v !== "1") throw new ProcParseError("status", line(k), "expected 0 or 1");
    return v === "1";
  };

  const st = /^([A-Za-z]) \((.+)\)$/.exec(need("State"));
  if (!st) throw new ProcParseError("status", line("State"), "expected \"X (name)\"");
  const sigQ = /^(\d+)\/(\d+)$/.exec(need("SigQ"));
  if (!sigQ) throw new ProcParseError("status", line("SigQ"), "expected queued/limit");

  let vm: StatusVm | undefined;
  if (f.VmSize !== undefined) {
    vm = {} as StatusVm;
    for (const [name, key] of VM_KEYS) vm[name] = kb(key);
  }
  const out: ProcStatus = {
    name: unescapeName(rawName ?? need("Name")),
    state: st[1]!,
    stateName: st[2]!,
    tgid: num("Tgid"), ngid: f.Ngid !== undefined ? num("Ngid") : 0, pid: num("Pid"), ppid: num("PPid"),
    tracerPid: num("TracerPid"),
    uid: four("Uid"), gid: four("Gid"), fdSize: num("FDSize"), groups: ints("Groups"),
    nsTgid: ints("NStgid"), nsPid: ints("NSpid"), nsPgid: ints("NSpgid"), nsSid: ints("NSsid"),
    threads: num("Threads"),
    sigQ: { queued: decimal("status", line("SigQ"), sigQ[1]), limit: decimal("status", line("SigQ"), sigQ[2]) },
    sigPnd: mask("SigPnd"), shdPnd: mask("ShdPnd"), sigBlk: mask("SigBlk"), sigIgn: mask("SigIgn"), sigCgt: mask("SigCgt"),
    capInh: mask("CapInh"), capPrm: mask("CapPrm"), capEff: mask("CapEff"), capBnd: mask("CapBnd"), capAmb: mask("CapAmb"),
    noNewPrivs: flag("NoNewPrivs"),
    seccomp: f.Seccomp !== undefined ? num("Seccomp") : 0,
    fields: f,
  };
  if (f.Umask !== undefined) out.umask = octal("status", line("Umask"), f.Umask, "Umask");
  if (f.Kthread !== undefined) out.kthread = flag("Kthread");
  if (vm) out.vm = vm;
  if (f.Seccomp_filters !== undefined) out.seccompFilters = num("Seccomp_filters");
  if (f.Speculation_Store_Bypass !== undefined) out.speculationStoreBypass = f.Speculation_Store_Bypass;
  if (f.SpeculationIndirectBranch !== undefined) out.speculationIndirectBranch = f.SpeculationIndirectBranch;
  return out;
}
