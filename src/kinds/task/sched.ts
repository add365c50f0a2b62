// Scheduling: each thread's policy (with SCHED_RESET_ON_FORK), real-time
// priority and nice value, in thread_core_entry as CRIU keeps them (policy
// as sched_getscheduler returns it, prio for the real-time policies only,
// nice always: the kernel keeps it under a real-time policy too).
// Restored by each thread itself, nice first, before creds drop the
// privileges a higher priority needs.
import type { TaskKind, DumpTask, RestoreTask } from "../context.js";
import { UnsupportedError } from "../context.js";
import { SYS } from "../../sys/constants.js";
import { check } from "../../sys/errno.js";
import { sys } from "../../sys/syscalls.js";
import { IMG } from "../../images/index.js";

// Syscall numbers crest only needs here (x86_64).
const PRIO_PROCESS = 0;

const SCHED = { OTHER: 0, FIFO: 1, RR: 2, BATCH: 3, IDLE: 5, DEADLINE: 6, RESET_ON_FORK: 0x40000000 } as const;
const NAMES: Record<number, string> = { 0: "SCHED_OTHER", 1: "SCHED_FIFO", 2: "SCHED_RR", 3: "SCHED_BATCH", 5: "SCHED_IDLE", 6: "SCHED_DEADLINE" };

const isRealtime = (policy: number): boolean => policy === SCHED.FIFO || policy === SCHED.RR;

interface SchedParams {
  policy: number;
  prio: number;
  nice: number;
}

/** The thread's scheduling as crest (root) reads it from outside. */
function readSched(pid: number, tid: number): SchedParams {
  const policy = check(sys(SYS.sched_getscheduler, tid), `read the scheduling policy of thread ${tid}`);
  const base = policy & ~SCHED.RESET_ON_FORK;
  if (!(base in NAMES) || base === SCHED.DEADLINE) {
    throw new UnsupportedError(`thread ${tid} of process ${pid} has scheduling policy ${NAMES[base] ?? base}; crest does not support it yet`);
  }
  let prio = 0;
  if (isRealtime(base)) {
    const p = new Int32Array(1);
    check(sys(SYS.sched_getparam, tid, p), `read the real-time priority of thread ${tid}`);
    prio = p[0]!;
  }
  // The raw syscall answers 20 - nice (never negative, so never an error code).
  const nice = 20 - check(sys(SYS.getpriority, PRIO_PROCESS, tid), `read the nice value of thread ${tid}`);
  return { policy, prio, nice };
}

/** CRIU's sanity rule for the three fields. */
function validate(p: SchedParams): boolean {
  if (p.nice < -20 || p.nice > 19) return false;
  const base = p.policy & ~SCHED.RESET_ON_FORK;
  if (isRealtime(base)) return p.prio > 0 && p.prio < 100;
  if (base === SCHED.OTHER || base === SCHED.BATCH || base === SCHED.IDLE) return p.prio === 0;
  return false;
}

export const schedKind: TaskKind = {
  name: "sched",
  dump(task: DumpTask) {
    task.threads.forEach((t, i) => {
      const th = task.core[i]!.thread_core!;
      const s = readSched(task.pid, t.tid);
      th.sched_policy = s.policy;
      if (isRealtime(s.policy & ~SCHED.RESET_ON_FORK)) th.sched_prio = s.prio;
      th.sched_nice = s.nice;
    });
  },
  restore(task: RestoreTask, run) {
    task.vtids.forEach((vtid, i) => {
      const th = task.core[i]!.thread_core;
      const p: SchedParams = { policy: th?.sched_policy ?? SCHED.OTHER, prio: th?.sched_prio ?? 0, nice: th?.sched_nice ?? 0 };
      if (!validate(p)) {
        throw run.images.invalid(IMG.core, vtid, `inconsistent scheduling of thread ${vtid} (policy ${p.policy}, nice ${p.nice}, priority ${p.prio})`);
      }
      const r = task.remotes[i]!;
      r.resetScratch();
      const param = Buffer.alloc(4);
      param.writeInt32LE(p.prio);
      // Both always: the stub has crest's own. The nice value is kept under
      // a real-time policy too, so it goes first.
      r.later({ nr: SYS.setpriority, args: [PRIO_PROCESS, 0, p.nice], what: `set the nice value of thread ${vtid} to ${p.nice}` });
      r.later({ nr: SYS.sched_setscheduler, args: [0, p.policy, r.put(param)],
        what: `set the scheduling policy of thread ${vtid} to ${NAMES[p.policy & ~SCHED.RESET_ON_FORK]}${p.policy & SCHED.RESET_ON_FORK ? "|SCHED_RESET_ON_FORK" : ""} (priority ${p.prio})` });
    });
  },
};
