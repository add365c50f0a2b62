// The manifest of an image set (images/manifest.ts): sums, its JSON, the
// check of a directory against it, the pages summed on a second thread,
// and the dump's store writing it (every file summed as written, the pages
// written by the writer thread too).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import {
  checkSet, Checksum, covered, crc32, crcHex, decodeManifest, encodeManifest, MANIFEST, ManifestError, ManifestRecorder, PAGE_SERVER_MANIFEST,
  crc32Combine, PagesCheck, resumFiles, verifyImages, writeManifest, type Manifest,
} from "../../src/images/manifest.js";
import { fileOutput } from "../../src/images/file.js";
import { IMG } from "../../src/images/index.js";
import { DumpImages } from "../../src/images/store.js";
import { sharedAligned } from "../../src/images/writer-thread.js";
import { parseArgs } from "../../src/faces/cli/args.js";

const tmp = () => mkdtempSync("/tmp/crest-manifest-");
const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

test("CRC-32 is zlib's, continued chunk by chunk", () => {
  assert.equal(crcHex(crc32(Buffer.from("123456789"))), "cbf43926");
  const data = Buffer.from(Array.from({ length: 10000 }, (_, i) => (i * 7) & 255));
  const s = new Checksum();
  for (let at = 0; at < data.length; at += 999) s.update(data.subarray(at, at + 999));
  assert.deepEqual(s.file, { size: data.length, crc32: crcHex(crc32(data)) });
  assert.equal(crcHex(0), "00000000");
});

test("CRC-32s of pieces combine into the CRC-32 of the whole, as two threads sum one file", () => {
  const data = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 131 + (i >> 9)) & 255));
  for (const [a, b] of [[0, 0], [0, 17], [17, 0], [1, 1], [4096, 65536], [100_001, 199_999]] as const) {
    const A = data.subarray(0, a), B = data.subarray(a, a + b);
    assert.equal(crc32Combine(crc32(A), crc32(B), b), crc32(data.subarray(0, a + b)), `${a} + ${b}`);
  }
  // Lengths past 2^32 (a 5 GiB pages file): the combination is associative whatever the lengths.
  const [x, y, z] = [0x1234abcd, 0x9e3779b9, 0x0badf00d];
  const [ly, lz] = [3_000_000_001, 2_500_000_007];
  assert.equal(crc32Combine(crc32Combine(x, y, ly), z, lz), crc32Combine(x, crc32Combine(y, z, lz), ly + lz));
  const s = new Checksum();
  s.append(crc32(data.subarray(0, 5000)), 5000);
  s.update(data.subarray(5000, 9000));
  s.append(crc32(data.subarray(9000)), data.length - 9000);
  assert.deepEqual(s.file, { size: data.length, crc32: crcHex(crc32(data)) });
});

test("covered names: *.img and crest-*.json, not the manifests nor logs or service files", () => {
  for (const n of ["core-1.img", "pages-1.img", "tmpfs-dev-42.tar.gz.img", "crest-mem-track.json"]) assert.ok(covered(n), n);
  for (const n of [MANIFEST, PAGE_SERVER_MANIFEST, "restore.log", "stats-dump", "stats-restore", "parent", "crest.json", "img"]) assert.ok(!covered(n), n);
});

