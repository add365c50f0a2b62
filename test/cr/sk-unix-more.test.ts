// Unix sockets, the rest: files in flight (SCM_RIGHTS: a pipe, a regular
// file, a socket pair only in flight, a socket passed over itself, a
// cycle), relative names and names removed since (sk-unix-scm); and what a
// tree holds of the world outside it (sk-unix-ext): a stream socket whose
// peer is outside (--external unix[INO], given back with --inherit-fd), a
// datagram socket sending to a server outside (--ext-unix-sk), a pipe the
// harness reads (--inherit-fd fd[N]:pipe:[INO]). Each workload's sabotage
// shows its checks can fail.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { closeSync, fstatSync, mkdtempSync, readFileSync, readSync } from "node:fs";
import { join } from "node:path";
import { readImage, IMG, fd_types } from "../../src/images/index.js";
import { native } from "../../src/sys/native.js";
import { SYS } from "../../src/sys/constants.js";
import {
  alive, CREST, crest, critDecodeAll, cycle, dumpLog, dumpWorkload, finish, imagesDir, pipe, procState, restoreWorkload, socketpair, startWorkload, stop,
  waitTreeGone, type Run, type Workload,
} from "./harness.js";

function checkScmImages(w: Workload): void {
  const dir = imagesDir(w);
  const files = new Map(readImage(dir, IMG.files).map((f) => [f.id, f]));
  const packets = readImage(dir, IMG.skQueues).map((p) => p.entry);
  const passed = packets.filter((p) => p.scm.length).map((p) => p.scm.flatMap((s) => {
    assert.equal(s.type, 1, "SCM_RIGHTS");
    return s.rights.map((id) => files.get(id)?.type);
  }));
  assert.deepEqual(passed.sort(), [[fd_types.PIPE], [fd_types.REG], [fd_types.UNIXSK], [fd_types.UNIXSK], [fd_types.UNIXSK], [fd_types.UNIXSK, fd_types.UNIXSK], [fd_types.EVENTPOLL]].sort(),
    "the pipe, the file, the pair, the socket passed over itself, the cycle and the epoll, each named by its files.img entry");
  const self = packets.find((p) => p.scm[0]?.rights[0] === p.id_for);
  assert.ok(self, "a socket's queue names the socket itself");
  const usk = [...files.values()].filter((f) => f.usk).map((f) => f.usk!);
  // Path names end with their NUL, as criu writes them.
  const rel = usk.find((u) => u.name.toString() === "rel\0")!;
  assert.deepEqual([rel.name_dir, rel.deleted, rel.file_perms?.mode], [join(w.dir, "sub"), undefined, 0o140604], "the relative name and its directory");
  assert.deepEqual(usk.filter((u) => u.deleted).map((u) => u.name.toString()).sort(), [join(w.dir, "gone/dsk\0"), join(w.dir, "repl\0")], "the removed names");
}

test("sk-unix-scm: files in flight (a pipe, a file, a pair only in flight, a socket over itself, a cycle, an epoll), relative and removed names, closed peers, a socket connected to itself", () =>
  cycle("sk-unix-scm", [], checkScmImages));

test("sk-unix-scm in its own PID namespace", () => cycle("sk-unix-scm", [], undefined, { ns: "pid,ipc,uts" }));

