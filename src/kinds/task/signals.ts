// Signals: every sigaction, each thread's blocked mask, sigaltstack and
// pending signals (process-wide and per thread, with their siginfo).
// Actions and the alternate stack are only known to the task itself, so
// they are read and set by syscalls run inside it.
import type { TaskKind, DumpTask, RestoreTask } from "../context.js";
import { IMG, type sa_entry, type signal_queue_entry } from "../../images/index.js";
import { NSIG, SIG, SS_ONSTACK, SYS } from "../../sys/constants.js";
import { KSIGACTION_SIZE, SIGINFO_SIZE, STACK_T_SIZE, type KSigaction, packSigaction, packStack, siginfoHead, unpackSigaction, unpackStack } from "../../sys/structs.js";
import type { Remote } from "../../remote/remote.js";
import { TASK_STATE } from "./task-state.js";

const SIG_IGN = 1n;
/** Signals whose default action stops the process. */
const STOP_SIGNALS: number[] = [SIG.STOP, SIG.TSTP, SIG.TTIN, SIG.TTOU];
/** The signals that have an action: all but SIGKILL and SIGSTOP, in CRIU's order. */
const ACTION_SIGNALS = Array.from({ length: NSIG }, (_, i) => i + 1).filter((s) => s !== SIG.KILL && s !== SIG.STOP);

/** Queues the questions for every action; `got` has the answers once they have run (with the task's other questions). */
function dumpActions(r: Remote, got: (actions: sa_entry[]) => void): void {
  r.resetScratch();
  const buf = r.alloc(KSIGACTION_SIZE * ACTION_SIGNALS.length);
  ACTION_SIGNALS.forEach((sig, i) => r.later({
    nr: SYS.rt_sigaction, args: [sig, 0, buf + BigInt(i * KSIGACTION_SIZE), 8], what: `read the action of signal ${sig} of task ${r.pid}`,
  }));
  r.afterRun(() => {
    const all = r.read(buf, KSIGACTION_SIZE * ACTION_SIGNALS.length);
    got(ACTION_SIGNALS.map((_, i) => toEntry(unpackSigaction(all.subarray(i * KSIGACTION_SIZE, (i + 1) * KSIGACTION_SIZE)))));
  });
}

const toEntry = (a: KSigaction): sa_entry => ({ sigaction: a.handler, flags: a.flags, restorer: a.restorer, mask: a.mask });

/** Queues the question; `got` has the answer once it has run. */
function dumpAltstack(r: Remote, got: (sas: { ss_sp: bigint; ss_size: bigint; ss_flags: number }) => void): void {
  r.resetScratch();
  const buf = r.alloc(STACK_T_SIZE);
  r.later({ what: `read the signal stack of thread ${r.pid}`, nr: SYS.sigaltstack, args: [0, buf] });
  r.afterRun(() => {
    const s = unpackStack(r.read(buf, STACK_T_SIZE));
    got({ ss_sp: s.sp, ss_size: s.size, ss_flags: s.flags });
  });
}

const queue = (infos: Buffer[]): signal_queue_entry => ({ signals: infos.map((siginfo) => ({ siginfo })) });

function queueSignals(r: Remote, pid: number, tid: number | null, q: signal_queue_entry | undefined, image: string): void {
  for (const { siginfo } of q?.signals ?? []) {
    if (siginfo.length !== SIGINFO_SIZE) throw new Error(`${image}: a pending siginfo of task ${pid} has ${siginfo.length} bytes, not ${SIGINFO_SIZE}`);
    const { signo } = siginfoHead(siginfo);
    // crest's int3 traps (until the task is released) would take it.
    if (signo === SIG.TRAP) throw new Error(`task ${pid} has a pending SIGTRAP in its images; crest cannot restore that`);
    const info = r.put(Buffer.from(siginfo));
    // Sent by the task to itself, the kernel keeps the siginfo as given.
    if (tid === null) r.later({ what: `queue signal ${signo} to task ${pid} (pending in ${image})`, nr: SYS.rt_sigqueueinfo, args: [pid, signo, info] });
    else r.later({ what: `queue signal ${signo} to thread ${tid} (pending in ${image})`, nr: SYS.rt_tgsigqueueinfo, args: [pid, tid, signo, info] });
  }
}

