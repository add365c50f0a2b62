// crest check on this machine, through the command line as criu's callers
// (zdtm: `check --feature NAME`, exit code only) use it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { crest } from "./harness.js";
import { CHECK_GOOD, CHECK_MAYBE, FEATURE_NAMES } from "../../src/kernel/features.js";

test("crest check: every basic probe passes here: 'Looks good.', exit code 0", () => {
  const r = crest(["check"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${CHECK_GOOD}\n`);
  assert.equal(r.stderr, "");
});

test("crest check -v3 names each probe it ran", () => {
  const r = crest(["check", "-v3"]);
  assert.equal(r.code, 0, r.stderr);
  for (const id of ["ptrace", "pagemap_scan", "clone3_set_tid", "pr_set_mm_map", "special_mremap", "pidfd_store"]) {
    assert.match(r.stderr, new RegExp(`\\) ${id}: supported\\n`), id);
  }
  assert.doesNotMatch(r.stderr, /mem_dirty_track/, "extra probes run only with --extra or --all");
});

test("crest check --all: the extra probes run; a missing one is a warning and criu's 'Looks good but ...'", () => {
  const r = crest(["check", "--all"]);
  const warnings = r.stderr.split("\n").filter((l) => l.startsWith("Warn: "));
  if (warnings.length) {
    assert.equal(r.code, 1);
    assert.equal(r.stdout, `${CHECK_MAYBE}\n`);
    // Each names what is missing and what that breaks.
    for (const w of warnings) assert.match(w, /^Warn: .+: .+/);
  } else {
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${CHECK_GOOD}\n`);
  }
  assert.doesNotMatch(r.stderr, /^Error/m);
});

test("crest check --feature list prints criu's feature names", () => {
  const r = crest(["check", "--feature", "list"]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split(" "), [...FEATURE_NAMES]);
});

test("crest check --feature clone3_set_tid: supported here", () => {
  const r = crest(["check", "--feature", "clone3_set_tid"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "clone3_set_tid is supported\n");
});

test("crest check --feature mem_dirty_track: userfaultfd write-protection stands in for soft-dirty bits", () => {
  // This machine has no CONFIG_MEM_SOFT_DIRTY (criu says no here); crest tracks with PAGEMAP_SCAN and uffd-wp.
  const r = crest(["check", "--feature", "mem_dirty_track"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "mem_dirty_track is supported\n");
});

test("crest check --feature of something crest lacks: non-zero, with the reason", () => {
  const r = crest(["check", "--feature", "compat_cr"]);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, "compat_cr is not supported\n");
  assert.match(r.stderr, /^Error: crest does not checkpoint 32-bit tasks: /);
});

test("crest check --feature with an unknown name: criu's message, non-zero", () => {
  const r = crest(["check", "--feature", "no_such_feature"]);
  assert.notEqual(r.code, 0);
  assert.equal(r.stdout, "");
  assert.match(r.stderr, /Unknown feature no_such_feature/);
});

test("every feature name gets an answer that matches its exit code", () => {
  for (const name of FEATURE_NAMES) {
    const r = crest(["check", "--feature", name]);
    assert.ok(r.code === 0 || r.code === 1, `${name}: exit code ${r.code}: ${r.stderr}`);
    assert.equal(r.stdout, `${name} is ${r.code === 0 ? "" : "not "}supported\n`, name);
  }
});
