// A throwaway task for probes that need another one: crest's stub
// (remote/stub.ts), always killed and reaped when the probe ends; a stub
// that cannot be made fails the probe with the reason.
import { PTRACE_O } from "../sys/constants.js";
import { Stub } from "../remote/stub.js";
import { errname, missing } from "./probe.js";

export interface ProbeStubOptions {
  /** Clone flags (new namespaces). */
  flags?: number;
  /** An exact PID (clone3 set_tid), in the new PID namespace with CLONE_NEWPID. */
  pid?: number;
  /** ptrace options to seize with; absent: not traced. */
  trace?: number;
  /** What the probe calls the spawn, for the reason when it fails. */
  what?: string;
}

export const PROBE_TRACE = PTRACE_O.TRACESYSGOOD | PTRACE_O.EXITKILL;
/** The scratch page a probe's injected syscalls take their arguments from. */
const PROBE_SCRATCH = 4096;

/** Runs fn with a fresh stub and always kills it. */
export function withStub<T>(o: ProbeStubOptions, fn: (s: Stub) => T): T {
  const s = Stub.start({
    pid: o.pid, flags: o.flags, trace: o.trace, scratch: PROBE_SCRATCH,
    spawnError: (e) => missing(`${o.what ?? "starting a process"} failed: ${errname(e)}`),
  });
  try {
    return fn(s);
  } finally {
    s.kill();
  }
}
