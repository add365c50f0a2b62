// A TCP connection taken out of the kernel and put back with TCP repair mode
// (tcp-stream-INO.img), on crest's own copy of the socket (pidfd_getfd: the
// same socket the task has). The facts are the kernel's and libsoccr's:
//
//   send queue  net <---------------- sk     snd_una ... snd_nxt ... write_seq
//   recv queue  net ----------------> sk     copied_seq ... rcv_nxt
//
//   inq_len = rcv_nxt - copied_seq (SIOCINQ)   inq_seq = rcv_nxt
//   outq_len = write_seq - snd_una (SIOCOUTQ)  outq_seq = write_seq
//   unsq_len = write_seq - snd_nxt (SIOCOUTQNSD): never sent yet
//
// In repair mode the queues' sequence numbers can be read and set, data
// sent goes straight into the chosen queue, connect() makes the connection
// established without a handshake, and close() is silent. A FIN the
// connection sent or received (the closing states) is not data: it is put
// back by shutdown() (ours) and by a FIN packet crest sends the socket as
// if from its peer (theirs), with the mark the network lock lets through.
import { closeSync } from "node:fs";
import type { tcp_stream_entry } from "../../images/index.js";
import { SYS } from "../../sys/constants.js";
import { check, SysError } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { AF_INET, AF_INET6 } from "./inet-diag.js";
import { sockaddr } from "./inet-addr.js";
import { SOCCR_MARK } from "./netlock.js";
import { SO, SOL_SOCKET, getOpt, setOpt } from "./options.js";

export const SOL_TCP = 6;
export const TCP = {
  NODELAY: 1, MAXSEG: 2, CORK: 3, KEEPIDLE: 4, KEEPINTVL: 5, KEEPCNT: 6, INFO: 11, REPAIR: 19, REPAIR_QUEUE: 20,
  QUEUE_SEQ: 21, REPAIR_OPTIONS: 22, TIMESTAMP: 24, REPAIR_WINDOW: 29,
} as const;
const QUEUE = { NONE: 0, RECV: 1, SEND: 2 } as const;
const TCPI_OPT = { TIMESTAMPS: 1, SACK: 2, WSCALE: 4 } as const;
const TCPOPT = { MAXSEG: 2, WINDOW: 3, SACK_PERM: 4, TIMESTAMP: 8 } as const;
const SIOCINQ = 0x541b, SIOCOUTQ = 0x5411, SIOCOUTQNSD = 0x894b;
const MSG_PEEK = 2, MSG_DONTWAIT = 0x40;
const ENOPROTOOPT = 92, ENOMEM = 12, EINPROGRESS = 115, ENOTCONN = 107;

export const TCP_STATE = {
  ESTABLISHED: 1, SYN_SENT: 2, SYN_RECV: 3, FIN_WAIT1: 4, FIN_WAIT2: 5, TIME_WAIT: 6, CLOSE: 7, CLOSE_WAIT: 8,
  LAST_ACK: 9, LISTEN: 10, CLOSING: 11,
} as const;
const bit = (s: number) => 1 << s;
const S = TCP_STATE;
/** The states whose connection sent a FIN: restored into the send queue first, or after the received one. */
const SNDQ_FIRST_FIN = bit(S.FIN_WAIT1) | bit(S.FIN_WAIT2) | bit(S.CLOSING);
const SNDQ_SECOND_FIN = bit(S.LAST_ACK) | bit(S.CLOSE);
const SNDQ_FIN_ACKED = bit(S.FIN_WAIT2) | bit(S.CLOSE);
/** The states whose connection received a FIN. */
const RCVQ_FIRST_FIN = bit(S.CLOSE_WAIT) | bit(S.LAST_ACK) | bit(S.CLOSE);
const RCVQ_SECOND_FIN = bit(S.CLOSING);
const RCVQ_FIN_ACKED = bit(S.CLOSE);
/** The states a connection can be dumped in (as libsoccr's). */
export const REPAIRABLE = new Set<number>([S.ESTABLISHED, S.FIN_WAIT1, S.FIN_WAIT2, S.LAST_ACK, S.CLOSE_WAIT, S.CLOSING, S.CLOSE, S.SYN_SENT]);

