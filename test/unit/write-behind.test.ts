// The image store's writer thread (images/write-behind.ts): what it is
// handed is written in order, drain waits for it, a failed write is reported.
import { test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { sharedAligned, WriteBehind } from "../../src/images/write-behind.js";
import { native } from "../../src/sys/native.js";

test("writes handed over land in order; drain waits for them", () => {
  const w = new WriteBehind();
  const file = join(mkdtempSync("/tmp/crest-wb-"), "out");
  const fd = openSync(file, "w");
  try {
    const a = sharedAligned(1 << 20), b = sharedAligned(1 << 20);
    assert.equal(native.address(a) % 4096, 0, "page-aligned");
    a.fill(1);
    b.fill(2);
    w.write(fd, a, 0, a.length);
    w.write(fd, b, 4096, 8192);
    w.drain("the test file");
    const got = readFileSync(file);
    assert.equal(got.length, (1 << 20) + 8192);
    assert.ok(got.subarray(0, 1 << 20).every((x) => x === 1));
    assert.ok(got.subarray(1 << 20).every((x) => x === 2));
  } finally {
    closeSync(fd);
    w.close();
  }
});

test("a write that fails makes drain throw", () => {
  const w = new WriteBehind();
  try {
    // An fd number no process here has open.
    w.write(1 << 24, sharedAligned(4096), 0, 4096);
    assert.throws(() => w.drain("nowhere"), /cannot write nowhere: EBADF/);
  } finally {
    w.close();
  }
});

test("only shared buffers can be handed over", () => {
  const w = new WriteBehind();
  try {
    assert.throws(() => w.write(1, Buffer.alloc(16), 0, 16), /must be shared/);
  } finally {
    w.close();
  }
});
