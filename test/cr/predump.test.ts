// Pre-dump and incremental dumps (issue 13): crest pre-dump tracks memory
// with userfaultfd write-protection (no soft-dirty on this kernel), the
// final dump copies only the pages written since and leaves the rest in the
// parent images, and the restore reads through the chain. memwrite keeps
// rewriting pages throughout and checks at the end that every page holds
// what its recorded generation says: a page left in the parent images that
// had been written since fails it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync } from "node:fs";
import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import {
  alive, critDecodeAll, crest, CREST, finish, procState, restoreWorkload, startWorkload, stop, waitFor, waitGone, waitTreeGone, type Workload,
} from "./harness.js";
import { readImage } from "../../src/images/file.js";
import { IMG } from "../../src/images/index.js";
import { RUNTIMES } from "../containers/runtimes.js";
import { makeCriuDir } from "../containers/criu-dir.js";

const PE_PARENT = 1, PE_PRESENT = 4;

function pagesByFlag(dir: string, pid: number): { parent: number; present: number } {
  const pm = readImage(dir, IMG.pagemap, pid);
  const sum = (flag: number) => pm.entries.filter((e) => (e.flags ?? PE_PRESENT) & flag).reduce((n, e) => n + Number(e.nr_pages ?? e.compat_nr_pages), 0);
  return { parent: sum(PE_PARENT), present: sum(PE_PRESENT) };
}

function run(args: string[]): void {
  const r = crest(args);
  assert.equal(r.code, 0, `crest ${args.join(" ")}: ${r.stderr}`);
}

/** The holder crest leaves to keep the tracking, named in the images directory. */
function holderOf(dir: string): number {
  return (JSON.parse(readFileSync(join(dir, "crest-mem-track.json"), "utf8")) as { holder: { pid: number } }).holder.pid;
}

function restoreFrom(w: Workload, dir: string): void {
  waitTreeGone(w, dir);
  restoreWorkload(w, [], dir);
}

/**
 * After a dump that left the pre-dump's tracking unfit (`why`, from the log):
 * the next dump against it copies every page, and restores.
 */
function nextDumpCopiesAll(w: Workload, dir: string, why: RegExp, label: string): void {
  spawnSync("sleep", ["0.3"]);
  run(["dump", "-t", String(w.pid), "-D", dir, "--prev-images-dir", "../pre", "--track-mem", "-o", "dump.log", "-v4"]);
  assert.match(readFileSync(join(dir, "dump.log"), "utf8"), why);
  assert.equal(pagesByFlag(dir, w.pid).parent, 0, `${label}: nothing is left in the pre-dump`);
  restoreFrom(w, dir);
  assert.equal(finish(w), "PASS", `${label}: memwrite's pages after the restore`);
}