// Its /proc is its own PID namespace's, where crest is not: a connection to a
// removed name goes through the fd crest gives the task (zdtm's ns flavour).
test("sk-unix-scm in its own mount and PID namespaces", () => {
  const w = startWorkload("sk-unix-scm", [], { ns: "pid,ipc,uts,mnt" });
  try {
    dumpWorkload(w);
    assert.deepEqual(critDecodeAll(imagesDir(w)), []);
    restoreWorkload(w, ["--root", "/"]);
    assert.match(dumpLog(w, "restore.log"), /connected to the deleted name .* through \/proc\/self\/fd\/\d+/);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

/** Dumps and restores a workload started with CREST_WL_SABOTAGE=n: its verdict must be FAIL, naming `what`. */
function sabotaged(name: string, args: string[], n: number, what: RegExp, opts: { dump?: string[]; restore?: string[]; fds?: number[]; stdout?: number } = {}): void {
  const w = startWorkload(name, args, { env: [`CREST_WL_SABOTAGE=${n}`], fds: opts.fds, stdout: opts.stdout });
  try {
    dumpWorkload(w, opts.dump);
    restoreWorkload(w, opts.restore);
    const verdict = finish(w);
    assert.match(verdict, /^FAIL/);
    assert.match(verdict, what);
  } finally {
    stop(w);
  }
}

for (const [n, what] of [[1, /d: received/], [2, /sub\/rel: no socket/], [3, /g: received/], [4, /gone exists after the restore/], [5, /n, whose peer was closed/]] as const) {
  test(`sk-unix-scm sabotage ${n}: its check fails`, () => sabotaged("sk-unix-scm", [], n, what));
}

/** crest with `fd` of this process as its fd 3 (spawnSync stdio), run in `cwd`. */
function crestWithFd3(args: string[], fd: number, cwd: string): Run {
  const r = spawnSync(CREST, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe", fd], cwd, timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A dump that must fail naming `what`, leaving the workload running untraced. */
function assertRefused(w: Workload, args: string[], what: RegExp): void {
  const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log", ...args]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, what);
  assert.match(dumpLog(w), /Dumping FAILED/);
  assert.equal(procState(w.pid).tracer, 0);
}

/** Reads what is in a pipe or socket this process holds, until EOF or nothing more. */
function drain(fd: number, max = 4096): string {
  const b = Buffer.alloc(max);
  const n = native.syscall(SYS.recvfrom, fd, b, max, 0x40 /* MSG_DONTWAIT */, null, 0);
  if (n >= 0) return b.subarray(0, n).toString();
  let out = "";
  for (let got; (got = readSync(fd, b, 0, max, null)) > 0;) out += b.subarray(0, got).toString();
  return out;
}

test("sk-unix-ext stream: refused as an external socket, kept with --external unix[INO], given back with criu's example restore line", () => {
  const [outside, given] = socketpair();
  const ino = fstatSync(given).ino;
  const w = startWorkload("sk-unix-ext", ["stream"], { fds: [given] });
  closeSync(given);
  try {
    assertRefused(w, [], new RegExp(`External socket is used: fd 3 of process ${w.pid} \\(unix stream socket, inode ${ino}\\) is connected to socket \\d+ outside the dumped tree\\. ` +
      `Consider using --ext-unix-sk .*, or --external unix\\[${ino}\\] \\(the restore then needs the socket given with --inherit-fd fd\\[N\\]:socket:\\[${ino}\\]\\)`));
    assertRefused(w, ["-x"], new RegExp(`inode ${ino}\\) is one end of a stream connection whose other end .* use --external unix\\[${ino}\\]`));
    const images = join(w.dir, "images");
    const d = crest(["dump", "-t", String(w.pid), "-D", images, "-o", "dump.log", "-v4", "--external", `unix[${ino}]`]);
    assert.equal(d.code, 0, d.stderr);
    waitTreeGone(w, images);
    assert.deepEqual(critDecodeAll(images), []);
    const usk = readImage(images, IMG.files).filter((f) => f.usk).map((f) => f.usk!);
    const mine = usk.find((u) => u.ino === ino)!;
    assert.deepEqual(usk.filter((u) => u.uflags === 1).map((u) => u.ino), [mine.peer], "the outside peer's entry, USK_EXTERN");
    // Without the socket given back, the restore names the option.
    const bare = crest(["restore", "-D", images, "-o", "bare.log", "-d", "-x"]);
    assert.equal(bare.code, 1);
    assert.match(bare.stderr, new RegExp(`unix socket ${ino} in task \\d+ was connected to socket ${mine.peer} outside the tree .* --inherit-fd fd\\[N\\]:socket:\\[${ino}\\]`));
    const [ours, theirs] = socketpair();
    assert.equal(native.syscall(SYS.sendto, ours, Buffer.from("pong"), 4, 0, null, 0), 4);
    const r = crestWithFd3(["restore", "-d", "-D", "images", "-o", "restore.log", "--pidfile", "restore.pid", "-v4", "-x", "--inherit-fd", `fd[3]:socket:[${ino}]`], theirs, w.dir);
    closeSync(theirs);
    assert.equal(r.code, 0, `${r.stderr}\n${readFileSync(join(images, "restore.log"), "utf8")}`);
    w.pid = Number(readFileSync(join(images, "restore.pid"), "utf8"));
    assert.ok(alive(w.pid));
    assert.equal(finish(w), "PASS");
    assert.equal(drain(ours), "ping", "what the restored task sent came to the socket given back");
    closeSync(ours);
  } finally {
    closeSync(outside);
    stop(w);
  }
});

/** A datagram socket of this process bound to a fresh path: [fd, path]. */
function datagramServer(): [number, string] {
  const path = join(mkdtempSync("/tmp/crest-ext-"), "srv");
  const fd = native.syscall(SYS.socket, 1, 2, 0);
  const addr = Buffer.alloc(2 + path.length + 1);
  addr.writeUInt16LE(1, 0);
  addr.write(path, 2, "latin1");
  assert.equal(native.syscall(SYS.bind, fd, addr, addr.length), 0);
  return [fd, path];
}

test("sk-unix-ext dgram: a datagram socket sending to a server outside, with --ext-unix-sk on dump and restore", () => {
  const [srv, path] = datagramServer();
  const w = startWorkload("sk-unix-ext", ["dgram", path]);
  try {
    assertRefused(w, [], /External socket is used: fd \d+ of process \d+ \(unix datagram socket, inode \d+\) is connected to socket \d+ outside the dumped tree/);
    dumpWorkload(w, ["--ext-unix-sk"]);
    const ext = readImage(imagesDir(w), IMG.files).filter((f) => f.usk?.uflags === 1).map((f) => f.usk!);
    assert.deepEqual(ext.map((u) => [u.type, u.state, u.name.toString()]), [[2, 10, `${path}\0`]], "the server's entry as criu writes it: USK_EXTERN, datagram, listening, its name");
    assert.deepEqual(critDecodeAll(imagesDir(w)), []);
    assert.throws(() => restoreWorkload(w), /External socket found in image: unix socket \d+ in task \d+ was connected to socket \d+ outside the tree\. Consider using the --ext-unix-sk option/);
    restoreWorkload(w, ["-x"]);
    assert.equal(finish(w), "PASS");
    assert.equal(drain(srv), "D", "the restored socket reaches the server");
  } finally {
    closeSync(srv);
    stop(w);
  }
});

test("sk-unix-ext dgram sabotage 1: its check fails", () => {
  const [srv, path] = datagramServer();
  try {
    sabotaged("sk-unix-ext", ["dgram", path], 1, /the datagram socket is connected to/, { dump: ["-x"], restore: ["-x"] });
  } finally {
    closeSync(srv);
  }
});

test("sk-unix-ext pipe: stdout a pipe the harness reads, given back after the restore with --inherit-fd fd[3]:pipe:[INO]", () => {
  const [rd, wr] = pipe();
  const ino = fstatSync(rd).ino;
  const w = startWorkload("sk-unix-ext", ["pipe"], { stdout: wr });
  closeSync(wr);
  try {
    // criu keeps a pipe whose other end is outside as any pipe: the restore makes a new one unless one is given.
    dumpWorkload(w);
    assert.match(drain(rd), /starting/);
    const [rd2, wr2] = pipe();
    const r = crestWithFd3(["restore", "-d", "-D", imagesDir(w), "-o", "restore.log", "--pidfile", "restore.pid", "-v4", "--inherit-fd", `fd[3]:pipe:[${ino}]`], wr2, w.dir);
    closeSync(wr2);
    assert.equal(r.code, 0, r.stderr);
    assert.match(readFileSync(join(imagesDir(w), "restore.log"), "utf8"), new RegExp(`File \\d+ \\(pipe:\\[${ino}\\]\\) of task ${w.pid} is restored from inherit fd 3`));
    w.pid = Number(readFileSync(join(imagesDir(w), "restore.pid"), "utf8"));
    assert.equal(finish(w), "PASS");
    assert.match(drain(rd2), /after/, "what the restored task wrote came out of the pipe given back");
    closeSync(rd2);
  } finally {
    closeSync(rd);
    stop(w);
  }
});

test("sk-unix-ext pipe sabotage 1: its check fails", () => {
  const [rd, wr] = pipe();
  try {
    sabotaged("sk-unix-ext", ["pipe"], 1, /fd 1: not a pipe's write end/, { stdout: wr });
  } finally {
    closeSync(rd);
    closeSync(wr);
  }
});

test("--inherit-fd: an fd crest does not have fails the restore before anything runs", () => {
  const w = startWorkload("sk-unix-ext", ["pipe"]);
  try {
    dumpWorkload(w);
    const r = crest(["restore", "-D", imagesDir(w), "-o", "restore.log", "-d", "--inherit-fd", "fd[77]:pipe:[1]"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /--inherit-fd fd\[77\]:pipe:\[1\]: fd 77 is not an open file descriptor of crest/);
  } finally {
    stop(w);
  }
});