export const STATE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(TCP_STATE).map(([k, v]) => [v, k]));

/** The first bytes of struct tcp_info: state, options, window scales, and for a listener its queue and backlog. */
export interface TcpInfo {
  state: number;
  options: number;
  sndWscale: number;
  rcvWscale: number;
  /** A listener: connections waiting to be accepted (tcpi_unacked). */
  unacked: number;
  /** A listener: its backlog (tcpi_sacked). */
  sacked: number;
}

export function tcpInfo(fd: number, what: string): TcpInfo {
  const b = Buffer.alloc(104);
  check(native.syscall(SYS.getsockopt, fd, SOL_TCP, TCP.INFO, b, new Uint32Array([b.length])), `read TCP_INFO of ${what}`);
  return { state: b[0]!, options: b[5]!, sndWscale: b[6]! & 0xf, rcvWscale: b[6]! >> 4, unacked: b.readUInt32LE(24), sacked: b.readUInt32LE(28) };
}

function ioctlInt(fd: number, req: number, what: string): number {
  const v = new Int32Array(1);
  check(native.syscall(SYS.ioctl, fd, req, v), what);
  return v[0]!;
}

export const repairOn = (fd: number, what: string): void => setOpt(fd, SOL_TCP, TCP.REPAIR, 1, `${what} (TCP repair on)`);
export const repairOff = (fd: number, what: string): void => setOpt(fd, SOL_TCP, TCP.REPAIR, 0, `${what} (TCP repair off)`);

/** A connection as dumped: its stream entry, its state, and the bytes of its queues. */
export interface SavedConnection {
  stream: tcp_stream_entry;
  state: number;
  inq: Buffer;
  outq: Buffer;
}

/** Reads a queue's sequence number and, without taking them, its `len` bytes. */
function readQueue(fd: number, queue: number, len: number, what: string): { seq: number; data: Buffer } {
  setOpt(fd, SOL_TCP, TCP.REPAIR_QUEUE, queue, what);
  const seq = getOpt(fd, SOL_TCP, TCP.QUEUE_SEQ, what) >>> 0;
  if (!len) return { seq, data: Buffer.alloc(0) };
  // One byte more than expected, to be sure there is exactly len.
  const buf = Buffer.alloc(len + 1);
  const n = native.syscall(SYS.recvfrom, fd, buf, buf.length, MSG_PEEK | MSG_DONTWAIT, null, null);
  if (n !== len) throw new SysError(`read the ${queue === QUEUE.RECV ? "receive" : "send"} queue of ${what} (${n} bytes, ${len} expected)`, n < 0 ? -n : 0);
  return { seq, data: buf.subarray(0, len) };
}

/** Takes a connection in repair mode out: sequence numbers, queues, negotiated options and window. */
export function saveConnection(fd: number, what: string): SavedConnection {
  const ti = tcpInfo(fd, what);
  if (!REPAIRABLE.has(ti.state)) throw new Error(`${what} is in TCP state ${STATE_NAMES[ti.state] ?? ti.state}, which cannot be repaired`);
  let outqLen = ioctlInt(fd, SIOCOUTQ, `read the send queue length of ${what}`);
  let unsqLen = ioctlInt(fd, SIOCOUTQNSD, `read the unsent length of ${what}`);
  // A reset connection may have data queued no one can read: dropped, as libsoccr does.
  if (ti.state === S.CLOSE) outqLen = unsqLen = 0;
  // A FIN in the send queue is not data.
  if (bit(ti.state) & (SNDQ_FIRST_FIN | SNDQ_SECOND_FIN)) {
    if (outqLen) outqLen--;
    if (unsqLen) unsqLen--;
  }
  const inqLen = ioctlInt(fd, SIOCINQ, `read the receive queue length of ${what}`);
  const stream: tcp_stream_entry = {
    inq_len: inqLen, inq_seq: 0, outq_len: outqLen, outq_seq: 0, opt_mask: ti.options, snd_wscale: 0,
    mss_clamp: getOpt(fd, SOL_TCP, TCP.MAXSEG, what), unsq_len: unsqLen,
  };
  if (ti.options & TCPI_OPT.WSCALE) {
    stream.snd_wscale = ti.sndWscale;
    stream.rcv_wscale = ti.rcvWscale;
  }
  if (ti.options & TCPI_OPT.TIMESTAMPS) stream.timestamp = getOpt(fd, SOL_TCP, TCP.TIMESTAMP, what) >>> 0;
  const w = new Uint32Array(5);
  const r = native.syscall(SYS.getsockopt, fd, SOL_TCP, TCP.REPAIR_WINDOW, w, new Uint32Array([20]));
  if (r !== -ENOPROTOOPT) {
    check(r, `read the window of ${what}`);
    Object.assign(stream, { snd_wl1: w[0]!, snd_wnd: w[1]!, max_window: w[2]!, rcv_wnd: w[3]!, rcv_wup: w[4]! });
  }
  const inq = readQueue(fd, QUEUE.RECV, inqLen, what);
  const outq = readQueue(fd, QUEUE.SEND, outqLen, what);
  stream.inq_seq = inq.seq;
  stream.outq_seq = outq.seq;
  return { stream, state: ti.state, inq: inq.data, outq: outq.data };
}

