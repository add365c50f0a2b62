// The page server (issue 13): `crest page-server` receives the pagemaps and
// pages of a dump run with --page-server, in criu's protocol; the images
// directory it fills restores. With a working criu (CREST_CRIU), each side
// is also criu's.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { IMG, readImage } from "../../src/images/index.js";
import { join } from "node:path";
import { alive, CREST, crest, critDecodeAll, finish, procState, restoreWorkload, startWorkload, stop, waitFor, waitGone, waitTreeGone } from "./harness.js";
import { makeCerts, tlsClient, tlsServer } from "./tls-certs.js";

const criu = process.env.CREST_CRIU;
const criuWorks = !!criu && spawnSync(criu, ["check"]).status === 0;
let port = 23456;

/** Starts a page server (detached) on a fresh port into dir; returns its port and pid. */
function startServer(server: string, dir: string, extra: string[] = []): { port: number; pid: number } {
  const p = ++port;
  const pidfile = join(dir, "..", `ps-${p}.pid`);
  const s = spawnSync(server, ["page-server", "-D", dir, "--address", "127.0.0.1", "--port", String(p), "-o", "ps.log", "-v4", "-d", "--pidfile", pidfile, ...extra], { encoding: "utf8" });
  assert.equal(s.status, 0, s.stderr);
  return { port: p, pid: Number(readFileSync(pidfile, "utf8")) };
}

