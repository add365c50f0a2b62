// Each runtime checkpoints and restores the counter container with crest as
// criu (or with CREST_CONTAINERS_CRIU, e.g. a real criu 4.2, to check the
// test itself), the count served over TCP checked before and after
// (test/containers/check.ts). Pending: scripts/test.mjs does not run this
// file until crest keeps what a container needs (issue 12); run it with
//   npm run build && node --test --test-concurrency=1 dist/test/containers/pending/
// See docs/containers.md for what each runtime asks and crest refuses today.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { CREST_BIN, makeCriuDir } from "../criu-dir.js";
import { checkpointRestore, keepsConnection } from "../check.js";
import { RUNTIMES } from "../runtimes.js";

const CRIU = process.env.CREST_CONTAINERS_CRIU || CREST_BIN;

// LXC's is test/cr/containers-lxc.test.ts (in npm test).
for (const rt of RUNTIMES.filter((r) => r.name !== "lxc")) {
  const why = rt.missing() ?? rt.noCheckpoint();
  test(`containers: ${rt.name} checkpoints and restores the counter container with ${CRIU} as criu`, { skip: why ?? false }, () => {
    const work = mkdtempSync(`/tmp/crest-ct-cr-${rt.name}-`);
    const counts = checkpointRestore(rt, makeCriuDir(work, CRIU), work, `crest-cr-${rt.name}-${process.pid}`);
    assert.ok(counts.after >= counts.before && counts.later > counts.after);
    rmSync(work, { recursive: true, force: true });
  });
}

// podman's container has an address on its bridge the host reaches; runc's and LXC's here have a loopback only.
const podman = RUNTIMES.find((r) => r.name === "podman")!;
test(`containers: podman keeps an open TCP connection from the host across checkpoint and restore --tcp-established with ${CRIU} as criu`,
  { skip: podman.missing() ?? podman.noCheckpoint() ?? false }, async () => {
    const work = mkdtempSync("/tmp/crest-ct-cr-podman-tcp-");
    const r = await keepsConnection(podman, makeCriuDir(work, CRIU), work, `crest-cr-podman-tcp-${process.pid}`);
    assert.ok(r.answered >= r.before);
    rmSync(work, { recursive: true, force: true });
  });
