// How a thread caught in a syscall resumes: the registers for the image and
// for a live thread, and which cases are inexact.
import { test } from "node:test";
import assert from "node:assert/strict";
import { resumption, type DueSignal, type ResumeContext } from "../../src/kinds/task/syscall-restart.js";
import { Regs } from "../../src/sys/structs.js";

const IP = 0x1000n;
const REM = 0x7000n, REQ = 0x6000n;

function stopped(nr: number, ax: number, args: Partial<Record<"di" | "si" | "dx" | "r10" | "r8", bigint>> = {}): Regs {
  const r = new Regs();
  r.set("orig_ax", nr);
  r.set("ax", ax);
  r.set("ip", IP);
  for (const [k, v] of Object.entries(args)) r.set(k as "di", v);
  return r;
}

function ctx(o: { stopped?: boolean; due?: DueSignal; left?: { sec: bigint; nsec: bigint } } = {}): ResumeContext & { asked: number } {
  const c = {
    asked: 0,
    stopped: o.stopped ?? false,
    dueSignal: () => {
      c.asked++;
      return o.due ?? null;
    },
    readTimespec: (addr: bigint) => (addr === REM ? o.left ?? null : null),
  };
  return c;
}

const restarted = (r: Regs, nr: number) => r.getSigned("ax") === BigInt(nr) && r.get("ip") === IP - 2n;
const eintr = (r: Regs) => r.getSigned("ax") === -4n && r.get("ip") === IP;

test("not in a syscall, or after one that returned: untouched, nothing asked", () => {
  const c = ctx();
  const r = stopped(0, -512);
  r.set("orig_ax", -1n);
  const res = resumption(r, c);
  assert.deepEqual(res.regs.buf, r.buf);
  assert.equal(res.call, null);
  const done = resumption(stopped(0, 5), c);
  assert.equal(done.regs.get("ax"), 5n);
  assert.equal(done.call, "read");
  assert.equal(c.asked, 0);
});

test("ERESTARTSYS, ERESTARTNOHAND, ERESTARTNOINTR restart with their own arguments, exactly", () => {
  for (const [nr, err] of [[0, 512], [34, 514], [270, 514], [202, 512], [61, 513]] as const) {
    const res = resumption(stopped(nr, -err), ctx());
    assert.ok(restarted(res.regs, nr), `syscall ${nr}, error ${err}`);
    assert.equal(res.inexact, null);
    assert.equal(res.live, null, "a live thread is restarted by the kernel itself");
  }
});

test("a pending caught signal runs first: EINTR where the kernel would give it", () => {
  const noRestart = { sig: 10, restart: false }, withRestart = { sig: 10, restart: true };
  assert.ok(eintr(resumption(stopped(34, -514), ctx({ due: withRestart })).regs), "ERESTARTNOHAND: EINTR even with SA_RESTART");
  assert.ok(eintr(resumption(stopped(0, -512), ctx({ due: noRestart })).regs), "ERESTARTSYS without SA_RESTART");
  assert.ok(restarted(resumption(stopped(0, -512), ctx({ due: withRestart })).regs, 0), "ERESTARTSYS with SA_RESTART restarts");
  assert.ok(restarted(resumption(stopped(61, -513), ctx({ due: noRestart })).regs, 61), "ERESTARTNOINTR always restarts");
  assert.ok(eintr(resumption(stopped(35, -516, { di: REQ, si: REM }), ctx({ due: withRestart, left: { sec: 1n, nsec: 0n } })).regs));
  const ep = resumption(stopped(232, -4, { r10: BigInt.asUintN(64, -1n) }), ctx({ due: noRestart }));
  assert.ok(eintr(ep.regs), "epoll_wait keeps its EINTR: the handler runs");
  assert.equal(ep.live, null);
});

