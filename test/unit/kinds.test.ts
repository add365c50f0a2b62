// Pure pieces of the kinds: register conversions, address space planning
// (syscall restart: syscall-restart.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { entryToRegs, entryToXsave, regsToEntry, xsaveToEntry } from "../../src/kinds/task/regs.js";
import { findHole, vmasWithPages } from "../../src/kinds/memory/memory.js";
import { Regs, REG_NAMES } from "../../src/sys/structs.js";
import { xcomponent, xstateSize, XFEATURE, XSTATE_BV_OFFSET } from "../../src/sys/xsave.js";
import type { vma_entry } from "../../src/images/index.js";

test("general registers survive the image entry both ways", () => {
  const r = new Regs();
  REG_NAMES.forEach((n, i) => r.set(n, BigInt(i + 1) * 0x1111111111n));
  r.set("orig_ax", -1n);
  const back = entryToRegs(regsToEntry(r));
  assert.deepEqual(back.buf, r.buf);
});

test("the XSAVE area of this CPU survives the image entry", () => {
  const size = xstateSize();
  const x = Buffer.alloc(size);
  for (let i = 0; i < 512; i++) x[i] = (i * 7 + 3) & 0xff;
  x.writeUInt16LE(0x00ab, 4); // abridged tag word: one byte plus a reserved zero
  const ymm = xcomponent(XFEATURE.YMM);
  if (ymm) for (let i = 0; i < ymm.size; i++) x[ymm.offset + i] = (i * 13 + 1) & 0xff;
  x.writeBigUInt64LE(ymm ? 7n : 3n, XSTATE_BV_OFFSET);
  const e = xsaveToEntry(x);
  const template = Buffer.alloc(size);
  const back = entryToXsave(e, template);
  assert.deepEqual(back.subarray(0, 416), x.subarray(0, 416), "legacy area");
  assert.equal(back.readBigUInt64LE(XSTATE_BV_OFFSET), x.readBigUInt64LE(XSTATE_BV_OFFSET));
  if (ymm) assert.deepEqual(back.subarray(ymm.offset, ymm.offset + ymm.size), x.subarray(ymm.offset, ymm.offset + ymm.size));
  e.xsave!.xstate_bv |= 1n << 62n;
  assert.throws(() => entryToXsave(e, template), /this CPU does not have/);
});

const vma = (start: number, end: number): vma_entry => ({
  start: BigInt(start), end: BigInt(end), pgoff: 0n, shmid: 0n, prot: 3, flags: 0x22, status: 0x201, fd: -1n,
});

test("a hole for crest's scratch page, clear of both layouts", () => {
  const taken = [{ start: 0x10000000, end: 0x10002000 }, { start: 0x10003000, end: 0x10010000 }];
  assert.equal(findHole(taken, 0x1000), 0x10002000);
  assert.equal(findHole(taken, 0x2000), 0x10010000);
  assert.equal(findHole([], 0x1000, 0x20000000), 0x20000000);
});

test("pagemap runs spanning adjacent mappings mark each of them", () => {
  const a = vma(0x1000, 0x3000), b = vma(0x3000, 0x5000), c = vma(0x8000, 0x9000);
  const e = (vaddr: number, pages: number) => ({ vaddr: BigInt(vaddr), compat_nr_pages: pages, nr_pages: BigInt(pages), flags: 4 });
  const got = vmasWithPages([c, a, b], [e(0x2000, 2)]);
  assert.deepEqual([...got].map((v) => v.start), [0x1000n, 0x3000n]);
  assert.equal(vmasWithPages([a, b, c], [e(0x8000, 1)]).has(c), true);
});
