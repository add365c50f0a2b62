// Socket options every family shares (sk_opts_entry), read and set by crest
// on its own copy of the socket (pidfd_getfd gives the same socket, so what
// crest sets, the task has). The same fields criu keeps, for every family.
import type { sk_opts_entry } from "../../images/index.js";
import { SYS } from "../../sys/constants.js";
import { check, EACCES } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { UnsupportedError } from "../context.js";

export const SOL_SOCKET = 1;
const ENOPROTOOPT = 92, EOPNOTSUPP = 95;
export const SO = {
  REUSEADDR: 2, TYPE: 3, DONTROUTE: 5, BROADCAST: 6, SNDBUF: 7, RCVBUF: 8, KEEPALIVE: 9, OOBINLINE: 10, NO_CHECK: 11,
  PRIORITY: 12, LINGER: 13, REUSEPORT: 15, PASSCRED: 16, RCVLOWAT: 18, RCVTIMEO: 20, SNDTIMEO: 21, BINDTODEVICE: 25,
  /** SO_ATTACH_FILTER to set, SO_GET_FILTER to read: the same number. */
  FILTER: 26, SNDBUFFORCE: 32, RCVBUFFORCE: 33, PASSSEC: 34, MARK: 36, PROTOCOL: 38, DOMAIN: 39, PEEK_OFF: 42, LOCK_FILTER: 44, BUF_LOCK: 72,
} as const;

/** An int option at any level. */
export function getOpt(fd: number, level: number, opt: number, what: string): number {
  const v = new Int32Array(1);
  check(native.syscall(SYS.getsockopt, fd, level, opt, v, new Uint32Array([4])), `read socket option ${level}:${opt} of ${what}`);
  return v[0]!;
}

export function setOpt(fd: number, level: number, opt: number, value: number, what: string): void {
  check(native.syscall(SYS.setsockopt, fd, level, opt, new Int32Array([value]), 4), `set socket option ${level}:${opt} of ${what}`);
}

export const getInt = (fd: number, opt: number, what: string): number => getOpt(fd, SOL_SOCKET, opt, what);
export const setInt = (fd: number, opt: number, value: number, what: string): void => setOpt(fd, SOL_SOCKET, opt, value, what);

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

/** The device the socket is bound to (SO_BINDTODEVICE), if any. */
function boundDevice(fd: number, what: string): string | undefined {
  const name = Buffer.alloc(16);
  const len = new Uint32Array([name.length]);
  check(native.syscall(SYS.getsockopt, fd, SOL_SOCKET, SO.BINDTODEVICE, name, len), `read the device ${what} is bound to`);
  return len[0] ? name.subarray(0, name.indexOf(0) < 0 ? len[0] : name.indexOf(0)).toString("latin1") : undefined;
}

/**
 * The classic BPF filter attached (SO_GET_FILTER), one fixed64 per
 * instruction as criu keeps it. The kernel cannot give back an eBPF
 * program (SO_ATTACH_BPF: EACCES): such a socket is refused.
 */
function filter(fd: number, what: string): bigint[] {
  const len = new Uint32Array([0]);
  const r = native.syscall(SYS.getsockopt, fd, SOL_SOCKET, SO.FILTER, null, len);
  if (r === -EACCES) throw new UnsupportedError(`${what} has an eBPF program attached (SO_ATTACH_BPF), which the kernel cannot give back; crest cannot restore it`);
  check(r, `read the filter length of ${what}`);
  if (!len[0]) return [];
  const insns = Buffer.alloc(len[0] * 8);
  check(native.syscall(SYS.getsockopt, fd, SOL_SOCKET, SO.FILTER, insns, len), `read the filter of ${what}`);
  // criu's layout of a struct sock_filter in a u64, the same on every architecture: code, jt, jf, k from the top.
  return Array.from({ length: len[0] }, (_, i) => {
    const at = i * 8;
    return (BigInt(insns.readUInt16LE(at)) << 48n) | (BigInt(insns[at + 2]!) << 40n) | (BigInt(insns[at + 3]!) << 32n) | BigInt(insns.readUInt32LE(at + 4));
  });
}

/** The options of a socket crest holds. */
export function dumpOptions(fd: number, what: string): sk_opts_entry {
  const [sndSec, sndUsec] = getTimeout(fd, SO.SNDTIMEO, what);
  const [rcvSec, rcvUsec] = getTimeout(fd, SO.RCVTIMEO, what);
  const linger = new Int32Array(2);
  check(native.syscall(SYS.getsockopt, fd, SOL_SOCKET, SO.LINGER, linger, new Uint32Array([8])), `read SO_LINGER of ${what}`);
  const flag = (opt: number) => getInt(fd, opt, what) !== 0;
  // SO_PASSCRED and SO_PASSSEC exist for unix and netlink sockets only (this kernel says EOPNOTSUPP elsewhere), as criu reads them.
  const unixFlag = (opt: number): boolean => {
    const v = new Int32Array(1);
    const r = native.syscall(SYS.getsockopt, fd, SOL_SOCKET, opt, v, new Uint32Array([4]));
    if (r === -EOPNOTSUPP) return false;
    check(r, `read socket option ${opt} of ${what}`);
    return v[0] !== 0;
  };
  const dev = boundDevice(fd, what);
  return {
    so_sndbuf: getInt(fd, SO.SNDBUF, what),
    so_rcvbuf: getInt(fd, SO.RCVBUF, what),
    so_snd_tmo_sec: sndSec, so_snd_tmo_usec: sndUsec,
    so_rcv_tmo_sec: rcvSec, so_rcv_tmo_usec: rcvUsec,
    reuseaddr: flag(SO.REUSEADDR),
    so_priority: getInt(fd, SO.PRIORITY, what),
    so_rcvlowat: getInt(fd, SO.RCVLOWAT, what),
    so_mark: getInt(fd, SO.MARK, what),
    so_passcred: unixFlag(SO.PASSCRED),
    so_passsec: unixFlag(SO.PASSSEC),
    so_dontroute: flag(SO.DONTROUTE),
    so_no_check: flag(SO.NO_CHECK),
    ...(dev ? { so_bound_dev: dev } : {}),
    so_filter: filter(fd, what),
    // crest's own field: a filter the program locked (SO_LOCK_FILTER) stays locked.
    ...(getInt(fd, SO.LOCK_FILTER, what) ? { so_lock_filter: true } : {}),
    so_reuseport: flag(SO.REUSEPORT),
    so_broadcast: flag(SO.BROADCAST),
    so_keepalive: flag(SO.KEEPALIVE),
    so_oobinline: flag(SO.OOBINLINE) ? 1 : 0,
    ...(linger[0] ? { so_linger: linger[1]! } : {}),
    so_buf_lock: bufLock(fd, what),
  };
}

