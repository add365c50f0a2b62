// How a thread that crest's interrupt caught in a syscall carries on after a
// restore, as if nothing had happened. PTRACE_INTERRUPT wakes a blocking
// call the way a signal does, and the thread stops on the call's way out
// with the kernel's restart code in ax and the call's number in orig_ax. On
// its own, the kernel would then restart the call (arch_do_signal_or_restart):
// ERESTARTSYS/NOHAND/NOINTR re-run it with the same registers (ax = orig_ax,
// ip back over the 2-byte `syscall`), ERESTART_RESTARTBLOCK runs
// restart_syscall, which resumes from the task's restart block (the absolute
// end of a sleep, a poll or a futex wait), kernel state a restore cannot
// recreate. And a few calls (epoll_wait, semop, sigtimedwait, timed socket
// calls: signal(7)) are never restarted: they fail with EINTR, though no
// signal was sent. This module decides the registers the image holds:
//   - restartable calls restart with their own arguments, as the kernel does;
//   - a relative sleep restarts for the time it had left, which the kernel
//     wrote into its `rem` buffer when interrupted (the request pointer then
//     points there too: the only register that differs, and the C ABI does not
//     keep it across the call);
//   - poll and futex waits restart with their own arguments: exact without a
//     timeout (or with an absolute one), else the timeout starts over (a
//     warning);
//   - a never-restarted call (or a transfer, which EINTR says did nothing)
//     that failed with EINTR only because crest interrupted it restarts too
//     (and so does the live thread, if left running);
//   - a caught signal that is pending and unblocked runs its handler first,
//     so the call fails with EINTR where the kernel would make it (no
//     SA_RESTART, ERESTARTNOHAND, a restart block);
//   - what is left (restart_syscall itself, an unknown restart block) fails
//     with EINTR, as criu does, with criu's warning.
import type { Regs, RegName } from "../../sys/structs.js";
import { EINTR, ERESTARTNOHAND, ERESTARTNOINTR, ERESTARTSYS, ERESTART_RESTARTBLOCK } from "../../sys/errno.js";

/** A pending, unblocked signal with a handler: the thread takes it first when it runs again. */
export interface DueSignal {
  sig: number;
  /** Its action has SA_RESTART. */
  restart: boolean;
}

export interface ResumeContext {
  /** The thread's process was stopped (group-stop): a stop signal interrupted the call, not crest. */
  stopped: boolean;
  /** The signal the thread takes first when it runs again, if any; asked only for an interrupted call. */
  dueSignal(): DueSignal | null;
  /** A struct timespec in the thread's memory, or null if it cannot be read. */
  readTimespec(addr: bigint): { sec: bigint; nsec: bigint } | null;
}

export interface Resumption {
  /** The registers to save: the thread resumes with them after a restore. */
  regs: Regs;
  /**
   * The registers the thread must get if it is left running, where the
   * kernel's own resumption is not what crest wants (EINTR caused by crest's
   * interrupt; a restart block crest can do without), else null.
   */
  live: Regs | null;
  /** The syscall, for messages ("poll", "syscall 999"); null when the thread was in none. */
  call: string | null;
  /** What the thread will do, when it is not simply what the kernel would have done. */
  note: string | null;
  /** Why the resumption is not exact (logged as a warning), or null. When regs fail the call with EINTR, criu's wording goes first. */
  inexact: string | null;
}

/** Describes a relative timeout a restarted call begins again, or null when it has none. */
type Timeout = (r: Regs) => string | null;

interface Call {
  name: string;
  /** The relative timeout a call the kernel restarts (restart code) begins again. */
  timeout?: Timeout;
  /**
   * Fails with EINTR on a ptrace interrupt, never restarted by the kernel
   * (signal(7)), or a transfer whose EINTR says nothing was done: crest
   * restarts it. The relative timeout that then begins again.
   */
  eintr?: Timeout;
}

