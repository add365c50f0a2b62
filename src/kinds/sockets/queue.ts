// The data queued in a socket to be read (sk-queues.img): read on dump
// without taking it (MSG_PEEK from an offset, SO_PEEK_OFF), one packet per
// datagram or record, so boundaries are kept; written back on restore by
// sending it from the socket's peer, in order.
import { closeSync } from "node:fs";
import { SYS } from "../../sys/constants.js";
import { check, SysError } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { UnsupportedError } from "../context.js";
import { getInt, setInt, SO } from "./options.js";

const MSG_PEEK = 2, MSG_TRUNC = 0x20, MSG_DONTWAIT = 0x40, MSG_CTRUNC = 8;
const SOL_SOCKET = 1, SCM_RIGHTS = 1, SCM_CREDENTIALS = 2;
const EAGAIN = 11;
export const SOCK_STREAM = 1;
/** The largest datagram crest reads: unix datagrams are bounded by the sender's buffer, far below this. */
const MAX_PACKET = 1 << 20;
const CONTROL = 256;

let packetBuf: Buffer | undefined;

/**
 * Copies what is queued in a socket crest holds, without consuming it:
 * stream data as one packet, datagrams and records one packet each.
 * `what` names the socket for errors.
 */
export function peekQueue(fd: number, type: number, what: string): Buffer[] {
  const peekOff = getInt(fd, SO.PEEK_OFF, what);
  if (peekOff >= 0) throw new UnsupportedError(`${what} has a peek offset (SO_PEEK_OFF ${peekOff}), which CRIU's images cannot hold; crest does not support it`);
  packetBuf ??= Buffer.alloc(MAX_PACKET);
  const control = Buffer.alloc(CONTROL);
  const iov = new BigUint64Array([BigInt(native.address(packetBuf)), BigInt(MAX_PACKET)]);
  // struct msghdr: name, namelen, iov, iovlen, control, controllen, flags.
  const msg = new BigUint64Array(7);
  const packets: Buffer[] = [];
  setInt(fd, SO.PEEK_OFF, 0, what);
  try {
    for (;;) {
      msg.fill(0n);
      msg[2] = BigInt(native.address(iov));
      msg[3] = 1n;
      msg[4] = BigInt(native.address(control));
      msg[5] = BigInt(CONTROL);
      const n = native.syscall(SYS.recvmsg, fd, msg, MSG_PEEK | MSG_DONTWAIT | (type === SOCK_STREAM ? 0 : MSG_TRUNC));
      if (n === -EAGAIN) break;
      check(n, `read the data queued in ${what}`);
      const flags = Number(msg[6]! & 0xffffffffn);
      rejectRights(control, Number(msg[5]), flags, what);
      if (n > MAX_PACKET || flags & MSG_TRUNC) throw new UnsupportedError(`${what} has a datagram of ${n} bytes queued, more than crest reads (${MAX_PACKET})`);
      if (n === 0) {
        // A stream at its end, or an empty datagram: the peek offset cannot move past one.
        if (type === SOCK_STREAM) break;
        throw new UnsupportedError(`${what} has an empty datagram queued; crest cannot read past it without taking it`);
      }
      packets.push(Buffer.from(packetBuf.subarray(0, n)));
    }
  } finally {
    setInt(fd, SO.PEEK_OFF, -1, what);
  }
  return packets;
}

/**
 * Files passed in the queue (SCM_RIGHTS): the peek gave crest copies of
 * them; closed, and the socket refused. So is a queue whose messages carry
 * their senders' credentials (the receiver has SO_PASSCRED): sent again by
 * crest they would carry crest's (criu refuses them too).
 */
function rejectRights(control: Buffer, len: number, flags: number, what: string): void {
  let passed = 0, creds = false;
  for (let at = 0; at + 16 <= len;) {
    const clen = Number(control.readBigUInt64LE(at));
    if (clen < 16) break;
    const level = control.readInt32LE(at + 8), type = control.readInt32LE(at + 12);
    if (level === SOL_SOCKET && type === SCM_RIGHTS) {
      for (let p = at + 16; p + 4 <= at + clen; p += 4, passed++) closeSync(control.readInt32LE(p));
    }
    creds ||= level === SOL_SOCKET && type === SCM_CREDENTIALS;
    at += (clen + 7) & ~7;
  }
  if (creds && !passed) {
    throw new UnsupportedError(`${what} has SO_PASSCRED and messages queued with their senders' credentials; crest cannot send them again with those credentials yet`);
  }
  if (passed || flags & MSG_CTRUNC) {
    throw new UnsupportedError(`${what} has files in flight (SCM_RIGHTS) in its queue; crest does not support passing them yet`);
  }
}

/** Sends packets from a socket crest holds to its peer, each whole; the peer's buffer must take them all. */
export function sendQueue(fd: number, packets: readonly Buffer[], what: string): void {
  for (const p of packets) {
    for (let off = 0; off < p.length;) {
      const n = native.syscall(SYS.sendto, fd, p.subarray(off), p.length - off, MSG_DONTWAIT, null, 0);
      if (n === -EAGAIN) throw new SysError(`write the data queued in ${what} back (its peer's buffer is full)`, EAGAIN);
      off += check(n, `write the data queued in ${what} back`);
    }
  }
}
