// crest's Node library API (src/api.ts; the package's main): dump and
// restore of real workloads with progress, check and features, CrestError
// with its code for what crest refuses, cancellation with an AbortSignal
// (the tree runs on after a cancelled dump; nothing is left after a
// cancelled restore, and the images restore after), and the package as
// another project gets it: `npm pack`, installed offline into a scratch
// project, which checkpoints a process through `import ... from "crest"`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { check, CrestError, dump, features, preDump, restore, type Progress } from "../../src/api.js";
import { IMG, readImage } from "../../src/images/index.js";
import { projectRoot } from "../../src/sys/native.js";
import { alive, finish, imagesDir, startWorkload, stop, waitTreeGone, type Workload } from "./harness.js";

/**
 * memwrite pre-dumped into pre/ through the API; `dumpFinal` dumps it into
 * final/ against pre/ (after some writes); then restored from final/, its
 * check of every page passes.
 */
async function preDumpChain(dumpFinal: (w: Workload, pre: string, final: string) => Promise<void>): Promise<void> {
  const w = startWorkload("memwrite", ["16", "200"]);
  try {
    const pre = join(w.dir, "pre"), final = join(w.dir, "final");
    mkdirSync(pre);
    mkdirSync(final);
    await preDump({ pid: w.pid, imagesDir: pre });
    assert.ok(alive(w.pid), "the tree runs on after a pre-dump");
    await dumpFinal(w, pre, final);
    waitTreeGone(w, final);
    assert.equal((await restore({ imagesDir: final })).pid, w.pid);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
}

const someWrites = (): Promise<void> => new Promise((done) => setTimeout(done, 300));

test("api: preDump, then dump with parentImagesDir, trackMem and autoDedup: the restore reads through the chain", () => preDumpChain(async (w, pre, final) => {
  const prePages = join(pre, `pages-${readImage(pre, IMG.pagemap, w.pid).head.pages_id}.img`);
  const before = statSync(prePages).blocks;
  await someWrites();
  await dump({ pid: w.pid, imagesDir: final, parentImagesDir: "../pre", trackMem: true, autoDedup: true });
  assert.ok(readImage(final, IMG.pagemap, w.pid).entries.some((e) => e.flags === 1), "pages left in the pre-dump's images (PE_PARENT)");
  assert.ok(statSync(prePages).blocks < before, "the pre-dump's copies of pages written since are punched out (autoDedup)");
}));

test("api: dump with precopy after a preDump: the pages written since are copied into a layer of their own (precopy/), and the restore reads through it", () => preDumpChain(async (w, _pre, final) => {
  await someWrites();
  await dump({ pid: w.pid, imagesDir: final, parentImagesDir: "../pre", trackMem: true, precopy: true });
  assert.equal(readlinkSync(join(final, "parent")), "precopy", "the dump's parent is the layer the round wrote");
  assert.ok(readImage(join(final, "precopy"), IMG.pagemap, w.pid).entries.some((e) => (e.flags ?? 0) & 4), "the layer holds pages (PE_PRESENT)");
}));

test("api: dump and restore a tree, with progress; the restored root's pid", async () => {
  const w = startWorkload("forest", ["5"]);
  try {
    const dir = imagesDir(w);
    mkdirSync(dir, { recursive: true });
    const seen: Progress[] = [];
    assert.deepEqual(await dump({ pid: w.pid, imagesDir: dir, logLevel: 4, logFile: "dump.log" }, { onProgress: (p) => seen.push(p) }), { pid: w.pid });
    assert.deepEqual(seen[0], { stage: "frozen", tasks: 5 });
    const last = seen.at(-1)!;
    assert.equal(last.stage, "dumping");
    assert.deepEqual(last.stage === "dumping" && [last.tasksDone, last.tasksTotal], [5, 5]);
    waitTreeGone(w, dir);
    const restoring: Progress[] = [];
    const r = await restore({ imagesDir: dir, logFile: "restore.log" }, { onProgress: (p) => restoring.push(p) });
    assert.equal(r.pid, w.pid);
    assert.deepEqual(restoring.map((p) => p.stage === "restoring" && p.tasksDone), [1, 2, 3, 4, 5]);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("api: check and features", async () => {
  assert.deepEqual(await check(), { ok: true });
  // Memory tracking: userfaultfd write-protection; lazy pages: userfaultfd's non-cooperative events; both of which this kernel has.
  assert.deepEqual(await features(), { memTrack: true, lazyPages: true, pidfdStore: false });
});

test("api: what crest refuses is a CrestError with code unsupported, the tree untouched", async () => {
  const w = startWorkload("sk-inet", ["inflight"]);
  try {
    const dir = imagesDir(w);
    mkdirSync(dir, { recursive: true });
    await assert.rejects(dump({ pid: w.pid, imagesDir: dir, tcpEstablished: true }), (e: unknown) => {
      assert.ok(e instanceof CrestError);
      assert.equal(e.code, "unsupported");
      assert.match(e.message, /In-flight connection \(l\).*--skip-in-flight/);
      return true;
    });
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("api: an AbortSignal cancels a dump (the tree runs on) and a restore (nothing left alive)", async () => {
  const w = startWorkload("forest", ["3"]);
  try {
    const dir = imagesDir(w);
    mkdirSync(dir, { recursive: true });
    let ac = new AbortController();
    await assert.rejects(dump({ pid: w.pid, imagesDir: dir }, { signal: ac.signal, onProgress: (p) => p.stage === "frozen" && ac.abort() }),
      (e: unknown) => e instanceof CrestError && e.code === "aborted");
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith(".img")), [], "no images left");
    await dump({ pid: w.pid, imagesDir: dir });
    waitTreeGone(w, dir);
    ac = new AbortController();
    await assert.rejects(restore({ imagesDir: dir }, { signal: ac.signal, onProgress: (p) => p.stage === "restoring" && p.tasksDone === 2 && ac.abort() }),
      (e: unknown) => e instanceof CrestError && e.code === "aborted");
    assert.equal(alive(w.pid), false, "nothing of the cancelled restore is alive");
    assert.equal((await restore({ imagesDir: dir })).pid, w.pid);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("api: the packed package, installed offline into another project, checkpoints a process through import from \"crest\"", () => {
  const scratch = mkdtempSync("/tmp/crest-pack-");
  const tgz = execFileSync("npm", ["pack", "--ignore-scripts", "--pack-destination", scratch], { cwd: projectRoot(), encoding: "utf8" }).trim().split("\n").pop()!;
  const project = join(scratch, "app");
  mkdirSync(project);
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "app", version: "1.0.0", type: "module" }));
  const install = spawnSync("npm", ["install", "--offline", "--no-audit", "--no-fund", join(scratch, tgz)], { cwd: project, encoding: "utf8" });
  assert.equal(install.status, 0, install.stderr);
  const w = startWorkload("loop");
  try {
    const dir = imagesDir(w);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(project, "app.mjs"), `import { dump, check } from "crest";
const { ok } = await check();
const r = await dump({ pid: ${w.pid}, imagesDir: ${JSON.stringify(dir)}, logFile: "dump.log" });
console.log(ok, r.pid);`);
    const run = spawnSync(process.execPath, ["app.mjs"], { cwd: project, encoding: "utf8" });
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout.trim(), `true ${w.pid}`);
    waitTreeGone(w, dir);
    const back = spawnSync(join(project, "node_modules", ".bin", "crest"), ["restore", "-D", dir, "-d"], { encoding: "utf8" });
    assert.equal(back.status, 0, back.stderr);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});
