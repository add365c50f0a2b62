// What the kernel says of every netlink socket of crest's network namespace,
// through one sock_diag dump (NETLINK_DIAG): type, protocol, state, port
// id, destination, multicast groups, the bytes in its receive queue and the
// NDIAG_FLAG_* flags. Only sockets with a port id or a group are listed
// (the kernel walks its port table and its multicast list). The parser is
// pure; the query is one netlink request.
import { AF_NETLINK, parseAttrs } from "../../kernel/netlink.js";
import { rmemAlloc, sockDiagDump } from "./sock-diag.js";

/** sdiag_protocol for every protocol. */
const NDIAG_PROTO_ALL = 255;
/** NDIAG_SHOW_MEMINFO | GROUPS | FLAGS. */
const SHOW = 0x1 | 0x2 | 0x8;
const NETLINK_DIAG = { MEMINFO: 0, GROUPS: 1, FLAGS: 4 } as const;
/** NDIAG_FLAG_*: a dump callback is running (the kernel has more to send when the socket is read). */
export const NDIAG_FLAG_CB_RUNNING = 0x1;

export interface NetlinkDiag {
  ino: number;
  type: number;
  protocol: number;
  /** NETLINK_UNCONNECTED 0, NETLINK_CONNECTED 1. */
  state: number;
  portid: number;
  dstPortid: number;
  /** The group connect() named (1-based, 0 for none). */
  dstGroup: number;
  /**
   * The multicast group bitmap as 32-bit words, lowest groups first (the
   * kernel's array of longs, little-endian), trailing zero words dropped.
   */
  groups: number[];
  /** Bytes held by the receive queue. */
  rmem: number;
  /** NDIAG_FLAG_*; undefined on a kernel without NETLINK_DIAG_FLAGS. */
  flags?: number;
}

/** The request body: netlink_diag_req for every protocol, with the attributes above. */
export function netlinkDiagRequest(): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt8(AF_NETLINK, 0);
  b.writeUInt8(NDIAG_PROTO_ALL, 1);
  b.writeUInt32LE(SHOW, 8);
  return b;
}

/** One SOCK_DIAG_BY_FAMILY reply: netlink_diag_msg (28 bytes) and its attributes. */
export function parseNetlinkDiag(body: Buffer): NetlinkDiag {
  const a = parseAttrs(body, 28);
  const g = a.get(NETLINK_DIAG.GROUPS);
  const groups = g ? Array.from({ length: g.length >> 2 }, (_, i) => g.readUInt32LE(i * 4)) : [];
  while (groups.length && groups[groups.length - 1] === 0) groups.pop();
  return {
    type: body.readUInt8(1),
    protocol: body.readUInt8(2),
    state: body.readUInt8(3),
    portid: body.readUInt32LE(4),
    dstPortid: body.readUInt32LE(8),
    dstGroup: body.readUInt32LE(12),
    ino: body.readUInt32LE(16),
    groups,
    rmem: rmemAlloc(a.get(NETLINK_DIAG.MEMINFO)),
    flags: a.get(NETLINK_DIAG.FLAGS)?.readUInt32LE(0),
  };
}

/** Every listed netlink socket of crest's network namespace, by inode. */
export function listNetlinkSockets(): Map<number, NetlinkDiag> {
  return new Map(sockDiagDump(netlinkDiagRequest(), "netlink sockets").map((b) => {
    const d = parseNetlinkDiag(b);
    return [d.ino, d];
  }));
}
