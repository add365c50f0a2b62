// Packet sockets (sk-packet): raw and datagram sockets bound to lo with
// their options, filter and memberships (one added twice), a fanout group,
// TPACKET_V2 rings mapped by the task and a TPACKET_V3 ring not mapped
// (rings that never carried a packet), vnet header size and other options,
// SOCK_PACKET sockets; files.img PACKETSK entries as crest and crit read
// them, and the ring mapping in mm.img as criu's (VMA_AREA_SOCKET). And
// what crest refuses, the process left running with its socket as it was:
// a frame queued, rings holding or having carried frames (mapped or not),
// a fanout group steered by BPF.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { readImage, IMG, fd_types, type packet_sock_entry } from "../../src/images/index.js";
import { critBatch } from "../crit.js";
import { assertDumpRefused, cycle, imagesDir, type Workload } from "./harness.js";

const SOCK_DGRAM = 2, SOCK_RAW = 3, SOCK_PACKET = 10, VMA_AREA_SOCKET = 1 << 11;
/** A protocol as the image keeps it: network order. */
const net = (p: number) => ((p & 0xff) << 8) | (p >> 8);

function checkImages(w: Workload): void {
  const dir = imagesDir(w);
  const files = readImage(dir, IMG.files);
  const pk = files.filter((f) => f.type === fd_types.PACKETSK).map((f) => f.psk!);
  assert.equal(pk.length, 9, "every packet socket once (the child's raw is the parent's)");
  const one = (pred: (e: packet_sock_entry) => boolean, what: string): packet_sock_entry => {
    const found = pk.filter(pred);
    assert.equal(found.length, 1, what);
    return found[0]!;
  };
  const raw = one((e) => e.protocol === net(0x88b5), "raw");
  assert.deepEqual([raw.type, raw.ifindex, raw.version, raw.aux_data, raw.orig_dev, raw.copy_thresh, raw.opts.so_filter.length], [SOCK_RAW, 1, 1, true, true, 1, 1]);
  const dgram = one((e) => e.protocol === net(0x88b6), "dgram");
  assert.deepEqual([dgram.type, dgram.reserve, dgram.ignore_outgoing, dgram.opts.so_bound_dev], [SOCK_DGRAM, 8, true, "lo"]);
  assert.deepEqual(dgram.mclist.map((m) => m.type).sort(), [1, 1, 2, 3], "PACKET_MR_PROMISC as often as it was added, ALLMULTI, UNICAST");
  const fans = pk.filter((e) => e.protocol === net(0x88b7));
  assert.equal(fans.length, 2);
  assert.ok(fans.every((f) => f.fanout === fans[0]!.fanout && (f.fanout! >>> 24) === 0x10), "one fanout group, with PACKET_FANOUT_FLAG_ROLLOVER");
  const ring = one((e) => !!e.tx_ring, "the socket with a send ring");
  assert.deepEqual([ring.version, ring.reserve, ring.tx_has_off, ring.rx_ring?.block_nr, ring.rx_ring?.frame_size, ring.tx_ring?.block_nr], [1, 32, true, 2, 2048, 1]);
  const ring3 = one((e) => e.version === 2, "the TPACKET_V3 socket");
  assert.deepEqual([ring3.rx_ring?.block_size, ring3.rx_ring?.retire_tmo, ring3.tx_ring], [8192, 50, undefined]);
  const opts = one((e) => e.vnet_hdr, "the socket with a vnet header");
  assert.deepEqual([opts.vnet_hdr_sz, opts.qdisc_bypass, opts.loss, opts.timestamp], [12, true, true, 64]);
  const spkt = pk.filter((e) => e.type === SOCK_PACKET).map((e) => [e.protocol, e.ifindex]).sort();
  assert.deepEqual(spkt, [[0, 0], [net(0x88b9), 1]]);
  // The rings' mapping names the socket's file, as criu's does.
  const mm = readImage(dir, IMG.mm, w.pid)[0]!;
  const ringId = files.find((f) => f.psk === ring)!.id;
  const maps = mm.vmas.filter((v) => v.status & VMA_AREA_SOCKET);
  assert.deepEqual(maps.map((v) => [Number(v.shmid), Number(v.end - v.start)]), [[ringId, 3 * 4096]]);
  // crit reads the entries as criu's own (crest's fields above 4000 are unknown to it and skipped).
  const [r] = critBatch(["decode", "--text", join(dir, "files.img")]);
  assert.ok(r?.ok, r?.error);
  const entries = (JSON.parse(r!.text!) as { entries: Array<{ type: string; psk?: Record<string, unknown> }> }).entries;
  const critPk = entries.filter((e) => e.type === "PACKETSK").map((e) => e.psk!);
  assert.deepEqual(critPk.map((e) => [e.protocol, e.ifindex, e.version]).sort(), pk.map((e) => [e.protocol, e.ifindex, e.version]).sort());
  assert.ok(critPk.every((e) => !("vnet_hdr_sz" in e)));
}

test("sk-packet: bindings, options, memberships, fanout, rings (one mapped) and SOCK_PACKET come back and work", () => cycle("sk-packet", [], checkImages));

test("sk-packet in its own PID namespace", () => cycle("sk-packet", [], undefined, { ns: "pid,ipc,uts" }));

for (const [mode, what] of [
  ["queued", /fd \d+ of process \d+ \(packet raw socket, protocol 0x88b5, inode \d+\) has packets queued that it has not read \(\d+ bytes\)/],
  ["ring", /\(packet raw socket, protocol 0x88b5, inode \d+\) has 1 packet\(s\) in its receive ring \(PACKET_RX_RING\) not handed back to the kernel; crest does not keep the contents of rings/],
  ["ring-used", /\(packet raw socket, protocol 0x88b5, inode \d+\) has a receive ring \(PACKET_RX_RING\) that has carried packets: a ring in use/],
  ["ring-mapped", /packet socket \d+ \(rings mapped at 0x[0-9a-f]+ by process \d+\) has 1 packet\(s\) in its receive ring/],
  ["fanout-bpf", /\(packet raw socket, protocol 0x88b7, inode \d+\) is in fanout group \d+, which a classic BPF program steers \(PACKET_FANOUT_DATA\)/],
] as const) {
  test(`sk-packet ${mode}: refused by name, the process and its socket untouched`, () => assertDumpRefused("sk-packet", [mode], what));
}