const int32 = (v: bigint): number => Number(BigInt.asIntN(32, v));
/** An int timeout in milliseconds: negative waits forever, 0 does not wait. */
const msTimeout = (reg: RegName): Timeout => (r) => (int32(r.get(reg)) > 0 ? `its ${int32(r.get(reg))} ms timeout` : null);
/** A pointer to a relative timeout: NULL waits forever. */
const ptrTimeout = (reg: RegName): Timeout => (r) => (r.get(reg) ? "its relative timeout" : null);
const noTimeout: Timeout = () => null;
const socketTimeout: Timeout = () => "its socket timeout (SO_RCVTIMEO/SO_SNDTIMEO), if it has one,";

const FUTEX_WAIT = 0;
/** futex op bits that are not the command: FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME. */
const FUTEX_CMD_MASK = ~(128 | 256);
/** FUTEX_WAIT takes a relative timeout; FUTEX_WAIT_BITSET an absolute one, exact when restarted. */
const futexTimeout: Timeout = (r) => ((Number(r.get("si")) & FUTEX_CMD_MASK) === FUTEX_WAIT && r.get("r10") ? "its relative timeout" : null);

/** x86_64 syscalls a thread can block in interruptibly, by number. */
const CALLS: Record<number, Call> = {
  // EINTR from a transfer means nothing was transferred: a socket with a timeout gives it.
  0: { name: "read", eintr: socketTimeout }, 1: { name: "write", eintr: socketTimeout },
  19: { name: "readv", eintr: socketTimeout }, 20: { name: "writev", eintr: socketTimeout },
  7: { name: "poll", timeout: msTimeout("dx") }, 23: { name: "select" }, 34: { name: "pause" }, 35: { name: "nanosleep" },
  42: { name: "connect", eintr: socketTimeout }, 43: { name: "accept", eintr: socketTimeout },
  44: { name: "sendto", eintr: socketTimeout }, 45: { name: "recvfrom", eintr: socketTimeout },
  46: { name: "sendmsg", eintr: socketTimeout }, 47: { name: "recvmsg", eintr: socketTimeout },
  61: { name: "wait4" }, 65: { name: "semop", eintr: noTimeout }, 69: { name: "msgsnd" }, 70: { name: "msgrcv" }, 72: { name: "fcntl" },
  73: { name: "flock" }, 128: { name: "rt_sigtimedwait", eintr: ptrTimeout("dx") }, 130: { name: "rt_sigsuspend" },
  202: { name: "futex", timeout: futexTimeout }, 208: { name: "io_getevents", eintr: ptrTimeout("r8") },
  219: { name: "restart_syscall" }, 220: { name: "semtimedop", eintr: ptrTimeout("r10") },
  230: { name: "clock_nanosleep" }, 232: { name: "epoll_wait", eintr: msTimeout("r10") }, 247: { name: "waitid" },
  257: { name: "openat" }, 270: { name: "pselect6" }, 271: { name: "ppoll" },
  281: { name: "epoll_pwait", eintr: msTimeout("r10") },
  288: { name: "accept4", eintr: socketTimeout }, 299: { name: "recvmmsg", eintr: socketTimeout },
  307: { name: "sendmmsg", eintr: socketTimeout },
  // Restarted on ERESTARTNOHAND, but its relative timeout is not written back (unlike ppoll, pselect6).
  333: { name: "io_pgetevents", timeout: ptrTimeout("r8") },
  441: { name: "epoll_pwait2", eintr: ptrTimeout("r10") },
};

/** The relative sleeps that use a restart block: where their request and their buffer for the time left are. */
const SLEEPS: Record<number, { req: RegName; rem: RegName }> = {
  35: { req: "di", rem: "si" }, // nanosleep(req, rem)
  230: { req: "dx", rem: "r10" }, // clock_nanosleep(clock, flags, req, rem); TIMER_ABSTIME ones restart on ERESTARTNOHAND
};
const POLL = 7, FUTEX = 202, RESTART_SYSCALL = 219;

const NSEC = 1_000_000_000n;
const seconds = (t: { sec: bigint; nsec: bigint }): string => `${t.sec}.${t.nsec.toString().padStart(9, "0").slice(0, 3)}`;

