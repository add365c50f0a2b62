// The container harness (test/containers/), each runtime where it is
// installed: the busybox rootfs, the runtime's container made from it
// (OCI bundle, podman import, LXC directory rootfs) counting and serving its
// count over TCP, and removed again; and crest put in criu's place. The
// checkpoint/restore of each container with crest as criu is in
// test/containers/pending/ until crest keeps what a container needs
// (issue 12: cgroups, mount and network namespaces); docs/containers.md.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { CREST_BIN, criuCalls, makeCriuDir } from "../containers/criu-dir.js";
import { RUNTIMES, waitFor } from "../containers/runtimes.js";

test("containers: crest as criu on PATH, each call logged", () => {
  const work = mkdtempSync("/tmp/crest-ct-criu-");
  try {
    const c = makeCriuDir(work, CREST_BIN);
    const r = spawnSync("criu", ["--version"], { encoding: "utf8", env: { ...process.env, PATH: c.path } });
    assert.equal(r.status, 0, r.stderr);
    // What LXC parses before it dumps: "Version: X.Y", at least 2.0.
    assert.match(r.stdout, /^Version: 4\.2\b/m);
    assert.deepEqual(criuCalls(c), ["--version"]);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

for (const rt of RUNTIMES) {
  // Only a runtime that is not installed, or that cannot checkpoint as it is built, is skipped, and says why.
  const why = rt.missing() ?? rt.noCheckpoint();
  test(`containers: ${rt.name} runs the counter container, serving its count over TCP`, { skip: why ?? false }, () => {
    const work = mkdtempSync(`/tmp/crest-ct-${rt.name}-`);
    const ct = rt.start(work, `crest-${rt.name}-${process.pid}`);
    try {
      assert.equal(ct.running(), true);
      const first = waitFor(`${ct.name} to serve its count`, () => ct.count());
      const next = waitFor(`${ct.name} to count on`, () => { const c = ct.count(); return c !== null && c > first && c; });
      assert.ok(next > first);
    } finally {
      rt.remove(ct);
    }
    waitFor(`${ct.name} to be gone`, () => !ct.running());
    rmSync(work, { recursive: true, force: true });
  });
}
