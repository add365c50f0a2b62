// Remote lazy pages (issue 13): `crest dump --lazy-pages --port P` writes
// every image but the lazy pages (PE_LAZY in the pagemap, no bytes), then
// serves them from the frozen tasks; `crest lazy-pages --page-server
// --address A --port P` on the restore side fetches them on fault and in the
// background; `crest restore --lazy-pages` is unchanged. The dump ends as a
// dump ends once the daemon has closed the session. The workloads run in
// a PID namespace of their own: the restored tree lives beside the frozen
// one, as it would on another machine. With --tls on both sides, the same
// over TLS (criu 4.x's lazy migration with --tls). With a working criu
// (CREST_CRIU), criu's lazy-pages daemon also takes crest's pages over TLS.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  alive, CREST, crest, critDecodeAll, dumpWorkload, finish, imagesDir, procState, restoreWorkload, startWorkload, stop, waitFor, waitGone, type Run, type Workload,
} from "./harness.js";
import { IMG, readImage } from "../../src/images/index.js";
import { makeCerts, tlsClient, tlsServer } from "./tls-certs.js";

const criu = process.env.CREST_CRIU;
const criuWorks = !!criu && spawnSync(criu, ["check"]).status === 0;

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

function remoteDaemon(w: Workload, p: number, extra: string[] = []): { done: Promise<Exit>; pid: number } {
  const d = spawnCrest(["lazy-pages", "-D", imagesDir(w), "-o", "lazy.log", "-v4", "--page-server", "--address", "127.0.0.1", "--port", String(p), ...extra]);
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

/** Processes whose working directory is dir: the workload's tree, dumped or restored (nothing else runs there). */
function runningIn(dir: string): number[] {
  return readdirSync("/proc").filter((d) => /^\d+$/.test(d)).filter((d) => {
    try {
      return readlinkSync(`/proc/${d}/cwd`) === dir;
    } catch {
      return false;
    }
  }).map(Number);
}

/** `all`: every lazy page is taken (a workload that drops memory leaves some that nobody asks for); `tls`: both sides with --tls. */
async function remoteCycle(name: string, args: string[], env: string[] = [], all = true, tls = false): Promise<string> {
  const w = startWorkload(name, args, { ns: "pid", env });
  const p = ++port;
  let dump: { done: Promise<Exit>; pid: number } | undefined;
  try {
    const frozen = w.pid;
    dump = lazyDump(w, p, tls ? tlsServer() : []);
    assert.ok(alive(frozen), "the dumped tree is there, frozen, while its pages are served");
    assert.deepEqual(critDecodeAll(imagesDir(w)), [], "crit decodes every image");
    const lazy = lazyPagesInImages(w);
    assert.ok(lazy > 0, "the dump left pages lazy (PE_LAZY, no bytes)");
    const daemon = remoteDaemon(w, p, tls ? tlsClient() : []);
    restoreWorkload(w, ["--lazy-pages"]);
    const dr = await daemon.done;
    assert.equal(dr.code, 0, `the daemon exits 0 once every page is in: ${dr.stderr}\n${log(w, "lazy.log")}`);
    if (tls) {
      assert.match(log(w, "lazy.log"), /Connected to the page server at 127\.0\.0\.1:\d+ \(TLS handshake completed\)/);
      assert.match(log(w, "dump.log"), /a lazy-pages daemon connected \(TLS handshake completed\)/);
    }
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

/**
 * The dump side dies, or stops (`stopped`: SIGSTOP, alive but silent), while
 * the daemon fetches (`tls`: over TLS, the relay between them): no hang, the
 * daemon fails by name (a stopped one after its --timeout), the restored tree ends.
 */
async function dumpSideGone(tls: boolean, stopped = false): Promise<void> {
  const w = startWorkload("bigmem", ["256"], { ns: "pid" });
  const p = ++port;
  let dump: { done: Promise<Exit>; pid: number } | undefined, daemon: { done: Promise<Exit>; pid: number } | undefined;
  try {
    const frozen = w.pid;
    dump = lazyDump(w, p, tls ? tlsServer() : []);
    daemon = remoteDaemon(w, p, [...(tls ? tlsClient() : []), ...(stopped ? ["--timeout", "2"] : [])]);
    restoreWorkload(w, ["--lazy-pages"]);
    // Some pages went; then the dump side dies (or stops) for real.
    waitFor("some pages to go", () => /came|sent \d+ page/.test(log(w, "dump.log")), 30_000);
    process.kill(dump.pid, stopped ? "SIGSTOP" : "SIGKILL");
    const dr = await Promise.race([daemon.done, within60s()]);
    assert.ok(dr, "the daemon does not hang");
    assert.equal(dr.code, 1, "the daemon fails");
    assert.match(log(w, "lazy.log"), stopped
      ? /the page server at 127\.0\.0\.1:\d+: it took nothing and answered nothing for 2 s \(--timeout\): is it stopped or stuck\? \(did not answer the request .*the restored tree cannot have its memory/
      : /the page server at 127\.0\.0\.1:\d+ .*the restored tree cannot have its memory/);
    assert.match(dr.stderr, /killed the restored tree/);
    waitGone(w.pid);
    assert.ok(!readFileSync(w.status, "utf8").startsWith("PASS"), "the restored task never reported: killed, not left reading zeros");
    if (stopped) process.kill(dump.pid, "SIGKILL");
    assert.equal((await dump.done).signal, "SIGKILL");
    // The frozen tree, let go by its tracer's death, runs on (criu's failed dump too); it is stopped here.
    w.pid = frozen;
  } finally {
    // A daemon that hung (the test failed) would leave the restored tree waiting on it.
    for (const c of [daemon, dump]) if (c && alive(c.pid)) process.kill(c.pid, "SIGKILL");
    stop(w);
  }
}

test("the dump side killed mid-way: the restored tree ends, the daemon fails by name, nothing hangs", () => dumpSideGone(false));

test("--tls: the dump side killed mid-way: the relay ends the daemon's reads, the restored tree ends, nothing hangs", () => dumpSideGone(true));

test("the dump side stopped mid-way (alive, silent): after its --timeout the daemon fails by name, the restored tree ends, nothing hangs", () => dumpSideGone(false, true));

test("--tls: the dump side stopped mid-way: after its --timeout the daemon fails by name, the restored tree ends", () => dumpSideGone(true, true));

/** The daemon dies while it fetches (`tls`: over TLS): the dump fails by name, its tree runs on. */
async function daemonKilled(tls: boolean): Promise<void> {
  const w = startWorkload("bigmem", ["256"], { ns: "pid" });
  const p = ++port;
  try {
    const frozen = w.pid;
    const dump = lazyDump(w, p, tls ? tlsServer() : []);
    const daemon = remoteDaemon(w, p, tls ? tlsClient() : []);
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
}

test("the restore side's daemon killed mid-way: the dump fails by name and the dumped tree runs on", () => daemonKilled(false));

test("--tls: the restore side's daemon killed mid-way: the dump fails by name and the dumped tree runs on", () => daemonKilled(true));

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

/** A plain dump of `name` (its first argument: MiB of memory), then page-server --lazy-pages serves its lazy pages to a daemon (`tls`: both with --tls). */
async function servedFromImages(name: string, args: string[], tls: boolean): Promise<void> {
  const w = startWorkload(name, args);
  const p = ++port;
  const started: number[] = [];
  try {
    dumpWorkload(w);
    const pm = readImage(imagesDir(w), IMG.pagemap, w.pid);
    const marked = pm.entries.filter((e) => e.flags === 6).reduce((n, e) => n + Number(e.nr_pages), 0);
    assert.ok(marked >= Number(args[0]) * 256, `a plain dump marks the pages it could restore lazily PE_LAZY|PE_PRESENT, as criu does (${marked})`);
    // With TLS, an --address: the page server then checks the daemon's certificate is made out to it (criu's rule).
    const server = spawnCrest(["page-server", "-D", imagesDir(w), "-o", "ps.log", "-v4", "--port", String(p), "--lazy-pages", ...(tls ? ["--address", "127.0.0.1", ...tlsServer()] : [])]);
    started.push(server.pid);
    waitFor("the page server to listen", () => /listening on port/.test(log(w, "ps.log")));
    const daemon = remoteDaemon(w, p, tls ? tlsClient() : []);
    started.push(daemon.pid);
    restoreWorkload(w, ["--lazy-pages"]);
    const dr = await daemon.done;
    assert.equal(dr.code, 0, `${dr.stderr}\n${log(w, "lazy.log")}`);
    const got = /Lazy pages: (\d+) page\(s\) came from the page server/.exec(log(w, "lazy.log"));
    assert.ok(got && Number(got[1]) === marked, `the daemon fetched the marked pages from the page server (${got?.[1]} of ${marked})`);
    const sr = await server.done;
    assert.equal(sr.code, 0, `${sr.stderr}\n${log(w, "ps.log")}`);
    assert.match(log(w, "ps.log"), /the daemon took \d+ of \d+ lazy page\(s\) and closed the session[\s\S]*Session over/);
    if (tls) assert.match(log(w, "ps.log"), /a lazy-pages daemon connected \(TLS handshake completed\)/);
    assert.equal(finish(w), "PASS");
  } finally {
    // Left waiting for each other (a check failed first), they would hold this test file open.
    for (const pid of started) killQuietly(pid);
    stop(w);
  }
}

test("page-server --lazy-pages serves the lazy pages of a plain dump's images (criu's remote lazy pages, as zdtm runs them)", () => servedFromImages("bigmem", ["64"], false));

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

// ---- over TLS (--tls on both sides, criu 4.x's lazy migration with --tls) ----

test("--tls: dump --lazy-pages --tls to lazy-pages --page-server --tls: memwrite's pages come over TLS, its check passes, the dump exits 0", async () => {
  assert.equal(await remoteCycle("memwrite", ["64", "20000"], [], false, true), "PASS");
});

test("--tls: page-server --lazy-pages --tls serves a plain dump's lazy pages to lazy-pages --page-server --tls: lazymark's check passes", () => servedFromImages("lazymark", ["32"], true));

/**
 * A handshake refused between a dump --lazy-pages --tls and its daemon: the
 * daemon fails before it listens (`daemonSays`), the restore then fails at
 * once and makes nothing, the dump fails (`dumpSays`) and its tree runs on.
 */
async function refusedWithDump(dumpCa: string, daemonCa: string, daemonSays: RegExp, dumpSays: RegExp): Promise<void> {
  const w = startWorkload("bigmem", ["16"], { ns: "pid" });
  const p = ++port;
  let dump: { done: Promise<Exit>; pid: number } | undefined, daemon: { done: Promise<Exit>; pid: number } | undefined;
  try {
    const frozen = w.pid;
    dump = lazyDump(w, p, tlsServer(dumpCa));
    daemon = spawnCrest(["lazy-pages", "-D", imagesDir(w), "-o", "lazy.log", "-v4", "--page-server", "--address", "127.0.0.1", "--port", String(p), ...tlsClient(daemonCa)]);
    const dr = await Promise.race([daemon.done, within60s()]);
    assert.ok(dr, "the daemon does not hang");
    assert.equal(dr.code, 1, "the daemon fails");
    assert.match(dr.stderr, daemonSays);
    assert.ok(!existsSync(join(imagesDir(w), "lazy-pages.socket")), "it never listened for a restore");
    const r = crest(["restore", "-D", imagesDir(w), "-o", "restore.log", "-v4", "-d", "--lazy-pages"]);
    assert.equal(r.code, 1, "the restore fails");
    assert.match(r.stderr, /no lazy-pages daemon listens on .*lazy-pages\.socket/);
    assert.deepEqual(runningIn(w.dir), [frozen], "nothing of a restored tree runs: only the dumped one");
    const dd = await Promise.race([dump.done, within60s()]);
    assert.ok(dd, "the dump does not hang");
    assert.equal(dd.code, 1, "the dump fails");
    assert.match(log(w, "dump.log"), dumpSays);
    assert.match(log(w, "dump.log"), /Lazy pages transfer FAILED[\s\S]*Dumping FAILED/);
    assert.equal(procState(frozen).tracer, 0, "let go");
    assert.equal(finish(w), "PASS", "the dumped tree runs on, as after any failed dump, and checks out");
  } finally {
    // Either left waiting (a handshake that passed when it should not have) would hold this test file open.
    for (const c of [dump, daemon]) if (c) killQuietly(c.pid);
    stop(w);
  }
}

test("--tls refused: the daemon given a CA that did not sign the dump's certificate fails by name; the restore makes nothing; the dump fails, its tree runs on", () =>
  refusedWithDump(makeCerts().ca, makeCerts().other,
    /the page server at 127\.0\.0\.1:\d+ has a certificate that does not verify against the CA of .*other\.pem: SELF_SIGNED_CERT_IN_CHAIN/,
    /the lazy-pages daemon closed its connection before it asked to close \(0 of \d+ lazy page\(s\) sent; the lazy-pages daemon at 127\.0\.0\.1:\d+ ended the TLS connection \(did it refuse this side's certificate\?/));

test("--tls refused: a dump given a CA that did not sign the daemon's certificate fails by name, its tree runs on; the daemon fails in the handshake", () =>
  refusedWithDump(makeCerts().other, makeCerts().ca,
    /TLS handshake with the page server at 127\.0\.0\.1:\d+ failed/,
    /the lazy-pages daemon at 127\.0\.0\.1:\d+ has a certificate that does not verify against the CA of .*other\.pem: SELF_SIGNED_CERT_IN_CHAIN/));

test("--tls refused: page-server --lazy-pages --tls and a daemon given a CA that did not sign its certificate: both fail by name, the restore makes nothing", async () => {
  const w = startWorkload("bigmem", ["16"]);
  const p = ++port;
  let server: { done: Promise<Exit>; pid: number } | undefined, daemon: { done: Promise<Exit>; pid: number } | undefined;
  try {
    dumpWorkload(w);
    server = spawnCrest(["page-server", "-D", imagesDir(w), "-o", "ps.log", "-v4", "--address", "127.0.0.1", "--port", String(p), "--lazy-pages", ...tlsServer()]);
    waitFor("the page server to listen", () => /listening on port/.test(log(w, "ps.log")));
    daemon = spawnCrest(["lazy-pages", "-D", imagesDir(w), "-o", "lazy.log", "-v4", "--page-server", "--address", "127.0.0.1", "--port", String(p), ...tlsClient(makeCerts().other)]);
    const dr = await Promise.race([daemon.done, within60s()]);
    assert.ok(dr, "the daemon does not hang");
    assert.equal(dr.code, 1);
    assert.match(dr.stderr, /the page server at 127\.0\.0\.1:\d+ has a certificate that does not verify against the CA of .*other\.pem/);
    const r = crest(["restore", "-D", imagesDir(w), "-o", "restore.log", "-v4", "-d", "--lazy-pages"]);
    assert.equal(r.code, 1);
    assert.deepEqual(runningIn(w.dir), [], "nothing of a restored tree runs");
    const sr = await Promise.race([server.done, within60s()]);
    assert.ok(sr, "the page server does not hang");
    assert.equal(sr.code, 1);
    assert.match(sr.stderr, /the lazy-pages daemon at 127\.0\.0\.1:\d+ ended the TLS connection/);
  } finally {
    for (const c of [server, daemon]) if (c) killQuietly(c.pid);
    stop(w);
  }
});

test("--tls: a certificate file that is not there is named before anything: the dump leaves its tree untouched, page-server and lazy-pages --page-server fail at once", async () => {
  const w = startWorkload("bigmem", ["16"], { ns: "pid" });
  const p = ++port;
  const missing = ["--tls", "--tls-cacert", "/nonexistent/ca.pem", ...makeCerts().server];
  try {
    const d = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log", "-v4", "--lazy-pages", "--address", "127.0.0.1", "--port", String(p), ...missing]);
    assert.equal(d.code, 1);
    assert.match(d.stderr, /TLS: cannot read the CA certificate \(--tls-cacert\) \/nonexistent\/ca\.pem: ENOENT/);
    assert.match(log(w, "dump.log"), /Dumping processes[^\n]*\n[^\n]*TLS: cannot read the CA certificate/, "before the tree is touched");
    assert.ok(!existsSync(join(imagesDir(w), "inventory.img")), "no images");
    const s = crest(["page-server", "-D", imagesDir(w), "-o", "ps.log", "--port", String(p), "--lazy-pages", ...missing]);
    assert.equal(s.code, 1);
    assert.match(s.stderr, /cannot read the CA certificate \(--tls-cacert\) \/nonexistent\/ca\.pem: ENOENT/);
    // Nothing listens on the port: the daemon is not left trying to connect for its 10 s.
    const t0 = Date.now();
    const l = crest(["lazy-pages", "-D", imagesDir(w), "-o", "lazy.log", "--page-server", "--address", "127.0.0.1", "--port", String(p), ...missing]);
    assert.equal(l.code, 1);
    assert.match(l.stderr, /cannot read the CA certificate \(--tls-cacert\) \/nonexistent\/ca\.pem: ENOENT/);
    assert.ok(Date.now() - t0 < 5000, "at once");
    assert.equal(finish(w), "PASS", "the tree ran on untouched");
  } finally {
    stop(w);
  }
});

test("--tls with criu: crest's page-server --lazy-pages --tls serves criu's lazy-pages --page-server --tls and criu's restore --lazy-pages", { skip: criuWorks ? false : "no working criu (CREST_CRIU)" }, async () => {
  const w = startWorkload("bigmem", ["32"], { ns: "pid" });
  const p = ++port;
  const started: number[] = [];
  try {
    dumpWorkload(w);
    const server = spawnCrest(["page-server", "-D", imagesDir(w), "-o", "ps.log", "-v4", "--address", "127.0.0.1", "--port", String(p), "--lazy-pages", ...tlsServer()]);
    started.push(server.pid);
    waitFor("the page server to listen", () => /listening on port/.test(log(w, "ps.log")));
    const run = (args: string[]) => {
      const c = spawn(criu!, args, { stdio: "ignore" });
      started.push(c.pid!);
      return new Promise<number | null>((resolve) => c.on("close", (code) => resolve(code)));
    };
    const daemon = run(["lazy-pages", "-D", imagesDir(w), "-o", "criu-lazy.log", "-v4", "--page-server", "--address", "127.0.0.1", "--port", String(p), ...tlsClient()]);
    waitFor("criu's daemon to listen", () => existsSync(join(imagesDir(w), "lazy-pages.socket")));
    const pidfile = join(w.dir, "criu-restored.pid");
    // SIGKILL: criu's restore does not end on SIGTERM.
    const r = spawnSync(criu!, ["restore", "-D", imagesDir(w), "-o", "criu-restore.log", "-v4", "-d", "--lazy-pages", "--pidfile", pidfile], { encoding: "utf8", timeout: 60_000, killSignal: "SIGKILL" });
    assert.equal(r.status, 0, `criu restore: ${log(w, "criu-restore.log").slice(-2000)}`);
    w.pid = Number(readFileSync(pidfile, "utf8"));
    // criu's daemon reads each answer as epoll says its socket is readable: bytes of a TLS record it holds already would wait for ever.
    const dc = await Promise.race([daemon, within60s()]);
    assert.equal(dc, 0, `criu's daemon ends once every page is in: ${log(w, "criu-lazy.log").slice(-2000)}`);
    const sr = await Promise.race([server.done, within60s()]);
    assert.ok(sr && sr.code === 0, `${sr?.stderr}\n${log(w, "ps.log")}`);
    assert.match(log(w, "ps.log"), /the daemon took (\d+) of \1 lazy page\(s\) and closed the session/);
    assert.equal(finish(w), "PASS");
  } finally {
    // A daemon waiting for ever (the failure this test is for), its page server, and a restored tree criu did not name.
    for (const pid of [...started, ...runningIn(w.dir)]) killQuietly(pid);
    stop(w);
  }
});
