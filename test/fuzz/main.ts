// The fuzzer from the command line, for a large run:
//   CREST_FUZZ_COUNT=5000 CREST_FUZZ_SEED=42 node scripts/fuzz.mjs
// CREST_FUZZ_COUNT restores of mutated sets (default 1000), CREST_FUZZ_SEED
// (default: the time), CREST_FUZZ_DECODE mutations for the decoder alone
// (default 20 × COUNT), CREST_FUZZ_SETS=mixed,tree to fuzz only those
// workloads' images, CREST_FUZZ_ONLY=i to replay run i alone (its restore log
// printed), CREST_FUZZ_VERBOSE=1 to print every run. Exit code 1 if anything
// was found.
import { campaign, describe, dumpSets } from "./campaign.js";
import { rmSync } from "node:fs";

const env = process.env;
const count = Number(env.CREST_FUZZ_COUNT ?? 1000);
const seed = Number(env.CREST_FUZZ_SEED ?? Date.now() % 0x7fffffff);
const decodeCount = Number(env.CREST_FUZZ_DECODE ?? count * 20);
const only = env.CREST_FUZZ_ONLY !== undefined ? Number(env.CREST_FUZZ_ONLY) : undefined;
const { sets, dirs } = dumpSets(env.CREST_FUZZ_SETS?.split(","));
try {
  const verbose = env.CREST_FUZZ_VERBOSE === "1" || only !== undefined;
  const report = campaign(sets, {
    seed, count, decodeCount: only !== undefined ? 0 : decodeCount, ...(only !== undefined ? { only } : {}),
    ...(verbose ? { progress: (l: string) => console.log(l) } : {}),
  });
  console.log(describe(report));
  process.exitCode = report.findings.length ? 1 : 0;
} finally {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