/** Sends data into the queue chosen, halving the piece while the kernel cannot allocate one that large (repair mode makes one linear buffer of it). */
function sendAll(fd: number, data: Buffer, what: string): void {
  let max = data.length;
  for (let off = 0; off < data.length;) {
    const chunk = Math.min(max, data.length - off);
    const n = native.syscall(SYS.sendto, fd, data.subarray(off, off + chunk), chunk, 0, null, 0);
    if (n <= 0) {
      if (max > 1024 && (n === -ENOMEM || n === 0)) {
        max >>= 1;
        continue;
      }
      check(n, `write the queued data of ${what} back`);
    }
    off += n;
  }
}

function setQueueSeq(fd: number, queue: number, seq: number, what: string): void {
  setOpt(fd, SOL_TCP, TCP.REPAIR_QUEUE, queue, what);
  setOpt(fd, SOL_TCP, TCP.QUEUE_SEQ, seq | 0, what);
}

/** The FIN the connection sent, back in its send queue (as sent, when the peer had acknowledged it). */
function finInSendQueue(fd: number, acked: boolean, what: string): void {
  if (acked) setOpt(fd, SOL_TCP, TCP.REPAIR_QUEUE, QUEUE.SEND, what);
  const r = native.syscall(SYS.shutdown, fd, 1 /* SHUT_WR */);
  if (acked) setOpt(fd, SOL_TCP, TCP.REPAIR_QUEUE, QUEUE.NONE, what);
  check(r, `shut ${what} down for writing`);
}

/** Where a connection goes back: both ends' addresses. */
export interface Ends {
  family: number;
  src: { port: number; addr: readonly number[]; scopeId?: number };
  dst: { port: number; addr: readonly number[] };
}

/**
 * Puts a saved connection back into a new socket crest holds, in repair
 * mode (left on: repairOff once the network is unlocked): bound to its
 * address, connected without a handshake, its queues, options and window.
 */