test("encode and decode: names sorted, round trip; malformed manifests refused naming the file", () => {
  const m: Manifest = { crest_manifest: 1, checksum: "crc32", parent: "../pre", files: { "pstree.img": { size: 10, crc32: "0000abcd" }, "core-1.img": { size: 0, crc32: "00000000" } } };
  const text = encodeManifest(m);
  assert.ok(text.indexOf("core-1.img") < text.indexOf("pstree.img"));
  assert.deepEqual(decodeManifest(text, "/x/crest-manifest.json"), m);
  const bad = (t: string, re: RegExp) => assert.throws(() => decodeManifest(t, "/x/crest-manifest.json"), (e: Error) => /^\/x\/crest-manifest\.json: /.test(e.message) && re.test(e.message));
  bad("{", /not a manifest/);
  bad("[]", /not a manifest|version/);
  bad(JSON.stringify({ ...m, crest_manifest: 2 }), /manifest version 2; crest reads version 1/);
  bad(JSON.stringify({ ...m, checksum: "md5" }), /checksum md5/);
  bad(JSON.stringify({ ...m, files: { "../core-1.img": { size: 1, crc32: "00000000" } } }), /not an image file name/);
  bad(JSON.stringify({ ...m, files: { "restore.log": { size: 1, crc32: "00000000" } } }), /not an image file name/);
  bad(JSON.stringify({ ...m, files: { "core-1.img": { size: -1, crc32: "00000000" } } }), /not \{size, crc32\}/);
  bad(JSON.stringify({ ...m, files: { "core-1.img": { size: 1, crc32: "XYZ" } } }), /not \{size, crc32\}/);
  bad(JSON.stringify({ ...m, parent: 3 }), /parent/);
});

/** A directory with a few images and their manifest, as a dump leaves it. */
function makeSet(extra: Partial<Manifest> = {}): { dir: string; files: Record<string, Buffer> } {
  const dir = tmp();
  const files: Record<string, Buffer> = {
    "inventory.img": Buffer.from("inventory bytes"),
    "core-7.img": Buffer.from("core of process 7, some bytes"),
    "pages-1.img": Buffer.alloc(3 * 4096, 0x5a),
    "crest-mem-track.json": Buffer.from("{}"),
  };
  const rec = new ManifestRecorder();
  for (const [n, b] of Object.entries(files)) {
    const out = rec.output(n, fileOutput(join(dir, n)));
    out.write(b.subarray(0, 5));
    out.write(b.subarray(5));
    out.close();
  }
  // A file whose write failed half-way leaves no trace.
  const gone = rec.output("mm-7.img", fileOutput(join(dir, "mm-7.img")));
  gone.write(Buffer.from("half"));
  gone.discard();
  writeManifest(dir, MANIFEST, { ...rec.manifest(undefined, {}), ...extra });
  return { dir, files };
}

const problems = (dir: string, o = {}) => checkSet(dir, o)!.problems.map((p) => `${p.file.slice(dir.length + 1)}: ${p.what}`);

test("a set as the dump left it checks clean; logs, service files, staging directories do not count", () => {
  const { dir } = makeSet();
  assert.deepEqual(Object.keys(JSON.parse(readFileSync(join(dir, MANIFEST), "utf8")).files).sort(), ["core-7.img", "crest-mem-track.json", "inventory.img", "pages-1.img"]);
  writeFileSync(join(dir, "restore.log"), "x");
  writeFileSync(join(dir, "stats-restore"), "x");
  mkdirSync(join(dir, ".crest-dump-abc"));
  const c = checkSet(dir)!;
  assert.deepEqual(c.problems, []);
  assert.equal(c.checked, 4);
  assert.equal(checkSet(tmp()), null, "no manifest: not checked");
  assert.equal(checkSet("/nonexistent"), null);
});

