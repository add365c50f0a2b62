// /proc/PID/auxv bytes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { parseAuxv, auxvGet, parseMaps, AT, ProcParseError } from "../../src/proc/index.js";

const bytes = (name: string): Buffer => readFileSync(new URL(`../../../test/fixtures/proc/${name}`, import.meta.url));

test("auxv: type/value pairs up to and including AT_NULL", () => {
  const a = parseAuxv(bytes("zoo/auxv"));
  assert.equal(a.length, 46);
  assert.deepEqual(a.slice(-2), [0n, 0n]);
  assert.deepEqual(a.slice(0, 4), [AT.SYSINFO_EHDR, 0x7fd8d2f58000n, AT.MINSIGSTKSZ, 0xd30n]);
  assert.equal(auxvGet(a, AT.PAGESZ), 4096n);
  assert.equal(auxvGet(a, AT.CLKTCK), 100n);
  assert.equal(auxvGet(a, AT.PHNUM), 13n);
  assert.equal(auxvGet(a, AT.ENTRY), 0x55d7106e14a0n);
  assert.equal(auxvGet(a, AT.SECURE), 0n);
  assert.equal(auxvGet(a, 99n), undefined);
  const vdso = parseMaps(readFileSync(new URL("../../../test/fixtures/proc/zoo/maps", import.meta.url), "utf8")).find((m) => m.path === "[vdso]")!;
  assert.equal(auxvGet(a, AT.SYSINFO_EHDR), BigInt(vdso.start), "AT_SYSINFO_EHDR is the vdso");
  assert.deepEqual(parseAuxv(Buffer.alloc(0)), [], "no mm: empty");
});

test("auxv: malformed input throws ProcParseError", () => {
  assert.throws(() => parseAuxv(Buffer.alloc(5)), /not whole/);
  const good = bytes("zoo/auxv");
  assert.throws(() => parseAuxv(good.subarray(0, good.length - 16)), /no AT_NULL/);
  assert.throws(() => parseAuxv(Buffer.concat([good, Buffer.alloc(16, 1)])), /data after AT_NULL/);
  assert.throws(() => parseAuxv(Buffer.alloc(16, 1)), ProcParseError);
});
