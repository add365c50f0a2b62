// /proc/PID/fdinfo/N of every kind of fd the capture program opened.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { parseFdinfo, parseFileLock, parseProcLocks, fileLockLength, ProcParseError } from "../../src/proc/index.js";
import { pidfdNsPid } from "../../src/proc/fdinfo-kinds.js";

const fdinfo = (name: string) =>
  parseFdinfo(readFileSync(new URL(`../../../test/fixtures/proc/zoo/fdinfo/${name}`, import.meta.url), "utf8"));

test("fdinfo: common fields; flags are octal and carry O_CLOEXEC", () => {
  const reg = fdinfo("reg");
  assert.equal(reg.pos, 12345n);
  assert.equal(reg.flags, 0o102002, "O_LARGEFILE | O_APPEND | O_RDWR");
  assert.equal(reg.mntId, 27);
  assert.equal(reg.ino, 2179911n);
  assert.deepEqual([reg.locks, reg.epollTargets, reg.inotifyWatches, reg.extra.size], [[], [], [], 0]);
  assert.equal(reg.eventfd, undefined);
  assert.equal(fdinfo("memfd").flags, 0o2100002, "O_CLOEXEC from MFD_CLOEXEC");
  assert.equal(fdinfo("memfd").mntId, 0, "memfds live on an internal mount");
  assert.equal(fdinfo("opath").flags, 0o10200000, "O_PATH | O_DIRECTORY");
  assert.equal(fdinfo("netns").ino, 4026531833n);
  assert.deepEqual([fdinfo("pipe-r").flags, fdinfo("pipe-w").flags, fdinfo("pipe-r").ino], [0o4000, 0o4001, 116982n]);
});

test("fdinfo: eventfd counter is hex; dup'ed fds share the id", () => {
  const e = fdinfo("eventfd");
  assert.equal(e.flags, 0o2004002, "EFD_CLOEXEC | EFD_NONBLOCK");
  assert.deepEqual(e.eventfd, { count: 0x10000000005n, id: 7, semaphore: true });
  assert.deepEqual(fdinfo("eventfd-plain").eventfd, { count: 0n, id: 8, semaphore: false });
  assert.deepEqual(fdinfo("eventfd-3000").eventfd, fdinfo("eventfd-plain").eventfd);
});

test("fdinfo: epoll targets with events, data, pos, inode and s_dev", () => {
  const ep = fdinfo("epoll");
  assert.deepEqual(ep.epollTargets, [
    { tfd: 5, events: 0x80000019, data: 5n, pos: 0n, ino: 0x1c8f6n, sdev: 0xf },
    { tfd: 10, events: 0x19, data: 0x1122334455667788n, pos: 0n, ino: 0x40en, sdev: 0x10 },
    { tfd: 7, events: 0x4000201c, data: 0xffffffffffffffffn, pos: 0n, ino: 0x1c8f7n, sdev: 0x9 },
  ]);
  assert.deepEqual(fdinfo("epoll-empty").epollTargets, []);
  const old = parseFdinfo("pos:\t0\nflags:\t02\ntfd:        3 events:       19 data:                0\n");
  assert.deepEqual(old.epollTargets, [{ tfd: 3, events: 0x19, data: 0n }], "pre-4.x kernels print no pos/ino/sdev");
});

