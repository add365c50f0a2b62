// The fuzzer's own parts (test/fuzz/fuzz.ts), without processes: its
// generator and mutations replay from a seed, every image file name maps to
// its kind, and crest's decoder, fed thousands of mutations of a small image
// set written here (entries, entries with payloads, a pagemap), gives a value
// or an ImageError naming the file, never anything else.
import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fd_types, IMG, writeImage } from "../../src/images/index.js";
import { decodeFile, kindOfFile, mutateSet, Rng } from "../fuzz/fuzz.js";

function smallSet(): string {
  const dir = mkdtempSync("/tmp/crest-fuzz-unit-");
  writeImage(dir, IMG.pstree, undefined, [
    { pid: 100, ppid: 0, pgid: 100, sid: 100, threads: [100, 101] },
    { pid: 102, ppid: 100, pgid: 100, sid: 100, threads: [102] },
  ]);
  writeImage(dir, IMG.fdinfo, 1, [
    { id: 1, flags: 0, type: fd_types.PIPE, fd: 3 }, { id: 2, flags: 0o2000000, type: fd_types.PIPE, fd: 4 },
    { id: 3, flags: 0, type: fd_types.REG, fd: 1000 },
  ]);
  writeImage(dir, IMG.pipesData, undefined, [
    { entry: { pipe_id: 7, bytes: 5 }, data: Buffer.from("hello") }, { entry: { pipe_id: 8, bytes: 3, size: 65536 }, data: Buffer.from("abc") },
  ]);
  writeImage(dir, IMG.pagemap, 100, { head: { pages_id: 1 }, entries: [
    { vaddr: 0x400000n, compat_nr_pages: 0, nr_pages: 2n, flags: 4 }, { vaddr: 0x7f0000000000n, compat_nr_pages: 0, nr_pages: 1n, flags: 4 },
  ] });
  const desc = { key: 0x5eee, uid: 0, gid: 0, cuid: 0, cgid: 0, mode: 0o600, id: 3 };
  writeImage(dir, IMG.ipcSem, 7, [{ entry: { desc, nsems: 3 }, values: [1, 2, 3] }]);
  writeFileSync(join(dir, "pages-1.img"), Buffer.alloc(3 * 4096, 0x5a));
  return dir;
}

test("the generator and the mutations replay from their seed", () => {
  const a = new Rng(42), b = new Rng(42);
  assert.deepEqual(Array.from({ length: 5 }, () => a.u32()), Array.from({ length: 5 }, () => b.u32()));
  const set = smallSet();
  try {
    const runs = [0, 1].map((n) => {
      const dir = `${set}-${n}`;
      cpSync(set, dir, { recursive: true });
      const m = mutateSet(new Rng(7), dir);
      const bytes = readFileSync(join(dir, m.file));
      rmSync(dir, { recursive: true });
      return { m, bytes };
    });
    assert.deepEqual(runs[0]!.m, runs[1]!.m);
    assert.deepEqual(runs[0]!.bytes, runs[1]!.bytes);
  } finally {
    rmSync(set, { recursive: true });
  }
});

test("image file names map to their kinds; other files to none", () => {
  assert.equal(kindOfFile("core-1234.img"), IMG.core);
  assert.equal(kindOfFile("pagemap-1234.img"), IMG.pagemap);
  assert.equal(kindOfFile("pagemap-shmem-99.img"), IMG.shmemPagemap);
  assert.equal(kindOfFile("ghost-file-1f.img"), IMG.ghostFile);
  assert.equal(kindOfFile("tcp-stream-d55f6b.img"), IMG.tcpStream);
  assert.equal(kindOfFile("stats-dump"), IMG.stats);
  assert.equal(kindOfFile("restore.log"), undefined);
});

test("the decoder, fed 3000 mutations of a small set, refuses each bad file by name and never fails otherwise", () => {
  const set = smallSet();
  const work = `${set}-work`;
  const seen = new Set<string>();
  let refused = 0;
  try {
    for (let i = 0; i < 3000; i++) {
      rmSync(work, { recursive: true, force: true });
      cpSync(set, work, { recursive: true });
      const m = mutateSet(new Rng(1000 + i), work);
      seen.add(m.how.split(" ")[0]!);
      const d = decodeFile(join(work, m.file));
      if (!d.ok) {
        refused++;
        assert.equal(d.finding, undefined, `${m.file}: ${m.how}: ${d.finding}`);
        assert.ok(d.error.includes(m.file), `the error names ${m.file}: ${d.error}`);
      }
    }
    assert.deepEqual([...seen].sort(), ["dropped", "duplicated", "flipped", "set", "swapped", "truncated"], "every kind of mutation was made");
    assert.ok(refused > 300, `many mutations are refused (${refused})`);
    assert.ok(readdirSync(set).length === 6);
  } finally {
    rmSync(set, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }
});
