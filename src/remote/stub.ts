// crest's stub (native/stub.c, a static program that loops on pause()):
// the process a restored tree is built from, and the throwaway task of the
// kernel probes. Spawned by the binding's spawn (clone3, optionally with an
// exact PID and new namespaces) as a child that libuv does not know about,
// so Node never reaps it or takes its ptrace stops; optionally seized and
// stopped, with remote control through the stub's own `syscall; int3`.
import { readdirSync, readFileSync } from "node:fs";
import { native, stubPath } from "../sys/native.js";
import { errnoName, EEXIST, EINVAL } from "../sys/errno.js";
import { PTRACE_O, SIG, SYS } from "../sys/constants.js";
import { sleepMs, wait4 } from "../sys/syscalls.js";
import { Tracee, TraceError } from "./tracee.js";
import { stubGadget } from "./gadget.js";
import { Remote, type Gadget } from "./remote.js";
import { parseMaps, parseStat } from "../proc/index.js";

/** Options tasks under restore are traced with: fork/clone children arrive traced and stopped. */
export const RESTORE_SEIZE_OPTIONS =
  PTRACE_O.TRACESYSGOOD | PTRACE_O.TRACEFORK | PTRACE_O.TRACECLONE | PTRACE_O.TRACEVFORK |
  PTRACE_O.SUSPEND_SECCOMP | PTRACE_O.EXITKILL;

export interface StubOptions {
  /** An exact PID (clone3 set_tid), in the new PID namespace with CLONE_NEWPID; absent: any. */
  pid?: number;
  /** Clone flags (new namespaces). */
  flags?: number;
  setsid?: boolean;
  /** With CLONE_NEWUSER in flags: the maps written before the stub runs (as uid and gid 0 of its namespace). */
  userns?: { uidMap: string; gidMap: string };
  /** ptrace options to seize it with; absent: not traced. */
  trace?: number;
  /** Size of a scratch page to map when remote control is first made; absent: none. */
  scratch?: number;
  /** The error for clone3's errno when the stub cannot be created. */
  spawnError: (errno: number) => Error;
}

/** SIGKILL and reap a child of crest (ECHILD, already reaped, is fine). */
export function killAndReap(pid: number): void {
  native.syscall(SYS.kill, pid, SIG.KILL);
  try {
    for (;;) {
      const st = wait4(pid, 0, `reap process ${pid}`);
      if (!st || st.exited || st.signaled) return;
    }
  } catch {
    // ECHILD: already reaped.
  }
}

export class Stub {
  private ctl: Remote | null = null;

  private constructor(readonly pid: number, readonly tracee: Tracee | null, private readonly scratch: number) {}

  /** Spawns a stub; seized and stopped when o.trace is given (killed again if that fails). */
  static start(o: StubOptions): Stub {
    const spawn = () => native.spawn({ path: stubPath(), argv: ["crest-stub"], env: [], fds: [], pid: o.pid ?? 0, flags: o.flags ?? 0, setsid: o.setsid ? 1 : 0, ...o.userns });
    const pid = o.pid ? createPid(o.pid, spawn) : spawn();
    if (pid < 0) throw o.spawnError(-pid);
    if (o.trace === undefined) return new Stub(pid, null, 0);
    try {
      const t = Tracee.seize(pid, o.trace);
      t.interrupt();
      return new Stub(pid, t, o.scratch ?? 0);
    } catch (e) {
      killAndReap(pid);
      throw e;
    }
  }

  get t(): Tracee {
    if (!this.tracee) throw new Error(`the stub process ${this.pid} is not traced`);
    return this.tracee;
  }

  /** Where the stub's own `syscall; int3` is, found in its text by the marker. */
  gadget(): Gadget {
    const text = parseMaps(readFileSync(`/proc/${this.pid}/maps`, "utf8")).find((m) => m.prot.exec && m.path.endsWith("crest-stub"));
    if (!text) throw new TraceError(`process ${this.pid} does not look like the crest stub`);
    return stubGadget(this.pid, text);
  }

  /** Remote control through the stub's gadget (made once, with the scratch page asked for). */
  remote(): Remote {
    if (!this.ctl) {
      this.ctl = new Remote(this.t, this.gadget());
      if (this.scratch) this.ctl.mapScratch(this.scratch);
    }
    return this.ctl;
  }

  kill(): void {
    killAndReap(this.pid);
  }
}

/**
 * Runs create() (a spawn or clone3 with set_tid: a PID, or -errno) until
 * the PID is not EEXIST or is held by a process /proc shows. A number no
 * process has can still be taken for a while: a PID whose process was just
 * reaped leaves /proc a moment before the kernel frees the number, and a
 * dead process's PID stays taken as long as other processes have it as
 * their process group or session (the dumped tree's killed children, until
 * their new parent, often PID 1, reaps them: a second or more on a busy
 * machine).
 */
export function createPid(pid: number, create: () => number, waitMs = 5000): number {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const got = create();
    if (got !== -EEXIST || pidHolder(pid) !== null || Date.now() > deadline) return got;
    sleepMs(2);
  }
}

/** Who holds a PID now, for the error that says so. */
function pidHolder(pid: number): string | null {
  try {
    const comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
    return `process ${pid} (${comm})`;
  } catch {
    return null;
  }
}

/** Processes that have a dead process's PID as their process group or session, which keeps the number taken. */
function groupHolders(pid: number): string[] {
  const found: string[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const st = parseStat(readFileSync(`/proc/${name}/stat`, "utf8"));
      if (st.pgrp === pid || st.session === pid) found.push(`process ${name} (${st.comm}${st.state === "Z" ? `, a zombie its parent ${st.ppid} has not reaped` : ""})`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** Why the stub for a restored task's PID could not be created. */
function restoreSpawnError(pid: number, e: number): TraceError {
  if (e === EEXIST) {
    const who = pidHolder(pid);
    const groups = who ? [] : groupHolders(pid);
    const by = who ? ` by ${who}` : groups.length ? ` as the process group or session of ${groups.slice(0, 3).join(", ")}${groups.length > 3 ? ` and ${groups.length - 3} more` : ""}` : "";
    return new TraceError(`PID ${pid} is taken${by}: stop it (a killed process's PID can stay taken until its parent reaps it), or restore into a new PID namespace`, e);
  }
  if (e === EINVAL) return new TraceError(`cannot create PID ${pid}: it is above this system's pid_max (/proc/sys/kernel/pid_max)`, e);
  return new TraceError(`cannot start the stub process for PID ${pid}: ${errnoName(e)}`, e);
}

/** Spawns a stub with exactly o.pid, seizes it and opens remote control on it (no scratch page yet). */
export function startStub(o: { pid: number; flags?: number; setsid?: boolean; userns?: { uidMap: string; gidMap: string } }): Remote {
  return Stub.start({ ...o, trace: RESTORE_SEIZE_OPTIONS, spawnError: (e) => restoreSpawnError(o.pid, e) }).remote();
}
