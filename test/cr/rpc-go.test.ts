// go-criu, the library runc and podman drive criu with, pointed at crest:
// Debian's golang-github-checkpoint-restore-go-criu-dev builds a small
// client (test/clients/go-criu), offline, with GOPATH and no modules; it asks
// the version runc checks, and dumps and restores a workload through `crest
// swrk`, go-criu answering every notification as runc does.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { projectRoot } from "../../src/sys/native.js";
import { CREST, finish, imagesDir, startWorkload, stop, waitTreeGone } from "./harness.js";

const work = mkdtempSync("/tmp/crest-go-criu-");
const client = join(work, "go-criu-client");

function build(): void {
  const r = spawnSync("go", ["build", "-o", client, "."], {
    cwd: join(projectRoot(), "test", "clients", "go-criu"), encoding: "utf8",
    env: { ...process.env, GOPATH: "/usr/share/gocode", GO111MODULE: "off", GOCACHE: join(work, "cache"), GOFLAGS: "" },
  });
  assert.equal(r.status, 0, `building the go-criu client failed: ${r.stderr}`);
}

function run(...args: string[]): string {
  const r = spawnSync(client, [CREST, ...args], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  return r.stdout.trim();
}

test("go-criu: the version runc checks, and a dump and a restore with runc's notifications", () => {
  build();
  assert.equal(run("version"), "version 40300 at-least-3.14 true", "4.2 with a gitid, which go-criu counts as 4.3 as runc does");
  const w = startWorkload("tree");
  try {
    const dir = imagesDir(w);
    mkdirSync(dir, { recursive: true });
    assert.equal(run("dump", String(w.pid), dir), "notify pre-dump\nnotify post-dump\ndumped");
    assert.match(readFileSync(join(dir, "dump.log"), "utf8"), /Dumping finished successfully\n$/);
    waitTreeGone(w, dir);
    assert.equal(run("restore", dir), `notify pre-restore\nnotify setup-namespaces ${w.pid}\nnotify post-setup-namespaces\nnotify post-restore ${w.pid}\nnotify post-resume\nrestored`);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});
