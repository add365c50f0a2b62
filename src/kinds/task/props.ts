// Small per-task and per-thread properties: comm (thread names),
// personality, task flags, the robust futex list, the clear-tid address,
// timer slack, child subreaper, THP opt-out, oom_score_adj, the audit
// loginuid and membarrier registrations (scheduling is in sched.ts).
import { readFileSync, writeFileSync } from "node:fs";
import type { TaskKind, DumpTask, RestoreRun, RestoreTask } from "../context.js";
import { idOutside, uidInsideOr } from "../namespaces/user.js";
import { AT_FDCWD, O, PR, SYS } from "../../sys/constants.js";
import { check, EINVAL, ENOSYS, EPERM } from "../../sys/errno.js";
import { RemoteError, type Remote } from "../../remote/remote.js";
import { sys } from "../../sys/syscalls.js";

const MEMBARRIER_CMD_GET_REGISTRATIONS = 1 << 9;
/** The private expedited barriers (PRIVATE_EXPEDITED, _SYNC_CORE, _RSEQ); each one's REGISTER command is its bit << 1. */
const MEMBARRIER_PRIVATE_CMDS = [1 << 3, 1 << 5, 1 << 7];

/**
 * The membarrier commands the task's mm is registered for (a mask of
 * REGISTER_* commands), from the answer to GET_REGISTRATIONS (`got`). The
 * kernel tells it since 6.3; before, as criu does, each private barrier is
 * issued: it succeeds only once registered (the global registration cannot
 * be seen that way).
 */
function membarrierRegistrations(r: Remote, got: number): number {
  if (got >= 0) return got;
  if (got !== -EINVAL) throw new RemoteError(`read the membarrier registrations of task ${r.pid}`, -got);
  let mask = 0;
  for (const cmd of MEMBARRIER_PRIVATE_CMDS) {
    const res = r.syscall(SYS.membarrier, cmd, 0, 0);
    if (res === 0) mask |= cmd << 1;
    else if (res !== -EPERM && res !== -EINVAL && res !== -ENOSYS) throw new RemoteError(`issue membarrier command ${cmd} in task ${r.pid}`, -res);
  }
  return mask;
}

/** The loginuid of a task that never had one set (criu's INVALID_UID). */
const NO_LOGINUID = 0xffffffff;

/**
 * A task may set only its own loginuid (/proc/self/loginuid), with
 * CAP_AUDIT_CONTROL: done from inside it while it is still root.
 */
function setLoginuid(r: Remote, task: RestoreTask, uid: number, run: RestoreRun): void {
  // crest reads it in its own user namespace's ids; the task writes it in its own.
  if (Number(readFileSync(`/proc/${task.pid}/loginuid`, "utf8")) === idOutside(run, "uid", uid)) return;
  r.resetScratch();
  const what = `set the loginuid of task ${task.vpid} to ${uid}`;
  const fd = r.call(what, SYS.openat, AT_FDCWD, r.putString("/proc/self/loginuid"), O.WRONLY, 0);
  const text = Buffer.from(String(uid));
  try {
    const n = r.call(what, SYS.write, fd, r.put(text), text.length);
    if (n !== text.length) throw new Error(`${what}: the kernel took ${n} of ${text.length} bytes`);
  } finally {
    r.call(`close fd ${fd} of task ${task.vpid}`, SYS.close, fd);
  }
}

function robustList(tid: number): { head: bigint; len: number } {
  const head = new BigUint64Array(1);
  const len = new BigUint64Array(1);
  check(sys(SYS.get_robust_list, tid, head, len), `read the robust futex list of thread ${tid}`);
  return { head: head[0]!, len: Number(len[0]) };
}

