// /proc/PID/stat: a comm with spaces and parentheses, a thread whose comm holds
// a tab, a backslash and a newline, a zombie, a kernel thread, a nested PID namespace.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { parseStat, ProcParseError } from "../../src/proc/index.js";

const fixture = (name: string): string => readFileSync(new URL(`../../../test/fixtures/proc/${name}`, import.meta.url), "utf8");

test("stat: all 52 fields of a live process", () => {
  const st = parseStat(fixture("zoo/stat"));
  assert.equal(st.pid, 9561);
  assert.equal(st.comm, "we(ird) )name");
  assert.equal(st.state, "S");
  assert.deepEqual([st.ppid, st.pgrp, st.session, st.ttyNr, st.tpgid], [9529, 9484, 2551, 0, -1]);
  assert.equal(st.flags, 4194560);
  assert.equal(st.minflt, 213);
  assert.deepEqual([st.priority, st.nice, st.numThreads, st.itrealvalue], [20, 0, 2, 0]);
  assert.equal(st.starttime, 875547);
  assert.equal(st.vsize, 11165696);
  assert.equal(st.rss, 337);
  assert.equal(st.rsslim, 18446744073709551615n);
  assert.equal(st.startCode, 94382181978112);
  assert.equal(st.endCode, 94382181985653);
  assert.equal(st.startStack, 140723540735952);
  assert.deepEqual([st.signal, st.blocked, st.sigignore, st.sigcatch], [2048, 18944, 4101, 2050]);
  assert.deepEqual([st.exitSignal, st.processor, st.rtPriority, st.policy], [17, 1, 0, 0]);
  assert.equal(st.startData, 94382181993936);
  assert.equal(st.endData, 94382181995072);
  assert.equal(st.startBrk, 94382270734336);
  assert.deepEqual([st.argStart, st.argEnd, st.envStart, st.envEnd], [140723540744775, 140723540744893, 140723540744893, 140723540746196]);
  assert.equal(st.exitCode, 0);
});

test("stat: a thread's comm with a tab, a backslash, a newline and ') '", () => {
  const st = parseStat(fixture("zoo/task/worker-stat"));
  assert.equal(st.pid, 9566);
  assert.equal(st.comm, "cw\t\\x\n(y) z");
  assert.equal(st.state, "S");
  assert.equal(st.exitSignal, -1, "threads have no exit signal");
  assert.equal(st.numThreads, 2);
});

test("stat: zombie and kernel thread have no mm fields", () => {
  const z = parseStat(fixture("zombie/stat"));
  assert.equal(z.state, "Z");
  assert.equal(z.exitCode, 7 << 8, "wait status of _exit(7)");
  assert.deepEqual([z.startCode, z.endCode, z.startStack, z.startBrk, z.envEnd, z.vsize], [0, 0, 0, 0, 0, 0]);
  const k = parseStat(fixture("kthread/stat"));
  assert.deepEqual([k.pid, k.comm, k.ppid, k.flags & 0x200000], [2, "kthreadd", 0, 0x200000], "PF_KTHREAD");
  assert.equal(k.sigignore, 2147483647, "the legacy signal words keep only 31 bits");
});

test("stat: a task in a nested PID namespace still shows host pids", () => {
  const st = parseStat(fixture("pidns/stat"));
  assert.deepEqual([st.pid, st.comm, st.ppid, st.pgrp, st.session], [9686, "nsleaf", 9684, 9484, 2551]);
});

test("stat: malformed input throws ProcParseError", () => {
  assert.throws(() => parseStat("12 no-paren S 1"), /no \(comm\)/);
  assert.throws(() => parseStat("12 (x) S 1 2 3\n"), /fields, expected 52/);
  const good = fixture("zoo/stat");
  assert.throws(() => parseStat(good.replace(" 875547 ", " 8755x7 ")), /starttime/);
  assert.throws(() => parseStat(good.replace(") S ", ") SS ")), /bad state/);
  assert.throws(() => parseStat(good.replace(" 11165696 ", " 99999999999999999999 ")), /does not fit/);
  assert.throws(() => parseStat(good.replace(" 18446744073709551615 ", " -1 ")), ProcParseError);
});
