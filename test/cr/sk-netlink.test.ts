// Netlink sockets (sk-netlink): NETLINK_ROUTE autobound with groups on both
// sides of 32, a datagram one with a negative port id, a uevent socket on a
// chosen port id with a locked filter shared with a child, NETLINK_USERSOCK
// sockets bound, connected to a port id and to a group, in a group without a
// port id, unbound NETLINK_GENERIC and NETLINK_AUDIT ones, one only a unix
// socket's queue holds (in flight); files.img
// NETLINKSK entries as crest and crit read them. And what crest refuses, the
// process left running with its socket as it was: messages queued unread;
// and a port id someone else took meanwhile, which fails the restore naming
// the holder.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readImage, IMG, fd_types, type netlink_sk_entry } from "../../src/images/index.js";
import { critBatch } from "../crit.js";
import { closeSync } from "node:fs";
import { native } from "../../src/sys/native.js";
import { SYS } from "../../src/sys/constants.js";
import { assertDumpRefused, crest, cycle, dumpLog, dumpWorkload, finish, imagesDir, restoreWorkload, startWorkload, stop, type Workload } from "./harness.js";

const ROUTE = 0, USERSOCK = 2, UEVENT = 15, GENERIC = 16, AUDIT = 9;

/** The port ids the workload printed at setup, by socket name. */
function portIds(w: Workload): Record<string, number> {
  const m = /port ids route (-?\d+) route2 (-?\d+) uev (-?\d+) usr (-?\d+) conn (-?\d+) mconn (-?\d+)/.exec(readFileSync(w.log, "utf8"));
  assert.ok(m, "the workload printed its port ids");
  const [route, route2, uev, usr, conn, mconn] = m.slice(1).map((v) => Number(v) >>> 0);
  return { route: route!, route2: route2!, uev: uev!, usr: usr!, conn: conn!, mconn: mconn! };
}

function checkImages(w: Workload): void {
  const dir = imagesDir(w);
  const nl = readImage(dir, IMG.files).filter((f) => f.type === fd_types.NETLINKSK).map((f) => f.nlsk!);
  assert.equal(nl.length, 10, "every netlink socket once (the child's uev is the parent's), the one in flight too");
  const p = portIds(w);
  const by = (pred: (e: netlink_sk_entry) => boolean, what: string): netlink_sk_entry => {
    const found = nl.filter(pred);
    assert.equal(found.length, 1, what);
    return found[0]!;
  };
  const route = by((e) => e.protocol === ROUTE && e.sk_type === undefined, "one raw NETLINK_ROUTE socket");
  assert.deepEqual([route.portid, route.groups], [p.route, [0x11, 0x9]], "route: its port id, groups 1 and 5, and 33 and 36 above the first word");
  assert.deepEqual([route.ext_ack, route.get_strict_chk, route.cap_ack, route.pktinfo], [true, true, true, undefined]);
  const route2 = by((e) => e.protocol === ROUTE && e.sk_type === 2, "one datagram NETLINK_ROUTE socket (sk_type 2)");
  assert.equal(route2.portid, p.route2, "route2: the negative port id autobind gave, as u32");
  assert.ok(route2.flags & 0o4000, "route2 is O_NONBLOCK");
  const uev = by((e) => e.protocol === UEVENT, "one uevent socket");
  assert.deepEqual([uev.portid, uev.groups, uev.sk_type], [p.uev, [1], 2]);
  // criu's layout of an instruction: code << 48 | jt << 40 | jf << 32 | k.
  assert.deepEqual(uev.opts.so_filter, [0x20n << 48n, (0x15n << 48n) | (1n << 32n) | 0x63727374n, (0x06n << 48n) | 0xffffn, 0x06n << 48n], "uev's filter, 4 instructions, as criu writes them");
  assert.equal(uev.opts.so_lock_filter, true);
  const usr = by((e) => e.protocol === USERSOCK && e.portid === p.usr, "usr");
  assert.deepEqual([usr.groups, usr.pktinfo, usr.no_enobufs, usr.broadcast_error, usr.opts.so_passcred], [[0x10], true, true, true, true]);
  const conn = by((e) => e.protocol === USERSOCK && e.portid === p.conn, "conn");
  assert.deepEqual([conn.state, conn.dst_portid, conn.dst_group], [1, p.usr, 0], "conn is connected to usr");
  const mconn = by((e) => e.protocol === USERSOCK && e.portid === p.mconn, "mconn");
  assert.deepEqual([mconn.state, mconn.dst_portid, mconn.dst_group], [1, p.usr, 7], "mconn is connected to usr and group 7");
  const grp = by((e) => e.protocol === USERSOCK && e.portid === 0, "grp");
  assert.deepEqual(grp.groups, [0x40], "grp is in group 7 without a port id");
  const flight = by((e) => e.protocol === USERSOCK && e.groups.length === 1 && e.groups[0] === 0x4, "the socket in flight, in group 3");
  assert.equal(flight.portid >>> 24, 0x45, "its chosen port id");
  const queued = readImage(dir, IMG.skQueues).filter((p) => p.entry.scm?.some((c) => c.rights.includes(flight.id)));
  assert.equal(queued.length, 1, "a queued datagram carries it (SCM_RIGHTS)");
  for (const proto of [GENERIC, AUDIT]) {
    const e = by((x) => x.protocol === proto, `one socket of protocol ${proto}`);
    assert.deepEqual([e.portid, e.groups, e.state], [0, [], 0], "neither bound nor connected");
  }
  // crit reads the entries as criu's own (crest's fields above 4000 are unknown to it and skipped).
  const [r] = critBatch(["decode", "--text", join(dir, "files.img")]);
  assert.ok(r?.ok, r?.error);
  const entries = (JSON.parse(r!.text!) as { entries: Array<{ type: string; nlsk?: Record<string, unknown> }> }).entries;
  const critNl = entries.filter((e) => e.type === "NETLINKSK").map((e) => e.nlsk!);
  assert.deepEqual(critNl.map((e) => [e.ino, e.portid, e.groups ?? []]).sort(), nl.map((e) => [e.ino, e.portid, e.groups]).sort());
  assert.ok(critNl.every((e) => !("pktinfo" in e) && !("sk_type" in e)));
}

