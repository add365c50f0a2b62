// The page server (issue 13): `crest page-server` receives the pagemaps and
// pages of a dump run with --page-server, in criu's protocol; the images
// directory it fills restores. With a working criu (CREST_CRIU), each side
// is also criu's.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { alive, CREST, crest, critDecodeAll, finish, procState, restoreWorkload, startWorkload, stop, waitGone, waitTreeGone } from "./harness.js";

const criu = process.env.CREST_CRIU;
const criuWorks = !!criu && spawnSync(criu, ["check"]).status === 0;
let port = 23456;

function cycle(server: string, dumper: string): void {
  const w = startWorkload("memwrite", ["16", "200"]);
  try {
    const dir = join(w.dir, "imgs");
    // criu needs it made; crest would make it.
    mkdirSync(dir);
    const p = ++port;
    const s = spawnSync(server, ["page-server", "-D", dir, "--port", String(p), "-o", "ps.log", "-v4", "-d", "--pidfile", join(w.dir, "ps.pid")], { encoding: "utf8" });
    assert.equal(s.status, 0, s.stderr);
    const serverPid = Number(readFileSync(join(w.dir, "ps.pid"), "utf8"));
    const d = spawnSync(dumper, ["dump", "-t", String(w.pid), "-D", dir, "-o", "dump.log", "-v4", "--page-server", "--address", "127.0.0.1", "--port", String(p)], { encoding: "utf8" });
    assert.equal(d.status, 0, d.stderr);
    waitGone(serverPid);
    assert.match(readFileSync(join(dir, "ps.log"), "utf8"), /Session over/);
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

test("crest page-server takes criu's pages, and criu's page server crest's", { skip: criuWorks ? false : "no working criu (CREST_CRIU)" }, () => {
  cycle(CREST, criu!);
  cycle(criu!, CREST);
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
