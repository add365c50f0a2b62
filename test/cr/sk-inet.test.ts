// IPv4 and IPv6 sockets (sk-inet): TCP listeners, loopback connections with
// data in flight both ways, half-closed and across two processes, IPv6 and
// IPv4-mapped ones, UDP sockets bound, connected, sharing a port, with
// options; dumped and restored with --tcp-established. A connection to a
// peer outside the tree (sk-tcp-stream) keeps one unbroken stream each way
// across the checkpoint, with either network lock, and across a dump that
// fails at any step or leaves the tree running. crit decodes files.img's
// isk entries and the tcp-stream images. No network lock is left behind but
// by a dump whose tree is gone and whose restore has not happened yet.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readImage, IMG, fd_types } from "../../src/images/index.js";
import { sleepMs } from "../../src/sys/syscalls.js";
import {
  alive, assertDumpRefused, crest, critDecodeAll, dumpLog, dumpWorkload, finish, imagesDir, restoreWorkload, startWorkload, stop,
  waitFor, type Workload,
} from "./harness.js";

/** The network-lock tables (nftables) and rules (iptables) there are now. */
function locks(): string[] {
  const nft = spawnSync("nft", ["list", "tables"], { encoding: "utf8" }).stdout.split("\n").filter((l) => l.includes("CRIU-"));
  const ipt = ["iptables", "ip6tables"].flatMap((c) => spawnSync(c, ["-w", "-S"], { encoding: "utf8" }).stdout.split("\n").filter((l) => l.includes("0xc114")));
  return [...nft, ...ipt];
}

/** Runs fn and checks it left no network lock behind. */
function noLockLeft(fn: () => void): void {
  const before = locks();
  try {
    fn();
  } finally {
    assert.deepEqual(locks(), before, "no network lock is left behind");
  }
}

/** dump, crit, check, restore, verdict: with the options given to both commands. */
function cycleWith(name: string, args: string[], opts: string[], check?: (w: Workload) => void, ns?: string): void {
  noLockLeft(() => {
    const w = startWorkload(name, args, ns ? { ns } : {});
    try {
      dumpWorkload(w, opts);
      assert.deepEqual(critDecodeAll(imagesDir(w)), [], "crit decodes every image");
      check?.(w);
      restoreWorkload(w, opts);
      assert.equal(finish(w), "PASS");
    } finally {
      stop(w);
    }
  });
}

test("sk-inet: TCP and UDP over IPv4 and IPv6, connections with data in flight, with --tcp-established", () => cycleWith("sk-inet", ["all"], ["--tcp-established"], (w) => {
  const dir = imagesDir(w);
  const isk = readImage(dir, IMG.files).filter((f) => f.type === fd_types.INETSK).map((f) => f.isk!);
  assert.equal(isk.length, 22, "the 21 inet sockets of the parent and the child's own");
  const connected = isk.filter((e) => e.proto === 6 && e.dst_port && e.state !== 10);
  assert.equal(connected.length, 10, "both ends of five connections");
  const states = connected.map((e) => e.state).sort((a, b) => a - b);
  assert.deepEqual(states, [1, 1, 1, 1, 1, 1, 1, 1, 5, 8], "established, FIN_WAIT2 and CLOSE_WAIT");
  const streams = connected.map((e) => readImage(dir, IMG.tcpStream, e.ino)[0]!);
  assert.ok(streams.some((s) => s.entry.outq_len > 0 && (s.entry.unsq_len ?? 0) > 0), "data never sent is kept apart");
  assert.ok(streams.every((s) => s.inq.length === s.entry.inq_len && s.outq.length === s.entry.outq_len));
  assert.equal(isk.filter((e) => e.state === 10).map((e) => e.backlog).sort().join(), "3,4,7", "the listeners' backlogs");
  assert.ok(isk.some((e) => e.family === 10 && e.v6only), "IPV6_V6ONLY");
  assert.ok(isk.some((e) => e.opts.so_bound_dev === "lo" && e.ip_opts?.tos === 0x10 && e.ip_opts.ttl === 33));
  const inv = readImage(dir, IMG.inventory)[0]!;
  assert.equal(inv.network_lock_method, 1, "nftables");
  assert.match(inv.dump_criu_run_id ?? "", /^[0-9a-f-]{36}$/);
  assert.ok(locks().some((l) => l.includes(`CRIU-${inv.dump_criu_run_id!.slice(0, 21)}`)), "the lock stays until the restore");
}));

test("sk-inet in its own PID namespace", () => cycleWith("sk-inet", ["all"], ["--tcp-established"], undefined, "pid,ipc,uts"));

test("sk-inet: connections are refused without --tcp-established, and left working", () => noLockLeft(() => {
  assertDumpRefused("sk-inet", ["all"], /Connected TCP socket, consider using --tcp-established option: fd \d+ of process \d+ \(IPv4 TCP socket, inode \d+\) is ESTABLISHED/);
}));

test("sk-inet: a connection not accepted yet is refused without --skip-in-flight, left out with it", () => {
  noLockLeft(() => assertDumpRefused("sk-inet", ["inflight"], /In-flight connection \(l\): .* has 1 connection\(s\) not accepted yet; .*--skip-in-flight/));
  cycleWith("sk-inet", ["inflight"], ["--tcp-established", "--skip-in-flight"]);
});