export function restoreConnection(fd: number, ends: Ends, saved: SavedConnection, what: string): void {
  const s = { ...saved.stream };
  const mstate = bit(saved.state);
  repairOn(fd, what);
  const src = sockaddr(ends.family, ends.src.port, ends.src.addr, ends.src.scopeId);
  check(native.syscall(SYS.bind, fd, src, src.length), `bind ${what} to its address`);
  if (mstate & (RCVQ_FIRST_FIN | RCVQ_SECOND_FIN)) s.inq_seq = (s.inq_seq - 1) >>> 0;
  if (mstate & (SNDQ_FIRST_FIN | SNDQ_SECOND_FIN)) s.outq_seq = (s.outq_seq - 1) >>> 0;
  setQueueSeq(fd, QUEUE.RECV, s.inq_seq - s.inq_len, what);
  setQueueSeq(fd, QUEUE.SEND, s.outq_seq - s.outq_len - (saved.state === S.SYN_SENT ? 1 : 0), what);
  // A connection still sending its SYN connects for real (the lock drops the SYN until it is lifted).
  if (saved.state === S.SYN_SENT) repairOff(fd, what);
  const dst = sockaddr(ends.family, ends.dst.port, ends.dst.addr);
  const c = native.syscall(SYS.connect, fd, dst, dst.length);
  if (c < 0 && c !== -EINPROGRESS) check(c, `connect ${what} again`);
  if (saved.state === S.SYN_SENT) repairOn(fd, what);
  else setRepairOptions(fd, s, what);
  if (s.opt_mask & TCPI_OPT.TIMESTAMPS) setOpt(fd, SOL_TCP, TCP.TIMESTAMP, s.timestamp ?? 0, what);
  if (s.inq_len) {
    setOpt(fd, SOL_TCP, TCP.REPAIR_QUEUE, QUEUE.RECV, what);
    sendAll(fd, saved.inq, `${what} (receive queue)`);
  }
  // Sent and not acknowledged: into the send queue as sent. Never sent: sent normally, with repair off.
  const unsent = s.unsq_len ?? 0, sent = s.outq_len - unsent;
  if (sent) {
    setOpt(fd, SOL_TCP, TCP.REPAIR_QUEUE, QUEUE.SEND, what);
    sendAll(fd, saved.outq.subarray(0, sent), `${what} (send queue)`);
  }
  if (unsent) {
    repairOff(fd, what);
    sendAll(fd, saved.outq.subarray(sent), `${what} (unsent data)`);
    repairOn(fd, what);
  }
  if (s.snd_wnd !== undefined) {
    const w = new Uint32Array([s.snd_wl1 ?? 0, s.snd_wnd, s.max_window ?? 0, s.rcv_wnd ?? 0, s.rcv_wup ?? 0]);
    if (mstate & (RCVQ_FIRST_FIN | RCVQ_SECOND_FIN)) {
      w[4] = w[4]! - 1;
      w[3] = w[3]! + 1;
    }
    check(native.syscall(SYS.setsockopt, fd, SOL_TCP, TCP.REPAIR_WINDOW, w, 20), `set the window of ${what}`);
  }
  if (mstate & SNDQ_FIRST_FIN) finInSendQueue(fd, (mstate & SNDQ_FIN_ACKED) !== 0, what);
  if (mstate & (RCVQ_FIRST_FIN | RCVQ_SECOND_FIN)) sendPeerSegment(ends, s, FLAG.FIN | FLAG.ACK, what);
  if (mstate & SNDQ_SECOND_FIN) finInSendQueue(fd, (mstate & SNDQ_FIN_ACKED) !== 0, what);
  // The peer's ACK of our FIN: after its own FIN too, where it had sent one.
  const inqSeq = mstate & RCVQ_FIN_ACKED ? (s.inq_seq + 1) >>> 0 : s.inq_seq;
  if (mstate & SNDQ_FIN_ACKED) sendPeerSegment(ends, { ...s, inq_seq: inqSeq, outq_seq: (s.outq_seq + 1) >>> 0 }, FLAG.ACK, what);
}

/** The options negotiated at the handshake: SACK, window scales, timestamps, MSS. */
function setRepairOptions(fd: number, s: tcp_stream_entry, what: string): void {
  const opts: Array<[number, number]> = [];
  if (s.opt_mask & TCPI_OPT.SACK) opts.push([TCPOPT.SACK_PERM, 0]);
  if (s.opt_mask & TCPI_OPT.WSCALE) opts.push([TCPOPT.WINDOW, s.snd_wscale + ((s.rcv_wscale ?? 0) << 16)]);
  if (s.opt_mask & TCPI_OPT.TIMESTAMPS) opts.push([TCPOPT.TIMESTAMP, 0]);
  opts.push([TCPOPT.MAXSEG, s.mss_clamp]);
  const b = new Uint32Array(opts.flat());
  check(native.syscall(SYS.setsockopt, fd, SOL_TCP, TCP.REPAIR_OPTIONS, b, b.byteLength), `set the TCP options of ${what}`);
}

const FLAG = { FIN: 0x01, ACK: 0x10 } as const;