test("missing, extra, truncated, grown and altered files are each named with what is wrong", () => {
  const { dir, files } = makeSet();
  rmSync(join(dir, "core-7.img"));
  writeFileSync(join(dir, "core-8.img"), "stale");
  writeFileSync(join(dir, "crest-other.json"), "{}");
  truncateSync(join(dir, "inventory.img"), 3);
  writeFileSync(join(dir, "crest-mem-track.json"), "{} ");
  const pages = Buffer.from(files["pages-1.img"]!);
  pages[5000]! ^= 1;
  writeFileSync(join(dir, "pages-1.img"), pages);
  assert.deepEqual(problems(dir).sort(), [
    "core-7.img: missing: crest-manifest.json names it (29 bytes)",
    "core-8.img: extra: not in crest-manifest.json (not written by the dump: left by an older dump into this directory, or added since)",
    "crest-mem-track.json: grown: 3 bytes, the dump wrote 2",
    "crest-other.json: extra: not in crest-manifest.json (not written by the dump: left by an older dump into this directory, or added since)",
    "inventory.img: truncated: 3 bytes, the dump wrote 15",
    `pages-1.img: altered: its CRC-32 is ${crcHex(crc32(pages))}, the dump wrote ${crcHex(crc32(files["pages-1.img"]!))}`,
  ]);
  // Pages files deferred: their size now, their sum later.
  const c = checkSet(dir, { deferPages: true })!;
  assert.ok(!c.problems.some((p) => p.file.endsWith("pages-1.img")));
  assert.deepEqual(c.pending.map((p) => p.path), [join(dir, "pages-1.img")]);
});

test("the parent link: missing when the dump made one, extra when it did not; where it points may change", () => {
  const { dir } = makeSet({ parent: "../pre" });
  assert.deepEqual(problems(dir), ["parent: missing: the dump linked its parent images as ../pre"]);
  symlinkSync("../elsewhere", join(dir, "parent"));
  assert.deepEqual(problems(dir), []);
  const other = makeSet();
  symlinkSync("../pre", join(other.dir, "parent"));
  assert.deepEqual(problems(other.dir), ["parent: extra: the dump had no parent images, the link points to ../pre"]);
});

test("pages sent to a page server: checked by the server's manifest, or, without one (criu's server), left unchecked", () => {
  const { dir } = makeSet({ page_server: true });
  writeFileSync(join(dir, "pagemap-7.img"), "pm");
  writeFileSync(join(dir, "pages-2.img"), "pp");
  writeFileSync(join(dir, "core-9.img"), "x");
  const c = checkSet(dir)!;
  assert.deepEqual(c.unchecked.sort(), ["pagemap-7.img", "pages-2.img"]);
  assert.deepEqual(c.problems.map((p) => p.file), [join(dir, "core-9.img")], "only pagemaps and pages are the server's");
  writeManifest(dir, PAGE_SERVER_MANIFEST, { crest_manifest: 1, checksum: "crc32", files: { "pagemap-7.img": { size: 2, crc32: crcHex(crc32(Buffer.from("pm"))) }, "pages-2.img": { size: 2, crc32: "00000000" } } });
  assert.deepEqual(problems(dir).filter((p) => !p.startsWith("core-9")), [`pages-2.img: altered: its CRC-32 is ${crcHex(crc32(Buffer.from("pp")))}, the dump wrote 00000000`]);
});

test("files changed on purpose (dedup's holes) are summed anew in the manifests that name them", () => {
  const { dir } = makeSet();
  const punched = Buffer.alloc(3 * 4096, 0x5a).fill(0, 4096, 8192);
  writeFileSync(join(dir, "pages-1.img"), punched);
  assert.match(problems(dir).join("\n"), /pages-1\.img: altered/);
  resumFiles(dir, ["pages-1.img", "pages-9.img"]);
  assert.deepEqual(problems(dir), []);
  assert.deepEqual(decodeManifest(readFileSync(join(dir, MANIFEST), "utf8"), MANIFEST).files["pages-1.img"], { size: punched.length, crc32: crcHex(crc32(punched)) });
  resumFiles(tmp(), ["pages-1.img"]); // no manifest: nothing to do
});

