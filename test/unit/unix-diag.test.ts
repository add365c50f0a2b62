// UNIX_DIAG replies as the kernel gave them (captured on this machine): a
// listener bound to a path with one connection waiting, the client of that
// connection, and a stream socketpair with data queued one way and shut
// down that way.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseUnixDiag, unixDiagRequest } from "../../src/kinds/sockets/unix-diag.js";

const hex = (h: string) => Buffer.from(h, "hex");

test("unix diag: a listener bound to a path, with its waiting connection", () => {
  const d = parseUnixDiag(hex("01010a00d13f17006b13000000000000130000002f746d702f736b742f6c736f636b00000c0001001d0923000000e00f08000300d23f17000c00040001000000070000000500060000000000"));
  assert.deepEqual({ ...d, name: d.name.toString("latin1") }, {
    type: 1, state: 10, ino: 1523665, name: "/tmp/skt/lsock", vfs: { ino: 2296093, dev: 266338304 },
    peer: 0, icons: [1523666], rqlen: 1, wqlen: 7, shutdown: 0,
  });
});

test("unix diag: the connecting client has no peer the kernel can name", () => {
  const d = parseUnixDiag(hex("01010100d23f17006a1300000000000008000200000000000c00040000000000000000000500060000000000"));
  assert.equal(d.ino, 1523666);
  assert.equal(d.peer, 0);
  assert.equal(d.state, 1);
  assert.equal(d.name.length, 0);
  assert.equal(d.vfs, undefined);
});

test("unix diag: a socketpair, five bytes queued and the sender shut for writing", () => {
  const rcv = parseUnixDiag(hex("01010100d43f17006c1300000000000008000200d33f17000c00040005000000000000000500060001000000"));
  const snd = parseUnixDiag(hex("01010100d33f17006d1300000000000008000200d43f17000c00040000000000000300000500060002000000"));
  assert.deepEqual([rcv.ino, rcv.peer, rcv.rqlen, rcv.shutdown], [1523668, 1523667, 5, 1]);
  assert.deepEqual([snd.ino, snd.peer, snd.wqlen, snd.shutdown], [1523667, 1523668, 768, 2]);
});

test("unix diag: the request asks for every state and the attributes crest reads", () => {
  const r = unixDiagRequest();
  assert.equal(r.length, 24);
  assert.equal(r.readUInt8(0), 1);
  assert.equal(r.readUInt32LE(4), 0xffffffff);
  assert.equal(r.readUInt32LE(12), 0x1f);
});
