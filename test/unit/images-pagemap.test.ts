// pagemap-N.img's entries as a dump builds them (PagemapRuns) are framed by
// a writer of their own (payloads.ts writePagemap: a dump after a pre-dump
// writes hundreds of thousands): its bytes must be the codec's, entry for
// entry, and read back the same.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encode, IMG, imagePath, pagemap_entry, pagemap_head, PagemapRuns, readImage, writeImage } from "../../src/images/index.js";
import { preadCalls } from "../../src/kinds/memory/pages.js";

test("pagemap entries a dump builds (PagemapRuns) are written as the codec's bytes, and read back", () => {
  const dir = mkdtempSync(join(tmpdir(), "crest-pagemap-"));
  let x = 0x12345678;
  const rnd = (n: number) => ((x = (x * 1103515245 + 12345) % 2 ** 31), x % n);
  const runs = new PagemapRuns();
  for (let i = 0; i < 2000; i++) runs.add(0x7f0000000000 + i * 0x200000 + rnd(256) * 4096, 1 + rnd(i % 7 === 0 ? 2 ** 30 : 300), [1, 4, 6][rnd(3)]!);
  // The varint's edges: 2^28 and 2^53 less a page for vaddr, over 32 bits of pages (field 2 then 0).
  runs.add(2 ** 53 - 4096, 2 ** 33 + 5, 4);
  runs.add(0x10000000, 0x7f, 0x80);
  const entries = runs.entries();
  assert.equal(entries.length, 2002);
  assert.deepEqual(entries[2000], { vaddr: 2n ** 53n - 4096n, compat_nr_pages: 0, nr_pages: 2n ** 33n + 5n, flags: 4 });
  writeImage(dir, IMG.pagemap, 7, { head: { pages_id: 3 }, entries: runs });
  const file = readFileSync(imagePath(dir, IMG.pagemap, 7));
  const frame = (b: Uint8Array) => {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    return Buffer.concat([len, b]);
  };
  const body = Buffer.concat([frame(encode(pagemap_head, { pages_id: 3 })), ...entries.map((e) => frame(encode(pagemap_entry, e)))]);
  assert.ok(file.subarray(file.length - body.length).equals(body), "the same bytes as the codec's");
  assert.deepEqual(readImage(dir, IMG.pagemap, 7).entries, entries);
});

test("PagemapRuns: a run that follows the last with the same flags joins it", () => {
  const runs = new PagemapRuns();
  runs.add(0x1000, 2, 4);
  runs.add(0x3000, 1, 4); // follows: one entry of 3 pages
  runs.add(0x4000, 1, 1); // other flags
  runs.add(0x6000, 1, 1); // a gap
  for (let i = 0; i < 100; i++) runs.add(0x100000 + i * 0x2000, 1, 4); // past the first growth
  assert.equal(runs.length, 103);
  assert.deepEqual(runs.entries().slice(0, 3), [
    { vaddr: 0x1000n, compat_nr_pages: 3, nr_pages: 3n, flags: 4 },
    { vaddr: 0x4000n, compat_nr_pages: 1, nr_pages: 1n, flags: 1 },
    { vaddr: 0x6000n, compat_nr_pages: 1, nr_pages: 1n, flags: 1 },
  ]);
  assert.equal(runs.vaddr(102), 0x100000 + 99 * 0x2000);
});

test("a restore's preadv calls: runs that follow each other in the file, none over the size limit, long runs split", () => {
  const page = 4096;
  const runs = [
    { vaddr: 0x10000n, len: 3 * page, off: 0 },
    { vaddr: 0x20000n, len: 2 * page, off: 3 * page },
    { vaddr: 0x30000n, len: 9 * page, off: 5 * page },
    { vaddr: 0x50000n, len: page, off: 20 * page },
  ];
  const shape = (max: number) => preadCalls(runs, max * page).map((c) => c.map((r) => [Number(r.vaddr).toString(16), r.len / page, r.off / page]));
  assert.deepEqual(shape(4), [
    [["10000", 3, 0]], [["20000", 2, 3]], [["30000", 4, 5]], [["34000", 4, 9]], [["38000", 1, 13]], [["50000", 1, 20]],
  ]);
  assert.deepEqual(shape(8), [
    [["10000", 3, 0], ["20000", 2, 3]], [["30000", 8, 5]], [["38000", 1, 13]], [["50000", 1, 20]],
  ]);
  assert.deepEqual(shape(1 << 20), [[["10000", 3, 0], ["20000", 2, 3], ["30000", 9, 5]], [["50000", 1, 20]]]);
});