test("sk-netlink: port ids, groups, destinations, options and a shared socket come back and work", () => cycle("sk-netlink", [], checkImages));

test("sk-netlink in its own PID namespace", () => cycle("sk-netlink", [], undefined, { ns: "pid,ipc,uts" }));

test("sk-netlink queued: a socket with a message not read is refused by name, the process and its message untouched", () =>
  assertDumpRefused("sk-netlink", ["queued"], /fd \d+ of process \d+ \(netlink raw socket, NETLINK_USERSOCK, inode \d+\) has messages queued that it has not read \(\d+ bytes\); crest cannot put them back/));

test("sk-netlink: a port id taken since the dump fails the restore, naming who holds it; freed, the restore works", () => {
  const w = startWorkload("sk-netlink");
  let fd = -1;
  try {
    dumpWorkload(w);
    const port = portIds(w).uev;
    // This process takes the uevent socket's port id.
    fd = native.syscall(SYS.socket, 16 /* AF_NETLINK */, 2 /* SOCK_DGRAM */ | 0o2000000 /* SOCK_CLOEXEC */, UEVENT);
    assert.ok(fd >= 0);
    const addr = Buffer.alloc(12);
    addr.writeUInt16LE(16, 0);
    addr.writeUInt32LE(port, 4);
    assert.equal(native.syscall(SYS.bind, fd, addr, 12), 0);
    const r = crest(["restore", "-D", imagesDir(w), "-o", "restore.log", "-v4", "-d"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`NETLINK_KOBJECT_UEVENT port id ${port} is taken by socket \\d+ \\(fd ${fd} of process ${process.pid} \\(node\\)\\) \\(EADDRINUSE\\); free it and restore again`));
    assert.match(dumpLog(w, "restore.log"), /Restoring FAILED/);
    closeSync(fd);
    fd = -1;
    restoreWorkload(w);
    assert.equal(finish(w), "PASS");
  } finally {
    if (fd >= 0) closeSync(fd);
    stop(w);
  }
});
