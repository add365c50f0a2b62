// Unix sockets (sk-unix): socketpairs of every type with data in flight both
// ways, a half-closed one, options and flags, peers in two processes and one
// socket shared by both, a listener bound to a path with an accepted
// connection, an abstract name; crit decodes files.img's usk entries and
// sk-queues.img; a relative name, a pipe in flight and a TCP listener, once refused. And
// what crest still refuses, the process left running with its socket as it
// was: messages queued with their senders' credentials, a peek offset.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readImage, IMG, fd_types } from "../../src/images/index.js";
import { assertDumpRefused, cycle, imagesDir, type Workload } from "./harness.js";

function checkImages(w: Workload): void {
  const dir = imagesDir(w);
  const usk = readImage(dir, IMG.files).filter((f) => f.type === fd_types.UNIXSK).map((f) => f.usk!);
  const byIno = new Map(usk.map((u) => [u.ino, u]));
  assert.ok(usk.length >= 12, `every socket is dumped (${usk.length})`);
  for (const u of usk.filter((s) => s.peer && byIno.get(s.peer)?.name.length === 0)) assert.equal(byIno.get(u.peer)?.peer, u.ino, `socket ${u.ino} and its peer name each other`);
  assert.equal(usk.filter((u) => !u.peer).length, 3, "the unconnected socket, the listener, the abstract one");
  const oneWay = usk.filter((u) => u.peer && byIno.get(u.peer)?.peer !== u.ino);
  assert.deepEqual(oneWay.map((u) => [u.type, byIno.get(u.peer)?.state]).sort(), [[1, 10], [2, 1]], "the waiting connection names its listener; the datagram client its server (ESTABLISHED, as the kernel marks a datagram socket another connected to)");
  const listener = usk.find((u) => u.state === 10)!;
  assert.match(listener.name.toString(), /\/lsn\0$/, "a path with its NUL, as criu writes it");
  assert.deepEqual([listener.backlog, listener.file_perms?.mode], [5, 0o140640]);
  assert.ok(usk.some((u) => u.type === 2 && u.name.toString("latin1") === `\0crest-sk-unix-${w.pid}`), "the abstract name, NUL first");
  const queued = new Map<number, number[]>();
  for (const p of readImage(dir, IMG.skQueues)) queued.set(p.entry.id_for, [...(queued.get(p.entry.id_for) ?? []), p.data.length]);
  const of = (type: number) => usk.filter((u) => u.type === type && queued.has(u.id)).map((u) => queued.get(u.id)!);
  assert.deepEqual(of(2).sort((a, b) => a.length - b.length), [[5, 300], [1, 700, 4000]], "the datagrams, each a packet of its own");
  assert.deepEqual(of(5), [[10, 2000]], "the two records");
  const streams = of(1).map((sizes) => sizes.reduce((a, b) => a + b, 0)).sort((a, b) => a - b);
  assert.deepEqual(streams, [7, 100, 123, 500, 3000, 50000], "stream bytes queued, per socket");
  assert.ok(usk.some((u) => u.type === 1 && u.shutdown === 2), "the half-closed sender");
  assert.ok(usk.some((u) => u.opts.so_passcred), "SO_PASSCRED");
}

test("sk-unix: socketpairs with data in flight, half-closed, options, peers in two processes", () => cycle("sk-unix", [], checkImages));

test("sk-unix in its own PID namespace", () => cycle("sk-unix", [], undefined, { ns: "pid,ipc,uts" }));

// What crest once refused and now keeps (test/cr/sk-unix-more.test.ts has more).
for (const mode of ["listen", "scm", "tcp"]) test(`sk-unix ${mode}: kept`, () => cycle("sk-unix", [mode]));

for (const [mode, what] of [
  ["creds", /has SO_PASSCRED and messages queued with their senders' credentials; crest cannot send them again/],
  // CRIU 4.2's sk_opts_entry has no field for it either.
  ["peekoff", /has a peek offset \(SO_PEEK_OFF 3\), which CRIU's images \(sk_opts_entry\) cannot hold; crest does not support it/],
] as const) {
  test(`sk-unix ${mode}: refused by name, the process and its socket untouched`, () => assertDumpRefused("sk-unix", [mode], what));
}
