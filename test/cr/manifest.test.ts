// The manifest (images/manifest.ts): a dump names every file of its set with
// its size and CRC-32; a restore checks the set first, and fails naming the
// file for a missing, extra, truncated or altered one, with nothing of the
// tree left alive; --no-verify skips the check; sets without a manifest
// (criu's) restore as before, and criu restores crest's sets.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { IMG, readImage } from "../../src/images/index.js";
import { covered, crcHex, crc32, MANIFEST, PAGE_SERVER_MANIFEST } from "../../src/images/manifest.js";
import { alive, CREST, crest, critDecodeAll, dumpWorkload, finish, imagesDir, restoreWorkload, startWorkload, stop, waitGone, waitTreeGone, type Workload } from "./harness.js";

const CRIU = "/work/criu-bin/criu";
const criuWorks = existsSync(CRIU) && spawnSync(CRIU, ["check"]).status === 0;

function manifestOf(dir: string, name = MANIFEST): { files: Record<string, { size: number; crc32: string }>; parent?: string; page_server?: boolean } {
  return JSON.parse(readFileSync(join(dir, name), "utf8"));
}

/** The manifest names every image file of the directory, with its real size and CRC-32. */
function assertManifestTrue(dir: string): void {
  const m = manifestOf(dir);
  const files = readdirSync(dir).filter((f) => covered(f) && lstatSync(join(dir, f)).isFile()).sort();
  assert.deepEqual(Object.keys(m.files).sort(), files);
  assert.ok(files.includes("inventory.img") && files.some((f) => /^pages-\d+\.img$/.test(f)), files.join(" "));
  for (const f of files) {
    const bytes = readFileSync(join(dir, f));
    assert.deepEqual(m.files[f], { size: bytes.length, crc32: crcHex(crc32(bytes)) }, f);
  }
}

/** Every PID of the dumped tree. */
const treePids = (dir: string): number[] => readImage(dir, IMG.pstree).map((e) => e.pid);

/** The restore fails with exit code 1, the message on stderr and in the log, and none of the tree's PIDs is alive. */
function restoreFails(w: Workload, dir: string, pattern: RegExp, extra: string[] = []): void {
  const log = `restore-failed-${Date.now()}.log`;
  const r = crest(["restore", "-D", dir, "-d", "-o", log, "-v4", ...extra]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, pattern);
  assert.match(readFileSync(join(dir, log), "utf8"), pattern, "the log says it");
  for (const pid of treePids(dir)) assert.equal(alive(pid), false, `process ${pid} left alive`);
  assert.equal(alive(w.pid), false);
}

function flipByte(path: string, at: number): () => void {
  const bytes = readFileSync(path);
  bytes[at]! ^= 0x10;
  writeFileSync(path, bytes);
  return () => {
    bytes[at]! ^= 0x10;
    writeFileSync(path, bytes);
  };
}

