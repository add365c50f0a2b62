// `ip route save` streams as route-N.img and route6-N.img hold them, with
// the kernel's linkdown and dead state cleared for `ip route restore`.
// Captured on this machine: ROUTE and ROUTE6 are the images of a nested
// namespace of nested-ns test 5 whose veth vin had lost its carrier at dump
// (10.217.0.0/24 dev vin linkdown; fe80::/64 dev vin linkdown); MULTIPATH is
// a namespace with veths va (peer down) and vc (peer up), 10.9.0.0/24 dev va
// linkdown, 10.9.1.0/24 dev vc, and 10.50.0.0/16 with a nexthop via va
// (onlink linkdown) and one via vc.
import { test } from "node:test";
import assert from "node:assert/strict";
import { clearKernelRouteState, RTNH_F_DEAD, RTNH_F_LINKDOWN } from "../../src/kinds/namespaces/route-dump.js";

const ROUTE = Buffer.from("JBIxRTwAAAAYACIAMpAVa2RDAAACGAAA/gL9ARAAAAAIAA8A/gAAAAgAAQAK2QAACAAHAArZAAIIAAQAAgAAAA==", "base64");
const ROUTE6 = Buffer.from(
  "JBIxRXQAAAAYACIAMpAVa2VDAAAKQAAA/gIAARAAAAAIAA8A/gAAABQAAQD+gAAAAAAAAAAAAAAAAAAACAAGAAABAAAIAAQAAgAAACQADAAAAAAAAAAAAAAAAAAA" +
  "AAAAAAAAAAAAAAAAAAAAAAAAAAUAFAAAAAAA", "base64");
const MULTIPATH = Buffer.from(
  "JBIxRTwAAAAYACIArZAVa+1nAAACGAAA/gL9ARAAAAAIAA8A/gAAAAgAAQAKCQAACAAHAAoJAAEIAAQAAwAAADwAAAAYACIArZAVa+1nAAACGAAA/gL9AQAAAAAI" +
  "AA8A/gAAAAgAAQAKCQEACAAHAAoJAQEIAAQABQAAAFAAAAAYACIArZAVa+1nAAACEAAA/gMAAQAAAAAIAA8A/gAAAAgAAQAKMgAAJAAJABAAFAADAAAACAAFAAoJ" +
  "AAIQAAAABQAAAAgABQAKCQEC", "base64");

/** rtm_flags of the route message starting at `off` (4 + the lengths of the messages before). */
const rtmFlags = (b: Buffer, off: number): number => b.readUInt32LE(off + 16 + 8);
/** The offsets at which the bytes of two buffers of one length differ. */
function diffs(a: Buffer, b: Buffer): number[] {
  assert.equal(a.length, b.length);
  return [...a.keys()].filter((i) => a[i] !== b[i]);
}

test("route dump: a route through a link without carrier loses RTNH_F_LINKDOWN, nothing else, and the image's bytes are untouched", () => {
  const before = Buffer.from(ROUTE);
  assert.equal(rtmFlags(ROUTE, 4), RTNH_F_LINKDOWN);
  const r = clearKernelRouteState(ROUTE);
  assert.deepEqual({ routes: r.routes, cleared: r.cleared }, { routes: 1, cleared: 1 });
  assert.equal(rtmFlags(r.data, 4), 0);
  assert.deepEqual(diffs(ROUTE, r.data), [4 + 16 + 8], "only rtm_flags changed");
  assert.ok(ROUTE.equals(before), "the input is left as read");
});

test("route dump: the IPv6 stream is cleared the same way", () => {
  const r = clearKernelRouteState(ROUTE6);
  assert.deepEqual({ routes: r.routes, cleared: r.cleared }, { routes: 1, cleared: 1 });
  assert.deepEqual(diffs(ROUTE6, r.data), [4 + 16 + 8]);
  assert.equal(rtmFlags(r.data, 4), 0);
});

test("route dump: a multipath route's nexthop loses LINKDOWN and keeps ONLINK; a route without the state is left alone", () => {
  const r = clearKernelRouteState(MULTIPATH);
  assert.deepEqual({ routes: r.routes, cleared: r.cleared }, { routes: 3, cleared: 2 });
  // Messages of 0x3c, 0x3c and 0x50 bytes; the third's RTA_MULTIPATH is at 28 into it, its first nexthop right after (flags at +2).
  const third = 4 + 0x3c + 0x3c;
  const nh1Flags = third + 28 + 8 + 8 + 4 + 2;
  assert.equal(MULTIPATH.readUInt16LE(third + 28 + 16 + 2), 9, "RTA_MULTIPATH where expected");
  assert.equal(MULTIPATH[nh1Flags], 0x14, "captured: onlink linkdown");
  assert.equal(r.data[nh1Flags], 0x04, "onlink kept");
  assert.deepEqual(diffs(MULTIPATH, r.data), [4 + 16 + 8, nh1Flags]);
});

test("route dump: RTNH_F_DEAD is cleared too, other rtm_flags (RTM_F_CLONED) kept; a stream without either comes back equal", () => {
  const dead = Buffer.from(MULTIPATH);
  const second = 4 + 0x3c;
  dead.writeUInt32LE(RTNH_F_DEAD | 0x200, second + 16 + 8);
  const r = clearKernelRouteState(dead);
  assert.equal(rtmFlags(r.data, second), 0x200);
  assert.equal(r.cleared, 3);
  const clean = clearKernelRouteState(r.data);
  assert.equal(clean.cleared, 0);
  assert.ok(clean.data.equals(r.data));
});

test("route dump: a stream that does not hold together is refused, saying where", () => {
  assert.throws(() => clearKernelRouteState(Buffer.from([1, 2])), /not an `ip route save` stream \(2 bytes/);
  const ifaddr = Buffer.from(ROUTE);
  ifaddr.writeUInt32LE(0x47361222, 0);
  assert.throws(() => clearKernelRouteState(ifaddr), /magic 0x47361222, expected magic 0x45311224/);
  assert.throws(() => clearKernelRouteState(ROUTE.subarray(0, ROUTE.length - 4)), /the netlink message at offset 4 says 60 bytes, 56 are left/);
  assert.throws(() => clearKernelRouteState(Buffer.concat([ROUTE, Buffer.alloc(6)])), /6 bytes at offset 64 are no netlink message/);
  const longNexthop = Buffer.from(MULTIPATH);
  longNexthop.writeUInt16LE(0x40, 4 + 0x3c + 0x3c + 28 + 16 + 4); // the first nexthop, past the RTA_MULTIPATH of 0x24 bytes
  assert.throws(() => clearKernelRouteState(longNexthop), /has a nexthop of 64 bytes at offset \d+, past its RTA_MULTIPATH/);
  // The magic alone (a namespace without routes) is a stream of no routes.
  assert.deepEqual(clearKernelRouteState(ROUTE.subarray(0, 4)).routes, 0);
});
