// Lazy restore: `crest lazy-pages -D DIR` started first, then `crest restore
// --lazy-pages`. The restored tasks start before their private memory is in
// place; the daemon copies each page in on first touch and pushes the rest,
// and exits once every page of every task is in. A daemon killed with pages
// still to come ends the restored tree (never a task reading zeros, never a
// hang); a restore without a daemon fails before it makes anything.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, writeSync } from "node:fs";
import { join } from "node:path";
import {
  alive, CREST, crest, critDecodeAll, dumpWorkload, finish, imagesDir, restoreWorkload, startWorkload, stop, waitFor, waitGone, type Run, type Workload,
} from "./harness.js";

/** Starts the daemon on the workload's images; resolves with its exit once it is done. */
function startDaemon(w: Workload, env: Record<string, string> = {}): { done: Promise<Run & { signal: string | null }>; pid: number } {
  const dir = imagesDir(w);
  const p = spawn(CREST, ["lazy-pages", "-D", dir, "-o", "lazy.log", "-v4"], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  let stdout = "", stderr = "";
  p.stdout.on("data", (d) => (stdout += d));
  p.stderr.on("data", (d) => (stderr += d));
  const done = new Promise<Run & { signal: string | null }>((resolve) => p.on("close", (code, signal) => resolve({ code: code ?? -1, signal, stdout, stderr })));
  // It listens once its socket is there (criu's name, in the work directory).
  waitFor("the lazy-pages daemon to listen", () => existsSync(join(dir, "lazy-pages.socket")));
  return { done, pid: p.pid! };
}

const lazyLog = (w: Workload): string => readFileSync(join(imagesDir(w), "lazy.log"), "utf8");
const restoreLog = (w: Workload): string => readFileSync(join(imagesDir(w), "restore.log"), "utf8");

/** The pages the daemon says it copied in for the task, of how many. */
function copied(w: Workload, pid: number): [number, number] {
  const m = new RegExp(`process ${pid}: (\\d+) of (\\d+) page\\(s\\) copied in`).exec(lazyLog(w));
  assert.ok(m, `the daemon's log tells the pages of process ${pid}:\n${lazyLog(w)}`);
  return [Number(m[1]), Number(m[2])];
}

async function lazyCycle(name: string, args: string[], check: (w: Workload) => void, opts: { env?: string[]; ns?: string } = {}): Promise<string> {
  const w = startWorkload(name, args, opts);
  try {
    dumpWorkload(w);
    assert.deepEqual(critDecodeAll(imagesDir(w)), [], "crit decodes every image");
    const d = startDaemon(w);
    restoreWorkload(w, ["--lazy-pages"]);
    const r = await d.done;
    assert.equal(r.code, 0, `the daemon exits 0 once every page is in: ${r.stderr}\n${lazyLog(w)}`);
    assert.match(lazyLog(w), /Lazy pages: every page of \d+ userfaultfd\(s\) is in place/);
    assert.ok(!existsSync(join(imagesDir(w), "lazy-pages.socket")), "the socket is gone");
    check(w);
    return finish(w);
  } finally {
    stop(w);
  }
}

test("bigmem 256 MiB restored lazily: its memory checks out, the daemon copied every page and exits", async () => {
  const verdict = await lazyCycle("bigmem", ["256"], (w) => {
    assert.match(restoreLog(w), /mapping\(s\) of task \d+ left to the lazy-pages daemon/);
    const [got, total] = copied(w, w.pid);
    // 256 MiB of pattern: 65536 pages, and a few of the program's own.
    assert.ok(total >= 65536, `the daemon had the 256 MiB to serve (${total} pages)`);
    assert.equal(got, total, "and copied every one in");
  });
  assert.equal(verdict, "PASS");
});

test("bigmem restored lazily, sabotaged: the check that runs after a lazy restore can fail", async () => {
  const verdict = await lazyCycle("bigmem", ["16"], () => {}, { env: ["CREST_WL_SABOTAGE=1"] });
  assert.match(verdict, /^FAIL: word \d+/);
});

test("memwrite: pages written, dropped (MADV_DONTNEED) and first written while the daemon serves", async () => {
  assert.equal(await lazyCycle("memwrite", ["64", "20000"], () => {}), "PASS");
});

test("lazymark split: pushes into a mapping the task keeps splitting and merging (mprotect of a page every 8 MiB)", async () => {
  assert.equal(await lazyCycle("lazymark", ["256", "marker", "split"], (w) => {
    const [got, total] = copied(w, w.pid);
    assert.equal(got, total, "every page copied in, none lost to the split");
  }), "PASS");
});

test("tree: every task of a tree restored lazily (children forked from lazily restored parents)", async () => {
  assert.equal(await lazyCycle("tree", [], (w) => {
    // Each task's own userfaultfd, and those of the stubs' forks (emptied by their unmaps).
    assert.ok((lazyLog(w).match(/: \d+ page\(s\) to serve/g) ?? []).length > 1, "the daemon served more than one task");
  }), "PASS");
});

test("churn: a root that forks without pause after a lazy restore (fork events followed)", async () => {
  assert.equal(await lazyCycle("churn", [], (w) => assert.match(lazyLog(w), /forked: its child's \d+ page\(s\) still to serve/)), "PASS");
});

test("userns: tasks in a user namespace of their own make their userfaultfd through /dev/userfaultfd", async () => {
  assert.equal(await lazyCycle("userns", [], (w) => assert.match(lazyLog(w), /every page of \d+ userfaultfd\(s\) is in place/), { ns: "pid,user" }), "PASS");
});

test("a daemon killed with pages still to come ends the restored tree", async () => {
  const w = startWorkload("bigmem", ["128"]);
  try {
    dumpWorkload(w);
    // A real SIGKILL of the daemon once the restore is over (it has closed its connection), before any page is pushed.
    const d = startDaemon(w, { CREST_FAULT: "lazy-pages:killed" });
    const pidfile = join(w.dir, "restored.pid");
    const rr = crest(["restore", "-D", imagesDir(w), "-o", "restore.log", "-v4", "-d", "--pidfile", pidfile, "--lazy-pages"]);
    assert.equal(rr.code, 0, `the restore itself succeeds: ${rr.stderr}`);
    w.pid = Number(readFileSync(pidfile, "utf8"));
    const r = await d.done;
    assert.equal(r.signal, "SIGKILL", "the daemon was killed");
    assert.match(r.stderr, /the daemon ended before every page was in place: killed the restored tree \(\d+/);
    waitGone(w.pid);
    assert.ok(!readFileSync(w.status, "utf8").startsWith("PASS"), "the task never reported: it was killed, not left reading zeros");
  } finally {
    stop(w);
  }
});

test("a pages file altered since the dump: the lazy restore lets the tree run, the daemon's sum finds it and the tree is ended", async () => {
  const w = startWorkload("bigmem", ["128"]);
  try {
    dumpWorkload(w);
    const pages = join(imagesDir(w), "pages-1.img");
    const fd = openSync(pages, "r+");
    const at = Math.floor(fstatSync(fd).size / 2), b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    b[0] = b[0]! ^ 0x40;
    writeSync(fd, b, 0, 1, at);
    closeSync(fd);
    const d = startDaemon(w);
    const pidfile = join(w.dir, "restored.pid");
    const rr = crest(["restore", "-D", imagesDir(w), "-o", "restore.log", "-v4", "-d", "--pidfile", pidfile, "--lazy-pages"]);
    assert.equal(rr.code, 0, `the restore itself succeeds (the daemon sums the pages): ${rr.stderr}`);
    assert.match(restoreLog(w), /1 pages files \(\d+ bytes\) are summed by the lazy-pages daemon/);
    w.pid = Number(readFileSync(pidfile, "utf8"));
    const r = await d.done;
    assert.equal(r.code, 1, "the daemon fails");
    assert.match(lazyLog(w), /pages-1\.img: altered: its CRC-32 is [0-9a-f]{8}, the dump wrote [0-9a-f]{8}/);
    assert.match(r.stderr, /killed the restored tree/);
    waitGone(w.pid);
    assert.ok(!readFileSync(w.status, "utf8").startsWith("PASS"), "the task never reported: it was killed");
  } finally {
    stop(w);
  }
});

test("a daemon killed during the restore: the restore fails whole, nothing is left", async () => {
  const w = startWorkload("bigmem", ["32"]);
  try {
    dumpWorkload(w);
    const d = startDaemon(w);
    // Stopped: it takes no restore and serves no fault; then killed.
    process.kill(d.pid, "SIGSTOP");
    const p = spawn(CREST, ["restore", "-D", imagesDir(w), "-o", "restore.log", "-v4", "-d", "--lazy-pages"], { stdio: "ignore" });
    const restored = new Promise<number>((resolve) => p.on("close", (code) => resolve(code ?? -1)));
    await new Promise((r) => setTimeout(r, 1500));
    process.kill(d.pid, "SIGKILL");
    await d.done;
    const code = await Promise.race([restored, new Promise<number>((r) => setTimeout(() => r(-999), 60_000))]);
    assert.notEqual(code, -999, "the restore does not hang");
    assert.equal(code, 1, "the restore fails");
    assert.match(restoreLog(w), /Restoring FAILED/);
    waitGone(w.pid);
  } finally {
    stop(w);
  }
});

test("restore --lazy-pages without a daemon fails at once and leaves nothing alive", () => {
  const w = startWorkload("bigmem", ["16"]);
  try {
    dumpWorkload(w);
    const r = crest(["restore", "-D", imagesDir(w), "-o", "restore.log", "-v4", "-d", "--lazy-pages"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr + restoreLog(w), /no lazy-pages daemon listens on .*lazy-pages\.socket \(ENOENT\); start `crest lazy-pages -D/);
    assert.ok(!alive(w.pid), "no process was made");
    // The images are intact: a plain restore still works.
    restoreWorkload(w);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});
