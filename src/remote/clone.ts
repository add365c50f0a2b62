// Creating a task from inside another: clone3 with set_tid (the exact PID or
// TID the images name), run in the parent. The kernel reports the new task
// to crest (PTRACE_O_TRACEFORK/TRACECLONE) and it starts out stopped and
// traced; it is a copy of its parent, scratch page and gadget included.
import { CLONE, PTRACE_EVENT, SYS } from "../sys/constants.js";
import { CLONE_ARGS_SIZE, packCloneArgs } from "../sys/structs.js";
import { Tracee, TraceError } from "./tracee.js";
import { Remote, RemoteError } from "./remote.js";
import { createPid } from "./stub.js";

/**
 * Runs clone3 with set_tid in `parent` and returns remote control of the new
 * task, which the kernel hands to crest already traced (TRACEFORK/CLONE).
 */
export function cloneChild(parent: Remote, vpid: number, flags: number, exitSignal: number, what: string): Remote {
  parent.resetScratch();
  const tid = Buffer.alloc(4);
  tid.writeInt32LE(vpid);
  const tidAddr = parent.put(tid);
  const args = parent.put(packCloneArgs({ flags, exitSignal, setTid: tidAddr, setTidSize: 1 }));
  const got = createPid(vpid, () => parent.syscall(SYS.clone3, args, CLONE_ARGS_SIZE));
  if (got < 0) throw new RemoteError(what, -got);
  if (got !== vpid) throw new TraceError(`${what}: got PID ${got}`);
  const ev = parent.events.find((e) => e.event === PTRACE_EVENT.FORK || e.event === PTRACE_EVENT.CLONE || e.event === PTRACE_EVENT.VFORK);
  if (!ev) throw new TraceError(`${what}: the kernel reported no new task`);
  const t = Tracee.adopt(ev.child);
  const s = t.wait();
  if (s.kind !== "event" && s.kind !== "group") throw new TraceError(`${what}: the new task did not stop as expected: ${JSON.stringify(s)}`);
  const child = new Remote(t, parent.currentGadget);
  // A thread shares the scratch mapping; a process has a copy of its own.
  if (flags & CLONE.VM) child.shareScratch(parent);
  else child.useScratch(parent.scratch!.addr, parent.scratch!.size);
  return child;
}
