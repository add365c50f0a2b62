// /proc/PID/limits of a process that changed several limits, soft and hard.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { parseLimits, ProcParseError, RLIMIT, RLIMIT_NAMES, RLIM_INFINITY } from "../../src/proc/index.js";

const fixture = (name: string): string => readFileSync(new URL(`../../../test/fixtures/proc/${name}`, import.meta.url), "utf8");

test("limits: every RLIMIT_* by number, unlimited as RLIM_INFINITY", () => {
  const l = parseLimits(fixture("zoo/limits"));
  assert.equal(l.length, 16);
  assert.equal(RLIM_INFINITY, 2n ** 64n - 1n);
  assert.deepEqual(l[RLIMIT.CPU], { cur: 3600n, max: RLIM_INFINITY }, "seconds, as set");
  assert.deepEqual(l[RLIMIT.FSIZE], { cur: 1n << 40n, max: RLIM_INFINITY });
  assert.deepEqual(l[RLIMIT.DATA], { cur: RLIM_INFINITY, max: RLIM_INFINITY });
  assert.deepEqual(l[RLIMIT.STACK], { cur: 8388608n, max: RLIM_INFINITY });
  assert.deepEqual(l[RLIMIT.CORE], { cur: 0n, max: RLIM_INFINITY });
  assert.deepEqual(l[RLIMIT.NPROC], { cur: 96365n, max: 96365n });
  assert.deepEqual(l[RLIMIT.NOFILE], { cur: 4096n, max: 8192n });
  assert.deepEqual(l[RLIMIT.MEMLOCK], { cur: 8388608n, max: 8388608n });
  assert.deepEqual(l[RLIMIT.LOCKS], { cur: 100n, max: 200n });
  assert.deepEqual(l[RLIMIT.MSGQUEUE], { cur: 1000n, max: 819200n });
  assert.deepEqual(l[RLIMIT.NICE], { cur: 0n, max: 0n }, "a row without units");
  assert.deepEqual(l[RLIMIT.RTPRIO], { cur: 0n, max: 0n });
  assert.deepEqual(l[RLIMIT.RTTIME], { cur: 500000n, max: RLIM_INFINITY }, "microseconds, as set");
  assert.equal(RLIMIT_NAMES[RLIMIT.NOFILE], "RLIMIT_NOFILE");
});

test("limits: malformed tables throw ProcParseError", () => {
  const good = fixture("zoo/limits");
  assert.throws(() => parseLimits("Max bogus 1 2\n"), /header/);
  assert.throws(() => parseLimits(good.split("\n").slice(0, 10).join("\n")), /rows, expected 16/);
  const rows = good.split("\n");
  [rows[1], rows[2]] = [rows[2]!, rows[1]!];
  assert.throws(() => parseLimits(rows.join("\n")), /row 0 should be "Max cpu time" \(RLIMIT_CPU\)/);
  assert.throws(() => parseLimits(good.replace("3600                 unlimited            seconds", "3600                 unlimited            minutes")), /"seconds"/);
  assert.throws(() => parseLimits(good.replace("Max open files            4096", "Max open files            lots")), ProcParseError);
  assert.throws(() => parseLimits(good.replace("Max nice priority         0                    0", "Max nice priority         0")), /expected soft, hard/);
});
