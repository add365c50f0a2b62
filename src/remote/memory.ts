// Reading and writing a tracee's memory from the outside.
import { openSync, closeSync, writeSync } from "node:fs";
import { native } from "../sys/native.js";
import { SYS } from "../sys/constants.js";
import { check } from "../sys/errno.js";

const local = new BigUint64Array(2);
const remote = new BigUint64Array(2);

function vmCall(nr: number, pid: number, buf: Buffer, addr: number | bigint): number {
  local[0] = BigInt(native.address(buf));
  local[1] = BigInt(buf.length);
  remote[0] = BigInt(addr);
  remote[1] = BigInt(buf.length);
  return native.syscall(nr, pid, local, 1, remote, 1, 0);
}

/** Reads len bytes at addr of pid into a new buffer (or `into`). Throws if not all of it is readable. */
export function readMemory(pid: number, addr: number | bigint, len: number, into?: Buffer): Buffer {
  const buf = into ?? Buffer.alloc(len);
  const n = check(vmCall(SYS.process_vm_readv, pid, buf.subarray(0, len), addr), () => `read ${len} bytes at 0x${addr.toString(16)} of process ${pid}`);
  if (n !== len) throw new Error(`read only ${n} of ${len} bytes at 0x${addr.toString(16)} of process ${pid}`);
  return buf;
}

/**
 * Writes data at addr of pid. process_vm_writev honours page protections, so
 * read-only pages (text, our own gadget) go through /proc/PID/mem, which may
 * write them as a debugger does.
 */
export function writeMemory(pid: number, addr: number | bigint, data: Buffer): void {
  const n = vmCall(SYS.process_vm_writev, pid, data, addr);
  if (n === data.length) return;
  const fd = openSync(`/proc/${pid}/mem`, "r+");
  try {
    const w = writeSync(fd, data, 0, data.length, Number(addr));
    if (w !== data.length) throw new Error(`wrote only ${w} of ${data.length} bytes at 0x${addr.toString(16)} of process ${pid}`);
  } finally {
    closeSync(fd);
  }
}

/** Most iovecs one process_vm_writev takes (UIO_MAXIOV). */
const IOV_MAX = 1024;

/**
 * Writes several pieces at once: one process_vm_writev for up to IOV_MAX of
 * them (pieces that do not all go, read-only pages, go one by one as
 * writeMemory writes them). Later pieces win where they overlap.
 */
export function writeMemoryParts(pid: number, parts: ReadonlyArray<{ addr: bigint; data: Buffer }>): void {
  for (let at = 0; at < parts.length; at += IOV_MAX) {
    const some = parts.slice(at, at + IOV_MAX);
    if (some.length === 1) {
      writeMemory(pid, some[0]!.addr, some[0]!.data);
      continue;
    }
    const l = new BigUint64Array(some.length * 2), r = new BigUint64Array(some.length * 2);
    let total = 0;
    some.forEach((p, i) => {
      l[2 * i] = BigInt(native.address(p.data));
      l[2 * i + 1] = r[2 * i + 1] = BigInt(p.data.length);
      r[2 * i] = p.addr;
      total += p.data.length;
    });
    if (native.syscall(SYS.process_vm_writev, pid, l, some.length, r, some.length, 0) !== total) {
      for (const p of some) writeMemory(pid, p.addr, p.data);
    }
  }
}
