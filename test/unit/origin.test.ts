// The origin of an error line (faces/cli/origin.ts): source map positions,
// and an error raised in crest's modules named by its TypeScript file and line.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { errorOrigin, originalPosition } from "../../src/faces/cli/origin.js";
import { parseArgs, UsageError } from "../../src/faces/cli/args.js";

test("source map positions: the segment at or before the column, on its line", () => {
  // Line 1: col 0 -> a.ts 1, col 4 -> a.ts 3. Line 2: col 2 -> b.ts 4, col 10 -> b.ts 11.
  const map = { sources: ["a.ts", "b.ts"], mappings: "AAAA,IAEA;ECCA,QAOA" };
  assert.deepEqual(originalPosition(map, 1, 1), { source: "a.ts", line: 1 });
  assert.deepEqual(originalPosition(map, 1, 9), { source: "a.ts", line: 3 });
  assert.deepEqual(originalPosition(map, 2, 5), { source: "b.ts", line: 4 });
  assert.deepEqual(originalPosition(map, 2, 11), { source: "b.ts", line: 11 });
  assert.equal(originalPosition(map, 2, 1), null);
});

test("an error raised in crest's code is named by its .ts file and line", () => {
  let err: unknown;
  try {
    parseArgs(["dump", "--no-such-option"]);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof UsageError);
  const origin = errorOrigin(err);
  assert.match(origin ?? "", /^faces\/cli\/args\.ts:\d+$/);
  const line = Number(origin!.split(":")[1]);
  const text = readFileSync(new URL("../../../src/faces/cli/args.ts", import.meta.url), "utf8").split("\n")[line - 1]!;
  assert.match(text, /unknown option/);
});
