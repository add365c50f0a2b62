// What a packet socket's rings (PACKET_RX_RING, PACKET_TX_RING) hold, read
// by crest through a mapping of its own copy of the socket: the kernel maps
// the receive ring's blocks, then the send ring's, at offset 0.
//
// crest keeps a ring only as a new one: its geometry, not its frames, nor
// where the kernel is in it (no interface gives that). So a ring must never
// have carried a packet: every frame header still zero (the kernel hands
// rings out zeroed; a frame the kernel filled keeps its length after the
// program gives it back), and for a TPACKET_V3 receive ring, no block but
// the first one the kernel opened at setup, with no packet in it.
import { SYS, MAP, PROT } from "../../sys/constants.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import type { PacketRingDiag } from "./packet-diag.js";

export const TPACKET_V1 = 0, TPACKET_V2 = 1, TPACKET_V3 = 2;
/** Bytes read at once. */
const CHUNK = 1 << 20;
/** The most of a frame header or block descriptor looked at. */
const HEADER = 32;

export const ringBytes = (r: PacketRingDiag | undefined): number => (r ? r.blockSize * r.blockNr : 0);

/** Reads [addr, addr + len) of crest's own memory. */
function readOwn(addr: number, len: number, what: string): Buffer {
  const buf = Buffer.alloc(len);
  const local = new BigUint64Array([BigInt(native.address(buf)), BigInt(len)]);
  const remote = new BigUint64Array([BigInt(addr), BigInt(len)]);
  const got = check(native.syscall(SYS.process_vm_readv, native.syscall(SYS.getpid), local, 1, remote, 1, 0), `read the rings of ${what}`);
  if (got !== len) throw new Error(`read the rings of ${what}: ${got} bytes of ${len}`);
  return buf;
}

/**
 * Where a frame header keeps its status and length: tpacket_hdr (V1: an
 * unsigned long status, then the length), tpacket2_hdr (V2), tpacket3_hdr
 * (V3: send frames only; status at 20, length at 16).
 */
const FRAME_FIELDS: Record<number, { status: number; len: number }> = { [TPACKET_V1]: { status: 0, len: 8 }, [TPACKET_V2]: { status: 0, len: 4 }, [TPACKET_V3]: { status: 20, len: 16 } };

/** What one ring holds: frames (packets) not the kernel's or not free, and whether it ever carried one. */
export interface RingState {
  held: number;
  used: boolean;
}

type Mem = (off: number) => Buffer;

function frames(mem: Mem, base: number, r: PacketRingDiag, version: number): RingState {
  const f = FRAME_FIELDS[version] ?? FRAME_FIELDS[TPACKET_V2]!;
  const perBlock = Math.floor(r.blockSize / r.frameSize);
  const s: RingState = { held: 0, used: false };
  for (let i = 0; i < r.frameNr; i++) {
    const h = mem(base + Math.floor(i / perBlock) * r.blockSize + (i % perBlock) * r.frameSize);
    if (h.readUInt32LE(f.status)) s.held++;
    s.used ||= h.readUInt32LE(f.status) !== 0 || h.readUInt32LE(f.len) !== 0;
  }
  return s;
}

/**
 * A TPACKET_V3 receive ring: each block starts with tpacket_block_desc
 * (version, offset_to_priv, then tpacket_hdr_v1: block_status at 8,
 * num_pkts at 12, seq_num at 24; the kernel opens block 0 with seq_num 1).
 */
function v3Blocks(mem: Mem, r: PacketRingDiag): RingState {
  const s: RingState = { held: 0, used: false };
  for (let b = 0; b < r.blockNr; b++) {
    const d = mem(b * r.blockSize);
    const status = d.readUInt32LE(8), pkts = d.readUInt32LE(12), seq = d.readBigUInt64LE(24);
    if (status || pkts) s.held += Math.max(1, pkts);
    s.used ||= status !== 0 || pkts !== 0 || seq > (b === 0 ? 1n : 0n);
  }
  return s;
}

/** The state of each ring of a socket crest holds (TPACKET `version`). */
export function ringStates(fd: number, version: number, rx: PacketRingDiag | undefined, tx: PacketRingDiag | undefined, what: string): { rx?: RingState; tx?: RingState } {
  const size = ringBytes(rx) + ringBytes(tx);
  if (!size) return {};
  const addr = check(native.syscall(SYS.mmap, 0, size, PROT.READ, MAP.SHARED, fd, 0), `map the rings of ${what}`);
  try {
    // Read a chunk at a time, as the walk reaches it; a header across chunks on its own.
    const chunks = new Map<number, Buffer>();
    const mem: Mem = (off) => {
      const c = Math.floor(off / CHUNK);
      if (off + HEADER > (c + 1) * CHUNK) return readOwn(addr + off, HEADER, what);
      let b = chunks.get(c);
      if (!b) {
        b = readOwn(addr + c * CHUNK, Math.min(CHUNK, size - c * CHUNK), what);
        chunks.set(c, b);
      }
      return b.subarray(off - c * CHUNK);
    };
    return {
      rx: rx && (version === TPACKET_V3 ? v3Blocks(mem, rx) : frames(mem, 0, rx, version)),
      tx: tx && frames(mem, ringBytes(rx), tx, version),
    };
  } finally {
    native.syscall(SYS.munmap, addr, size);
  }
}
