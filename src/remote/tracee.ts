// One thread under ptrace: seize, interrupt, wait, step, detach, and the
// per-thread state the kernel hands to a tracer (registers, xstate, sigmask,
// pending siginfo, rseq, seccomp filters, TLS descriptors).
import { ptrace, sleepMs, wait4, type WaitStatus } from "../sys/syscalls.js";
import { remoteCounters } from "./counters.js";
import { NT, PTRACE, PTRACE_EVENT, PTRACE_O, SIG, WNOHANG } from "../sys/constants.js";

/** Options every dumped thread is seized with. */
export const DUMP_SEIZE_OPTIONS = PTRACE_O.TRACESYSGOOD | PTRACE_O.SUSPEND_SECCOMP;
import { check, errnoName, ESRCH, EPERM, ETIMEDOUT } from "../sys/errno.js";
import { Regs, SIGINFO_SIZE } from "../sys/structs.js";
import { native } from "../sys/native.js";
import { xstateSize } from "../sys/xsave.js";

/** Why a thread stopped, as seen by its tracer. */
export type Stop =
  | { kind: "event"; event: number; sig: number }
  | { kind: "signal"; sig: number }
  | { kind: "group"; sig: number }
  | { kind: "syscall" }
  | { kind: "exited"; code: number }
  | { kind: "killed"; sig: number };

export class TraceError extends Error {
  constructor(message: string, readonly errno = 0) {
    super(message);
    this.name = "TraceError";
  }
}

function classify(st: WaitStatus): Stop {
  if (st.exited) return { kind: "exited", code: st.code };
  if (st.signaled) return { kind: "killed", sig: st.code };
  if (st.code === (SIG.TRAP | 0x80)) return { kind: "syscall" };
  if (st.event === PTRACE_EVENT.STOP) {
    // A group-stop reports the stopping signal; a plain interrupt reports SIGTRAP.
    return st.code === SIG.TRAP ? { kind: "event", event: st.event, sig: st.code } : { kind: "group", sig: st.code };
  }
  if (st.event) return { kind: "event", event: st.event, sig: st.code };
  return { kind: "signal", sig: st.code };
}

const iov = new BigUint64Array(2);
function iovFor(buf: Buffer): BigUint64Array {
  iov[0] = BigInt(native.address(buf));
  iov[1] = BigInt(buf.length);
  return iov;
}

export class Tracee {
  /** The last stop this thread reported. */
  stop: Stop | null = null;
  /** The signal that had stopped this thread's process when crest seized it (group-stop), or 0. */
  stopSignal = 0;

  private constructor(readonly tid: number) {}

  /** PTRACE_SEIZE: attach without stopping. The thread must then be interrupted. */
  static seize(tid: number, options: number): Tracee {
    const r = ptrace(PTRACE.SEIZE, tid, 0, options);
    if (r < 0) {
      const e = -r;
      if (e === ESRCH) throw new TraceError(`process ${tid} does not exist`, e);
      if (e === EPERM) {
        throw new TraceError(
          `process ${tid} cannot be traced (EPERM): it is traced by another process, or crest lacks CAP_SYS_PTRACE over it`, e);
      }
      throw new TraceError(`cannot seize process ${tid}: ${errnoName(e)}`, e);
    }
    return new Tracee(tid);
  }

  /** Wraps a thread that arrives already traced (a clone event child). */
  static adopt(tid: number): Tracee {
    return new Tracee(tid);
  }

  /**
   * Waits for the next stop of this thread; with a deadline (ms since the
   * epoch), polls instead of blocking and throws once it has passed.
   */
  wait(deadline?: number): Stop {
    const poll = deadline !== undefined && deadline !== Infinity;
    let st = wait4(this.tid, poll ? WNOHANG : 0, `wait for thread ${this.tid}`);
    // Stops come within microseconds, mostly: poll often at first, less and less.
    for (let pause = 0.01; !st; pause = Math.min(pause * 2, 1)) {
      if (Date.now() > deadline!) throw new TraceError(`thread ${this.tid} did not stop in time`, ETIMEDOUT);
      sleepMs(pause);
      st = wait4(this.tid, WNOHANG, `wait for thread ${this.tid}`);
    }
    remoteCounters.stops++;
    this.stop = classify(st);
    return this.stop;
  }

  /** PTRACE_INTERRUPT and wait until it takes effect. */
  interrupt(): Stop {
    this.requestInterrupt();
    return this.waitInterrupted();
  }

  /**
   * Waits for the stop a PTRACE_INTERRUPT asked for. A signal the thread
   * gets meanwhile stops it first: it is passed on (the thread handles it as
   * it would have) and the wait goes on. Ends at the interrupt stop, a
   * group-stop, or the thread's exit.
   */
  waitInterrupted(deadline?: number): Stop {
    for (;;) {
      const s = this.wait(deadline);
      if (s.kind !== "signal") return s;
      this.cont(s.sig);
    }
  }

  /** PTRACE_INTERRUPT without waiting (to stop many threads at once). */
  requestInterrupt(): void {
    check(ptrace(PTRACE.INTERRUPT, this.tid), `interrupt thread ${this.tid}`);
  }

