// Threads: every thread but the leader is created with clone3 (CLONE_THREAD
// and the rest of what pthread_create passes, with set_tid for its TID), run
// inside the leader once the address space is back. The kernel hands each new
// thread to crest already traced, with a scratch area of its own; the kinds
// after this one set it up.
import type { TaskKind } from "../context.js";
import { CLONE } from "../../sys/constants.js";
import { Regs } from "../../sys/structs.js";
import { cloneChild } from "../../remote/clone.js";

const THREAD_FLAGS = CLONE.VM | CLONE.FS | CLONE.FILES | CLONE.SIGHAND | CLONE.THREAD | CLONE.SYSVSEM;
/** Each thread's own scratch area: its settings queue up there until its release, one stop for all. */
const THREAD_SCRATCH = 32 << 10;

export const threadsKind: TaskKind = {
  name: "threads",
  restore(task) {
    const leader = task.remotes[0]!;
    for (const vtid of task.vtids.slice(1)) {
      const r = cloneChild(leader, vtid, THREAD_FLAGS, 0, `create thread ${vtid} of task ${task.vpid}`);
      task.threads.push(r.t);
      task.remotes.push(r);
      task.final.push({ regs: new Regs(), xstate: Buffer.alloc(0), sigmask: 0n, memoryWrites: [] });
    }
    leader.giveThreadsScratch(task.remotes.slice(1), THREAD_SCRATCH);
  },
};