test("fdinfo: epoll targets under one closed fd number, a fired ONESHOT, EPOLLEXCLUSIVE, a nested epoll", () => {
  // As zdtm's epoll01 leaves them: three files added as fd 702, in the kernel's order.
  const ep = parseFdinfo(
    "pos:\t0\nflags:\t02004002\nmnt_id:\t16\nino:\t1038\n" +
    "tfd:      702 events:       1d data:                0  pos:0 ino:16c80d sdev:f\n" +
    "tfd:      702 events:       1d data:                1  pos:0 ino:16c80f sdev:f\n" +
    "tfd:       12 events: 40000000 data:               88  pos:0 ino:40e sdev:10\n" +
    "tfd:        3 events: 10000019 data:               e1  pos:0 ino:16c80d sdev:f\n" +
    "tfd:       16 events:       19 data: 6000000000000060  pos:0 ino:40e sdev:10\n" +
    "tfd:    65535 events: 80000004 data: ffffffffffffffff  pos:123456789012 ino:ffffffffffff sdev:800001\n",
  );
  assert.equal(ep.flags, 0o2004002);
  assert.deepEqual(ep.epollTargets.map((t) => [t.tfd, t.events, t.data]), [
    [702, 0x1d, 0n], [702, 0x1d, 1n], [12, 0x40000000, 0x88n], [3, 0x10000019, 0xe1n], [16, 0x19, 0x6000000000000060n],
    [65535, 0x80000004, 0xffffffffffffffffn],
  ]);
  assert.deepEqual(ep.epollTargets.at(-1), { tfd: 65535, events: 0x80000004, data: 0xffffffffffffffffn, pos: 123456789012n, ino: 0xffffffffffffn, sdev: 0x800001 });
  assert.equal(ep.extra.size, 0);
  assert.throws(() => parseFdinfo("pos:\t0\nflags:\t02\ntfd: 3 events: 19 data: 0 pos:0 ino:zz sdev:f\n"), /bad epoll tfd/);
  assert.throws(() => parseFdinfo("pos:\t0\nflags:\t02\ntfd: -1 events: 19 data: 0\n"), /bad epoll tfd/);
});

test("fdinfo: timerfd clock, ticks, octal settime flags and times", () => {
  assert.deepEqual(fdinfo("timerfd-monotonic").timerfd, {
    clockid: 1, ticks: 0n, settimeFlags: 0, value: { sec: 999, nsec: 655888440 }, interval: { sec: 1, nsec: 500000000 },
  });
  assert.deepEqual(fdinfo("timerfd-realtime-abs").timerfd, {
    clockid: 0, ticks: 0n, settimeFlags: 3, value: { sec: 3599, nsec: 47080898 }, interval: { sec: 0, nsec: 0 },
  }, "TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET; the value is shown relative");
  assert.deepEqual(fdinfo("timerfd-boottime-expired").timerfd, {
    clockid: 7, ticks: 1n, settimeFlags: 0, value: { sec: 0, nsec: 0 }, interval: { sec: 0, nsec: 0 },
  });
});

test("fdinfo: signalfd mask", () => {
  const SIGUSR1 = 10n, SIGTERM = 15n, SIGRTMIN_2 = 36n;
  assert.equal(fdinfo("signalfd").signalfd!.sigmask, (1n << (SIGUSR1 - 1n)) | (1n << (SIGTERM - 1n)) | (1n << (SIGRTMIN_2 - 1n)));
});

test("fdinfo: inotify watches with hex fields and file handles", () => {
  const w = fdinfo("inotify").inotifyWatches;
  assert.equal(w.length, 2);
  assert.deepEqual({ ...w[0]!, fhandle: undefined }, {
    wd: 2, ino: 0x214348n, sdev: 0xfe00000, mask: 0x84000005, ignoredMask: 0, fhandle: undefined,
  }, "IN_ONESHOT | IN_EXCL_UNLINK | IN_ATTRIB | IN_ACCESS");
  assert.deepEqual(w[0]!.fhandle, { bytes: 8, type: 1, handle: Buffer.from("4843210056761ac2", "hex") });
  assert.deepEqual([w[1]!.wd, w[1]!.ino, w[1]!.mask], [1, 0x214344n, 0x300]);
});

test("fdinfo: inotify wd is hex; a kernel without CONFIG_EXPORTFS prints no handle", () => {
  const w = parseFdinfo("pos:\t0\nflags:\t02004000\nmnt_id:\t15\nino:\t1057\ninotify wd:1a ino:2b sdev:800001 mask:8000100 ignored_mask:0\n").inotifyWatches;
  assert.deepEqual(w, [{ wd: 26, ino: 0x2bn, sdev: 0x800001, mask: 0x8000100, ignoredMask: 0 }], "FS_EVENT_ON_CHILD kept as printed");
});

