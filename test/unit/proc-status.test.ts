// /proc/PID/status: signal sets above 2^53, dropped credentials with kept and
// ambient capabilities, seccomp, nested PID namespaces, zombies, kernel threads.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { parseStatus, ProcParseError } from "../../src/proc/index.js";

const fixture = (name: string): string => readFileSync(new URL(`../../../test/fixtures/proc/${name}`, import.meta.url), "utf8");
const sig = (...signals: number[]): bigint => signals.reduce((m, s) => m | (1n << BigInt(s - 1)), 0n);

test("status: identity, umask, memory and namespace pids of a live process", () => {
  const st = parseStatus(fixture("zoo/status"));
  assert.equal(st.name, "we(ird) )name");
  assert.equal(st.umask, 0o027);
  assert.deepEqual([st.state, st.stateName], ["S", "sleeping"]);
  assert.deepEqual([st.tgid, st.ngid, st.pid, st.ppid, st.tracerPid], [9561, 0, 9561, 9529, 0]);
  assert.deepEqual(st.uid, [0, 0, 0, 0]);
  assert.deepEqual(st.groups, []);
  assert.equal(st.fdSize, 4096, "an fd at 3000 grows the table to the next power of two");
  assert.deepEqual([st.nsTgid, st.nsPid, st.nsPgid, st.nsSid], [[9561], [9561], [9484], [2551]]);
  assert.equal(st.kthread, false);
  assert.deepEqual(st.vm, {
    peak: 10904, size: 10904, lck: 4, pin: 0, hwm: 1544, rss: 1544, rssAnon: 120, rssFile: 1412,
    rssShmem: 12, data: 8492, stk: 196, exe: 8, lib: 1532, pte: 40, swap: 0,
  });
  assert.equal(st.threads, 2);
  assert.deepEqual(st.sigQ, { queued: 9, limit: 96365 });
  assert.equal(st.fields.THP_enabled, "1");
  assert.equal(st.fields.untag_mask, "0xffffffffffffffff");
  assert.equal(st.fields.Cpus_allowed_list, "0-1");
  assert.equal(st.speculationStoreBypass, "thread vulnerable");
  assert.equal(st.speculationIndirectBranch, "conditional enabled");
});

test("status: pending, blocked, ignored and caught signals as bigints (SIGRTMAX is bit 63)", () => {
  const st = parseStatus(fixture("zoo/status"));
  assert.equal(st.sigPnd, sig(12), "raise(SIGUSR2) is pending for the main thread");
  assert.equal(st.shdPnd, sig(64, 37), "kill(SIGRTMAX) and sigqueue(SIGRTMIN+3) are shared");
  assert.equal(st.shdPnd, 0x8000001000000000n);
  assert.equal(st.sigBlk, sig(10, 12, 15, 36, 37, 64));
  assert.equal(st.sigIgn, sig(1, 3, 13));
  assert.equal(st.sigCgt, sig(2, 12, 33, 64), "SIGINT, SIGUSR2, SIGRTMAX and glibc's SIGCANCEL");
  const worker = parseStatus(fixture("zoo/task/worker-status"));
  assert.equal(worker.sigPnd, 0n);
  assert.equal(worker.shdPnd, st.shdPnd);
  assert.deepEqual([worker.pid, worker.tgid, worker.nsPid], [9566, 9561, [9566]]);
});

test("status: Name decodes the kernel's \\n and \\\\ escapes and keeps tabs", () => {
  const st = parseStatus(fixture("zoo/task/worker-status"));
  assert.equal(st.name, "cw\t\\x\n(y) z");
  assert.equal(parseStatus(fixture("zoo/status").replace("Name:\twe(ird) )name", "Name:\t  lead\\\\n ")).name, "  lead\\n ");
});

