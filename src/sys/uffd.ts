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
