// The dump's writer thread (images/writer-thread.ts): what it is handed is
// written in order, drain waits for it, a failure is reported naming its file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { sharedAligned, WriterThread } from "../../src/images/writer-thread.js";
import { native } from "../../src/sys/native.js";

test("appends land in order, copies and shared buffers alike; drain waits for them", () => {
  const w = new WriterThread();
  const file = join(mkdtempSync("/tmp/crest-wt-"), "out");
  try {
    const a = sharedAligned(1 << 20);
    assert.equal(native.address(a) % 4096, 0, "page-aligned");
    a.fill(1);
    const b = Buffer.alloc(8192, 2);
    const id = w.open(file);
    w.writeShared(id, a, 0, a.length);
    w.write(id, b, 4096, 4096);
    b.fill(3); // a copy was handed over
    w.close(id);
    w.drain();
    const got = readFileSync(file);
    assert.equal(got.length, (1 << 20) + 4096);
    assert.ok(got.subarray(0, 1 << 20).every((x) => x === 1));
    assert.ok(got.subarray(1 << 20).every((x) => x === 2));
  } finally {
    w.stop();
  }
});

test("a whole file is created with its bytes, which are handed over", () => {
  const w = new WriterThread();
  const dir = mkdtempSync("/tmp/crest-wt-");
  try {
    const data = new Uint8Array(Buffer.from("abcdef"));
    w.file(join(dir, "img"), data);
    assert.equal(data.length, 0, "the bytes moved to the thread");
    w.drain();
    assert.equal(readFileSync(join(dir, "img"), "utf8"), "abcdef");
  } finally {
    w.stop();
  }
});

test("a file that cannot be created makes drain throw, naming it, and every drain after", () => {
  const w = new WriterThread();
  const path = join(mkdtempSync("/tmp/crest-wt-"), "missing", "img");
  try {
    w.file(path, new Uint8Array(1));
    const id = w.open(path);
    w.write(id, Buffer.alloc(16), 0, 16);
    w.close(id);
    assert.throws(() => w.drain(), (e: Error) => e.message.includes(path) && /cannot create: ENOENT/.test(e.message));
    assert.throws(() => w.drain(), /cannot create: ENOENT/);
  } finally {
    w.stop();
  }
});

test("only shared buffers are written in place", () => {
  const w = new WriterThread();
  try {
    assert.throws(() => w.writeShared(0, Buffer.alloc(16), 0, 16), /must be shared/);
  } finally {
    w.stop();
  }
});