function cycle(server: string, dumper: string, serverArgs: string[] = [], dumpArgs: string[] = [], workload: [string, string[]] = ["memwrite", ["16", "200"]]): void {
  const w = startWorkload(...workload);
  try {
    const dir = join(w.dir, "imgs");
    // criu needs it made; crest would make it.
    mkdirSync(dir);
    const { port: p, pid: serverPid } = startServer(server, dir, serverArgs);
    const d = spawnSync(dumper, ["dump", "-t", String(w.pid), "-D", dir, "-o", "dump.log", "-v4", "--page-server", "--address", "127.0.0.1", "--port", String(p), ...dumpArgs], { encoding: "utf8" });
    assert.equal(d.status, 0, d.stderr);
    waitGone(serverPid);
    const psLog = readFileSync(join(dir, "ps.log"), "utf8");
    assert.match(psLog, /Session over/);
    if (serverArgs.includes("--tls")) assert.match(psLog, /TLS handshake completed/);
    assert.ok(readdirSync(dir).some((f) => /^pages-\d+\.img$/.test(f)), "the server wrote the pages");
    assert.deepEqual(critDecodeAll(dir), []);
    waitTreeGone(w, dir);
    restoreWorkload(w, [], dir);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
}

test("crest page-server takes crest's dump --page-server, and the images restore", () => cycle(CREST, CREST));

test("a page server runs the status-ready action scripts once it listens (criu's status_ready); one that fails ends it", () => {
  const dir = mkdtempSync("/tmp/crest-ps-ready-");
  try {
    const said = join(dir, "said"), script = join(dir, "script.sh");
    writeFileSync(script, `#!/bin/sh\necho "$CRTOOLS_SCRIPT_ACTION" >> ${said}\n[ ! -e ${join(dir, "fail")} ]\n`, { mode: 0o755 });
    const imgs = join(dir, "imgs");
    mkdirSync(imgs);
    const { pid } = startServer(CREST, imgs, ["--action-script", script]);
    assert.equal(readFileSync(said, "utf8"), "status-ready\n");
    process.kill(pid, "SIGKILL");
    waitGone(pid);
    writeFileSync(join(dir, "fail"), "");
    const r = spawnSync(CREST, ["page-server", "-D", imgs, "--address", "127.0.0.1", "--port", String(++port), "--action-script", script], { encoding: "utf8", timeout: 30_000 });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /the status-ready action script failed/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// mem's shared anonymous memory is found while its task's pages are on the wire: staged, and sent at the end.
test("a tree with shared anonymous memory, a memfd and memory the task cannot read goes through the page server and restores", () => {
  cycle(CREST, CREST, [], [], ["mem", []]);
  cycle(CREST, CREST, [], [], ["maps-objects", []]);
});

test("crest page-server takes criu's pages, and criu's page server crest's", { skip: criuWorks ? false : "no working criu (CREST_CRIU)" }, () => {
  cycle(CREST, criu!);
  cycle(criu!, CREST);
});

test("a chain through page servers: a pre-dump, then a dump with --prev-images-dir --track-mem that leaves unchanged pages in the parent; the receiving side restores", () => {
  const w = startWorkload("memwrite", ["32", "200"]);
  try {
    const src = join(w.dir, "src"), dst = join(w.dir, "dst");
    const server = (round: string, parent?: string) => {
      mkdirSync(join(dst, round), { recursive: true });
      if (parent) symlinkSync(`../${parent}`, join(dst, round, "parent"));
      const p = ++port;
      const s = spawnSync(CREST, ["page-server", "-D", join(dst, round), "--port", String(p), "-d"], { encoding: "utf8" });
      assert.equal(s.status, 0, s.stderr);
      return ["--page-server", "--address", "127.0.0.1", "--port", String(p)];
    };
    const run = (args: string[]) => assert.equal(crest(args).code, 0, args.join(" "));
    run(["pre-dump", "-t", String(w.pid), "-D", join(src, "pre"), "--track-mem", ...server("pre")]);
    run(["dump", "-t", String(w.pid), "-D", join(src, "final"), "--prev-images-dir", "../pre", "--track-mem", ...server("final", "pre")]);
    const st = readImage(join(src, "final"), IMG.stats, "dump")[0]!.dump!;
    assert.ok(st.pages_skipped_parent > 0n, "pages the tracking says are unchanged stay in the parent, which the page server holds");
    for (const round of ["pre", "final"]) {
      for (const f of readdirSync(join(src, round))) if (!/^(pagemap|pages)-|^parent$|\.log$/.test(f)) copyFileSync(join(src, round, f), join(dst, round, f));
    }
    waitTreeGone(w, join(src, "final"));
    restoreWorkload(w, [], join(dst, "final"));
    assert.equal(finish(w), "PASS", "memwrite finds every page as it was (a page left in the parent though written since would fail it)");
  } finally {
    stop(w);
  }
});

test("a dump whose page server is not there fails by name, and the tree runs on", () => {
  const w = startWorkload("memwrite", ["8", "200"]);
  try {
    const r = crest(["dump", "-t", String(w.pid), "-D", join(w.dir, "imgs"), "--page-server", "--address", "127.0.0.1", "--port", "1"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /connect to the page server at 127\.0\.0\.1:1: ECONNREFUSED/);
    assert.ok(alive(w.pid));
    assert.equal(procState(w.pid).tracer, 0);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("crest page-server --tls takes crest's dump --tls, and the images restore", () => cycle(CREST, CREST, tlsServer(), tlsClient()));

test("TLS between criu and crest: crest's page server takes criu's dump --tls, criu's page server crest's", { skip: criuWorks ? false : "no working criu (CREST_CRIU)" }, () => {
  cycle(CREST, criu!, tlsServer(), tlsClient());
  cycle(criu!, CREST, tlsServer(), tlsClient());
});

/** A dump with --page-server that must fail (the server's own end, if any, is checked by the caller): the tree runs on untouched. */
function refusedDump(serverArgs: string[] | null, dumpArgs: string[], what: RegExp, serverSays?: RegExp): void {
  const w = startWorkload("memwrite", ["8", "200"]);
  let serverPid = 0;
  try {
    const dir = join(w.dir, "imgs");
    mkdirSync(dir);
    const { port: p, pid } = startServer(CREST, dir, serverArgs ?? []);
    serverPid = pid;
    const r = crest(["dump", "-t", String(w.pid), "-D", dir, "-o", "dump.log", "--page-server", "--address", "127.0.0.1", "--port", String(p), ...dumpArgs]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, what);
    assert.ok(alive(w.pid));
    assert.equal(procState(w.pid).tracer, 0);
    if (serverSays) {
      waitGone(serverPid);
      assert.match(readFileSync(join(dir, "ps.log"), "utf8"), serverSays);
    }
    assert.ok(!readdirSync(dir).includes("inventory.img"), "no images were committed");
    assert.equal(finish(w), "PASS");
  } finally {
    if (serverPid && alive(serverPid)) process.kill(serverPid, "SIGKILL");
    stop(w);
  }
}

test("TLS refused cleanly: a page server whose certificate another CA signed, a client the server's CA does not know, a revoked client, a server without TLS, a missing CA file", () => {
  // The dump trusts another CA: it refuses the server in the handshake, before it touches the tree.
  refusedDump(tlsServer(), tlsClient(makeCerts().other), /page server at 127\.0\.0\.1:\d+ has a certificate that does not verify against the CA of .*other\.pem/);
  // The server trusts another CA: it refuses the dump's certificate, and the dump learns it from the connection.
  refusedDump(tlsServer(makeCerts().other), tlsClient(), /page server at 127\.0\.0\.1:\d+/, /client 127\.0\.0\.1:\d+ has a certificate that does not verify/);
  // A client certificate the server's CRL revokes.
  refusedDump([...tlsServer(), "--tls-cacrl", makeCerts().crl], ["--tls", "--tls-cacert", makeCerts().ca, ...makeCerts().revoked], /page server at 127\.0\.0\.1:\d+/, /client 127\.0\.0\.1:\d+ has a certificate that does not verify .*CERT_REVOKED/);
  // A page server without TLS.
  refusedDump(null, tlsClient(), /TLS handshake with the page server at 127\.0\.0\.1:\d+ failed: .*\(does it use --tls, and take this side's certificate\? its log says\)/, /the sender speaks TLS/);
  // A certificate file that is not there: named before the dump connects.
  refusedDump(null, ["--tls", "--tls-cacert", "/nonexistent/ca.pem", ...makeCerts().client], /cannot read the CA certificate \(--tls-cacert\) \/nonexistent\/ca\.pem: ENOENT/);
});

/**
 * A page server that takes `limit` bytes of the first connection and then
 * closes it (the rest unread: the sender gets a reset), or, with limit 0,
 * reads nothing and keeps it open (a server that is stuck); returns its
 * port and pid. A child process: this test's own event loop waits in spawnSync.
 */
function cuttingServer(dir: string, limit: number, tlsServer?: string[]): { port: number; pid: number } {
  const p = ++port;
  const ready = join(dir, `cut-${p}.ready`);
  // With TLS (the server's --tls-cert and --tls-key), it takes the handshake, then what limit says.
  const creds = tlsServer ? { cert: tlsServer[1], key: tlsServer[3], ca: makeCerts().ca } : null;
  const script = `
    const net = require("node:net"), tls = require("node:tls"), fs = require("node:fs");
    const [port, limit, ready, creds] = process.argv.slice(1);
    const c = creds ? JSON.parse(creds) : null;
    const make = c ? (f) => tls.createServer({ cert: fs.readFileSync(c.cert), key: fs.readFileSync(c.key), ca: fs.readFileSync(c.ca), requestCert: true, maxVersion: "TLSv1.2" }, f) : (f) => net.createServer(f);
    const srv = make((s) => {
      if (limit === "0") return s.pause();
      let got = 0;
      s.on("data", (d) => { got += d.length; if (got >= Number(limit)) { s.destroy(); srv.close(); } });
      s.on("error", () => {});
    });
    srv.listen(Number(port), "127.0.0.1", () => fs.writeFileSync(ready, ""));`;
  const child = spawn(process.execPath, ["-e", script, String(p), String(limit), ready, ...(creds ? [JSON.stringify(creds)] : [])], { stdio: "ignore", detached: true });
  child.unref();
  waitFor("the cutting page server to listen", () => existsSync(ready));
  return { port: p, pid: child.pid! };
}

test("a page server that closes the connection in the middle of the pages, or takes nothing: the dump fails naming it, never hangs, the tree runs on untouched", () => {
  // 1 MiB: the first buffers, sent by the dump's main thread; 160 MiB: later ones, by the writer thread once it runs;
  // 0: a server that takes nothing, given up on after --timeout seconds without progress.
  for (const limit of [1 << 20, 160 << 20, 0]) {
    const w = startWorkload("bigmem", ["256"]);
    let serverPid = 0;
    try {
      const dir = join(w.dir, "imgs");
      mkdirSync(dir);
      const { port: p, pid } = cuttingServer(w.dir, limit);
      serverPid = pid;
      const t0 = Date.now();
      const r = spawnSync(CREST, ["dump", "-t", String(w.pid), "-D", dir, "-o", "dump.log", "-v4", "--timeout", "1", "--page-server", "--address", "127.0.0.1", "--port", String(p)], { encoding: "utf8", timeout: 60_000 });
      assert.equal(r.status, 1, `the dump ended with ${r.status} ${r.signal ?? ""} after ${Date.now() - t0} ms: ${r.stderr}`);
      const why = limit ? "(EPIPE|ECONNRESET)" : "it took nothing and answered nothing for 1 s \\(--timeout\\): is it stopped or stuck\\?";
      assert.match(r.stderr, new RegExp(`the page server at 127\\.0\\.0\\.1:${p}: sending pages failed.*${why}`));
      assert.ok(alive(w.pid));
      assert.equal(procState(w.pid).tracer, 0);
      assert.deepEqual(readdirSync(dir).filter((f) => f !== "dump.log"), [], "nothing committed, nothing staged left");
      assert.match(readFileSync(join(dir, "dump.log"), "utf8"), /Dumping FAILED/);
      assert.equal(finish(w), "PASS", "bigmem finds its 256 MiB as they were");
    } finally {
      if (serverPid && alive(serverPid)) process.kill(serverPid, "SIGKILL");
      stop(w);
    }
  }
});

test("--tls: a page server that takes the handshake, then nothing: the dump fails after --timeout (the relay reads the dump's stream only as TLS drains), the tree runs on", () => {
  const w = startWorkload("bigmem", ["256"]);
  let serverPid = 0;
  try {
    const { port: p, pid } = cuttingServer(w.dir, 0, makeCerts().server);
    serverPid = pid;
    const t0 = Date.now();
    const dir = join(w.dir, "imgs");
    const r = spawnSync(CREST, ["dump", "-t", String(w.pid), "-D", dir, "-o", "dump.log", "-v4", "--timeout", "1", "--page-server", "--address", "127.0.0.1", "--port", String(p), ...tlsClient()], { encoding: "utf8", timeout: 60_000 });
    assert.equal(r.status, 1, `the dump ended with ${r.status} ${r.signal ?? ""} after ${Date.now() - t0} ms: ${r.stderr}`);
    // Held up in the pages, not at the end with every page buffered in the relay.
    assert.doesNotMatch(readFileSync(join(dir, "dump.log"), "utf8"), /dumping creds of/);
    assert.match(r.stderr, new RegExp(`the page server at 127\\.0\\.0\\.1:${p}: sending pages failed.*it took nothing and answered nothing for 1 s \\(--timeout\\)`));
    assert.ok(alive(w.pid));
    assert.equal(procState(w.pid).tracer, 0);
    assert.equal(finish(w), "PASS");
  } finally {
    if (serverPid && alive(serverPid)) process.kill(serverPid, "SIGKILL");
    stop(w);
  }
});

test("a dump that fails after its pages were sent: crest's page server removes what the session wrote, the tree runs on", () => {
  const w = startWorkload("memwrite", ["16", "200"]);
  let serverPid = 0;
  try {
    const dir = join(w.dir, "srv");
    mkdirSync(dir);
    const { port: p, pid } = startServer(CREST, dir);
    serverPid = pid;
    const r = crest(["dump", "-t", String(w.pid), "-D", join(w.dir, "imgs"), "--page-server", "--address", "127.0.0.1", "--port", String(p)], { CREST_FAULT: "dump:images" });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /injected fault at dump:images/);
    waitGone(serverPid);
    const log = readFileSync(join(dir, "ps.log"), "utf8");
    assert.match(log, /Opening pagemap-\d+\.img/, "the pages went while the dump ran");
    assert.match(log, /the sender closed the connection before it asked to close/);
    assert.match(log, /Removed the \d+ file\(s\) this session wrote/);
    assert.deepEqual(readdirSync(dir).filter((f) => /^(pages|pagemap)-/.test(f)), []);
    assert.ok(alive(w.pid));
    assert.equal(procState(w.pid).tracer, 0);
    assert.equal(finish(w), "PASS");
  } finally {
    if (serverPid && alive(serverPid)) process.kill(serverPid, "SIGKILL");
    stop(w);
  }
});
