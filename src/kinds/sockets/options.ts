// Socket options every family shares (sk_opts_entry), read and set by crest
// on its own copy of the socket (pidfd_getfd gives the same socket, so what
// crest sets, the task has).
import type { sk_opts_entry } from "../../images/index.js";
import { SYS } from "../../sys/constants.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";

const SOL_SOCKET = 1, ENOPROTOOPT = 92;
export const SO = {
  TYPE: 3, SNDBUF: 7, RCVBUF: 8, PRIORITY: 12, PASSCRED: 16, RCVLOWAT: 18, RCVTIMEO: 20, SNDTIMEO: 21,
  SNDBUFFORCE: 32, RCVBUFFORCE: 33, PASSSEC: 34, MARK: 36, PROTOCOL: 38, DOMAIN: 39, PEEK_OFF: 42, BUF_LOCK: 72,
} as const;

export function getInt(fd: number, opt: number, what: string): number {
  const v = new Int32Array(1);
  check(native.syscall(SYS.getsockopt, fd, SOL_SOCKET, opt, v, new Uint32Array([4])), `read socket option ${opt} of ${what}`);
  return v[0]!;
}

export function setInt(fd: number, opt: number, value: number, what: string): void {
  check(native.syscall(SYS.setsockopt, fd, SOL_SOCKET, opt, new Int32Array([value]), 4), `set socket option ${opt} of ${what}`);
}

function getTimeout(fd: number, opt: number, what: string): [bigint, bigint] {
  const tv = new BigInt64Array(2);
  check(native.syscall(SYS.getsockopt, fd, SOL_SOCKET, opt, tv, new Uint32Array([16])), `read the timeout ${opt} of ${what}`);
  return [tv[0]!, tv[1]!];
}

/** SO_BUF_LOCK, 0 on a kernel without it (before 5.14). */
function bufLock(fd: number, what: string): number {
  const v = new Int32Array(1);
  const r = native.syscall(SYS.getsockopt, fd, SOL_SOCKET, SO.BUF_LOCK, v, new Uint32Array([4]));
  if (r === -ENOPROTOOPT) return 0;
  check(r, `read SO_BUF_LOCK of ${what}`);
  return v[0]!;
}

/** The options of a socket crest holds. */
export function dumpOptions(fd: number, what: string): sk_opts_entry {
  const [sndSec, sndUsec] = getTimeout(fd, SO.SNDTIMEO, what);
  const [rcvSec, rcvUsec] = getTimeout(fd, SO.RCVTIMEO, what);
  return {
    so_sndbuf: getInt(fd, SO.SNDBUF, what),
    so_rcvbuf: getInt(fd, SO.RCVBUF, what),
    so_snd_tmo_sec: sndSec, so_snd_tmo_usec: sndUsec,
    so_rcv_tmo_sec: rcvSec, so_rcv_tmo_usec: rcvUsec,
    so_priority: getInt(fd, SO.PRIORITY, what),
    so_rcvlowat: getInt(fd, SO.RCVLOWAT, what),
    so_mark: getInt(fd, SO.MARK, what),
    so_passcred: getInt(fd, SO.PASSCRED, what) !== 0,
    so_passsec: getInt(fd, SO.PASSSEC, what) !== 0,
    so_buf_lock: bufLock(fd, what),
    so_filter: [],
  };
}

function setTimeout(fd: number, opt: number, sec: bigint, usec: bigint, what: string): void {
  check(native.syscall(SYS.setsockopt, fd, SOL_SOCKET, opt, new BigInt64Array([sec, usec]), 16), `set the timeout ${opt} of ${what}`);
}

/**
 * Sets the options back. The buffer sizes as dumped are twice what was
 * asked for (the kernel doubles them): half is asked again, with the FORCE
 * variants, since the dumped size may be above the sysctl limits.
 * sk_opts_entry has no field for SO_PEEK_OFF: the dump refuses a socket
 * that has one set.
 */
export function restoreOptions(fd: number, o: sk_opts_entry, what: string): void {
  setInt(fd, SO.SNDBUFFORCE, o.so_sndbuf >>> 1, what);
  setInt(fd, SO.RCVBUFFORCE, o.so_rcvbuf >>> 1, what);
  if (o.so_snd_tmo_sec || o.so_snd_tmo_usec) setTimeout(fd, SO.SNDTIMEO, o.so_snd_tmo_sec, o.so_snd_tmo_usec, what);
  if (o.so_rcv_tmo_sec || o.so_rcv_tmo_usec) setTimeout(fd, SO.RCVTIMEO, o.so_rcv_tmo_sec, o.so_rcv_tmo_usec, what);
  if (o.so_priority) setInt(fd, SO.PRIORITY, o.so_priority, what);
  if (o.so_rcvlowat !== undefined && o.so_rcvlowat !== 1) setInt(fd, SO.RCVLOWAT, o.so_rcvlowat, what);
  if (o.so_mark) setInt(fd, SO.MARK, o.so_mark, what);
  if (o.so_passcred) setInt(fd, SO.PASSCRED, 1, what);
  if (o.so_passsec) setInt(fd, SO.PASSSEC, 1, what);
  // Last: the FORCE calls locked the sizes; the lock goes back to what it was.
  const r = native.syscall(SYS.setsockopt, fd, SOL_SOCKET, SO.BUF_LOCK, new Int32Array([o.so_buf_lock ?? 0]), 4);
  if (r !== -ENOPROTOOPT || o.so_buf_lock) check(r, `set SO_BUF_LOCK of ${what}`);
}
