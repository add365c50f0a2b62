// /proc parsers on files captured from a real process (test/fixtures/proc,
// made by a program that set up a weird comm, changed rlimits, odd mappings,
// POSIX timers of three notification kinds and a pending blocked signal).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  parseMaps, parseSmaps, parseStat, parseStatus, parseLimits, parseFdinfo, parseTimers, parseAuxv,
  classifyFdLink, vmFlagsToMadvise, ProcParseError, RLIM_INFINITY,
} from "../../src/proc/index.js";

const fixture = (name: string): string => readFileSync(new URL(`../../../test/fixtures/proc/${name}`, import.meta.url), "utf8");
const fixtureBytes = (name: string): Buffer => readFileSync(new URL(`../../../test/fixtures/proc/${name}`, import.meta.url));

test("maps: addresses, protections, shared, deleted files and pseudo names", () => {
  const maps = parseMaps(fixture("maps"));
  const deleted = maps.find((m) => m.path === "/tmp/fixproc-deleted")!;
  assert.equal(deleted.deleted, true);
  assert.equal(deleted.shared, true);
  assert.deepEqual(deleted.prot, { read: true, write: false, exec: false });
  assert.equal(deleted.end - deleted.start, 4096);
  const zero = maps.find((m) => m.path === "/dev/zero")!;
  assert.equal(zero.shared, true);
  assert.equal(zero.deleted, true);
  assert.equal(zero.inode, 1026);
  assert.ok(maps.some((m) => m.path === "[vdso]" && m.prot.exec));
  assert.ok(maps.some((m) => m.path === "[vvar_vclock]"));
  const none = maps.find((m) => !m.prot.read && !m.prot.write && !m.prot.exec && m.path === "");
  assert.ok(none, "a PROT_NONE anonymous mapping");
  assert.equal(maps.find((m) => m.path === "[vsyscall]")!.start, 0xffffffffff600000);
});

test("smaps: the same mappings with sizes and VmFlags", () => {
  const smaps = parseSmaps(fixture("smaps"));
  assert.deepEqual(smaps.map((m) => m.start), parseMaps(fixture("maps")).map((m) => m.start));
  const gd = smaps.find((m) => m.vmFlags.includes("gd"));
  assert.ok(gd, "the MAP_GROWSDOWN mapping has gd");
  assert.equal(gd.sizes.Size, 64);
  const stack = smaps.find((m) => m.path === "[stack]")!;
  assert.ok(stack.vmFlags.includes("gd"));
  assert.equal(vmFlagsToMadvise(["rd", "dc", "hg"]), (1n << 10n) | (1n << 14n));
  assert.throws(() => parseSmaps("Size: 4 kB\n"), ProcParseError);
});

test("stat: comm with spaces and parentheses, and the mm fields", () => {
  const st = parseStat(fixture("stat"));
  assert.equal(st.comm, "we(ird) )name");
  assert.equal(st.state, "S");
  assert.equal(st.startCode, 94321269710848);
  assert.equal(st.startBrk, 94321369034752);
  assert.equal(st.envEnd, 140722036846571);
  assert.equal(st.rsslim, 18446744073709551615n);
  assert.throws(() => parseStat("12 no-paren S 1"), ProcParseError);
});

test("status: ids, masks, capabilities and pending signals", () => {
  const st = parseStatus(fixture("status"));
  assert.equal(st.name, "we(ird) )name");
  assert.deepEqual(st.uid, [0, 0, 0, 0]);
  assert.equal(st.sigBlk, 1n << 11n, "SIGUSR2 blocked");
  assert.equal(st.sigPnd, 1n << 11n, "SIGUSR2 pending for the thread (raise is thread-directed)");
  assert.equal(st.shdPnd, 0n);
  assert.equal(st.capBnd, 0x1fffeffffffn);
  assert.equal(st.seccomp, 0);
  assert.equal(st.noNewPrivs, false);
  assert.equal(st.umask, 0o22);
  assert.throws(() => parseStatus("Name: x\nUid: 1 2\n"), ProcParseError);
});

test("limits: changed and unlimited values by RLIMIT number", () => {
  const l = parseLimits(fixture("limits"));
  assert.equal(l.length, 16);
  assert.deepEqual(l[7], { cur: 1024n, max: 4096n }, "RLIMIT_NOFILE");
  assert.deepEqual(l[4], { cur: 0n, max: RLIM_INFINITY }, "RLIMIT_CORE");
  assert.equal(l[0]!.cur, RLIM_INFINITY);
  assert.throws(() => parseLimits("Max bogus 1 2\n"), ProcParseError);
});

test("fdinfo: position, octal flags with O_CLOEXEC, mount id", () => {
  const f = parseFdinfo(fixture("fdinfo-reg"));
  assert.equal(f.pos, 3n);
  assert.equal(f.flags, 0o2100000);
  assert.equal(f.mntId, 27);
  assert.equal(f.ino, 612n);
  assert.throws(() => parseFdinfo("garbage\n"), ProcParseError);
});

test("timers: ids, signals, values, notification kinds and clocks", () => {
  const t = parseTimers(fixture("timers"));
  assert.deepEqual(t.map((x) => x.id), [2, 1, 0]);
  assert.equal(t[0]!.notify, "signal");
  assert.equal(t[0]!.notifyTid, 10357);
  assert.equal(t[0]!.signal, 36);
  assert.equal(t[0]!.clockid, 7);
  assert.equal(t[1]!.notify, "none");
  assert.equal(t[1]!.notifyTid, undefined);
  assert.equal(t[2]!.sigevValue, 0x1234n);
  assert.throws(() => parseTimers("ID: 1\nsignal: x\n"), ProcParseError);
});

test("auxv: pairs up to AT_NULL", () => {
  const a = parseAuxv(fixtureBytes("auxv"));
  assert.equal(a.length % 2, 0);
  assert.equal(a[a.length - 2], 0n);
  assert.ok(a.includes(6n) && a[a.indexOf(6n) + 1] === 4096n, "AT_PAGESZ is 4096");
  assert.throws(() => parseAuxv(Buffer.alloc(5)), ProcParseError);
});

test("fd links: paths, pipes, sockets and anonymous inodes", () => {
  assert.deepEqual(classifyFdLink("/tmp/x (deleted)"), { kind: "path", path: "/tmp/x", deleted: true });
  assert.deepEqual(classifyFdLink("pipe:[123]"), { kind: "pipe", inode: 123 });
  assert.deepEqual(classifyFdLink("socket:[9]"), { kind: "socket", inode: 9 });
  assert.deepEqual(classifyFdLink("anon_inode:[eventfd]"), { kind: "anon", name: "eventfd" });
  assert.deepEqual(classifyFdLink("anon_inode:inotify"), { kind: "anon", name: "inotify" });
  assert.deepEqual(classifyFdLink("net:[4026531840]"), { kind: "other", text: "net:[4026531840]" });
});
