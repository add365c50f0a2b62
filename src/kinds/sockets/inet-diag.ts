// What the kernel says of the TCP and UDP sockets of crest's network
// namespace, through sock_diag (INET_DIAG, one dump per family and
// protocol): state, addresses and ports, queue lengths (for a listener: the
// connections waiting to be accepted and its backlog) and shutdown state.
// Sockets that are not hashed (a TCP socket never bound) are not listed.
// The parser is pure; the query is one netlink request per family and protocol.
import { parseAttrs } from "../../kernel/netlink.js";
import { sockDiagDump } from "./sock-diag.js";

export const AF_INET = 2, AF_INET6 = 10;
export const IPPROTO = { TCP: 6, UDP: 17, UDPLITE: 136 } as const;
const INET_DIAG_SHUTDOWN = 8;
/** struct inet_diag_msg: family, state, timer, retrans, sockid (48 bytes), expires, rqueue, wqueue, uid, inode. */
const MSG_SIZE = 72;

export interface InetDiag {
  ino: number;
  family: number;
  /** The TCP state (for UDP: ESTABLISHED when connected, else CLOSE). */
  state: number;
  srcPort: number;
  dstPort: number;
  /** Addresses as 4 words in network order, as the image keeps them (IPv4 in the first). */
  src: number[];
  dst: number[];
  /** Bytes to be read; for a listener, the connections waiting to be accepted. */
  rqueue: number;
  /** Bytes not yet acknowledged; for a listener, its backlog. */
  wqueue: number;
  /** The kernel's sk_shutdown bits: 1 receive, 2 send. */
  shutdown: number;
}

/** The request body: inet_diag_req_v2 for every state of one family and protocol. */
export function inetDiagRequest(family: number, protocol: number): Buffer {
  const b = Buffer.alloc(56);
  b.writeUInt8(family, 0);
  b.writeUInt8(protocol, 1);
  b.writeUInt32LE(0xffffffff, 4);
  return b;
}

const words = (b: Buffer, at: number): number[] => [0, 1, 2, 3].map((i) => b.readUInt32LE(at + i * 4));

/** One SOCK_DIAG_BY_FAMILY reply: inet_diag_msg and its attributes. */
export function parseInetDiag(body: Buffer): InetDiag {
  const a = parseAttrs(body, MSG_SIZE);
  return {
    family: body.readUInt8(0),
    state: body.readUInt8(1),
    srcPort: body.readUInt16BE(4),
    dstPort: body.readUInt16BE(6),
    src: words(body, 8),
    dst: words(body, 24),
    rqueue: body.readUInt32LE(56),
    wqueue: body.readUInt32LE(60),
    ino: body.readUInt32LE(68),
    shutdown: a.get(INET_DIAG_SHUTDOWN)?.readUInt8(0) ?? 0,
  };
}

/** Every socket of one family and protocol in crest's network namespace, by inode. */
export function listInetSockets(family: number, protocol: number): Map<number, InetDiag> {
  return new Map(sockDiagDump(inetDiagRequest(family, protocol), `inet sockets (family ${family}, protocol ${protocol})`).map((body) => {
    const d = parseInetDiag(body);
    return [d.ino, d];
  }));
}