/** How the thread whose registers crest saved at its interrupt stop resumes (see the top of this file). */
export function resumption(saved: Regs, ctx: ResumeContext): Resumption {
  const regs = saved.clone();
  const out: Resumption = { regs, live: null, call: null, note: null, inexact: null };
  const orig = saved.getSigned("orig_ax");
  // orig_ax is -1 unless the thread entered the kernel by a syscall (an
  // interrupt or exception entry, or a sigreturn, sets it so).
  if (orig < 0n) return out;
  const nr = Number(orig);
  const call = CALLS[nr] ?? { name: `syscall ${nr}` };
  out.call = call.name;
  const restart = (): void => {
    regs.set("ax", orig);
    regs.set("ip", saved.get("ip") - 2n);
  };
  const failEintr = (): void => regs.set("ax", -EINTR);
  /** Restarted with its own arguments: inexact if a relative timeout starts over. */
  const rerun = (timeout = call.timeout): void => {
    restart();
    const t = timeout?.(saved);
    if (t) out.inexact = `${call.name} restarts with ${t} from the start: the time it had left is known only to the kernel`;
  };
  const handlerFirst = (due: DueSignal): void => {
    failEintr();
    out.note = `signal ${due.sig} is pending: its handler runs first and ${call.name} fails with EINTR, as the kernel would have it`;
  };

  const err = -saved.getSigned("ax");
  switch (err) {
    case BigInt(ERESTARTNOINTR):
      restart();
      return out;
    case BigInt(ERESTARTSYS):
    case BigInt(ERESTARTNOHAND): {
      const due = ctx.dueSignal();
      if (due && (err === BigInt(ERESTARTNOHAND) || !due.restart)) handlerFirst(due);
      else rerun();
      return out;
    }
    case BigInt(ERESTART_RESTARTBLOCK): {
      const due = ctx.dueSignal();
      if (due) handlerFirst(due);
      else restartWithoutBlock(nr, saved, ctx, out, rerun, failEintr);
      return out;
    }
    case BigInt(EINTR): {
      if (!call.eintr) {
        out.inexact = `${call.name} failed with EINTR when crest stopped the thread, and crest does not know whether restarting it is safe: it fails with EINTR`;
        return out;
      }
      if (ctx.stopped) {
        out.note = `the stop signal made ${call.name} fail with EINTR, as the kernel does; it still does after the restore`;
        return out;
      }
      const due = ctx.dueSignal();
      if (due) {
        out.note = `signal ${due.sig} is pending: its handler runs first, after ${call.name} failed with EINTR`;
        return out;
      }
      // EINTR only because crest interrupted it: restart it, in the live thread too.
      rerun(call.eintr);
      out.live = regs;
      out.note = `${call.name} failed with EINTR only because crest interrupted it: it restarts`;
      return out;
    }
    default:
      return out;
  }
}

/** ERESTART_RESTARTBLOCK: the kernel would resume from a restart block; do the same without it, or fail with EINTR. */
function restartWithoutBlock(nr: number, saved: Regs, ctx: ResumeContext, out: Resumption, rerun: () => void, failEintr: () => void): void {
  const sleep = SLEEPS[nr];
  if (sleep) {
    const rem = saved.get(sleep.rem);
    const left = rem ? ctx.readTimespec(rem) : null;
    if (left && left.sec >= 0n && left.nsec >= 0n && left.nsec < NSEC) {
      // The kernel wrote the time left into rem when interrupted: sleep that long.
      rerun();
      out.regs.set(sleep.req, rem);
      out.note = `${out.call} restarts for the ${seconds(left)} s it had left`;
    } else {
      rerun();
      out.inexact = `${out.call} restarts with its timeout from the start: it gave no usable buffer (rem) for the time left, which the kernel keeps only in its restart block`;
    }
    return;
  }
  if (nr === POLL || nr === FUTEX) {
    rerun();
    // Without a relative timeout the restarted call is the kernel's own
    // restart exactly: give it to a live thread too, which then needs no
    // restart block (a thread in restart_syscall cannot be restored).
    if (!out.inexact) out.live = out.regs;
    return;
  }
  failEintr();
  out.inexact = nr === RESTART_SYSCALL
    ? "restart_syscall (resuming a sleep, poll or futex wait interrupted before) was interrupted again: crest cannot tell which call it resumes, so it fails with EINTR"
    : `${out.call} was interrupted with a restart block (kernel state crest cannot save): it fails with EINTR`;
}