test("a relative sleep restarts for the time it had left, read from rem", () => {
  const left = { sec: 2n, nsec: 500_000_000n };
  const ns = resumption(stopped(35, -516, { di: REQ, si: REM }), ctx({ left }));
  assert.ok(restarted(ns.regs, 35));
  assert.equal(ns.regs.get("di"), REM, "nanosleep(rem, rem)");
  assert.equal(ns.regs.get("si"), REM);
  assert.equal(ns.inexact, null);
  assert.match(ns.note!, /2\.500 s it had left/);
  const cns = resumption(stopped(230, -516, { di: 0n, si: 0n, dx: REQ, r10: REM }), ctx({ left }));
  assert.ok(restarted(cns.regs, 230));
  assert.equal(cns.regs.get("dx"), REM, "clock_nanosleep(clock, 0, rem, rem)");
  assert.equal(cns.regs.get("di"), 0n);
  const norem = resumption(stopped(35, -516, { di: REQ, si: 0n }), ctx());
  assert.ok(restarted(norem.regs, 35));
  assert.equal(norem.regs.get("di"), REQ);
  assert.match(norem.inexact!, /from the start/);
  const junk = resumption(stopped(35, -516, { di: REQ, si: REM }), ctx({ left: { sec: 1n, nsec: 2_000_000_000n } }));
  assert.equal(junk.regs.get("di"), REQ, "an impossible time left is not used");
  assert.ok(junk.inexact);
});

test("poll and futex with a restart block: exact without a relative timeout, and then for a live thread too", () => {
  const forever = resumption(stopped(7, -516, { dx: 0xffffffffn }), ctx());
  assert.ok(restarted(forever.regs, 7));
  assert.equal(forever.inexact, null, "an int timeout of -1 in a 64-bit register");
  assert.deepEqual(forever.live?.buf, forever.regs.buf);
  const timed = resumption(stopped(7, -516, { dx: 3000n }), ctx());
  assert.ok(restarted(timed.regs, 7));
  assert.match(timed.inexact!, /its 3000 ms timeout from the start/);
  assert.equal(timed.live, null, "the kernel's own restart keeps the deadline");
  const rel = resumption(stopped(202, -516, { si: 128n, r10: REQ }), ctx());
  assert.match(rel.inexact!, /relative timeout/);
  const abs = resumption(stopped(202, -516, { si: 128n + 9n, r10: REQ }), ctx());
  assert.equal(abs.inexact, null, "FUTEX_WAIT_BITSET's timeout is absolute");
  assert.ok(abs.live);
});

test("restart_syscall and unknown restart blocks fail with EINTR, warned", () => {
  for (const nr of [219, 999]) {
    const res = resumption(stopped(nr, -516), ctx());
    assert.ok(eintr(res.regs));
    assert.ok(res.inexact);
  }
});

test("EINTR caused by crest's interrupt: the never-restarted calls restart, live too", () => {
  const ep = resumption(stopped(232, -4, { r10: BigInt.asUintN(64, -1n) }), ctx());
  assert.ok(restarted(ep.regs, 232));
  assert.equal(ep.inexact, null);
  assert.deepEqual(ep.live?.buf, ep.regs.buf);
  const timed = resumption(stopped(281, -4, { r10: 250n }), ctx());
  assert.ok(restarted(timed.regs, 281));
  assert.match(timed.inexact!, /epoll_pwait restarts with its 250 ms timeout/);
  assert.ok(timed.live);
  assert.ok(restarted(resumption(stopped(220, -4), ctx()).regs, 220), "semtimedop without a timeout");
  assert.match(resumption(stopped(45, -4), ctx()).inexact!, /socket timeout/);
  assert.ok(restarted(resumption(stopped(0, -4), ctx()).regs, 0), "a read's EINTR says nothing was read: it restarts");
  const stop = resumption(stopped(232, -4, { r10: BigInt.asUintN(64, -1n) }), ctx({ stopped: true }));
  assert.ok(eintr(stop.regs), "a stop signal's EINTR stays, as the kernel gives it after SIGCONT");
  const close = resumption(stopped(3, -4), ctx());
  assert.ok(eintr(close.regs), "close's EINTR is not crest's: never restarted");
  assert.ok(close.inexact);
});