test("pre-dump, pre-dump, dump --track-mem: the dump copies only pages written since, the restore reads the chain", () => {
  const w = startWorkload("memwrite", ["32", "200"]);
  try {
    const pre1 = join(w.dir, "pre1"), pre2 = join(w.dir, "pre2"), final = join(w.dir, "final");
    run(["pre-dump", "-t", String(w.pid), "-D", pre1, "-o", "pre-dump.log", "-v4"]);
    assert.match(readFileSync(join(pre1, "pre-dump.log"), "utf8"), /Pre-dumping finished successfully/);
    assert.ok(alive(w.pid), "the tree runs on after a pre-dump");
    const holder1 = holderOf(pre1);
    assert.ok(alive(holder1), "a holder keeps the tracking");
    run(["pre-dump", "-t", String(w.pid), "-D", pre2, "--prev-images-dir", "../pre1", "-o", "pre-dump.log", "-v4"]);
    assert.equal(readlinkSync(join(pre2, "parent")), "../pre1");
    waitGone(holder1);
    run(["dump", "-t", String(w.pid), "-D", final, "--prev-images-dir", "../pre2", "--track-mem", "-o", "dump.log", "-v4"]);
    for (const d of [pre1, pre2, final]) assert.deepEqual(critDecodeAll(d), [], `crit decodes every image of ${d}`);
    const p2 = pagesByFlag(pre2, w.pid), f = pagesByFlag(final, w.pid);
    // 8192 pages, 200 written a second: most stay in the parents.
    assert.ok(p2.parent > 4 * p2.present, `pre2 leaves most pages in pre1 (${JSON.stringify(p2)})`);
    assert.ok(f.parent > 4 * f.present, `the dump copies a fraction of what it leaves in the parents (${JSON.stringify(f)})`);
    assert.ok(f.present > 0, "pages written since the last pre-dump are copied");
    restoreFrom(w, final);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("dump --precopy: the pages written since the pre-dump are copied once more before the freeze, into precopy/; the dump copies only what came after", () => {
  const w = startWorkload("memwrite", ["32", "2000"]);
  try {
    const pre = join(w.dir, "pre"), final = join(w.dir, "final");
    run(["pre-dump", "-t", String(w.pid), "-D", pre]);
    // Time for the task to write pages since the pre-dump (2,000 a second, over 8,192).
    spawnSync("sleep", ["0.5"]);
    run(["dump", "-t", String(w.pid), "-D", final, "--prev-images-dir", "../pre", "--track-mem", "--precopy", "-o", "dump.log", "-v4"]);
    const copied = Number(/--precopy: (\d+) page\(s\) written since the previous dump copied/.exec(readFileSync(join(final, "dump.log"), "utf8"))?.[1]);
    assert.ok(copied > 200, `the round copied the pages written since the pre-dump (${copied})`);
    const layer = join(final, "precopy");
    assert.equal(readlinkSync(join(final, "parent")), "precopy");
    assert.equal(readlinkSync(join(layer, "parent")), "../../pre");
    for (const d of [pre, layer, final]) assert.deepEqual(critDecodeAll(d), [], `crit decodes every image of ${d}`);
    const l = pagesByFlag(layer, w.pid), f = pagesByFlag(final, w.pid);
    assert.equal(l.present, copied, "the layer holds what the round copied");
    assert.ok(f.present < copied, `the dump copies fewer pages than the round did (${f.present} against ${copied})`);
    // Its pagemap is not split by every page written since the pre-dump: it goes with the pages written since the round.
    assert.ok(readImage(final, IMG.pagemap, w.pid).entries.length < readImage(layer, IMG.pagemap, w.pid).entries.length, "the dump's pagemap is shorter than the layer's");
    restoreFrom(w, final);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("dump --precopy that fails, in the round or frozen: the tree runs on, no precopy/ is left, and the next dump against the same pre-dump copies every page", () => {
  for (const point of ["dump:precopy", "dump:frozen"]) {
    const w = startWorkload("memwrite", ["32", "2000"]);
    try {
      const pre = join(w.dir, "pre"), final = join(w.dir, "final");
      run(["pre-dump", "-t", String(w.pid), "-D", pre]);
      spawnSync("sleep", ["0.3"]);
      const r = crest(["dump", "-t", String(w.pid), "-D", final, "--prev-images-dir", "../pre", "--track-mem", "--precopy"], { CREST_FAULT: point });
      assert.notEqual(r.code, 0, `${point}: the dump fails`);
      assert.match(r.stderr, /injected fault/);
      assert.ok(alive(w.pid) && procState(w.pid).tracer === 0, `${point}: the tree runs on, free`);
      assert.ok(!existsSync(join(final, "precopy")), `${point}: no precopy layer is left`);
      assert.ok(!existsSync(join(pre, ".crest-mem-track.busy")), `${point}: the pre-dump's mark is gone`);
      // The round protected the pages it found again: the pre-dump's tracking no longer tells them, and ended.
      nextDumpCopiesAll(w, final, /memory tracking of .* ended/, point);
    } finally {
      stop(w);
    }
  }
});

test("a crest killed while it changes a pre-dump's tracking (pre-dump renewing it, dump --precopy) leaves a mark: the next dump against it copies every page", () => {
  const cases = [
    { name: "pre-dump", args: (pre: string, next: string) => ["pre-dump", "-D", next, "--prev-images-dir", `../${pre}`], fault: "pre-dump:tracked:stop" },
    { name: "dump --precopy", args: (pre: string, next: string) => ["dump", "-D", next, "--prev-images-dir", `../${pre}`, "--track-mem", "--precopy"], fault: "dump:frozen:stop" },
  ];
  for (const c of cases) {
    const w = startWorkload("memwrite", ["32", "2000"]);
    try {
      const pre = join(w.dir, "pre"), again = join(w.dir, "final2");
      run(["pre-dump", "-t", String(w.pid), "-D", pre]);
      spawnSync("sleep", ["0.3"]);
      // Stopped with the tree frozen, the marks changed, then killed for real.
      const p = spawn(CREST, [...c.args("pre", "next"), "-t", String(w.pid)], { cwd: w.dir, env: { ...process.env, CREST_FAULT: c.fault }, stdio: "ignore" });
      waitFor(`crest to stop at ${c.fault}`, () => (p.pid !== undefined && procState(p.pid).state === "T" ? true : null), 30_000);
      process.kill(p.pid!, "SIGKILL");
      waitFor("the tree to be free of crest", () => (procState(w.pid).tracer === 0 ? true : null));
      assert.ok(existsSync(join(pre, ".crest-mem-track.busy")), `${c.name}: the mark is left`);
      nextDumpCopiesAll(w, again, /left changed by a dump that did not finish/, c.name);
    } finally {
      stop(w);
    }
  }
});

test("dump -R --track-mem against a pre-dump that fails once it renewed the tracking: the next dump against the same pre-dump copies every page", () => {
  const w = startWorkload("memwrite", ["32", "2000"]);
  try {
    const pre = join(w.dir, "pre"), final = join(w.dir, "final");
    run(["pre-dump", "-t", String(w.pid), "-D", pre]);
    spawnSync("sleep", ["0.3"]);
    // After the memory kind: the tracking is renewed for the images this dump would have made.
    const r = crest(["dump", "-t", String(w.pid), "-D", final, "--prev-images-dir", "../pre", "--track-mem", "-R"], { CREST_FAULT: "dump:memory" });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /injected fault/);
    assert.ok(alive(w.pid) && procState(w.pid).tracer === 0, "the tree runs on, free");
    assert.ok(!existsSync(join(pre, ".crest-mem-track.busy")), "no mark is left");
    nextDumpCopiesAll(w, final, /memory tracking of .* ended/, "dump -R");
  } finally {
    stop(w);
  }
});

test("dump --precopy is refused without a pre-dump's tracking to go on with (--prev-images-dir and --track-mem), the tree untouched", () => {
  const w = startWorkload("memwrite", ["8", "100"]);
  try {
    const pre = join(w.dir, "pre");
    run(["pre-dump", "-t", String(w.pid), "-D", pre]);
    const r = crest(["dump", "-t", String(w.pid), "-D", join(w.dir, "final"), "--prev-images-dir", "../pre", "--precopy"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--precopy copies again what the tree wrote since a pre-dump: it needs --prev-images-dir and --track-mem/);
    assert.ok(alive(w.pid) && procState(w.pid).tracer === 0, "the tree runs on, free");
    assert.ok(!existsSync(join(w.dir, "final", "precopy")));
  } finally {
    stop(w);
  }
});

/** Bytes the file takes on disk (its blocks): a punched hole takes none. */
const onDisk = (path: string): number => statSync(path).blocks * 512;
const deduplicated = (log: string): number => Number(/Deduplicated (\d+) bytes/.exec(readFileSync(log, "utf8"))?.[1] ?? NaN);

test("dedup: pre-dump --auto-dedup and crest dedup punch the parents' copies of pages written since out of their pages files; the chain still restores", () => {
  const w = startWorkload("memwrite", ["32", "400"]);
  try {
    const pre1 = join(w.dir, "pre1"), pre2 = join(w.dir, "pre2"), final = join(w.dir, "final");
    const pagesOf = (dir: string) => join(dir, `pages-${readImage(dir, IMG.pagemap, w.pid).head.pages_id}.img`);
    run(["pre-dump", "-t", String(w.pid), "-D", pre1]);
    const pages1 = pagesOf(pre1);
    let before = onDisk(pages1);
    spawnSync("sleep", ["0.5"]);
    run(["pre-dump", "-t", String(w.pid), "-D", pre2, "--prev-images-dir", "../pre1", "--auto-dedup", "-o", "pre-dump.log", "-v4"]);
    const n1 = deduplicated(join(pre2, "pre-dump.log"));
    assert.ok(n1 > 0, `pre2 holds pages written since pre1: ${n1} bytes punched out of pre1`);
    assert.equal(before - onDisk(pages1), n1, "pre1's pages file takes that much less room");
    spawnSync("sleep", ["0.5"]);
    run(["dump", "-t", String(w.pid), "-D", final, "--prev-images-dir", "../pre2", "--track-mem"]);
    const pages2 = pagesOf(pre2);
    before = onDisk(pages1) + onDisk(pages2);
    run(["dedup", "-D", final, "-o", "dedup.log", "-v4"]);
    const n2 = deduplicated(join(final, "dedup.log"));
    assert.ok(n2 > 0, `the dump holds pages written since pre2: ${n2} bytes punched out of pre2 and pre1`);
    assert.equal(before - onDisk(pages1) - onDisk(pages2), n2, "the parents' pages files take that much less room");
    for (const d of [pre1, pre2, final]) assert.deepEqual(critDecodeAll(d), [], `crit decodes every image of ${d}`);
    // Every page the chain still reads is there: memwrite checks each page's contents.
    restoreFrom(w, final);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("a broken chain fails the restore by name, and nothing is left alive", () => {
  const w = startWorkload("memwrite", ["8"]);
  try {
    const pre = join(w.dir, "pre"), final = join(w.dir, "final");
    run(["pre-dump", "-t", String(w.pid), "-D", pre]);
    run(["dump", "-t", String(w.pid), "-D", final, "--prev-images-dir", "../pre", "--track-mem"]);
    waitTreeGone(w, final);
    rmSync(join(final, "parent"));
    symlinkSync("../nowhere", join(final, "parent"));
    const r = crest(["restore", "-D", final, "-d"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /pagemap-\d+\.img.*(no such image|missing|parent)/);
    assert.ok(!alive(w.pid), "nothing restored");
  } finally {
    stop(w);
  }
});

test("dump --leave-running --track-mem hands the tracking on: a second dump against it copies only what changed", () => {
  const w = startWorkload("memwrite", ["32", "200"]);
  try {
    const d1 = join(w.dir, "d1"), d2 = join(w.dir, "d2");
    run(["dump", "-t", String(w.pid), "-D", d1, "-R", "--track-mem"]);
    assert.ok(alive(holderOf(d1)));
    run(["dump", "-t", String(w.pid), "-D", d2, "--prev-images-dir", "../d1", "--track-mem"]);
    const f = pagesByFlag(d2, w.pid);
    assert.ok(f.parent > 4 * f.present, `most pages stay in d1 (${JSON.stringify(f)})`);
    restoreFrom(w, d2);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("without the tracking (its holder gone), the next dump copies every page, and restores", () => {
  const w = startWorkload("memwrite", ["8"]);
  try {
    const pre = join(w.dir, "pre"), final = join(w.dir, "final");
    run(["pre-dump", "-t", String(w.pid), "-D", pre]);
    const holder = holderOf(pre);
    process.kill(-holder, "SIGKILL");
    // Dead once it is a zombie (PID 1 reaps it in its own time).
    waitFor("the holder to die", () => (existsSync(`/proc/${holder}`) && procState(holder).state !== "Z" ? null : true));
    const r = crest(["dump", "-t", String(w.pid), "-D", final, "--prev-images-dir", "../pre", "--track-mem", "-o", "dump.log", "-v4"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(readFileSync(join(final, "dump.log"), "utf8"), /memory tracking of .* ended/);
    assert.equal(pagesByFlag(final, w.pid).parent, 0);
    restoreFrom(w, final);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("crest check --feature mem_dirty_track answers with the kernel's userfaultfd write-protection", () => {
  const r = crest(["check", "--feature", "mem_dirty_track"]);
  assert.equal(r.code, 0, r.stderr + r.stdout);
});

test("memwrite's check fails when a page is not what its generation says (CREST_WL_SABOTAGE=1)", () => {
  const w = startWorkload("memwrite", ["8", "200"], { env: ["CREST_WL_SABOTAGE=1"] });
  try {
    assert.match(finish(w), /^FAIL: page \d+ word 0 is/);
  } finally {
    stop(w);
  }
});

const runc = RUNTIMES.find((r) => r.name === "runc")!;

test("runc checkpoint --pre-dump, then --parent-path: through crest's RPC, the dump leaves pages in the pre-dump and the container counts on",
  { skip: runc.missing() ?? runc.noCheckpoint() ?? false }, () => {
    const work = mkdtempSync("/tmp/crest-runc-pre-");
    const criu = makeCriuDir(work);
    const ct = runc.start(work, `crest-pre-${process.pid}`);
    const runcWith = (args: string[]) => spawnSync("runc", ["--criu", criu.criu, ...args], { encoding: "utf8", env: { ...process.env, PATH: criu.path } });
    try {
      const before: number = waitFor("the container to count to 3", () => { const c = ct.count(); return c !== null && c >= 3 ? c : null; }, 30_000)!;
      const pre = runcWith(["checkpoint", "--pre-dump", "--image-path", join(work, "pre"), "--work-path", join(work, "pre.work"), ct.name]);
      assert.equal(pre.status, 0, pre.stderr);
      assert.equal(ct.running(), true, "a pre-dump leaves the container running");
      const dump = runcWith(["checkpoint", "--parent-path", "../pre", "--image-path", join(work, "img"), "--work-path", join(work, "img.work"), ct.name]);
      assert.equal(dump.status, 0, dump.stderr);
      const inParent = readdirSync(join(work, "img")).filter((f) => /^pagemap-\d+\.img$/.test(f))
        .reduce((n, f) => n + pagesByFlag(join(work, "img"), Number(/\d+/.exec(f)![0])).parent, 0);
      assert.ok(inParent > 0, "the dump leaves unchanged pages in the pre-dump's images");
      const r = runc.restore(ct, criu, join(work, "img"));
      assert.equal(r.code, 0, r.output);
      const after: number = waitFor("the count after the restore", () => ct.count(), 30_000)!;
      assert.ok(after >= before, `counts from ${after}, had counted to ${before}`);
    } finally {
      runc.remove(ct);
    }
  });

test("churn: tasks that exit while a pre-dump copies their pages are left as copied, with a warning; the pre-dumps go on, and the dump against them restores", () => {
  const w = startWorkload("churn", ["linger"]);
  try {
    let warned = 0;
    for (const n of [1, 2, 3]) {
      run(["pre-dump", "-t", String(w.pid), "-D", join(w.dir, `pre${n}`), "-o", "pre-dump.log", ...(n > 1 ? ["--prev-images-dir", `../pre${n - 1}`, "--track-mem"] : [])]);
      if (/exited during the pre-dump: the pages copied of it before are kept/.test(readFileSync(join(w.dir, `pre${n}`, "pre-dump.log"), "utf8"))) warned++;
    }
    assert.ok(warned > 0, "a forked child exited while its pages were copied, in one of three pre-dumps at least");
    const final = join(w.dir, "final");
    run(["dump", "-t", String(w.pid), "-D", final, "--prev-images-dir", "../pre3", "--track-mem"]);
    critDecodeAll(final);
    restoreFrom(w, final);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});