test("pages summed on a second thread: wait() passes for the dump's bytes and throws naming an altered file", () => {
  const dir = tmp();
  const good = Buffer.alloc(9 << 20, 1), bad = Buffer.alloc(4096, 2);
  writeFileSync(join(dir, "pages-1.img"), good);
  writeFileSync(join(dir, "pages-2.img"), bad);
  new PagesCheck([{ path: join(dir, "pages-1.img"), size: good.length, crc32: crcHex(crc32(good)) }]).wait();
  new PagesCheck([]).wait();
  const check = new PagesCheck([
    { path: join(dir, "pages-1.img"), size: good.length, crc32: crcHex(crc32(good)) },
    { path: join(dir, "pages-2.img"), size: 4096, crc32: "12345678" },
    { path: join(dir, "pages-3.img"), size: 1, crc32: "12345678" },
  ]);
  assert.throws(() => check.wait(), (e: Error) => e instanceof ManifestError &&
    e.message.startsWith(`${join(dir, "pages-2.img")}: altered: its CRC-32 is ${crcHex(crc32(bad))}, the dump wrote 12345678; ${join(dir, "pages-3.img")}: cannot read`) &&
    /--no-verify/.test(e.message));
  check.stop();
});

test("pages summed in ranges by the thread and the restore: a byte changed in any range, or a file cut short, is found", () => {
  const dir = tmp();
  const data = Buffer.from(Array.from({ length: (40 << 20) + 4096 }, (_, i) => (i * 7 + (i >> 12)) & 255));
  const path = join(dir, "pages-1.img");
  const expect = { path, size: data.length, crc32: crcHex(crc32(data)) };
  writeFileSync(path, data);
  new PagesCheck([expect, expect]).wait();
  for (const at of [5, (16 << 20) + 3, data.length - 1]) {
    const changed = Buffer.from(data);
    changed[at] ^= 1;
    writeFileSync(path, changed);
    assert.throws(() => new PagesCheck([expect]).wait(), (e: Error) => e.message.startsWith(`${path}: altered: its CRC-32 is ${crcHex(crc32(changed))}`), `byte ${at}`);
  }
  writeFileSync(path, data.subarray(0, 20 << 20));
  assert.throws(() => new PagesCheck([expect]).wait(), (e: Error) => e.message.startsWith(`${path}: changed during the restore: it ends at ${20 << 20} bytes`));
});

test("verifyImages follows the parent links: each directory against its own manifest", () => {
  const pre = makeSet();
  const link = `../${basename(pre.dir)}`;
  const final = makeSet({ parent: link });
  symlinkSync(link, join(final.dir, "parent"));
  const logs: string[] = [];
  verifyImages(final.dir, (m) => logs.push(m)).wait();
  assert.deepEqual(logs.filter((l) => / checked against /.test(l)).map((l) => l.split(":")[0]), [final.dir, pre.dir], logs.join("\n"));
  assert.match(logs.at(-1)!, /: 3 files checked against crest-manifest\.json, 1 pages files to sum$/, "small pages files are summed at once");
  writeFileSync(join(pre.dir, "pages-1.img"), Buffer.alloc(3 * 4096, 0x5b));
  assert.throws(() => verifyImages(final.dir, () => {}), (e: Error) => e.message.startsWith(`${pre.dir}/pages-1.img: altered`));
  rmSync(join(pre.dir, "core-7.img"));
  assert.throws(() => verifyImages(final.dir, () => {}), (e: Error) => e.message.startsWith(`${pre.dir}/core-7.img: missing`));
  // A parent without a manifest is not checked.
  rmSync(join(pre.dir, MANIFEST));
  const logs2: string[] = [];
  verifyImages(final.dir, (m) => logs2.push(m)).wait();
  assert.match(logs2.join("\n"), /has no crest-manifest\.json \(images not written by crest\): not checked/);
});

