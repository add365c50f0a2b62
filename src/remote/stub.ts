// Starting the process a restored task is built from: the static stub
// (native/stub.c), created with the task's PID as a child of crest, seized
// and stopped, with remote control ready through the stub's own gadget.
import { readFileSync } from "node:fs";
import { native, stubPath } from "../sys/native.js";
import { errnoName, EEXIST, EINVAL } from "../sys/errno.js";
import { PTRACE_O } from "../sys/constants.js";
import { Tracee, TraceError } from "./tracee.js";
import { stubGadget } from "./gadget.js";
import { Remote } from "./remote.js";
import { parseMaps } from "../proc/index.js";

/** Options tasks under restore are traced with: fork/clone children arrive traced and stopped. */
export const RESTORE_SEIZE_OPTIONS =
  PTRACE_O.TRACESYSGOOD | PTRACE_O.TRACEFORK | PTRACE_O.TRACECLONE | PTRACE_O.TRACEVFORK |
  PTRACE_O.SUSPEND_SECCOMP | PTRACE_O.EXITKILL;

/** Who holds a PID now, for the error that says so. */
export function pidHolder(pid: number): string | null {
  try {
    const comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
    return `process ${pid} (${comm})`;
  } catch {
    return null;
  }
}

export interface StubOptions {
  pid: number;
  /** Extra clone flags (namespaces). */
  flags?: number;
  setsid?: boolean;
}

/** Spawns a stub with exactly o.pid, seizes it and opens remote control on it. */
export function startStub(o: StubOptions): Remote {
  const pid = native.spawn({ path: stubPath, argv: ["crest-stub"], env: [], pid: o.pid, flags: o.flags ?? 0, setsid: o.setsid ? 1 : 0, fds: [] });
  if (pid < 0) {
    const e = -pid;
    if (e === EEXIST) {
      const who = pidHolder(o.pid);
      throw new TraceError(`PID ${o.pid} is taken${who ? ` by ${who}` : ""}: stop it (a killed process's PID can stay taken until its parent reaps it), or restore into a new PID namespace`, e);
    }
    if (e === EINVAL) throw new TraceError(`cannot create PID ${o.pid}: it is above this system's pid_max (/proc/sys/kernel/pid_max)`, e);
    throw new TraceError(`cannot start the stub process for PID ${o.pid}: ${errnoName(e)}`, e);
  }
  const t = Tracee.seize(pid, RESTORE_SEIZE_OPTIONS);
  t.interrupt();
  const text = stubText(pid);
  return new Remote(t, stubGadget(pid, text));
}

/** The stub's executable mapping, from its maps. */
function stubText(pid: number): { start: number; end: number } {
  const text = parseMaps(readFileSync(`/proc/${pid}/maps`, "utf8")).find((m) => m.prot.exec && m.path.endsWith("crest-stub"));
  if (!text) throw new TraceError(`process ${pid} does not look like the crest stub`);
  return text;
}
