// Debian's crit (package criu), for the tests that check crest's images
// against it. crit costs ~0.2 s a run in python start-up alone, so many files
// go through one python running test/crit-batch.py, which makes crit's own
// pycriu calls file by file.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

/** The system python: the one Debian's python3-protobuf and pycriu are installed for. */
export const PY = "/usr/bin/python3";
export const CRIT = "/usr/bin/crit";
const CRIT_BATCH = fileURLToPath(new URL("../../test/crit-batch.py", import.meta.url));

/** What crit would do with one file: succeed (printing text, with --text), or fail with error. */
export interface CritResult {
  file: string;
  ok: boolean;
  text?: string;
  error?: string;
}

/**
 * `crit decode [--pretty] -i FILE` of every file (`decode [--pretty] [--text] FILE...`), or
 * `crit encode -i IN -o OUT` of every pair (`encode IN OUT...`): one result per file, in order.
 */
export function critBatch(args: string[]): CritResult[] {
  const r = spawnSync(PY, [CRIT_BATCH, ...args], { encoding: "utf8", maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`crit-batch.py ${args[0]} failed (${r.status ?? r.signal}): ${r.stderr}`);
  const results = r.stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l) as CritResult);
  const files = args.slice(1).filter((a) => !a.startsWith("--")).filter((_, i) => args[0] !== "encode" || i % 2 === 0);
  if (results.length !== files.length || results.some((x, i) => x.file !== files[i])) {
    throw new Error(`crit-batch.py answered for ${results.map((x) => x.file).join(", ")}; asked for ${files.join(", ")}`);
  }
  return results;
}