  cont(sig = 0): void {
    check(ptrace(PTRACE.CONT, this.tid, 0, sig), `resume thread ${this.tid}`);
  }

  /** Runs to the next syscall entry or exit. */
  syscallStep(sig = 0): void {
    check(ptrace(PTRACE.SYSCALL, this.tid, 0, sig), `step thread ${this.tid} to syscall`);
  }

  detach(sig = 0): void {
    check(ptrace(PTRACE.DETACH, this.tid, 0, sig), `detach from thread ${this.tid}`);
  }

  getRegs(): Regs {
    const r = new Regs();
    check(ptrace(PTRACE.GETREGSET, this.tid, NT.PRSTATUS, iovFor(r.buf)), `read registers of thread ${this.tid}`);
    return r;
  }

  setRegs(r: Regs): void {
    check(ptrace(PTRACE.SETREGSET, this.tid, NT.PRSTATUS, iovFor(r.buf)), `set registers of thread ${this.tid}`);
  }

  /** The XSAVE area in the standard (uncompacted) layout. */
  getXstate(): Buffer {
    const b = Buffer.alloc(xstateSize());
    const v = iovFor(b);
    check(ptrace(PTRACE.GETREGSET, this.tid, NT.X86_XSTATE, v), `read FPU state of thread ${this.tid}`);
    // The kernel shortens iov_len to what it wrote.
    return b.subarray(0, Number(v[1]));
  }

  setXstate(b: Buffer): void {
    check(ptrace(PTRACE.SETREGSET, this.tid, NT.X86_XSTATE, iovFor(b)), `set FPU state of thread ${this.tid}`);
  }

  getSigmask(): bigint {
    const m = new BigUint64Array(1);
    check(ptrace(PTRACE.GETSIGMASK, this.tid, 8, m), `read signal mask of thread ${this.tid}`);
    return m[0]!;
  }

  setSigmask(mask: bigint): void {
    const m = new BigUint64Array([mask]);
    check(ptrace(PTRACE.SETSIGMASK, this.tid, 8, m), `set signal mask of thread ${this.tid}`);
  }

  /** Pending signals with their siginfo, in queue order: per-thread, or process-wide with shared. */
  pendingSiginfo(shared: boolean): Buffer[] {
    const out: Buffer[] = [];
    const batch = 32;
    const buf = Buffer.alloc(SIGINFO_SIZE * batch);
    const args = new BigUint64Array(2);
    for (;;) {
      // struct ptrace_peeksiginfo_args { u64 off; u32 flags; s32 nr; }
      args[0] = BigInt(out.length);
      args[1] = BigInt(shared ? 1 : 0) | (BigInt(batch) << 32n);
      const n = check(ptrace(PTRACE.PEEKSIGINFO, this.tid, args, buf), `read pending signals of thread ${this.tid}`);
      for (let i = 0; i < n; i++) out.push(Buffer.from(buf.subarray(i * SIGINFO_SIZE, (i + 1) * SIGINFO_SIZE)));
      if (n < batch) return out;
    }
  }

  /** struct ptrace_rseq_configuration: rseq_abi_pointer, rseq_abi_size, signature, flags. */
  rseqConfig(): { pointer: bigint; size: number; signature: number; flags: number } {
    const b = Buffer.alloc(24);
    check(ptrace(PTRACE.GET_RSEQ_CONFIGURATION, this.tid, b.length, b), `read rseq of thread ${this.tid}`);
    return { pointer: b.readBigUInt64LE(0), size: b.readUInt32LE(8), signature: b.readUInt32LE(12), flags: b.readUInt32LE(16) };
  }

  /** The n-th seccomp filter (0 = most recent) as BPF bytes, or null past the last. */
  seccompFilter(n: number): Buffer | null {
    const count = ptrace(PTRACE.SECCOMP_GET_FILTER, this.tid, n, 0);
    if (count === -2 /* ENOENT */ || count === -22 /* EINVAL: no filter or past the end */) return null;
    check(count, `read seccomp filter ${n} of thread ${this.tid}`);
    const b = Buffer.alloc(count * 8);
    check(ptrace(PTRACE.SECCOMP_GET_FILTER, this.tid, n, b), `read seccomp filter ${n} of thread ${this.tid}`);
    return b;
  }

  /** Flags of the n-th seccomp filter (struct seccomp_metadata {filter_off, flags}). */
  seccompFlags(n: number): number {
    const b = Buffer.alloc(16);
    b.writeBigUInt64LE(BigInt(n), 0);
    check(ptrace(PTRACE.SECCOMP_GET_METADATA, this.tid, b.length, b), `read seccomp flags of thread ${this.tid}`);
    return Number(b.readBigUInt64LE(8));
  }

  /** A GDT TLS descriptor (struct user_desc, 16 bytes) at index idx. */
  getThreadArea(idx: number): Buffer {
    const b = Buffer.alloc(16);
    check(ptrace(PTRACE.GET_THREAD_AREA, this.tid, idx, b), `read TLS descriptor ${idx} of thread ${this.tid}`);
    return b;
  }

  setThreadArea(idx: number, desc: Buffer): void {
    check(ptrace(PTRACE.SET_THREAD_AREA, this.tid, idx, desc), `set TLS descriptor ${idx} of thread ${this.tid}`);
  }
}