test("a dump's store writes the manifest at commit: every file summed as written, pages written here and by the writer thread", () => {
  const dir = tmp();
  const images = new DumpImages(dir);
  images.write(IMG.pstree, undefined, [{ pid: 7, ppid: 0, pgid: 7, sid: 7, threads: [7] }]);
  // A pages file written here, then handed to the writer thread once it runs (summed here all along).
  const buf = sharedAligned(1 << 20);
  buf.fill(0x11);
  const here = images.pages(1);
  here.write(buf, 0, 4096);
  here.writeBehind(buf, 0, buf.length); // starts the thread, not running yet: written here
  for (let i = 0; i < 200 && !(images as unknown as { handing: boolean }).handing; i++) sleep(10);
  assert.ok((images as unknown as { handing: boolean }).handing, "the writer thread runs");
  here.drain();
  here.writeBehind(buf, 0, buf.length); // on the thread
  here.drain();
  here.write(buf, 0, 8192);
  here.close();
  // One opened on the thread: buffers of their own bytes each, summed there or here (which side depends on
  // whether the thread is still writing the last one), the pieces combined in order.
  const there = images.pages(2);
  const other = sharedAligned(1 << 20);
  for (let i = 0; i < 8; i++) {
    const b = i % 2 ? other : buf;
    b.fill(0x22 + i);
    there.writeBehind(b, 0, b.length);
    if (i % 2) there.drain();
  }
  there.drain();
  there.write(buf, 0, 4096);
  there.close();
  // A small one (no full buffer): handed over with the other images at the next flush.
  const tiny = images.pages(3);
  tiny.write(other, 0, 8192);
  tiny.write(buf, 0, 4096);
  tiny.close();
  images.flush();
  images.write(IMG.core, 7, [{ mtype: 1 }]);
  images.writeFile("crest-mem-track.json", '{"holder":1}');
  images.linkParent("../pre");
  images.commit({ img_version: 1, fdinfo_per_id: true });
  const m = decodeManifest(readFileSync(join(dir, MANIFEST), "utf8"), MANIFEST);
  assert.equal(m.parent, "../pre");
  assert.equal(m.page_server, undefined);
  const names = readdirSync(dir).filter(covered).sort();
  assert.deepEqual(Object.keys(m.files).sort(), names);
  assert.deepEqual(names, ["core-7.img", "crest-mem-track.json", "inventory.img", "pages-1.img", "pages-2.img", "pages-3.img", "pstree.img"]);
  for (const n of names) {
    const b = readFileSync(join(dir, n));
    assert.deepEqual(m.files[n], { size: b.length, crc32: crcHex(crc32(b)) }, n);
  }
  assert.equal(m.files["pages-1.img"]!.size, 4096 + 2 * (1 << 20) + 8192);
  assert.deepEqual(readFileSync(join(dir, "pages-3.img")), Buffer.concat([other.subarray(0, 8192), buf.subarray(0, 4096)]));
  assert.deepEqual(checkSet(dir)!.problems, [], "the restore's check agrees (the parent link is there)");
});

test("--no-verify: crest's own restore option, off by default", () => {
  assert.equal(parseArgs(["restore", "-D", "imgs"]).options.restore.noVerify, false);
  assert.equal(parseArgs(["restore", "-D", "imgs", "--no-verify"]).options.restore.noVerify, true);
});

test("a dump into a directory an older dump used: the older images it does not write again go, so the set matches its manifest; other files stay", () => {
  const dir = tmp();
  for (const n of ["core-99.img", "pagemap-99.img", "crest-old.json", "dump.log", "notes.txt"]) writeFileSync(join(dir, n), "old");
  const images = new DumpImages(dir);
  images.write(IMG.pstree, undefined, [{ pid: 7, ppid: 0, pgid: 7, sid: 7, threads: [7] }]);
  images.write(IMG.core, 7, [{ mtype: 1 }]);
  images.commit({ img_version: 1, fdinfo_per_id: true });
  assert.deepEqual([...images.removedStale].sort(), ["core-99.img", "crest-old.json", "pagemap-99.img"]);
  assert.deepEqual(readdirSync(dir).sort(), ["core-7.img", "crest-manifest.json", "dump.log", "inventory.img", "notes.txt", "pstree.img"]);
  assert.equal(checkSet(dir)?.problems.length ?? 0, 0, "the directory matches the manifest");
});
