// The page server (issue 13): `crest page-server` receives the pagemaps and
// pages of a dump run with --page-server, in criu's protocol; the images
// directory it fills restores. With a working criu (CREST_CRIU), each side
// is also criu's.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from "node:fs";
import { IMG, readImage } from "../../src/images/index.js";
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
