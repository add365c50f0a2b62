// PagesWriter.addLivePieces (dump --precopy's copy of a running task), on
// pages of this process: pieces left in the parent get their PE_PARENT entry,
// the others are read in one process_vm_readv; a piece unmapped since it was
// found stops that call, and is read page by page instead, what is gone left
// out; the pieces after it are read all the same, in order.
import { test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, openSync, readSync } from "node:fs";
import { native } from "../../src/sys/native.js";
import { MAP, PAGE_SIZE, PROT, SYS } from "../../src/sys/constants.js";
import { PE, PagesWriter } from "../../src/kinds/memory/pages.js";
import { newStats } from "../../src/kinds/context.js";
import type { PageSink } from "../../src/images/store.js";

const CLOCK_MONOTONIC = 1;

test("addLivePieces: parent pieces entered, the rest read in order, an unmapped piece left out", () => {
  const pages = 6;
  const addr = native.syscall(SYS.mmap, 0, pages * PAGE_SIZE, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS, -1, 0);
  assert.ok(addr > 0, "mmap");
  const at = (p: number) => addr + p * PAGE_SIZE;
  // A page each its own bytes, written by the kernel (a timespec), then page 3 unmapped: found before, gone now.
  for (let p = 0; p < pages; p++) assert.equal(native.syscall(SYS.clock_gettime, CLOCK_MONOTONIC, at(p) + p * 64), 0);
  const mem = openSync("/proc/self/mem", "r");
  const page = (p: number) => {
    const b = Buffer.alloc(PAGE_SIZE);
    assert.equal(readSync(mem, b, 0, PAGE_SIZE, at(p)), PAGE_SIZE);
    return b;
  };
  const want = [0, 2, 4, 5].map(page);
  native.syscall(SYS.munmap, at(3), PAGE_SIZE);
  const written: Buffer[] = [];
  const sink: PageSink = {
    write: (buf, off, len) => void written.push(Buffer.from(buf.subarray(off, off + len))),
    writeBehind: (buf, off, len) => void written.push(Buffer.from(buf.subarray(off, off + len))),
    drain: () => {},
    close: () => {},
  };
  try {
    const w = new PagesWriter(process.pid, sink, newStats());
    const piece = (p: number, n: number, inParent: boolean) => ({ start: at(p), end: at(p + n), inParent });
    const copied = w.addLivePieces(mem, [piece(0, 1, false), piece(1, 1, true), piece(2, 2, false), piece(4, 2, false)]);
    w.close();
    assert.equal(copied, 4, "pages 0, 2, 4 and 5: page 3 is gone");
    const e = w.entries.entries().map((x) => [Number((x.vaddr - BigInt(addr)) / BigInt(PAGE_SIZE)), Number(x.nr_pages), x.flags]);
    assert.deepEqual(e, [[0, 1, PE.PRESENT], [1, 1, PE.PARENT], [2, 1, PE.PRESENT], [4, 2, PE.PRESENT]]);
    assert.ok(Buffer.concat(written).equals(Buffer.concat(want)), "the bytes of pages 0, 2, 4, 5, in order");
  } finally {
    closeSync(mem);
    native.syscall(SYS.munmap, addr, pages * PAGE_SIZE);
  }
});