test("a dump's manifest names every image with its size and CRC-32; crit decodes the set", () => {
  const w = startWorkload("forest", ["4"]);
  try {
    dumpWorkload(w);
    const dir = imagesDir(w);
    assertManifestTrue(dir);
    assert.equal(manifestOf(dir).parent, undefined);
    assert.deepEqual(critDecodeAll(dir), []);
    restoreWorkload(w);
    assert.match(readFileSync(join(dir, "restore.log"), "utf8"), /files checked against crest-manifest\.json, \d+ pages files to sum/);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("each damage fails the restore naming the file, nothing is left alive, and the undamaged set restores", () => {
  const w = startWorkload("forest", ["4"]);
  try {
    dumpWorkload(w);
    const dir = imagesDir(w);
    const pids = treePids(dir);
    const child = pids[1]!;
    // A file removed.
    const core = join(dir, `core-${child}.img`);
    renameSync(core, `${core}.aside`);
    restoreFails(w, dir, new RegExp(`core-${child}\\.img: missing: crest-manifest\\.json names it`));
    renameSync(`${core}.aside`, core);
    // A file added (a copy of another's image, as a stale file of an older dump would be).
    const stale = join(dir, "core-99999.img");
    copyFileSync(core, stale);
    restoreFails(w, dir, /core-99999\.img: extra: not in crest-manifest\.json/);
    rmSync(stale);
    // Truncated.
    const mm = join(dir, `mm-${child}.img`);
    const mmBytes = readFileSync(mm);
    truncateSync(mm, mmBytes.length - 3);
    restoreFails(w, dir, new RegExp(`mm-${child}\\.img: truncated: ${mmBytes.length - 3} bytes, the dump wrote ${mmBytes.length}`));
    writeFileSync(mm, mmBytes);
    // A byte of a metadata image changed (in an entry's body: the image still decodes).
    let undo = flipByte(core, Math.min(40, lstatSync(core).size - 1));
    restoreFails(w, dir, new RegExp(`core-${child}\\.img: altered: its CRC-32 is [0-9a-f]{8}, the dump wrote ${manifestOf(dir).files[`core-${child}.img`]!.crc32}`));
    undo();
    // A byte of the pages (a few MiB in all: summed before anything is made).
    const pages = join(dir, "pages-1.img");
    undo = flipByte(pages, Math.floor(lstatSync(pages).size / 2));
    restoreFails(w, dir, /pages-1\.img: altered: its CRC-32 is [0-9a-f]{8}, the dump wrote [0-9a-f]{8}/);
    undo();
    // Harmless damage, with --no-verify: an extra image restores.
    copyFileSync(core, stale);
    restoreWorkload(w, ["--no-verify"]);
    const log = readFileSync(join(dir, "restore.log"), "utf8");
    assert.match(log, /--no-verify: the images are not checked against their manifest/);
    assert.doesNotMatch(log, /crest-manifest\.json/);
    // Dumped again (another directory), and restored with the check: the tree is whole.
    const again = imagesDir(w, "imgs2");
    const d = crest(["dump", "-t", String(w.pid), "-D", again, "-o", "dump.log"]);
    assert.equal(d.code, 0, d.stderr);
    waitTreeGone(w, again);
    restoreWorkload(w, [], again);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("altered pages found while the tree is restored (summed on a second thread) kill it; --no-verify restores them, and the workload finds them", () => {
  const w = startWorkload("mem");
  try {
    dumpWorkload(w);
    const dir = imagesDir(w);
    const pages = join(dir, "pages-1.img");
    assert.ok(lstatSync(pages).size > 32 << 20, "more pages than are summed at once");
    flipByte(pages, Math.floor(lstatSync(pages).size / 2));
    restoreFails(w, dir, /pages-1\.img: altered/);
    const log = readFileSync(join(dir, readdirSync(dir).filter((f) => f.startsWith("restore-failed-")).sort().at(-1)!), "utf8");
    assert.match(log, /on a second thread during the restore[^]*Restoring process[^]*Pages files summed: 2 files/, "the tree was being made when the sums came");
    // Without the check the set restores, and the workload finds its memory changed: the check was what stopped it.
    // (mem cannot be restored twice from one set: its file mappings write through to its file; the undone damage restores in the test above.)
    restoreWorkload(w, ["--no-verify"]);
    assert.match(finish(w), /^FAIL: .*contents changed/);
  } finally {
    stop(w);
  }
});

test("a tree whose pages are summed during the restore (64 MiB): an altered page kills every process made, and the undone set restores", () => {
  const w = startWorkload("cow");
  try {
    dumpWorkload(w);
    const dir = imagesDir(w);
    const pids = treePids(dir);
    assert.equal(pids.length, 4);
    const pages = join(dir, "pages-1.img");
    const undo = flipByte(pages, lstatSync(pages).size - 4096 + 99);
    restoreFails(w, dir, /pages-1\.img: altered/);
    const log = readFileSync(join(dir, readdirSync(dir).filter((f) => f.startsWith("restore-failed-")).sort().at(-1)!), "utf8");
    assert.match(log, new RegExp(`on a second thread during the restore[^]*created process ${pids[3]}[^]*Pages files summed`), "every process was made before the verdict");
    undo();
    restoreWorkload(w);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("a set without a manifest restores as before (criu's sets), and criu restores crest's", () => {
  const w = startWorkload("forest", ["3"]);
  try {
    dumpWorkload(w);
    const dir = imagesDir(w);
    renameSync(join(dir, MANIFEST), join(dir, "manifest.aside"));
    restoreWorkload(w);
    assert.match(readFileSync(join(dir, "restore.log"), "utf8"), /has no crest-manifest\.json \(images not written by crest\): not checked/);
    renameSync(join(dir, "manifest.aside"), join(dir, MANIFEST));
    if (criuWorks) {
      // criu: dumps a set without a manifest, which crest restores; and restores crest's set, manifest and all.
      const criuDir = imagesDir(w, "criu");
      mkdirSync(criuDir);
      const d = spawnSync(CRIU, ["dump", "-t", String(w.pid), "-D", criuDir, "-o", "dump.log"], { encoding: "utf8" });
      assert.equal(d.status, 0, d.stderr);
      waitTreeGone(w, criuDir);
      assert.equal(existsSync(join(criuDir, MANIFEST)), false);
      restoreWorkload(w, [], criuDir);
      const again = imagesDir(w, "crest2");
      assert.equal(crest(["dump", "-t", String(w.pid), "-D", again]).code, 0);
      waitTreeGone(w, again);
      assert.ok(existsSync(join(again, MANIFEST)));
      const r = spawnSync(CRIU, ["restore", "-D", again, "-d", "-o", "restore.log"], { encoding: "utf8" });
      assert.equal(r.status, 0, `${r.stderr}${readFileSync(join(again, "restore.log"), "utf8").slice(-2000)}`);
    }
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("an image chain: each directory has its manifest, and damage in the parent's pages fails the restore", () => {
  const w = startWorkload("memwrite", ["8"]);
  try {
    const pre = join(w.dir, "pre"), final = join(w.dir, "final");
    assert.equal(crest(["pre-dump", "-t", String(w.pid), "-D", pre]).code, 0);
    const d = crest(["dump", "-t", String(w.pid), "-D", final, "--prev-images-dir", "../pre", "--track-mem"]);
    assert.equal(d.code, 0, d.stderr);
    waitTreeGone(w, final);
    assertManifestTrue(pre);
    assertManifestTrue(final);
    assert.equal(manifestOf(final).parent, "../pre");
    // crest's own file of the pre-dump (the tracking the dump took on) is covered too.
    assert.deepEqual(Object.keys(manifestOf(pre).files).filter((f) => f.startsWith("crest-")), ["crest-mem-track.json"]);
    // The parent link removed: missing.
    renameSync(join(final, "parent"), join(final, "parent.aside"));
    restoreFails(w, final, /final\/parent: missing: the dump linked its parent images as \.\.\/pre/);
    renameSync(join(final, "parent.aside"), join(final, "parent"));
    const pages = join(pre, "pages-1.img");
    const undo = flipByte(pages, 4096 + 7);
    restoreFails(w, final, /pre\/pages-1\.img: altered/);
    undo();
    restoreWorkload(w, [], final);
    assert.match(readFileSync(join(final, "restore.log"), "utf8"), /pre: \d+ files checked against crest-manifest\.json/);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("a page server writes the manifest of what it received; the set restores, and its damage is found", () => {
  const w = startWorkload("memwrite", ["8", "200"]);
  try {
    const dir = imagesDir(w);
    mkdirSync(dir);
    const port = 23000 + (process.pid % 1000);
    const s = spawnSync(CREST, ["page-server", "-D", dir, "--port", String(port), "-o", "ps.log", "-d", "--pidfile", join(w.dir, "ps.pid")], { encoding: "utf8" });
    assert.equal(s.status, 0, s.stderr);
    const serverPid = Number(readFileSync(join(w.dir, "ps.pid"), "utf8"));
    const d = crest(["dump", "-t", String(w.pid), "-D", dir, "-o", "dump.log", "--page-server", "--address", "127.0.0.1", "--port", String(port)]);
    assert.equal(d.code, 0, d.stderr);
    waitGone(serverPid);
    waitTreeGone(w, dir);
    const dump = manifestOf(dir), server = manifestOf(dir, PAGE_SERVER_MANIFEST);
    assert.equal(dump.page_server, true);
    assert.ok(!Object.keys(dump.files).some((f) => f.startsWith("pages-") || f.startsWith("pagemap-")), "the dump's manifest leaves out what it sent");
    const sent = readdirSync(dir).filter((f) => /^(pages|pagemap)-\d+\.img$/.test(f)).sort();
    assert.deepEqual(Object.keys(server.files).sort(), sent);
    for (const f of sent) assert.equal(server.files[f]!.crc32, crcHex(crc32(readFileSync(join(dir, f)))), f);
    const undo = flipByte(join(dir, "pages-1.img"), 100);
    restoreFails(w, dir, /pages-1\.img: altered/);
    undo();
    restoreWorkload(w);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});
