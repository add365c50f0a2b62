// Remote lazy pages (issue 13): `crest dump --lazy-pages --port P` writes
// every image but the lazy pages (PE_LAZY in the pagemap, no bytes), then
// serves them from the frozen tasks; `crest lazy-pages --page-server
// --address A --port P` on the restore side fetches them on fault and in the
// background; `crest restore --lazy-pages` is unchanged. The dump ends as a
// dump ends once the daemon has closed the session. The workloads run in
// a PID namespace of their own: the restored tree lives beside the frozen
// one, as it would on another machine.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  alive, CREST, crest, critDecodeAll, dumpWorkload, finish, imagesDir, restoreWorkload, startWorkload, stop, waitFor, waitGone, type Run, type Workload,
} from "./harness.js";
import { IMG, readImage } from "../../src/images/index.js";

let port = 24000 + (process.pid % 1000) * 4;
type Exit = Run & { signal: string | null };

function spawnCrest(args: string[]): { done: Promise<Exit>; pid: number } {
  const p = spawn(CREST, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "", stderr = "";
  p.stdout.on("data", (d) => (stdout += d));
  p.stderr.on("data", (d) => (stderr += d));
  const done = new Promise<Exit>((resolve) => p.on("close", (code, signal) => resolve({ code: code ?? -1, signal, stdout, stderr })));
  return { done, pid: p.pid! };
}

const log = (w: Workload, name: string): string => {
  const p = join(imagesDir(w), name);
  return existsSync(p) ? readFileSync(p, "utf8") : "";
};

/** Resolves null after 60 s (a timer that does not keep the test file alive). */
const within60s = (): Promise<null> => new Promise<null>((r) => setTimeout(() => r(null), 60_000).unref());

/** dump --lazy-pages in the background, once it serves: the images are written and the tree frozen. */
function lazyDump(w: Workload, p: number, extra: string[] = []): { done: Promise<Exit>; pid: number } {
  const d = spawnCrest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log", "-v4", "--lazy-pages", "--address", "127.0.0.1", "--port", String(p), ...extra]);
  waitFor("the dump to serve its lazy pages", () => /Lazy pages: serving \d+ page\(s\)/.test(log(w, "dump.log")) || /FAILED/.test(log(w, "dump.log")), 60_000);
  assert.doesNotMatch(log(w, "dump.log"), /FAILED/);
  return d;
}

function remoteDaemon(w: Workload, p: number): { done: Promise<Exit>; pid: number } {
  const d = spawnCrest(["lazy-pages", "-D", imagesDir(w), "-o", "lazy.log", "-v4", "--page-server", "--address", "127.0.0.1", "--port", String(p)]);
  waitFor("the lazy-pages daemon to listen", () => existsSync(join(imagesDir(w), "lazy-pages.socket")));
  return d;
}

/** Lazy pages in the images, of every process: entries PE_LAZY alone (2), and the pages files hold none of them. */
function lazyPagesInImages(w: Workload): number {
  return readImage(imagesDir(w), IMG.pstree).reduce((sum, t) => {
    if (!existsSync(join(imagesDir(w), `pagemap-${t.pid}.img`))) return sum; // a zombie
    const pm = readImage(imagesDir(w), IMG.pagemap, t.pid);
    return sum + pm.entries.filter((e) => e.flags === 2).reduce((n, e) => n + Number(e.nr_pages), 0);
  }, 0);
}

/** `all`: every lazy page is taken (a workload that drops memory leaves some that nobody asks for). */
async function remoteCycle(name: string, args: string[], env: string[] = [], all = true): Promise<string> {
  const w = startWorkload(name, args, { ns: "pid", env });
  const p = ++port;
  let dump: { done: Promise<Exit>; pid: number } | undefined;
  try {
    const frozen = w.pid;
    dump = lazyDump(w, p);
    assert.ok(alive(frozen), "the dumped tree is there, frozen, while its pages are served");
    assert.deepEqual(critDecodeAll(imagesDir(w)), [], "crit decodes every image");
    const lazy = lazyPagesInImages(w);
    assert.ok(lazy > 0, "the dump left pages lazy (PE_LAZY, no bytes)");
    const daemon = remoteDaemon(w, p);
    restoreWorkload(w, ["--lazy-pages"]);
    const dr = await daemon.done;
    assert.equal(dr.code, 0, `the daemon exits 0 once every page is in: ${dr.stderr}\n${log(w, "lazy.log")}`);
    assert.match(log(w, "lazy.log"), /Lazy pages: (\d+) page\(s\) came from the page server/);
    const dd = await dump.done;
    assert.equal(dd.code, 0, `the dump exits 0 once the daemon has closed: ${dd.stderr}\n${log(w, "dump.log")}`);
    assert.match(log(w, "dump.log"), /Lazy pages transfer finished successfully[\s\S]*Dumping finished successfully/);
    const m = /the daemon took (\d+) of (\d+) lazy page\(s\)/.exec(log(w, "dump.log"));
    assert.ok(m, "the dump tells how many lazy pages went");
    assert.equal(Number(m[2]), lazy, "it served the pages the images left lazy");
    if (all) assert.equal(Number(m[1]), Number(m[2]), "every one was taken");
    else assert.ok(Number(m[1]) > 0 && Number(m[1]) <= Number(m[2]), "pages were taken");
    waitGone(frozen);
    return finish(w);
  } finally {
    // A dump still serving (a check failed first) would wait for a daemon forever.
    if (dump) killQuietly(dump.pid);
    stop(w);
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // gone already
  }
}

test("bigmem 128 MiB dumped with --lazy-pages, restored through a remote lazy-pages daemon: checks pass, the dump exits 0", async () => {
  assert.equal(await remoteCycle("bigmem", ["128"]), "PASS");
});

test("bigmem remote lazy, sabotaged: the check after a remote lazy restore can fail", async () => {
  assert.match(await remoteCycle("bigmem", ["16"], ["CREST_WL_SABOTAGE=1"]), /^FAIL: word \d+/);
});

test("memwrite: pages written, dropped and first written while they come from the dump side", async () => {
  assert.equal(await remoteCycle("memwrite", ["64", "20000"], [], false), "PASS");
});

test("tree in a PID namespace of its own (sessions, groups, zombies, children forked from lazily restored parents), restored through a remote lazy-pages daemon: its check passes after SIGTERM", async () => {
  assert.equal(await remoteCycle("tree", []), "PASS");
});

test("churn: a root that forks without pause, restored through a remote lazy-pages daemon (every forked child's userfaultfd let go once it has exited)", async () => {
  assert.equal(await remoteCycle("churn", [], [], false), "PASS");
});

test("the dump side killed mid-way: the restored tree ends, the daemon fails by name, nothing hangs", async () => {
  const w = startWorkload("bigmem", ["256"], { ns: "pid" });
  const p = ++port;
  try {
    const frozen = w.pid;
    const dump = lazyDump(w, p);
    const daemon = remoteDaemon(w, p);
    restoreWorkload(w, ["--lazy-pages"]);
    // Some pages went; then the dump side dies for real.
    waitFor("some pages to go", () => /came|sent \d+ page/.test(log(w, "dump.log")), 30_000);
    process.kill(dump.pid, "SIGKILL");
    const dd = await dump.done;
    assert.equal(dd.signal, "SIGKILL");
    const dr = await Promise.race([daemon.done, within60s()]);
    assert.ok(dr, "the daemon does not hang");
    assert.equal(dr.code, 1, "the daemon fails");
    assert.match(log(w, "lazy.log"), /the page server at 127\.0\.0\.1:\d+ .*the restored tree cannot have its memory/);
    assert.match(dr.stderr, /killed the restored tree/);
    waitGone(w.pid);
    assert.ok(!readFileSync(w.status, "utf8").startsWith("PASS"), "the restored task never reported: killed, not left reading zeros");
    // The frozen tree, let go by its tracer's death, runs on (criu's failed dump too); it is stopped here.
    w.pid = frozen;
  } finally {
    stop(w);
  }
});

test("the restore side's daemon killed mid-way: the dump fails by name and the dumped tree runs on", async () => {
  const w = startWorkload("bigmem", ["256"], { ns: "pid" });
  const p = ++port;
  try {
    const frozen = w.pid;
    const dump = lazyDump(w, p);
    const daemon = remoteDaemon(w, p);
    const restored = restoreWorkload(w, ["--lazy-pages"]);
    assert.equal(restored.code, 0);
    waitFor("some pages to go", () => /sent \d+ page/.test(log(w, "dump.log")), 30_000);
    process.kill(daemon.pid, "SIGKILL");
    await daemon.done;
    const dd = await Promise.race([dump.done, within60s()]);
    assert.ok(dd, "the dump does not hang");
    assert.equal(dd.code, 1, "the dump fails");
    assert.match(log(w, "dump.log"), /the lazy-pages daemon closed its connection before it asked to close \(\d+ of \d+ lazy page\(s\) sent[^)]*\)[\s\S]*Lazy pages transfer FAILED[\s\S]*Dumping FAILED/);
    waitGone(w.pid);
    // The dumped tree runs on, as after any failed dump, and still checks out.
    w.pid = frozen;
    assert.ok(alive(frozen));
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("images with lazy pages: a plain restore refuses them by name, before it makes anything", () => {
  const w = startWorkload("bigmem", ["16"], { ns: "pid" });
  const p = ++port;
  try {
    const dump = lazyDump(w, p);
    const r = crest(["restore", "-D", imagesDir(w), "-o", "restore.log", "-v4", "-d"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr + log(w, "restore.log"), /are lazy \(left in the dumped tasks by dump --lazy-pages\): restore them with --lazy-pages/);
    // The dump still serves: let it end (a session closed at once, nothing taken).
    process.kill(dump.pid, "SIGKILL");
  } finally {
    stop(w);
  }
});

test("page-server --lazy-pages serves the lazy pages of a plain dump's images (criu's remote lazy pages, as zdtm runs them)", async () => {
  const w = startWorkload("bigmem", ["64"]);
  const p = ++port;
  try {
    dumpWorkload(w);
    const pm = readImage(imagesDir(w), IMG.pagemap, w.pid);
    const marked = pm.entries.filter((e) => e.flags === 6).reduce((n, e) => n + Number(e.nr_pages), 0);
    assert.ok(marked >= 16384, `a plain dump marks the pages it could restore lazily PE_LAZY|PE_PRESENT, as criu does (${marked})`);
    const server = spawnCrest(["page-server", "-D", imagesDir(w), "-o", "ps.log", "-v4", "--port", String(p), "--lazy-pages"]);
    waitFor("the page server to listen", () => /listening on port/.test(log(w, "ps.log")));
    const daemon = remoteDaemon(w, p);
    restoreWorkload(w, ["--lazy-pages"]);
    const dr = await daemon.done;
    assert.equal(dr.code, 0, `${dr.stderr}\n${log(w, "lazy.log")}`);
    const got = /Lazy pages: (\d+) page\(s\) came from the page server/.exec(log(w, "lazy.log"));
    assert.ok(got && Number(got[1]) === marked, `the daemon fetched the marked pages from the page server (${got?.[1]} of ${marked})`);
    const sr = await server.done;
    assert.equal(sr.code, 0, `${sr.stderr}\n${log(w, "ps.log")}`);
    assert.match(log(w, "ps.log"), /the daemon took \d+ of \d+ lazy page\(s\) and closed the session[\s\S]*Session over/);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("dump --lazy-pages -R: once its pages went, the dumped tree runs on beside the restored one, both check out", async () => {
  const w = startWorkload("bigmem", ["32"], { ns: "pid" });
  const p = ++port;
  const original = { ...w };
  try {
    const dump = lazyDump(w, p, ["-R"]);
    const daemon = remoteDaemon(w, p);
    restoreWorkload(w, ["--lazy-pages"]);
    assert.equal((await daemon.done).code, 0);
    const dd = await dump.done;
    assert.equal(dd.code, 0, `${dd.stderr}\n${log(w, "dump.log")}`);
    assert.ok(alive(original.pid), "the dumped tree runs on");
    assert.equal(finish(w), "PASS", "the restored one checks out");
    // Both report into one status file: emptied between them.
    writeFileSync(w.status, "");
    assert.equal(finish(original), "PASS", "and so does the one left running");
  } finally {
    stop(w);
    stop(original);
  }
});
