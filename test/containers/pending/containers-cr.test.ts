// LXC checkpoints and restores the counter container with crest as criu (or
// with CREST_CONTAINERS_CRIU, e.g. a real criu 4.2, to check the test itself),
// the count served over TCP checked before and after
// (test/containers/check.ts). Pending: scripts/test.mjs does not run this
// file until crest keeps what LXC's container needs (issue 12); run it with
//   npm run build && node --test --test-concurrency=1 dist/test/containers/pending/
// runc's and podman's tests are in test/cr/containers-cr.test.ts.
// See docs/containers.md for what each runtime asks and crest refuses today.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { CREST_BIN, makeCriuDir } from "../criu-dir.js";
import { checkpointRestore } from "../check.js";
import { RUNTIMES } from "../runtimes.js";

const CRIU = process.env.CREST_CONTAINERS_CRIU || CREST_BIN;

for (const rt of RUNTIMES.filter((r) => r.name === "lxc")) {
  const why = rt.missing() ?? rt.noCheckpoint();
  test(`containers: ${rt.name} checkpoints and restores the counter container with ${CRIU} as criu`, { skip: why ?? false }, () => {
    const work = mkdtempSync(`/tmp/crest-ct-cr-${rt.name}-`);
    const counts = checkpointRestore(rt, makeCriuDir(work, CRIU), work, `crest-cr-${rt.name}-${process.pid}`);
    assert.ok(counts.after >= counts.before && counts.later > counts.after);
    rmSync(work, { recursive: true, force: true });
  });
}
