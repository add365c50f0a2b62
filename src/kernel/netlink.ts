// Just enough netlink for the probes: one request on a socket, its replies
// until the kernel's ACK, error or end of dump, and rtattr building/parsing.
import { native } from "../sys/native.js";
import { SYS } from "../sys/constants.js";
import { errname, missing, need, SOCK_CLOEXEC, XSYS } from "./probe.js";

export const AF_NETLINK = 16, NETLINK_ROUTE = 0, NETLINK_SOCK_DIAG = 4;
const SOCK_RAW = 3;
const NLMSG_ERROR = 2, NLMSG_DONE = 3;
export const NLM_F = { REQUEST: 1, ACK: 4, DUMP: 0x300, EXCL: 0x200, CREATE: 0x400 } as const;
const HDR = 16;

const align4 = (n: number) => (n + 3) & ~3;

export function netlinkSocket(proto: number, what: string): number {
  return need(native.syscall(XSYS.socket, AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, proto), `a netlink socket for ${what}`);
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

/** Sends one request; a non-dump request asks for an ACK, so every request ends with one. */
export function nlRequest(fd: number, type: number, flags: number, body: Buffer): NlReply {
  const mySeq = seq++;
  const dump = (flags & NLM_F.DUMP) === NLM_F.DUMP;
  const msg = Buffer.alloc(HDR + align4(body.length));
  msg.writeUInt32LE(HDR + body.length, 0);
  msg.writeUInt16LE(type, 4);
  msg.writeUInt16LE(flags | NLM_F.REQUEST | (dump ? 0 : NLM_F.ACK), 6);
  msg.writeUInt32LE(mySeq, 8);
  body.copy(msg, HDR);
  const sent = native.syscall(SYS.write, fd, msg, HDR + body.length);
  if (sent < 0) missing(`sending a netlink request failed: ${errname(-sent)}`);
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
      if (s !== mySeq) continue;
      if (t === NLMSG_ERROR || t === NLMSG_DONE) {
        const err = payload.length >= 4 ? payload.readInt32LE(0) : 0;
        return { messages, errno: -err };
      }
      messages.push({ type: t, body: payload });
    }
  }
}
