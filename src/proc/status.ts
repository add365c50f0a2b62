// /proc/PID/status: credentials, capability sets, signal sets, namespaces'
// pids, umask, seccomp and no_new_privs. Unknown keys stay in `fields`.
import { ProcParseError } from "./error.js";

export interface ProcStatus {
  name: string;
  umask: number;
  state: string;
  tgid: number;
  pid: number;
  ppid: number;
  tracerPid: number;
  /** real, effective, saved, fs */
  uid: [number, number, number, number];
  gid: [number, number, number, number];
  groups: number[];
  /** This task's ids in each PID namespace it is in, outermost first. */
  nsTgid: number[];
  nsPid: number[];
  nsPgid: number[];
  nsSid: number[];
  threads: number;
  sigPnd: bigint; shdPnd: bigint; sigBlk: bigint; sigIgn: bigint; sigCgt: bigint;
  capInh: bigint; capPrm: bigint; capEff: bigint; capBnd: bigint; capAmb: bigint;
  noNewPrivs: boolean;
  /** SECCOMP_MODE_* */
  seccomp: number;
  fields: Record<string, string>;
}

export function parseStatus(text: string): ProcStatus {
  const f: Record<string, string> = {};
  for (const line of text.split("\n")) {
    if (!line) continue;
    const colon = line.indexOf(":");
    if (colon < 0) throw new ProcParseError("status", line);
    f[line.slice(0, colon)] = line.slice(colon + 1).trim();
  }
  const need = (k: string): string => {
    const v = f[k];
    if (v === undefined) throw new ProcParseError("status", k, "missing field");
    return v;
  };
  const ints = (k: string): number[] => (f[k] ? f[k]!.split(/\s+/).filter(Boolean).map(Number) : []);
  const four = (k: string): [number, number, number, number] => {
    const v = ints(k);
    if (v.length !== 4) throw new ProcParseError("status", `${k}: ${f[k] ?? ""}`, "expected four ids");
    return v as [number, number, number, number];
  };
  const hex = (k: string): bigint => BigInt(`0x${need(k)}`);
  return {
    name: need("Name"),
    umask: parseInt(f.Umask ?? "22", 8),
    state: need("State"),
    tgid: Number(need("Tgid")), pid: Number(need("Pid")), ppid: Number(need("PPid")), tracerPid: Number(need("TracerPid")),
    uid: four("Uid"), gid: four("Gid"), groups: ints("Groups"),
    nsTgid: ints("NStgid"), nsPid: ints("NSpid"), nsPgid: ints("NSpgid"), nsSid: ints("NSsid"),
    threads: Number(need("Threads")),
    sigPnd: hex("SigPnd"), shdPnd: hex("ShdPnd"), sigBlk: hex("SigBlk"), sigIgn: hex("SigIgn"), sigCgt: hex("SigCgt"),
    capInh: hex("CapInh"), capPrm: hex("CapPrm"), capEff: hex("CapEff"), capBnd: hex("CapBnd"), capAmb: hex("CapAmb"),
    noNewPrivs: f.NoNewPrivs === "1",
    seccomp: Number(f.Seccomp ?? "0"),
    fields: f,
  };
}
