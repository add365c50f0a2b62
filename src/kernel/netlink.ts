// Just enough netlink for the probes: one request on a socket (or one
// netfilter batch), its replies until the kernel's ACK, error or end of
// dump, and rtattr building/parsing.
import { native } from "../sys/native.js";
import { SYS } from "../sys/constants.js";
import { errname, missing, need, SOCK_CLOEXEC } from "./probe.js";

export const AF_NETLINK = 16, NETLINK_ROUTE = 0, NETLINK_SOCK_DIAG = 4, NETLINK_NETFILTER = 12;
const SOCK_RAW = 3;
const NLMSG_ERROR = 2, NLMSG_DONE = 3;
export const NLM_F = { REQUEST: 1, ACK: 4, DUMP: 0x300, EXCL: 0x200, CREATE: 0x400 } as const;
const HDR = 16;

const align4 = (n: number) => (n + 3) & ~3;

export function netlinkSocket(proto: number, what: string): number {
  return need(native.syscall(SYS.socket, AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, proto), `a netlink socket for ${what}`);
}

/** A struct rtattr with its payload, padded to 4 bytes. */
export function rtattr(type: number, payload: Buffer | string | number): Buffer {
  let data: Buffer;
  if (typeof payload === "string") data = Buffer.from(`${payload}\0`);
  else if (typeof payload === "number") {
    data = Buffer.alloc(4);
    data.writeInt32LE(payload);
  } else data = payload;
  const b = Buffer.alloc(align4(4 + data.length));
  b.writeUInt16LE(4 + data.length, 0);
  b.writeUInt16LE(type, 2);
  data.copy(b, 4);
  return b;
}

/** The attributes of a message body from `offset` on: type (without flag bits) -> payload. */
export function parseAttrs(body: Buffer, offset: number): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (let at = offset; at + 4 <= body.length;) {
    const len = body.readUInt16LE(at);
    if (len < 4) break;
    out.set(body.readUInt16LE(at + 2) & 0x3fff, body.subarray(at + 4, at + len));
    at += align4(len);
  }
  return out;
}

export interface NlReply {
  /** Messages before the end (type and body without the header). */
  messages: Array<{ type: number; body: Buffer }>;
  /** The errno the kernel answered (0 for an ACK or a finished dump). */
  errno: number;
}

let seq = 1;

interface NlMessage {
  type: number;
  flags: number;
  body: Buffer;
}

function pack(m: NlMessage, mySeq: number): Buffer {
  const msg = Buffer.alloc(HDR + align4(m.body.length));
  msg.writeUInt32LE(HDR + m.body.length, 0);
  msg.writeUInt16LE(m.type, 4);
  msg.writeUInt16LE(m.flags | NLM_F.REQUEST, 6);
  msg.writeUInt32LE(mySeq, 8);
  m.body.copy(msg, HDR);
  return msg;
}

/** Sends messages in one write and their sequence numbers. */
function send(fd: number, msgs: readonly NlMessage[]): number[] {
  const seqs = msgs.map(() => seq++);
  const buf = Buffer.concat(msgs.map((m, i) => pack(m, seqs[i]!)));
  const sent = native.syscall(SYS.write, fd, buf, buf.length);
  if (sent < 0) missing(`sending a netlink request failed: ${errname(-sent)}`);
  return seqs;
}

/**
 * Reads replies until `done` says so for an NLMSG_ERROR or NLMSG_DONE
 * (errno 0 for an ACK or a finished dump), keeping the other messages of
 * the sequence numbers asked for.
 */
function receive(fd: number, seqs: readonly number[], done: (seq: number, errno: number) => boolean): NlReply {
  const buf = Buffer.alloc(64 * 1024);
  const messages: NlReply["messages"] = [];
  for (;;) {
    const n = native.syscall(SYS.read, fd, buf, buf.length);
    if (n < 0) missing(`reading a netlink reply failed: ${errname(-n)}`);
    for (let at = 0; at + HDR <= n;) {
      const len = buf.readUInt32LE(at);
      const t = buf.readUInt16LE(at + 4);
      const s = buf.readUInt32LE(at + 8);
      if (len < HDR) break;
      const payload = Buffer.from(buf.subarray(at + HDR, at + len));
      at += align4(len);
      if (!seqs.includes(s)) continue;
      if (t === NLMSG_ERROR || t === NLMSG_DONE) {
        const err = payload.length >= 4 ? payload.readInt32LE(0) : 0;
        const errno = err ? -err : 0;
        if (done(s, errno)) return { messages, errno };
      } else messages.push({ type: t, body: payload });
    }
  }
}

/** Sends one request; a non-dump request asks for an ACK, so every request ends with one. */
export function nlRequest(fd: number, type: number, flags: number, body: Buffer): NlReply {
  const dump = (flags & NLM_F.DUMP) === NLM_F.DUMP;
  const seqs = send(fd, [{ type, flags: flags | (dump ? 0 : NLM_F.ACK), body }]);
  return receive(fd, seqs, () => true);
}

/**
 * Sends messages in one write (a netfilter batch: begin, requests, end);
 * the requests ask for an ACK. Returns the first errno the kernel answered
 * for any of them, or 0 once the last request is acknowledged.
 */
export function nlBatch(fd: number, begin: NlMessage, requests: readonly NlMessage[], end: NlMessage): number {
  const seqs = send(fd, [begin, ...requests.map((m) => ({ ...m, flags: m.flags | NLM_F.ACK })), end]);
  const last = seqs[requests.length];
  return receive(fd, seqs, (s, errno) => errno !== 0 || s === last).errno;
}