/** The Internet checksum of some buffers. */
function checksum(parts: readonly Buffer[]): number {
  let sum = 0;
  const all = Buffer.concat(parts);
  for (let i = 0; i + 1 < all.length; i += 2) sum += all.readUInt16BE(i);
  if (all.length & 1) sum += all[all.length - 1]! << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

/** An address kept as words in network order, as its 4 or 16 bytes. */
function addrBytes(family: number, words: readonly number[]): Buffer {
  const n = family === AF_INET ? 1 : 4;
  const b = Buffer.alloc(n * 4);
  for (let i = 0; i < n; i++) b.writeUInt32LE((words[i] ?? 0) >>> 0, i * 4);
  return b;
}

/**
 * Sends the restored socket a segment as if from its peer (a FIN it had
 * received, or the ACK of its own FIN), through a raw socket with the mark
 * the network lock lets pass: seq is what the socket expects next, ack what
 * the peer had acknowledged.
 */
function sendPeerSegment(ends: Ends, s: tcp_stream_entry, flags: number, what: string): void {
  let family = ends.family;
  let from = addrBytes(family, ends.dst.addr), to = addrBytes(family, ends.src.addr);
  // A v4-mapped IPv6 connection is IPv4 on the wire.
  if (family === AF_INET6 && from.readUInt32BE(8) === 0xffff && from.readUInt32BE(0) === 0 && from.readUInt32BE(4) === 0) {
    family = AF_INET;
    from = from.subarray(12);
    to = to.subarray(12);
  }
  const tcp = Buffer.alloc(20);
  tcp.writeUInt16BE(ends.dst.port, 0);
  tcp.writeUInt16BE(ends.src.port, 2);
  tcp.writeUInt32BE(s.inq_seq >>> 0, 4);
  tcp.writeUInt32BE((s.outq_seq - s.outq_len) >>> 0, 8);
  tcp[12] = 5 << 4;
  tcp[13] = flags;
  tcp.writeUInt16BE(Math.min(s.rcv_wnd ?? 0, 0xffff), 14);
  const pseudo = family === AF_INET
    ? Buffer.concat([from, to, Buffer.from([0, 6, 0, 20])])
    : Buffer.concat([from, to, Buffer.from([0, 0, 0, 20, 0, 0, 0, 6])]);
  tcp.writeUInt16BE(checksum([pseudo, tcp]), 16);
  let packet: Buffer;
  if (family === AF_INET) {
    const ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(40, 2);
    ip[8] = 64;
    ip[9] = 6;
    from.copy(ip, 12);
    to.copy(ip, 16);
    // The kernel fills in the header checksum and id of a raw IPv4 packet.
    packet = Buffer.concat([ip, tcp]);
  } else {
    const ip = Buffer.alloc(40);
    ip.writeUInt32BE(0x60000000, 0);
    ip.writeUInt16BE(20, 4);
    ip[6] = 6;
    ip[7] = 64;
    from.copy(ip, 8);
    to.copy(ip, 24);
    packet = Buffer.concat([ip, tcp]);
  }
  const IPPROTO_RAW = 255, SOCK_RAW = 3, SOCK_CLOEXEC = 0o2000000;
  const raw = check(native.syscall(SYS.socket, family, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW), `open a raw socket to put the FIN of ${what} back`);
  try {
    setOpt(raw, SOL_SOCKET, SO.MARK, SOCCR_MARK, `the raw socket for ${what}`);
    const dst = sockaddr(family, 0, family === AF_INET ? [to.readUInt32LE(0)] : [0, 1, 2, 3].map((i) => to.readUInt32LE(i * 4)));
    check(native.syscall(SYS.sendto, raw, packet, packet.length, 0, dst, dst.length), `send ${what} the FIN it had`);
  } finally {
    closeSync(raw);
  }
}

/** Repair off once the network is unlocked: the connection runs again (and probes its peer's window). */
export function resumeConnection(fd: number, what: string): void {
  const r = native.syscall(SYS.setsockopt, fd, SOL_TCP, TCP.REPAIR, new Int32Array([0]), 4);
  // A connection the peer reset meanwhile is no longer in repair mode to turn off.
  if (r < 0 && r !== -ENOTCONN) check(r, `turn TCP repair off on ${what}`);
}
