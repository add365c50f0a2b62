// The restore's fault points are listed in one place (RESTORE_FAULT_POINTS),
// which test/cr/restore-faults.test.ts goes through: every point a restore
// can reach must be there, so that none goes untested.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { projectRoot } from "../../src/sys/native.js";
import { RESTORE_FAULT_POINTS } from "../../src/pipelines/restore/fault-points.js";

function sources(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts")).map((f) => join(dir, f));
}

test("every faultPoint(\"restore:…\") in src/ is in RESTORE_FAULT_POINTS, and the pipeline names no other", () => {
  const calls: string[] = [];
  for (const file of sources(join(projectRoot(), "src"))) {
    for (const m of readFileSync(file, "utf8").matchAll(/faultPoint\(([^)]*)\)/g)) {
      const arg = m[1]!.trim();
      if (arg === "point: string") continue; // its definition
      // A computed name must come from restorePoint (dump's kind points are `dump:${kind.name}`).
      if (!arg.startsWith('"')) {
        assert.ok(/^restorePoint\(/.test(arg) || /^`dump:/.test(arg), `${file}: faultPoint(${arg}) is named neither literally nor by restorePoint`);
        continue;
      }
      const name = JSON.parse(arg) as string;
      if (name.startsWith("restore:")) calls.push(name);
    }
  }
  assert.ok(calls.length >= 5, "the literal restore points were found");
  for (const name of calls) assert.ok(RESTORE_FAULT_POINTS.includes(name), `${name} is in RESTORE_FAULT_POINTS`);
});
