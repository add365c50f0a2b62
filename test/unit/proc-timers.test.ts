// /proc/PID/timers: POSIX timers of every notify kind on several clocks.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { parseTimers, ProcParseError, SIGEV } from "../../src/proc/index.js";

const fixture = (name: string): string => readFileSync(new URL(`../../../test/fixtures/proc/${name}`, import.meta.url), "utf8");

test("timers: newest first, every notify kind, CPU-time clocks negative", () => {
  const t = parseTimers(fixture("zoo/timers"));
  assert.deepEqual(t.map((x) => x.id), [5, 4, 3, 2, 1, 0]);
  assert.deepEqual(t[0], { id: 5, signal: 26, sigevValue: 0n, notify: "signal", sigevNotify: SIGEV.SIGNAL, notifyPid: 9561, clockid: -2 },
    "CLOCK_THREAD_CPUTIME_ID is stored as the calling thread's CPU clock");
  assert.deepEqual(t[1], { id: 4, signal: 14, sigevValue: 42n, notify: "signal", sigevNotify: SIGEV.SIGNAL, notifyPid: 9561, clockid: -6 },
    "the process CPU clock");
  assert.deepEqual(t[2], {
    id: 3, signal: 35, sigevValue: 0xffffffffffffffffn, notify: "signal", sigevNotify: SIGEV.SIGNAL | SIGEV.THREAD_ID,
    notifyTid: 9566, notifyPid: 9566, clockid: 1,
  });
  assert.deepEqual(t[3], { id: 2, signal: 34, sigevValue: 0xdeadbeefcafen, notify: "thread", sigevNotify: SIGEV.THREAD, notifyPid: 9561, clockid: 7 });
  assert.deepEqual(t[4], { id: 1, signal: 0, sigevValue: 0n, notify: "none", sigevNotify: SIGEV.NONE, notifyPid: 9561, clockid: 1 });
  assert.equal(t[5]!.sigevValue, 0x1234n);
  assert.deepEqual(parseTimers(""), []);
});

test("timers: malformed input throws ProcParseError", () => {
  const good = fixture("zoo/timers");
  assert.throws(() => parseTimers("ID: 1\nsignal: x\n"), /not four per timer/);
  assert.throws(() => parseTimers(good.replace("notify: none/pid", "notify: nothing/pid")), /notify: KIND/);
  assert.throws(() => parseTimers(good.replace("signal: 10/0000000000001234", "signal: 10/xyz")), /SIGNO\/VALUE/);
  assert.throws(() => parseTimers(good.replace("ClockID: 7", "ClockID: seven")), /ClockID: N/);
  assert.throws(() => parseTimers(good.replace("ID: 5", "Id: 5")), ProcParseError);
});
