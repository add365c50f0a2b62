// INET_DIAG replies as the kernel gave them (captured on this machine): a
// TCP listener on 127.0.0.1 (backlog 511), and both ends of a connection to
// it whose client shut down its sending side with 5 bytes unread; and the
// network lock's nftables script and iptables rules for connections.
import { test } from "node:test";
import assert from "node:assert/strict";
import { inetDiagRequest, parseInetDiag } from "../../src/kinds/sockets/inet-diag.js";
import { addressText, iptablesRules, nftLockScript, nftTable, unlockCommand } from "../../src/kinds/sockets/netlock.js";

const hex = (h: string) => Buffer.from(h, "hex");
const LOOPBACK = 0x0100007f; // 127.0.0.1 as the kernel's bytes read little-endian

test("inet diag: a listener, its backlog and no connection waiting", () => {
  const d = parseInetDiag(hex("020a0000989f00007f000001000000000000000000000000000000000000000000000000000000000000000080080000000000000000000000000000ff01000000000000ffcc0700050008000000000008000f00000000000c00150001000000000000000600160052000000"));
  assert.deepEqual(d, { family: 2, state: 10, srcPort: 0x989f, dstPort: 0, src: [LOOPBACK, 0, 0, 0], dst: [0, 0, 0, 0], rqueue: 0, wqueue: 511, ino: 0x07ccff, shutdown: 0 });
});

test("inet diag: a half-closed connection, each end's state, queue and shutdown bits", () => {
  const server = parseInetDiag(hex("02080000989f9d8a7f0000010000000000000000000000007f0000010000000000000000000000000000000081080000000000000000000000000000000000000000000001cd0700050008000100000008000f00000000000c00150001000000000000000600160052000000"));
  const client = parseInetDiag(hex("020500009d8a989f7f0000010000000000000000000000007f0000010000000000000000000000000000000082080000000000000000000005000000000000000000000000cd0700050008000200000008000f00000000000c00150001000000000000000600160052000000"));
  assert.deepEqual([server.state, server.shutdown, server.srcPort, server.dstPort], [8, 1, 0x989f, 0x9d8a], "CLOSE_WAIT, its receiving side shut by the FIN");
  assert.deepEqual([client.state, client.shutdown, client.rqueue, client.ino], [5, 2, 5, 0x07cd00], "FIN_WAIT2, sending side shut, 5 bytes to read");
});

test("inet diag: the request asks for every state of one family and protocol", () => {
  const r = inetDiagRequest(10, 17);
  assert.deepEqual([r.length, r[0], r[1], r.readUInt32LE(4)], [56, 10, 17, 0xffffffff]);
});

const v4 = { family: 2, src: [LOOPBACK], srcPort: 5900, dst: [LOOPBACK], dstPort: 40112 };
const v6 = { family: 10, src: [0, 0, 0, 0x01000000], srcPort: 22, dst: [0x000080fe, 0, 0, 0x01000000], dstPort: 50000 };
const mapped = { family: 10, src: [0, 0, 0xffff0000, LOOPBACK], srcPort: 80, dst: [0, 0, 0xffff0000, 0x0200000a], dstPort: 1234 };

test("addresses in text, as nft and iptables take them", () => {
  assert.equal(addressText(2, [LOOPBACK]), "127.0.0.1");
  assert.equal(addressText(10, v6.src), "::1");
  assert.equal(addressText(10, v6.dst), "fe80::1");
});

test("the nftables lock: criu's table, chains and sets, both directions of each connection once", () => {
  const table = nftTable("0123456789abcdef-0123-4567-89ab-cdef01234567");
  assert.equal(table, "inet CRIU-0123456789abcdef-0123", "cut to criu's 31 characters");
  const script = nftLockScript(table, [v4, { ...v4, src: v4.dst, srcPort: v4.dstPort, dst: v4.src, dstPort: v4.srcPort }, v6, mapped]);
  assert.match(script, /^add table inet CRIU-0123456789abcdef-0123\n/);
  assert.match(script, /add rule .* input meta mark 49428 accept/);
  assert.match(script, /add element inet CRIU-0123456789abcdef-0123 conns4 \{ 127\.0\.0\.1 \. 40112 \. 127\.0\.0\.1 \. 5900, 127\.0\.0\.1 \. 5900 \. 127\.0\.0\.1 \. 40112, 10\.0\.0\.2 \. 1234 \. 127\.0\.0\.1 \. 80, 127\.0\.0\.1 \. 80 \. 10\.0\.0\.2 \. 1234 \}\n/,
    "a loopback pair's two ends name the same two directions; a v4-mapped connection is locked as IPv4");
  assert.match(script, /conns6 \{ fe80::1 \. 50000 \. ::1 \. 22, ::1 \. 22 \. fe80::1 \. 50000 \}/);
});

test("the iptables lock: criu's rules, INPUT from the peer and OUTPUT to it", () => {
  assert.deepEqual(iptablesRules([v4], false, "-I"), [
    "-I INPUT --protocol tcp -m mark ! --mark 0xC114 --source 127.0.0.1 --sport 40112 --destination 127.0.0.1 --dport 5900 -j DROP",
    "-I OUTPUT --protocol tcp -m mark ! --mark 0xC114 --source 127.0.0.1 --sport 5900 --destination 127.0.0.1 --dport 40112 -j DROP",
  ]);
  assert.equal(iptablesRules([v6], true, "-D").length, 2);
  assert.match(unlockCommand("iptables", "x", [v4]), /^iptables -w -D INPUT .*; iptables -w -D OUTPUT /);
  assert.equal(unlockCommand("nftables", "abc", [v4]), "nft delete table inet CRIU-abc");
});