export const propsKind: TaskKind = {
  name: "props",
  dump(task: DumpTask, run) {
    const tc = task.core[0]!.tc!;
    tc.comm = readFileSync(`/proc/${task.pid}/comm`, "utf8").replace(/\n$/, "");
    tc.personality = parseInt(readFileSync(`/proc/${task.pid}/personality`, "utf8"), 16);
    tc.flags = task.stat.flags;
    tc.oom_score_adj = Number(readFileSync(`/proc/${task.pid}/oom_score_adj`, "utf8"));
    // As the task's user namespace sees it (the task sets it from inside on restore).
    const luid = Number(readFileSync(`/proc/${task.pid}/loginuid`, "utf8"));
    tc.loginuid = luid === NO_LOGINUID ? luid : uidInsideOr(run, luid);
    task.threads.forEach((t, i) => {
      const r = task.remotes[i]!;
      const core = task.core[i]!;
      const th = core.thread_core!;
      th.comm = readFileSync(`/proc/${task.pid}/task/${t.tid}/comm`, "utf8").replace(/\n$/, "");
      const rl = robustList(t.tid);
      th.futex_rla = rl.head;
      th.futex_rla_len = rl.len;
      // Queued with the task's other questions (one stop a thread); the leader's carry the process-wide ones too.
      r.resetScratch();
      const addr = r.alloc(8);
      r.later({ what: `read the clear-tid address of thread ${t.tid}`, nr: SYS.prctl, args: [PR.GET_TID_ADDRESS, addr, 0, 0, 0] });
      const slack = r.later({ what: `read the timer slack of thread ${t.tid}`, nr: SYS.prctl, args: [PR.GET_TIMERSLACK, 0, 0, 0, 0] });
      r.afterRun(() => {
        core.thread_info!.clear_tid_addr = r.read(addr, 8).readBigUInt64LE(0);
        th.timer_slack_ns = BigInt(slack.value!);
      });
      if (i > 0) return;
      const sub = r.alloc(4);
      r.later({ what: `read the subreaper flag of task ${task.pid}`, nr: SYS.prctl, args: [PR.GET_CHILD_SUBREAPER, sub, 0, 0, 0] });
      const thp = r.later({ what: `read the THP setting of task ${task.pid}`, nr: SYS.prctl, args: [PR.GET_THP_DISABLE, 0, 0, 0, 0] });
      // Answered with an error on kernels before 6.3: checked after the batch, not by it.
      const membarrier = r.later({ what: `read the membarrier registrations of task ${r.pid}`, nr: SYS.membarrier, args: [MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0], unchecked: true });
      r.afterRun(() => {
        tc.child_subreaper = r.read(sub, 4).readInt32LE(0) !== 0;
        task.mm!.thp_disabled = thp.value === 1;
        const mask = membarrierRegistrations(r, membarrier.value!);
        if (mask) tc.membarrier_registration_mask = mask;
      });
    });
  },
  restore(task: RestoreTask, run) {
    const tc = task.core[0]!.tc!;
    const r0 = task.remotes[0]!;
    r0.later({ what: `set the personality of task ${task.pid}`, nr: SYS.personality, args: [tc.personality] });
    if (tc.child_subreaper) r0.later({ what: `make task ${task.pid} a child subreaper`, nr: SYS.prctl, args: [PR.SET_CHILD_SUBREAPER, 1, 0, 0, 0] });
    if (task.mm.thp_disabled) r0.later({ what: `disable THP for task ${task.pid}`, nr: SYS.prctl, args: [PR.SET_THP_DISABLE, 1, 0, 0, 0] });
    if (tc.loginuid !== undefined && tc.loginuid !== NO_LOGINUID) setLoginuid(r0, task, tc.loginuid, run);
    // Each bit of the mask is a REGISTER_* command: run them again.
    const membarrier = tc.membarrier_registration_mask ?? 0;
    for (let bit = 0; bit < 32; bit++) {
      const cmd = (1 << bit) >>> 0;
      if (membarrier & cmd) r0.later({ what: `register task ${task.vpid} for membarrier (command ${cmd})`, nr: SYS.membarrier, args: [cmd, 0, 0] });
    }
    task.threads.forEach((t, i) => {
      const r = task.remotes[i]!;
      const core = task.core[i]!;
      const th = core.thread_core;
      const comm = th?.comm ?? tc.comm;
      r.resetScratch();
      r.later({ what: `set the name of thread ${t.tid}`, nr: SYS.prctl, args: [PR.SET_NAME, r.putString(comm.slice(0, 15)), 0, 0, 0] });
      if (th?.futex_rla) r.later({ what: `set the robust futex list of thread ${t.tid}`, nr: SYS.set_robust_list, args: [th.futex_rla, th.futex_rla_len] });
      r.later({ what: `set the clear-tid address of thread ${t.tid}`, nr: SYS.set_tid_address, args: [core.thread_info?.clear_tid_addr ?? 0n] });
      if (th?.timer_slack_ns !== undefined) {
        r.later({ what: `set the timer slack of thread ${t.tid}`, nr: SYS.prctl, args: [PR.SET_TIMERSLACK, th.timer_slack_ns, 0, 0, 0] });
      }
    });
    if (tc.oom_score_adj !== undefined && tc.oom_score_adj !== 0) {
      try {
        writeFileSync(`/proc/${task.pid}/oom_score_adj`, String(tc.oom_score_adj));
      } catch (e) {
        throw new Error(`cannot restore oom_score_adj ${tc.oom_score_adj} of task ${task.pid}: ${(e as Error).message}`);
      }
    }
  },
};