test("fdinfo: fanotify group flags and inode, mount and ignore marks", () => {
  const f = fdinfo("fanotify").fanotify!;
  assert.deepEqual([f.flags, f.eventFlags], [1, 0o100000], "FAN_CLOEXEC; O_LARGEFILE");
  assert.equal(f.marks.length, 3);
  assert.deepEqual(f.marks[0], {
    kind: "inode", ino: 0x214348n, sdev: 0xfe00000, mflags: 0x40, mask: 0, ignoredMask: 0x20,
    fhandle: { bytes: 8, type: 1, handle: Buffer.from("4843210056761ac2", "hex") },
  });
  assert.deepEqual(f.marks[1], { kind: "mount", mntId: 27, mflags: 0, mask: 0x20, ignoredMask: 0 }, "mnt_id is hex here");
  assert.deepEqual(f.marks[2]!.kind === "inode" && [f.marks[2].ino, f.marks[2].mask], [0x214344n, 0x8000028]);
  const sb = parseFdinfo("pos:\t0\nflags:\t02\nfanotify flags:0 event-flags:0\nfanotify sdev:fe00000 mflags:0 mask:1 ignored_mask:0\n");
  assert.deepEqual(sb.fanotify!.marks, [{ kind: "sb", sdev: 0xfe00000, mflags: 0, mask: 1, ignoredMask: 0 }]);
});

test("fdinfo: pidfd pid and namespace pids", () => {
  const p = fdinfo("pidfd");
  assert.deepEqual(p.pidfd, { pid: 9564, nsPid: [9564] });
  assert.equal(p.mntId, 4);
  assert.equal(p.ino, 75385n);
  assert.deepEqual(parseFdinfo("pos:\t0\nflags:\t02\nPid:\t-1\n").pidfd, { pid: -1, nsPid: [] }, "a reaped process");
});

test("fdinfo: the pid a pidfd names in its own namespace", () => {
  const of = (text: string) => pidfdNsPid(parseFdinfo(`pos:\t0\nflags:\t02000002\nmnt_id:\t4\nino:\t344497\n${text}`).pidfd!);
  assert.equal(of("Pid:\t7775\nNSpid:\t7775\n"), 7775);
  assert.equal(of("Pid:\t4242\nNSpid:\t4242\t17\n"), 17, "the innermost namespace's");
  assert.equal(of("Pid:\t-1\nNSpid:\t-1\n"), -1, "reaped, as Linux 6.18 prints it");
  assert.equal(of("Pid:\t-1\n"), -1, "reaped, no NSpid line");
  assert.equal(of("Pid:\t0\n"), 0, "not visible to the reader");
  assert.equal(of("Pid:\t99\n"), 99, "kernels without NSpid");
});

test("fdinfo: eventfd counter above 32 bits, periodic timerfd waiting for a read", () => {
  const e = parseFdinfo("pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\neventfd-count:        923456789\neventfd-id: 3\neventfd-semaphore: 0\n");
  assert.deepEqual(e.eventfd, { count: 0x923456789n, id: 3, semaphore: false });
  const t = parseFdinfo("pos:\t0\nflags:\t04002\nmnt_id:\t17\nino:\t1038\nclockid: 1\nticks: 5\nsettime flags: 00\n" +
    "it_value: (0, 0)\nit_interval: (0, 20000000)\n");
  assert.deepEqual(t.timerfd, { clockid: 1, ticks: 5n, settimeFlags: 0, value: { sec: 0, nsec: 0 }, interval: { sec: 0, nsec: 20000000 } },
    "an expired periodic timer shows 0 left until it is read");
});

test("fdinfo: POSIX, OFD, flock and lease locks", () => {
  const [posix, ofd] = fdinfo("locked").locks;
  assert.deepEqual(posix, {
    id: 1, blocked: false, kind: "POSIX", mode: "ADVISORY", type: "WRITE", pid: 9561,
    major: 0xfe, minor: 0, inode: 2179913n, start: 0n, end: 99n,
  });
  assert.deepEqual(ofd, {
    id: 2, blocked: false, kind: "OFDLCK", mode: "ADVISORY", type: "READ", pid: -1,
    major: 0xfe, minor: 0, inode: 2179913n, start: 200n, end: null,
  });
  assert.deepEqual([fileLockLength(posix!), fileLockLength(ofd!)], [100n, 0n]);
  const [fl] = fdinfo("flocked").locks;
  assert.deepEqual([fl!.kind, fl!.type, fl!.pid, fl!.end], ["FLOCK", "READ", 9561, null]);
  const [lease] = fdinfo("leased").locks;
  assert.deepEqual([lease!.kind, lease!.mode, lease!.type], ["LEASE", "ACTIVE", "READ"]);
});

