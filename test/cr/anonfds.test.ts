// Anonymous-inode files with state (fds-anon): eventfds, a signalfd with a
// signal queued, timerfds (periodic, expired, absolute, unarmed) and pidfds
// (own, a child's, a reaped child's), as files.img entries crit decodes;
// fds of namespaces (fds-ns); a fanotify group with its marks (fds-fanotify);
// and the ones crest still refuses (a pidfd outside the tree, a filesystem-wide fanotify mark), the
// process left untouched.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readImage, IMG, fd_types } from "../../src/images/index.js";
import { assertDumpRefused, cycle, imagesDir, type Workload } from "./harness.js";

const SIGUSR1 = 10n;

function checkImages(w: Workload): void {
  const files = readImage(imagesDir(w), IMG.files);
  const of = (t: number) => files.filter((f) => f.type === t);
  const efd = of(fd_types.EVENTFD).map((f) => f.efd!);
  assert.deepEqual(efd.map((e) => [e.counter, e.semaphore ?? false] as const).sort((a, b) => (a[0] < b[0] ? -1 : 1)), [[7n, true], [0x923456789n, false]]);
  const sgfd = of(fd_types.SIGNALFD);
  assert.equal(sgfd.length, 1);
  assert.ok(sgfd[0]!.sgfd!.sigmask & (1n << (SIGUSR1 - 1n)), "the signalfd accepts SIGUSR1");
  const tfd = of(fd_types.TIMERFD).map((f) => f.tfd!);
  assert.equal(tfd.length, 4);
  assert.ok(tfd.some((t) => t.settime_flags === 1 && t.clockid === 0 && t.isec === 5n), "the absolute REALTIME timer");
  assert.ok(tfd.some((t) => t.ticks === 1n && t.vsec === 0n && t.vnsec === 0n && t.isec === 0n), "the expired timer, one tick unread");
  assert.ok(tfd.some((t) => t.insec === 20000000n), "the periodic timer");
  const pidfds = of(fd_types.PIDFD).map((f) => f.pidfd!);
  assert.equal(pidfds.length, 3);
  const pstree = readImage(imagesDir(w), IMG.pstree).map((e) => e.pid);
  assert.ok(pidfds.some((p) => p.nspid === pstree[0]), "a pidfd of the workload itself, by its PID in the tree");
  assert.ok(pidfds.some((p) => p.nspid === -1), "a pidfd of a reaped child");
  assert.ok(pidfds.every((p) => p.nspid === -1 || pstree.includes(p.nspid)), "the others name processes of the tree");
}

test("fds-anon: eventfd, signalfd, timerfd and pidfd state comes back", () => cycle("fds-anon", [], checkImages));

test("fds-anon in its own PID namespace: pidfds name PIDs inside it", () => cycle("fds-anon", [], checkImages, { ns: "pid,ipc,uts" }));

/** fds-ns's fds are namespace files of the namespaces its ids name. */
function checkNsFiles(w: Workload): void {
  const nsf = readImage(imagesDir(w), IMG.files).filter((f) => f.type === fd_types.NS).map((f) => f.nsf!);
  assert.equal(nsf.length, 8);
  const ids = readImage(imagesDir(w), IMG.ids, readImage(imagesDir(w), IMG.pstree)[0]!.pid)[0]!;
  assert.equal(nsf.find((n) => n.ns_cflag === 0x40000000)!.ns_id, ids.net_ns_id, "the net fd names the task's net namespace");
  assert.equal(nsf.find((n) => n.ns_cflag === 0x80)!.ns_id, ids.time_ns_id, "the time fd names the task's time namespace");
}

test("fds-ns: fds of its namespaces come back as fds of the namespaces it is in", () => cycle("fds-ns", [], checkNsFiles));

test("fds-ns in its own namespaces: the fds name the tree's new ones", () => cycle("fds-ns", [], checkNsFiles, { ns: "pid,ipc,uts,net", loUp: true }));

test("fds-fanotify: a fanotify group's inode, ignored and mount marks come back, and it reports events", () => cycle("fds-fanotify", [], (w) => {
  const ffy = readImage(imagesDir(w), IMG.files).filter((f) => f.type === fd_types.FANOTIFY).map((f) => f.ffy!);
  assert.equal(ffy.length, 1);
  assert.deepEqual(ffy[0]!.mark.map((m) => m.type).sort(), [1, 1, 2], "two inode marks and a mount mark");
}));

for (const [mode, what] of [
  ["outside", /fd \d+ of process \d+ is a pidfd of process \d+, which is not in the dumped tree; crest does not support it/],
  ["fanotify", /\(fanotify\) mark 0 is a filesystem-wide \(FAN_MARK_FILESYSTEM\) mark crest does not support yet/],
] as const) {
  test(`fds-anon ${mode}: refused by name, the process untouched`, () => assertDumpRefused("fds-anon", [mode], what));
}
