// Typed wrappers for the syscalls crest makes itself (not inside a tracee).
// Each returns the kernel's answer or throws SysError naming the object.
import { native, type Arg } from "./native.js";
import { check } from "./errno.js";
import { SYS, WALL } from "./constants.js";

/** A raw syscall: result or -errno. */
export const sys = (nr: number, ...args: Arg[]): number => native.syscall(nr, ...args);

export function ptrace(req: number, pid: number, addr: Arg = 0, data: Arg = 0): number {
  return native.syscall(SYS.ptrace, req, pid, addr, data);
}

export interface WaitStatus {
  pid: number;
  raw: number;
  exited: boolean;
  signaled: boolean;
  stopped: boolean;
  /** exit code, terminating signal, or stop signal */
  code: number;
  /** PTRACE_EVENT_* of a stop, or 0 */
  event: number;
}

function decodeWaitStatus(pid: number, raw: number): WaitStatus {
  const low = raw & 0x7f;
  const stopped = (raw & 0xff) === 0x7f;
  const exited = low === 0;
  const signaled = !stopped && !exited;
  return {
    pid, raw, exited, signaled, stopped,
    code: exited || stopped ? (raw >> 8) & 0xff : low,
    event: stopped ? (raw >>> 16) & 0xff : 0,
  };
}

const statusBuf = new Int32Array(1);
/** wait4(pid, options | __WALL). Returns null with WNOHANG when nothing is ready. Retries EINTR. */
export function wait4(pid: number, options = 0, what = `wait for ${pid}`): WaitStatus | null {
  for (;;) {
    const r = native.syscall(SYS.wait4, pid, statusBuf, options | WALL, 0);
    if (r === -4) continue;
    check(r, what);
    if (r === 0) return null;
    return decodeWaitStatus(r, statusBuf[0]!);
  }
}

/** A (local buffer, length) pair as a struct iovec array. */
export function iovecs(parts: Array<[number, number]>): BigUint64Array {
  const v = new BigUint64Array(parts.length * 2);
  parts.forEach(([addr, len], i) => {
    v[i * 2] = BigInt(addr);
    v[i * 2 + 1] = BigInt(len);
  });
  return v;
}

/** Sleeps without giving the event loop a turn (the CLI is synchronous by design). */
export function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