/** The peer outside the tree, and the client connected to it (the tree dumped). */
function streamPair(): { server: Workload; client: Workload } {
  const server = startWorkload("sk-tcp-stream", ["server"]);
  const port = waitFor("the server's port", () => readFileSync(join(server.dir, "port"), "utf8").trim(), 5000);
  try {
    return { server, client: startWorkload("sk-tcp-stream", ["client", port]) };
  } catch (e) {
    stop(server);
    throw e;
  }
}

/** Both ends report: the client (restored) and the peer outside, which must have seen one unbroken stream. */
function finishPair(p: { server: Workload; client: Workload }): void {
  assert.equal(finish(p.client), "PASS", "the client");
  assert.equal(finish(p.server), "PASS", "the peer outside the tree");
}

for (const lock of ["nftables", "iptables"]) {
  test(`sk-tcp-stream: a connection to a peer outside the tree keeps its streams across the checkpoint (--network-lock ${lock})`, () => noLockLeft(() => {
    const p = streamPair();
    try {
      dumpWorkload(p.client, ["--tcp-established", "--network-lock", lock]);
      assert.equal(readImage(imagesDir(p.client), IMG.inventory)[0]!.network_lock_method, lock === "nftables" ? 1 : 0);
      assert.match(dumpLog(p.client), new RegExp(`Locked the network of 1 TCP connection\\(s\\) with ${lock}`));
      assert.ok(alive(p.server.pid), "the peer runs on");
      // Long enough for the peer to send into the gap: without the lock its segments would meet no socket and be reset.
      sleepMs(1500);
      restoreWorkload(p.client, ["--tcp-established"]);
      assert.match(dumpLog(p.client, "restore.log"), new RegExp(`Unlocked the network of 1 TCP connection\\(s\\) \\(${lock}\\)`));
      finishPair(p);
    } finally {
      stop(p.client);
      stop(p.server);
    }
  }));
}

test("sk-tcp-stream: a dump failing at each TCP step, and one leaving the tree running, leave the connection working and no lock", () => noLockLeft(() => {
  const p = streamPair();
  try {
    for (const point of ["dump:tcp-locked", "dump:tcp-repair", "dump:images"]) {
      const r = crest(["dump", "-t", String(p.client.pid), "-D", imagesDir(p.client), "-o", "dump.log", "--tcp-established"], { CREST_FAULT: point });
      assert.equal(r.code, 1, point);
      assert.match(r.stderr, new RegExp(`injected fault at ${point}`));
      assert.deepEqual(locks().filter((l) => l.includes("CRIU-")), [], `no lock after a fault at ${point}`);
    }
    const r = crest(["dump", "-t", String(p.client.pid), "-D", imagesDir(p.client), "-o", "dump.log", "-v4", "-R", "--tcp-established"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(dumpLog(p.client), /Unlocked the network of 1 TCP connection/);
    finishPair(p);
  } finally {
    stop(p.client);
    stop(p.server);
  }
}));

test("sk-tcp-stream: a restore failing at each TCP step kills what it made and keeps the lock, so that the next restore brings the connection back", () => noLockLeft(() => {
  const p = streamPair();
  try {
    dumpWorkload(p.client, ["--tcp-established"]);
    for (const point of ["restore:tcp-repair", "restore:tcp-unlock"]) {
      const r = crest(["restore", "-D", imagesDir(p.client), "-o", "restore.log", "-d", "--tcp-established"], { CREST_FAULT: point });
      assert.equal(r.code, 1, point);
      assert.match(r.stderr, new RegExp(`injected fault at ${point}`));
      assert.equal(alive(p.client.pid), false, `nothing left alive after a fault at ${point}`);
      assert.match(dumpLog(p.client, "restore.log"), /The network lock of 1 TCP connection\(s\) stays, so that another restore can bring them back; to drop the connections instead, remove it: nft delete table inet CRIU-/);
      assert.equal(locks().filter((l) => l.includes("CRIU-")).length, 1, `the lock stays after a fault at ${point}`);
      assert.ok(alive(p.server.pid), "the peer runs on");
    }
    restoreWorkload(p.client, ["--tcp-established"]);
    finishPair(p);
  } finally {
    stop(p.client);
    stop(p.server);
  }
}));

test("sk-tcp-stream: --tcp-close dumps the connection without its state and restores it closed", () => noLockLeft(() => {
  const p = streamPair();
  try {
    dumpWorkload(p.client, ["--tcp-close"]);
    const dir = imagesDir(p.client);
    assert.equal(readImage(dir, IMG.inventory)[0]!.tcp_close, true);
    assert.deepEqual(locks().filter((l) => l.includes("CRIU-")), [], "nothing locked");
    const r = crest(["restore", "-D", dir, "-o", "restore.log", "-d", "--tcp-established"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Need to set the --tcp-close options/);
    restoreWorkload(p.client, ["--tcp-close"]);
    assert.match(finish(p.client), /^FAIL: (the connection broke|EOF|read)/, "the client finds its connection closed");
  } finally {
    stop(p.client);
    stop(p.server);
  }
}));

test("a restore of a connection without --tcp-established is refused before anything is made", () => noLockLeft(() => {
  const p = streamPair();
  try {
    dumpWorkload(p.client, ["--tcp-established"]);
    const r = crest(["restore", "-D", imagesDir(p.client), "-o", "restore.log", "-d"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Connected TCP socket in image \(inet socket \d+\): restore with --tcp-established/);
    restoreWorkload(p.client, ["--tcp-established"]);
    finishPair(p);
  } finally {
    stop(p.client);
    stop(p.server);
  }
}));
