// What the kernel says of every packet socket of crest's network namespace,
// through one sock_diag dump (PACKET_DIAG): type, protocol, the
// packet_diag_info options (bound device, TPACKET version, reserve, copy
// threshold, timestamp source, flags), the multicast memberships, the ring
// geometries, the fanout group and the bytes in its receive queue. The
// parser is pure; the query is one netlink request.
import { parseAttrs } from "../../kernel/netlink.js";
import { rmemAlloc, sockDiagDump } from "./sock-diag.js";

export const AF_PACKET = 17;
/** PACKET_SHOW_INFO | MCLIST | RING_CFG | FANOUT | MEMINFO. */
const SHOW = 0x1f;
const PACKET_DIAG = { INFO: 0, MCLIST: 1, RX_RING: 2, TX_RING: 3, FANOUT: 4, MEMINFO: 6 } as const;
/** packet_diag_info.pdi_flags. */
export const PDI = { RUNNING: 0x1, AUXDATA: 0x2, ORIGDEV: 0x4, VNETHDR: 0x8, LOSS: 0x10 } as const;
/** struct packet_diag_mclist: index, count, type, alen, then MAX_ADDR_LEN bytes of address. */
const MCLIST_SIZE = 44;

export interface PacketRingDiag {
  blockSize: number;
  blockNr: number;
  frameSize: number;
  frameNr: number;
  retireTmo: number;
  sizeofPriv: number;
  features: number;
}

export interface PacketMembership {
  ifindex: number;
  /** How many times it was added (PACKET_ADD_MEMBERSHIP of the same request counts up). */
  count: number;
  /** PACKET_MR_MULTICAST 0, PROMISC 1, ALLMULTI 2, UNICAST 3. */
  type: number;
  addr: Buffer;
}

export interface PacketDiag {
  ino: number;
  type: number;
  /** The protocol in host order, as the diag gives it (the socket keeps it in network order). */
  num: number;
  /** packet_diag_info. */
  ifindex: number;
  version: number;
  reserve: number;
  copyThresh: number;
  tstamp: number;
  flags: number;
  mclist: PacketMembership[];
  rxRing?: PacketRingDiag;
  txRing?: PacketRingDiag;
  /** id | type << 16 (without the group's flags, which PACKET_FANOUT reads); undefined outside a fanout group. */
  fanout?: number;
  /** Bytes held by the receive queue. */
  rmem: number;
}

/** The request body: packet_diag_req with the attributes above. */
export function packetDiagRequest(): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt8(AF_PACKET, 0);
  b.writeUInt32LE(SHOW, 8);
  return b;
}

function ring(b: Buffer | undefined): PacketRingDiag | undefined {
  if (!b) return undefined;
  const u = (i: number) => b.readUInt32LE(i * 4);
  return { blockSize: u(0), blockNr: u(1), frameSize: u(2), frameNr: u(3), retireTmo: u(4), sizeofPriv: u(5), features: u(6) };
}

/** One SOCK_DIAG_BY_FAMILY reply: packet_diag_msg (16 bytes) and its attributes. */
export function parsePacketDiag(body: Buffer): PacketDiag {
  const a = parseAttrs(body, 16);
  const info = a.get(PACKET_DIAG.INFO);
  if (!info) throw new Error(`a PACKET_DIAG reply for socket ${body.readUInt32LE(4)} has no PACKET_DIAG_INFO`);
  const u = (i: number) => info.readUInt32LE(i * 4);
  const mc = a.get(PACKET_DIAG.MCLIST) ?? Buffer.alloc(0);
  const mclist: PacketMembership[] = [];
  for (let at = 0; at + MCLIST_SIZE <= mc.length; at += MCLIST_SIZE) {
    const alen = mc.readUInt16LE(at + 10);
    mclist.push({
      ifindex: mc.readUInt32LE(at), count: mc.readUInt32LE(at + 4), type: mc.readUInt16LE(at + 8),
      addr: Buffer.from(mc.subarray(at + 12, at + 12 + Math.min(alen, 32))),
    });
  }
  return {
    type: body.readUInt8(1),
    num: body.readUInt16LE(2),
    ino: body.readUInt32LE(4),
    ifindex: u(0), version: u(1), reserve: u(2), copyThresh: u(3), tstamp: u(4), flags: u(5),
    mclist,
    rxRing: ring(a.get(PACKET_DIAG.RX_RING)),
    txRing: ring(a.get(PACKET_DIAG.TX_RING)),
    fanout: a.get(PACKET_DIAG.FANOUT)?.readUInt32LE(0),
    rmem: rmemAlloc(a.get(PACKET_DIAG.MEMINFO)),
  };
}

/** Every packet socket of crest's network namespace, by inode. */
export function listPacketSockets(): Map<number, PacketDiag> {
  return new Map(sockDiagDump(packetDiagRequest(), "packet sockets").map((b) => {
    const d = parsePacketDiag(b);
    return [d.ino, d];
  }));
}