test("status: dropped credentials with kept, inheritable and ambient capabilities", () => {
  const st = parseStatus(fixture("creds/status"));
  assert.deepEqual(st.uid, [2000, 2001, 2002, 2002], "real, effective, saved, fs");
  assert.deepEqual(st.gid, [1000, 1001, 1002, 1000]);
  assert.deepEqual(st.groups, [10, 20, 30]);
  const CAP_KILL = 5n, CAP_NET_BIND_SERVICE = 10n, CAP_SYS_MODULE = 16n, CAP_SYS_RESOURCE = 24n;
  assert.equal(st.capInh, 1n << CAP_NET_BIND_SERVICE);
  assert.equal(st.capPrm, (1n << CAP_KILL) | (1n << CAP_NET_BIND_SERVICE));
  assert.equal(st.capEff, st.capPrm);
  assert.equal(st.capAmb, 1n << CAP_NET_BIND_SERVICE);
  assert.equal(st.capBnd, 0x1ffffffffffn & ~(1n << CAP_SYS_MODULE) & ~(1n << CAP_SYS_RESOURCE));
  assert.equal(st.noNewPrivs, false);
});

test("status: no_new_privs and two seccomp filters", () => {
  const st = parseStatus(fixture("seccomp/status"));
  assert.equal(st.noNewPrivs, true);
  assert.equal(st.seccomp, 2);
  assert.equal(st.seccompFilters, 2);
});

test("status: a task two PID namespaces deep has three ids per NS line", () => {
  const leaf = parseStatus(fixture("pidns/status"));
  assert.deepEqual(leaf.nsTgid, [9686, 6, 3]);
  assert.deepEqual(leaf.nsPid, [9686, 6, 3]);
  assert.deepEqual(leaf.nsPgid, [9484, 0, 0], "its group leader is outside both namespaces");
  assert.deepEqual(leaf.nsSid, [2551, 0, 0]);
  const init = parseStatus(fixture("pidns/init-status"));
  assert.deepEqual(init.nsPid, [9684, 4, 1]);
});

test("status: zombie (no Umask, no memory) and kernel thread", () => {
  const z = parseStatus(fixture("zombie/status"));
  assert.deepEqual([z.state, z.stateName], ["Z", "zombie"]);
  assert.equal(z.umask, undefined);
  assert.equal(z.vm, undefined);
  assert.equal(z.fdSize, 0);
  const k = parseStatus(fixture("kthread/status"));
  assert.equal(k.kthread, true);
  assert.equal(k.vm, undefined);
  assert.equal(k.sigIgn, 0xffffffffffffffffn);
  assert.equal(k.capBnd, 0x1ffffffffffn);
});

test("status: malformed input throws ProcParseError", () => {
  const good = fixture("zoo/status");
  assert.throws(() => parseStatus("Name:\tx\nUid:\t1 2\n"), ProcParseError);
  assert.throws(() => parseStatus(good.replace("Uid:\t0\t0\t0\t0", "Uid:\t0\t0\t0")), /expected four ids/);
  assert.throws(() => parseStatus(good.replace("SigBlk:\t8000001800004a00", "SigBlk:\t8000001800004a0")), /16 hex digits/);
  assert.throws(() => parseStatus(good.replace("CapEff:\t000001fffeffffff\n", "")), /no CapEff: line/);
  assert.throws(() => parseStatus(good.replace("Threads:\t2", "Threads:\ttwo")), /Threads/);
  assert.throws(() => parseStatus(good.replace("VmRSS:\t    1544 kB", "VmRSS:\t    1544 MB")), /N kB/);
  assert.throws(() => parseStatus(good.replace("State:\tS (sleeping)", "State:\tsleeping")), /X \(name\)/);
  assert.throws(() => parseStatus(`${good}Pid:\t1\n`), /Pid twice/);
  assert.throws(() => parseStatus(`${good}no colon here\n`), /no "Key:"/);
  assert.throws(() => parseStatus(good.replace("NoNewPrivs:\t0", "NoNewPrivs:\tyes")), /0 or 1/);
  const extra = parseStatus(`${good}Future_Key:\tsome value\n`);
  assert.equal(extra.fields.Future_Key, "some value", "unknown keys are kept");
});
