// NETLINK_DIAG replies as the kernel gave them (captured on this machine,
// from the sk-netlink workload): a NETLINK_ROUTE socket autobound with
// groups on both sides of 32, a NETLINK_USERSOCK socket bound with one
// group and three NDIAG flags, one connected to a port id and a group, one
// in a group without a port id, and one with a message queued.
import { test } from "node:test";
import assert from "node:assert/strict";
import { netlinkDiagRequest, parseNetlinkDiag, NDIAG_FLAG_CB_RUNNING } from "../../src/kinds/sockets/netlink-diag.js";
import { groupNumbers } from "../../src/kinds/sockets/netlink.js";

const hex = (h: string) => Buffer.from(h, "hex");

test("netlink diag: NETLINK_ROUTE autobound, groups 1, 5, 33 and 36, NETLINK_CAP_ACK", () => {
  const d = parseNetlinkDiag(hex("10030007964300000000000000000000f5c9070088080000000000000c00010011000000090000002800000000000000c0270900000000000040030000000000000000000000000000000000000000000800040020000000"));
  assert.deepEqual(d, { type: 3, protocol: 0, state: 7, portid: 17302, dstPortid: 0, dstGroup: 0, ino: 510453, groups: [0x11, 0x9], rmem: 0, flags: 0x20 });
  assert.deepEqual(groupNumbers(d.groups), [1, 5, 33, 36]);
});

test("netlink diag: NETLINK_USERSOCK bound to a chosen port id and group 5, PKTINFO, BROADCAST_ERROR, NO_ENOBUFS", () => {
  const d = parseNetlinkDiag(hex("10030207792d1f440000000000000000f8c907008a080000000000000c000100100000000000000028000000000000000040030000000000004003000000000000000000000000000000000000000000080004000e000000"));
  assert.deepEqual([d.protocol, d.portid, d.groups, d.flags, d.state], [2, 1142893945, [0x10], 0xe, 7]);
  assert.deepEqual(groupNumbers(d.groups), [5]);
});

test("netlink diag: connected to a port id and group 7; in group 7 with no port id", () => {
  const c = parseNetlinkDiag(hex("100302013496c487792d1f4407000000fbc907008c08000000000000280000000000000000400300000000000040030000000000000000000000000000000000000000000800040000000000"));
  assert.deepEqual([c.state, c.portid, c.dstPortid, c.dstGroup, c.groups], [1, 2277807668, 1142893945, 7, []]);
  const g = parseNetlinkDiag(hex("10030207000000000000000000000000fac907008d080000000000000c0001004000000000000000280000000000000000400300000000000040030000000000000000000000000000000000000000000800040000000000"));
  assert.deepEqual([g.portid, g.groups, groupNumbers(g.groups)], [0, [0x40], [7]]);
});

test("netlink diag: a message queued shows in the receive memory", () => {
  const d = parseNetlinkDiag(hex("10030207ee430000000000000000000019ca07009b08000000000000280000004003000000400300000000000040030000000000000000000000000000000000000000000800040000000000"));
  assert.equal(d.rmem, 832);
  assert.equal((d.flags ?? 0) & NDIAG_FLAG_CB_RUNNING, 0);
});

test("netlink diag: the request asks for every protocol with meminfo, groups and flags", () => {
  const r = netlinkDiagRequest();
  assert.equal(r.length, 20);
  assert.deepEqual([r.readUInt8(0), r.readUInt8(1), r.readUInt32LE(4), r.readUInt32LE(8)], [16, 255, 0, 0xb]);
});
