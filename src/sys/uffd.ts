// userfaultfd in asynchronous write-protect mode, the dirty-page tracking of
// kernels without soft-dirty (Linux 6.7+): a write to a write-protected page
// is let through by the kernel itself, which clears the page's protection;
// PAGEMAP_SCAN reports such pages PAGE_IS_WRITTEN. A userfaultfd belongs to
// the memory of the process that made it, but its ioctls work from any
// process holding it: crest has the task make one and does the rest itself.
import { native } from "./native.js";
import { SYS } from "./constants.js";
import { check } from "./errno.js";

/** userfaultfd(2) flags: fault only on user-mode accesses (what any user may ask). */
export const UFFD_USER_MODE_ONLY = 1;
export const UFFD_API = 0xaan;
export const UFFD_FEATURE = {
  EVENT_FORK: 1n << 1n, EVENT_REMAP: 1n << 2n, EVENT_REMOVE: 1n << 3n, EVENT_UNMAP: 1n << 6n,
  WP_UNPOPULATED: 1n << 13n, WP_ASYNC: 1n << 15n,
} as const;
// _IOWR(0xAA, nr, struct): uffdio_api (24 bytes), uffdio_register (32), uffdio_writeprotect (24).
export const UFFDIO_API = 0xc018aa3f;
export const UFFDIO_REGISTER = 0xc020aa00;
export const UFFDIO_WRITEPROTECT = 0xc018aa06;
export const UFFDIO_REGISTER_MODE_WP = 2n;
export const UFFDIO_WRITEPROTECT_MODE_WP = 1n;

/** Enables the features on a fresh userfaultfd (its first ioctl). */
export function uffdApi(fd: number, features: bigint, what: string): void {
  const a = new BigUint64Array([UFFD_API, features, 0n]);
  check(native.syscall(SYS.ioctl, fd, UFFDIO_API, a), `enable write-protect tracking on ${what}`);
}

/** Registers [start, start+len) for write-protection; returns 0 or -errno (a mapping the kernel will not track). */
export function uffdRegisterWp(fd: number, start: number, len: number): number {
  const a = new BigUint64Array([BigInt(start), BigInt(len), UFFDIO_REGISTER_MODE_WP, 0n]);
  return native.syscall(SYS.ioctl, fd, UFFDIO_REGISTER, a);
}

/** Write-protects the pages of [start, start+len) that are there (and, with UFFD_FEATURE_WP_UNPOPULATED, those not yet). */
export function uffdWriteProtect(fd: number, start: number, len: number, what: string): void {
  const a = new BigUint64Array([BigInt(start), BigInt(len), UFFDIO_WRITEPROTECT_MODE_WP]);
  check(native.syscall(SYS.ioctl, fd, UFFDIO_WRITEPROTECT, a), `write-protect ${what}`);
}

// Lazy restore (kinds/memory/lazy.ts): missing-page faults of registered
// ranges are queued to the userfaultfd's reader, which answers each with
// UFFDIO_COPY (the page's bytes) or UFFDIO_ZEROPAGE.
export const UFFDIO_REGISTER_MODE_MISSING = 1n;
// _IOR(0xAA, nr, struct uffdio_range: 16 bytes), _IOWR(0xAA, 3, uffdio_copy: 40), _IOWR(0xAA, 4, uffdio_zeropage: 32).
export const UFFDIO_UNREGISTER = 0x8010aa01;
export const UFFDIO_WAKE = 0x8010aa02;
export const UFFDIO_COPY = 0xc028aa03;
export const UFFDIO_ZEROPAGE = 0xc020aa04;
/** uffd_msg.event values. */
export const UFFD_EVENT = { PAGEFAULT: 0x12, FORK: 0x13, REMAP: 0x14, REMOVE: 0x15, UNMAP: 0x16 } as const;
/** sizeof(struct uffd_msg). */
export const UFFD_MSG_SIZE = 32;

/** Registers [start, start+len) for missing-page faults; returns 0 or -errno. */
export function uffdRegisterMissing(fd: number, start: bigint, len: bigint): number {
  const a = new BigUint64Array([start, len, UFFDIO_REGISTER_MODE_MISSING, 0n]);
  return native.syscall(SYS.ioctl, fd, UFFDIO_REGISTER, a);
}

const copyArg = new BigInt64Array(5);
/**
 * Copies len bytes at `src` (crest's memory) to `dst` of the userfaultfd's
 * memory and wakes whoever waits there. Returns the bytes copied, or
 * -errno with the bytes copied before the error (`done`).
 */
export function uffdCopy(fd: number, dst: number, src: number, len: number): { err: number; done: number } {
  copyArg[0] = BigInt(dst); copyArg[1] = BigInt(src); copyArg[2] = BigInt(len); copyArg[3] = 0n; copyArg[4] = 0n;
  const r = native.syscall(SYS.ioctl, fd, UFFDIO_COPY, copyArg);
  const done = Number(copyArg[4]!);
  return { err: r < 0 ? r : 0, done: r < 0 ? Math.max(0, done) : len };
}

/** Maps the zero page at [dst, dst+len); returns 0 or -errno. */
export function uffdZeroPage(fd: number, dst: number, len: number): number {
  return native.syscall(SYS.ioctl, fd, UFFDIO_ZEROPAGE, new BigInt64Array([BigInt(dst), BigInt(len), 0n, 0n]));
}

/** Wakes the threads waiting on [start, start+len) (their page is there already). */
export function uffdWake(fd: number, start: number, len: number): number {
  return native.syscall(SYS.ioctl, fd, UFFDIO_WAKE, new BigUint64Array([BigInt(start), BigInt(len)]));
}

/** Stops tracking [start, start+len). */
export function uffdUnregister(fd: number, start: number, len: number): number {
  return native.syscall(SYS.ioctl, fd, UFFDIO_UNREGISTER, new BigUint64Array([BigInt(start), BigInt(len)]));
}