function setTimeout(fd: number, opt: number, sec: bigint, usec: bigint, what: string): void {
  check(native.syscall(SYS.setsockopt, fd, SOL_SOCKET, opt, new BigInt64Array([sec, usec]), 16), `set the timeout ${opt} of ${what}`);
}

/**
 * Sets the options back, but SO_REUSEADDR and SO_REUSEPORT (restoreReuse:
 * an inet socket keeps both on until every socket of its port is bound).
 * The buffer sizes as dumped are twice what was asked for (the kernel
 * doubles them): half is asked again, with the FORCE variants, since the
 * dumped size may be above the sysctl limits. sk_opts_entry has no field for
 * SO_PEEK_OFF: the dump refuses a socket that has one set.
 */
export function restoreOptions(fd: number, o: sk_opts_entry, what: string): void {
  setInt(fd, SO.SNDBUFFORCE, o.so_sndbuf >>> 1, what);
  setInt(fd, SO.RCVBUFFORCE, o.so_rcvbuf >>> 1, what);
  if (o.so_snd_tmo_sec || o.so_snd_tmo_usec) setTimeout(fd, SO.SNDTIMEO, o.so_snd_tmo_sec, o.so_snd_tmo_usec, what);
  if (o.so_rcv_tmo_sec || o.so_rcv_tmo_usec) setTimeout(fd, SO.RCVTIMEO, o.so_rcv_tmo_sec, o.so_rcv_tmo_usec, what);
  if (o.so_priority) setInt(fd, SO.PRIORITY, o.so_priority, what);
  if (o.so_rcvlowat !== undefined && o.so_rcvlowat !== 1) setInt(fd, SO.RCVLOWAT, o.so_rcvlowat, what);
  if (o.so_mark) setInt(fd, SO.MARK, o.so_mark, what);
  for (const [on, opt] of [
    [o.so_passcred, SO.PASSCRED], [o.so_passsec, SO.PASSSEC], [o.so_dontroute, SO.DONTROUTE], [o.so_no_check, SO.NO_CHECK],
    [o.so_broadcast, SO.BROADCAST], [o.so_keepalive, SO.KEEPALIVE], [o.so_oobinline, SO.OOBINLINE],
  ] as const) {
    if (on) setInt(fd, opt, 1, what);
  }
  if (o.so_linger !== undefined) {
    check(native.syscall(SYS.setsockopt, fd, SOL_SOCKET, SO.LINGER, new Int32Array([1, o.so_linger]), 8), `set SO_LINGER of ${what}`);
  }
  if (o.so_bound_dev) {
    const dev = Buffer.from(`${o.so_bound_dev}\0`, "latin1");
    check(native.syscall(SYS.setsockopt, fd, SOL_SOCKET, SO.BINDTODEVICE, dev, dev.length), `bind ${what} to device ${o.so_bound_dev}`);
  }
  if (o.so_filter.length) attachFilter(fd, o.so_filter, what);
  if (o.so_lock_filter) setInt(fd, SO.LOCK_FILTER, 1, what);
  // Last: the FORCE calls locked the sizes; the lock goes back to what it was.
  const r = native.syscall(SYS.setsockopt, fd, SOL_SOCKET, SO.BUF_LOCK, new Int32Array([o.so_buf_lock ?? 0]), 4);
  if (r !== -ENOPROTOOPT || o.so_buf_lock) check(r, `set SO_BUF_LOCK of ${what}`);
}

/** SO_REUSEADDR and SO_REUSEPORT as dumped. */
export function restoreReuse(fd: number, o: sk_opts_entry, what: string): void {
  setInt(fd, SO.REUSEADDR, o.reuseaddr ? 1 : 0, what);
  setInt(fd, SO.REUSEPORT, o.so_reuseport ? 1 : 0, what);
}

/** SO_ATTACH_FILTER: struct sock_fprog { u16 len; struct sock_filter *filter; }. */
function attachFilter(fd: number, insns: readonly bigint[], what: string): void {
  const prog = Buffer.alloc(insns.length * 8);
  insns.forEach((w, i) => {
    prog.writeUInt16LE(Number((w >> 48n) & 0xffffn), i * 8);
    prog[i * 8 + 2] = Number((w >> 40n) & 0xffn);
    prog[i * 8 + 3] = Number((w >> 32n) & 0xffn);
    prog.writeUInt32LE(Number(w & 0xffffffffn), i * 8 + 4);
  });
  const fprog = Buffer.alloc(16);
  fprog.writeUInt16LE(insns.length, 0);
  fprog.writeBigUInt64LE(BigInt(native.address(prog)), 8);
  check(native.syscall(SYS.setsockopt, fd, SOL_SOCKET, SO.FILTER, fprog, fprog.length), `attach the filter of ${what}`);
}
