// PACKET_DIAG replies as the kernel gave them (captured on this machine,
// from the sk-packet workload): a raw socket on lo with auxdata and
// origdev, a datagram socket with memberships (one added twice), one in a
// fanout group, one with TPACKET_V2 rings, one with a TPACKET_V3 ring, a
// SOCK_PACKET socket on lo, and one with a frame queued.
import { test } from "node:test";
import assert from "node:assert/strict";
import { packetDiagRequest, parsePacketDiag, PDI } from "../../src/kinds/sockets/packet-diag.js";

const hex = (h: string) => Buffer.from(h, "hex");

test("packet diag: SOCK_RAW on lo, protocol 0x88b5 (host order), TPACKET_V2, auxdata and origdev", () => {
  const d = parsePacketDiag(hex("1103b58866ce070091080000000000001c0000000100000001000000000000000000000000000000070000000800050000000000040001002800060000000000801a060000000000004003000000000000000000880000000000000000000000"));
  assert.deepEqual([d.type, d.num, d.ino, d.ifindex, d.version, d.flags], [3, 0x88b5, 511590, 1, 1, PDI.RUNNING | PDI.AUXDATA | PDI.ORIGDEV]);
  assert.deepEqual([d.mclist, d.rxRing, d.txRing, d.fanout, d.rmem], [[], undefined, undefined, undefined, 0]);
});

test("packet diag: memberships, the promiscuous one added twice", () => {
  const d = parsePacketDiag(hex("1102b68867ce070092080000000000001c00000001000000000000000800000000000000000000000100000008000500000000008800010001000000010000000300060002000000000100000000000000000000000000000000000000000000000000000100000001000000020000000000000000000000000000000000000000000000000000000000000000000000010000000200000001000000000000000000000000000000000000000000000000000000000000000000000028000600000000000040030000000000004003000000000000000000000000000000000000000000"));
  assert.equal(d.reserve, 8);
  assert.deepEqual(d.mclist.map((m) => [m.ifindex, m.type, m.count, m.addr.toString("hex")]), [[1, 3, 1, "020000000001"], [1, 2, 1, ""], [1, 1, 2, ""]]);
});

test("packet diag: a fanout group, its id and type (no flags)", () => {
  assert.equal(parsePacketDiag(hex("1102b78868ce070093080000000000001c00000001000000000000000000000000000000000000000100000008000500000000000400010008000400a753000028000600000000000040030000000000004003000000000000000000000000000000000000000000")).fanout, 0x53a7);
});

test("packet diag: TPACKET_V2 receive and send rings; a TPACKET_V3 receive ring with its block timeout", () => {
  const v2 = parsePacketDiag(hex("110300006ace070095080000000000001c0000000000000001000000200000000000000000000000000000000800050000000000040001002000020000100000020000000008000004000000000000000000000000000000200003000010000001000000000800000200000000000000000000000000000028000600000000000040030000000000004003000000000000000000000000000000000000000000"));
  assert.deepEqual([v2.version, v2.reserve, v2.num, v2.flags], [1, 32, 0, 0]);
  assert.deepEqual(v2.rxRing, { blockSize: 4096, blockNr: 2, frameSize: 2048, frameNr: 4, retireTmo: 0, sizeofPriv: 0, features: 0 });
  assert.deepEqual(v2.txRing, { blockSize: 4096, blockNr: 1, frameSize: 2048, frameNr: 2, retireTmo: 0, sizeofPriv: 0, features: 0 });
  const v3 = parsePacketDiag(hex("110200006bce070096080000000000001c000000000000000200000000000000000000000000000000000000080005000000000004000100200002000020000002000000000800000800000032000000000000000000000028000600000000000040030000000000004003000000000000000000000000000000000000000000"));
  assert.deepEqual([v3.version, v3.rxRing?.retireTmo, v3.rxRing?.frameNr, v3.txRing], [2, 50, 8, undefined]);
});

test("packet diag: SOCK_PACKET bound to lo", () => {
  const d = parsePacketDiag(hex("110ab9886dce070098080000000000001c00000001000000000000000000000000000000000000000100000008000500000000000400010028000600000000000040030000000000004003000000000000000000000000000000000000000000"));
  assert.deepEqual([d.type, d.num, d.ifindex], [10, 0x88b9, 1]);
});

test("packet diag: a frame queued shows in the receive memory", () => {
  assert.equal(parsePacketDiag(hex("1103b58822ca07009e080000000000001c00000001000000000000000000000000000000000000000100000008000500000000000400010028000600400300000040030000000000004003000000000000000000000000000000000000000000")).rmem, 832);
});

test("packet diag: the request asks for info, memberships, rings, fanout and meminfo", () => {
  const r = packetDiagRequest();
  assert.equal(r.length, 20);
  assert.deepEqual([r.readUInt8(0), r.readUInt32LE(8)], [17, 0x1f]);
});