test("/proc/locks lines, blocked waiters included", () => {
  const l = parseProcLocks("1: POSIX  ADVISORY  WRITE 5479 fe:00:2171739 0 99\n1: -> POSIX  ADVISORY  WRITE 5500 fe:00:2171739 0 99\n");
  assert.deepEqual(l.map((x) => [x.id, x.blocked, x.pid]), [[1, false, 5479], [1, true, 5500]]);
  assert.throws(() => parseFileLock("1: WEIRD ADVISORY WRITE 1 fe:00:1 0 EOF"), /unknown lock kind/);
  assert.throws(() => parseFileLock("1: POSIX ADVISORY WRITE 1 fe:00:1 0"), /expected KIND MODE TYPE/);
  assert.throws(() => parseFileLock("POSIX ADVISORY WRITE 1 fe:00:1 0 EOF"), /no "ID:"/);
  assert.throws(() => parseFileLock("1: POSIX ADVISORY WRITE 1 fe00 0 EOF"), /bad device:inode/);
});

test("fdinfo: other lines stay in extra (unix scm_fds, tty-index, continuation lines)", () => {
  assert.deepEqual([...fdinfo("unix").extra], [["scm_fds", ["0"]]]);
  assert.deepEqual([...fdinfo("ptmx").extra], [["tty-index", ["0"]]]);
  const uring = parseFdinfo("pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1\nSqMask:\t0x3\nPollList:\n  op=1, task_works=0\nCqOverflowList:\n");
  assert.deepEqual([...uring.extra], [["SqMask", ["0x3"]], ["PollList", ["", "op=1, task_works=0"]], ["CqOverflowList", [""]]]);
});

test("fdinfo: malformed input throws ProcParseError", () => {
  assert.throws(() => parseFdinfo("garbage\n"), ProcParseError);
  assert.throws(() => parseFdinfo("pos:\t0\n"), /no pos: or flags:/);
  assert.throws(() => parseFdinfo("pos:\t0\nflags:\t0999\n"), /octal flags/);
  assert.throws(() => parseFdinfo("pos:\tx\nflags:\t02\n"), /pos/);
  assert.throws(() => parseFdinfo("pos:\t0\npos:\t1\nflags:\t02\n"), /pos twice/);
  assert.throws(() => parseFdinfo("pos:\t0\nflags:\t02\neventfd-count: zz\n"), /eventfd-count/);
  assert.throws(() => parseFdinfo("pos:\t0\nflags:\t02\nclockid: 1\nticks: 0\n"), /timerfd without a "settime flags:" line/);
  assert.throws(() => parseFdinfo("pos:\t0\nflags:\t02\nclockid: 1\nticks: 0\nsettime flags: 00\nit_value: 5\nit_interval: (0, 0)\n"), /\(sec, nsec\)/);
  assert.throws(() => parseFdinfo("pos:\t0\nflags:\t02\ntfd: 3 events: zz data: 0\n"), /bad epoll tfd/);
  assert.throws(() => parseFdinfo("pos:\t0\nflags:\t02\ninotify wd:1 ino:1 sdev:0 mask:1\n"), /ignored_mask/);
  assert.throws(() => parseFdinfo("pos:\t0\nflags:\t02\ninotify wd:1 ino:1 sdev:0 mask:1 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:abcd\n"), /f_handle is not 8 hex bytes/);
  assert.throws(() => parseFdinfo("pos:\t0\nflags:\t02\nfanotify ino:1 sdev:0 mflags:0 mask:0 ignored_mask:0\n"), /before "fanotify flags:"/);
  assert.throws(() => parseFdinfo("pos:\t0\nflags:\t02\nlock:\t1: POSIX ADVISORY\n"), /fdinfo: expected KIND/);
});