export const signalsKind: TaskKind = {
  name: "signals",
  dump(task: DumpTask) {
    const leader = task.remotes[0]!;
    const tc = task.core[0]!.tc!;
    dumpActions(leader, (actions) => {
      tc.sigactions = actions;
      // An ignored SIGTRAP reads as SIG_DFL once crest's int3 has run: the
      // session kept the task's own action.
      if (leader.trapAction) tc.sigactions[ACTION_SIGNALS.indexOf(SIG.TRAP)] = toEntry(unpackSigaction(leader.trapAction));
    });
    tc.blk_sigset = leader.savedMask;
    // A stopped process: the signal that stopped it, to stop it again after a restore.
    const stopSignal = task.threads[0]!.stopSignal;
    if (stopSignal) {
      tc.task_state = TASK_STATE.STOPPED;
      tc.stop_signo = stopSignal;
    }
    tc.signals_s = queue(task.threads[0]!.pendingSiginfo(true));
    task.threads.forEach((t, i) => {
      const r = task.remotes[i]!;
      const th = task.core[i]!.thread_core!;
      th.blk_sigset = r.savedMask;
      dumpAltstack(r, (sas) => (th.sas = sas));
      th.signals_p = queue(t.pendingSiginfo(false));
    });
  },
  restore(task: RestoreTask, run) {
    const leader = task.remotes[0]!;
    const tc = task.core[0]!.tc!;
    if (tc.sigactions.length && tc.sigactions.length !== ACTION_SIGNALS.length) {
      throw run.images.invalid(IMG.core, task.vpid, `${tc.sigactions.length} signal actions, expected ${ACTION_SIGNALS.length}`);
    }
    leader.resetScratch();
    tc.sigactions.forEach((sa, i) => {
      const sig = ACTION_SIGNALS[i]!;
      // The stub starts with every action at its default: leave those be.
      if (!sa.sigaction && !sa.flags && !sa.restorer && !sa.mask) return;
      const packed = packSigaction({ handler: sa.sigaction, flags: sa.flags, restorer: sa.restorer, mask: sa.mask });
      // crest's int3 traps would reset an ignored SIGTRAP: it is set when the session ends.
      if (sig === SIG.TRAP && sa.sigaction === SIG_IGN) {
        leader.trapAction = packed;
        return;
      }
      leader.later({ nr: SYS.rt_sigaction, args: [sig, leader.put(packed), 0, 8], what: `set the action of signal ${sig} of task ${task.vpid}` });
    });
    task.threads.forEach((t, i) => {
      const th = task.core[i]!.thread_core;
      const r = task.remotes[i]!;
      task.final[i]!.sigmask = th?.blk_sigset ?? tc.blk_sigset;
      const sas = th?.sas;
      if (sas && sas.ss_size) {
        // SS_ONSTACK describes where the thread was, it is not a flag to set.
        const st = r.put(packStack({ sp: sas.ss_sp, size: sas.ss_size, flags: (sas.ss_flags & ~SS_ONSTACK) >>> 0 }));
        r.later({ what: `set the signal stack of thread ${t.tid}`, nr: SYS.sigaltstack, args: [st, 0] });
      }
    });
    if (tc.task_state === TASK_STATE.STOPPED) {
      // As criu does: the stop signal again if it is one, else SIGSTOP.
      const sig = tc.stop_signo ?? 0;
      leader.stopOnRelease = STOP_SIGNALS.includes(sig) ? sig : SIG.STOP;
    }
    // Every signal is blocked while crest drives the task, so these stay
    // pending until the task runs with its own mask.
    // Ids as the task itself sees them (inside its PID namespace).
    queueSignals(leader, task.vpid, null, tc.signals_s, run.images.name(IMG.core, task.vpid));
    task.threads.forEach((_, i) => queueSignals(task.remotes[i]!, task.vpid, task.vtids[i]!, task.core[i]!.thread_core?.signals_p, run.images.name(IMG.core, task.vtids[i]!)));
  },
};
