// The image fuzzer in CI (test/fuzz/): a fixed seed, a small count. Real
// image sets of a few workloads, each run one mutated file (bit flips,
// truncation, entries swapped, duplicated or dropped, a value out of range
// re-encoded through crest's codec) fed to crest's decoder and to
// `crest restore`: no crash, no hang, nothing left alive, and every refusal
// one line naming the image. A large run: `node scripts/fuzz.mjs` with
// CREST_FUZZ_COUNT and CREST_FUZZ_SEED.
import { test } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { campaign, describe, dumpSets } from "../fuzz/campaign.js";

const SEED = 14, COUNT = 200, DECODE = 4000;

test(`fuzz: ${COUNT} mutated image sets restored and ${COUNT + DECODE} mutated files decoded (seed ${SEED}): every one refused by name, or harmless`, (t) => {
  const { sets, dirs } = dumpSets();
  try {
    const report = campaign(sets, { seed: SEED, count: COUNT, decodeCount: DECODE });
    t.diagnostic(describe(report).split("\n").slice(0, 3).join("; "));
    assert.deepEqual(report.findings.map((f) => `run ${f.run} (${f.set}, ${f.leg}): ${f.mutation.file}: ${f.mutation.how}: ${f.what}`), [], describe(report));
    assert.equal(report.restores, COUNT);
    assert.ok(report.outcomes.refused > COUNT / 4, `most mutations are refused (${report.outcomes.refused})`);
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});
