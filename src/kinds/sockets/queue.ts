// The data queued in a socket to be read (sk-queues.img): read on dump
// without taking it (MSG_PEEK from an offset, SO_PEEK_OFF), one packet per
// datagram or record, so boundaries are kept; written back on restore by
// sending it from the socket's peer, in order. Files passed in the queue
// (SCM_RIGHTS) come with the peek as fds of crest's, and go back with
// sendmsg from fds of crest's.
import { closeSync } from "node:fs";
import { SYS } from "../../sys/constants.js";
import { check, EAGAIN, SysError } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { UnsupportedError } from "../context.js";
import { getInt, setInt, SO } from "./options.js";

const MSG_PEEK = 2, MSG_TRUNC = 0x20, MSG_DONTWAIT = 0x40, MSG_CTRUNC = 8;
const SOL_SOCKET = 1, SCM_RIGHTS = 1, SCM_CREDENTIALS = 2;
export const SOCK_STREAM = 1;
const SOCK_SEQPACKET = 5;
/** The largest datagram crest reads: unix datagrams are bounded by the sender's buffer, far below this. */
const MAX_PACKET = 1 << 20;
/** Room for SCM_MAX_FD (253) files and credentials. */
const CONTROL = 4096;

/** One datagram or record (or a run of stream data), and the files passed with it (fds crest holds; files.img ids once dumped). */
export interface Packet {
  data: Buffer;
  fds: number[];
}

let packetBuf: Buffer | undefined;

/** struct msghdr (name, namelen, iov, iovlen, control, controllen, flags) over one buffer and a control area. */
function msghdr(iov: BigUint64Array, control: Buffer | null, controlLen: number): BigUint64Array {
  const msg = new BigUint64Array(7);
  msg[2] = BigInt(native.address(iov));
  msg[3] = 1n;
  if (control) {
    msg[4] = BigInt(native.address(control));
    msg[5] = BigInt(controlLen);
  }
  return msg;
}

/**
 * Copies what is queued in a socket crest holds, without consuming it:
 * stream data as one packet (a run ends with files passed, where the
 * kernel's peek stops), datagrams and records one packet each. Files in
 * flight come as fds crest now holds: the caller owns them. `what` names
 * the socket for errors; `end`, whether it is shut for reading and the
 * bytes queued (sock_diag's), tells the end of a seqpacket queue from an
 * empty record.
 */
export function peekQueue(fd: number, type: number, what: string, end?: { shut: boolean; bytes: number }): Packet[] {
  const peekOff = getInt(fd, SO.PEEK_OFF, what);
  if (peekOff >= 0) throw new UnsupportedError(`${what} has a peek offset (SO_PEEK_OFF ${peekOff}), which CRIU's images (sk_opts_entry) cannot hold; crest does not support it`);
  packetBuf ??= Buffer.alloc(MAX_PACKET);
  const control = Buffer.alloc(CONTROL);
  const iov = new BigUint64Array([BigInt(native.address(packetBuf)), BigInt(MAX_PACKET)]);
  const packets: Packet[] = [];
  setInt(fd, SO.PEEK_OFF, 0, what);
  try {
    for (;;) {
      const msg = msghdr(iov, control, CONTROL);
      const n = native.syscall(SYS.recvmsg, fd, msg, MSG_PEEK | MSG_DONTWAIT | (type === SOCK_STREAM ? 0 : MSG_TRUNC));
      if (n === -EAGAIN) break;
      check(n, `read the data queued in ${what}`);
      const fds = passedFiles(control, Number(msg[5]), Number(msg[6]! & 0xffffffffn), what);
      packets.push({ data: Buffer.from(packetBuf.subarray(0, Math.min(n, MAX_PACKET))), fds });
      if (n > MAX_PACKET || Number(msg[6]! & 0xffffffffn) & MSG_TRUNC) throw new UnsupportedError(`${what} has a datagram of ${n} bytes queued, more than crest reads (${MAX_PACKET})`);
      if (n === 0) {
        packets.pop();
        // A stream at its end, or an empty datagram: the peek offset cannot move past one.
        if (type === SOCK_STREAM) break;
        // A seqpacket socket shut for reading (its peer closed) says 0 past its last record: the end, if every byte was read.
        if (type === SOCK_SEQPACKET && end?.shut && packets.reduce((k, p) => k + p.data.length, 0) === end.bytes) break;
        throw new UnsupportedError(`${what} has an empty datagram queued; crest cannot read past it without taking it`);
      }
    }
  } catch (e) {
    for (const p of packets) for (const f of p.fds) closeSync(f);
    throw e;
  } finally {
    setInt(fd, SO.PEEK_OFF, -1, what);
  }
  return packets;
}

/**
 * The files passed with a message (SCM_RIGHTS): the peek gave crest copies.
 * A queue whose messages carry their senders' credentials (the receiver
 * has SO_PASSCRED) is refused: sent again by crest they would carry
 * crest's (criu refuses them too).
 */
function passedFiles(control: Buffer, len: number, flags: number, what: string): number[] {
  const fds: number[] = [];
  let creds = false;
  for (let at = 0; at + 16 <= len;) {
    const clen = Number(control.readBigUInt64LE(at));
    if (clen < 16) break;
    const level = control.readInt32LE(at + 8), type = control.readInt32LE(at + 12);
    if (level === SOL_SOCKET && type === SCM_RIGHTS) {
      for (let p = at + 16; p + 4 <= at + clen; p += 4) fds.push(control.readInt32LE(p));
    }
    creds ||= level === SOL_SOCKET && type === SCM_CREDENTIALS;
    at += (clen + 7) & ~7;
  }
  const refuse = (why: string): never => {
    for (const f of fds) closeSync(f);
    throw new UnsupportedError(why);
  };
  if (creds) refuse(`${what} has SO_PASSCRED and messages queued with their senders' credentials; crest cannot send them again with those credentials yet`);
  if (flags & MSG_CTRUNC) refuse(`${what} has more files in flight (SCM_RIGHTS) with one message than crest reads`);
  return fds;
}

/** Sends one message from a socket crest holds, with files (fds of crest's) passed along (SCM_RIGHTS); returns the bytes sent. */
export function sendWithFiles(fd: number, data: Buffer, files: readonly number[], flags: number): number {
  const iov = new BigUint64Array([BigInt(native.address(data)), BigInt(data.length)]);
  let control: Buffer | null = null;
  if (files.length) {
    const len = 16 + 4 * files.length;
    control = Buffer.alloc((len + 7) & ~7);
    control.writeBigUInt64LE(BigInt(len), 0);
    control.writeInt32LE(SOL_SOCKET, 8);
    control.writeInt32LE(SCM_RIGHTS, 12);
    files.forEach((f, i) => control!.writeInt32LE(f, 16 + 4 * i));
  }
  return native.syscall(SYS.sendmsg, fd, msghdr(iov, control, control?.length ?? 0), flags);
}

/**
 * Sends packets from a socket crest holds to its peer, each whole, with
 * the files passed with each (fds crest holds); the peer's buffer must
 * take them all.
 */
export function sendQueue(fd: number, packets: readonly Packet[], what: string): void {
  for (const p of packets) {
    let off = 0, files = p.fds;
    do {
      const n = sendWithFiles(fd, p.data.subarray(off), files, MSG_DONTWAIT);
      if (n === -EAGAIN) throw new SysError(`write the data queued in ${what} back (its peer's buffer is full)`, EAGAIN);
      off += check(n, `write the data queued in ${what} back`);
      files = [];
    } while (off < p.data.length);
  }
}
