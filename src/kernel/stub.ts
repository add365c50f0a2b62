// A throwaway process for probes that need another task: crest's static stub
// (build/crest-stub, which only loops on pause()), started by the binding's
// spawn as a child that libuv does not know about (so Node never reaps it or
// takes its ptrace stops), optionally seized, always killed and reaped.
import { readFileSync } from "node:fs";
import { native, stubPath } from "../sys/native.js";
import { PTRACE_O, SIG, SYS } from "../sys/constants.js";
import { wait4 } from "../sys/syscalls.js";
import { Tracee } from "../remote/tracee.js";
import { Remote, type Gadget } from "../remote/remote.js";
import { stubGadget } from "../remote/gadget.js";
import { parseMaps } from "../proc/index.js";
import { errname, missing } from "./probe.js";

export interface StubOptions {
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

export class ProbeStub {
  readonly tracee: Tracee | null;
  private remoteCtl: Remote | null = null;
  /** Other children the probe made (reaped with the stub). */
  readonly extra: number[] = [];

  private constructor(readonly pid: number, trace: number | undefined) {
    this.tracee = null;
    if (trace === undefined) return;
    try {
      const t = Tracee.seize(pid, trace);
      t.interrupt();
      this.tracee = t;
    } catch (e) {
      this.kill();
      throw e;
    }
  }

  static start(o: StubOptions = {}): ProbeStub {
    const pid = native.spawn({ path: stubPath, argv: ["crest-stub"], env: [], fds: [], flags: o.flags ?? 0, pid: o.pid ?? 0 });
    if (pid < 0) missing(`${o.what ?? "starting a process"} failed: ${errname(-pid)}`);
    return new ProbeStub(pid, o.trace);
  }

  get t(): Tracee {
    if (!this.tracee) throw new Error("the probe stub is not traced");
    return this.tracee;
  }

  /** Where the stub's own `syscall; int3` is. */
  gadget(): Gadget {
    const text = parseMaps(readFileSync(`/proc/${this.pid}/maps`, "utf8")).find((m) => m.prot.exec && m.path.endsWith("crest-stub"));
    if (!text) throw new Error(`process ${this.pid} does not look like the crest stub`);
    return stubGadget(this.pid, text);
  }

  /** Remote control through the stub's gadget, with a scratch page. */
  remote(): Remote {
    if (!this.remoteCtl) {
      this.remoteCtl = new Remote(this.t, this.gadget());
      this.remoteCtl.mapScratch(4096);
    }
    return this.remoteCtl;
  }

  /** SIGKILL and reap the stub and the children a probe made through it. */
  kill(): void {
    for (const pid of [...this.extra, this.pid]) {
      native.syscall(SYS.kill, pid, SIG.KILL);
      try {
        for (;;) {
          const st = wait4(pid, 0, `reap probe process ${pid}`);
          if (!st || st.exited || st.signaled) break;
        }
      } catch {
        // ECHILD: already reaped.
      }
    }
  }
}

/** Runs fn with a fresh stub and always disposes of it. */
export function withStub<T>(o: StubOptions, fn: (s: ProbeStub) => T): T {
  const s = ProbeStub.start(o);
  try {
    return fn(s);
  } finally {
    s.kill();
  }
}
