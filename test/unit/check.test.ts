// crest check, the pure parts: criu's feature names, the list and help
// formats, and how probe results become output and an exit code.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CHECK_BAD, CHECK_GOOD, CHECK_MAYBE, FEATURE_NAMES, categoriesFor, featureHelp, featureList, featureVerdict,
  isFeatureName, unknownFeature, verdict, type Outcome,
} from "../../src/kernel/features.js";
import { PROBES, probeFor } from "../../src/kernel/probes.js";
import { check } from "../../src/faces/check.js";
import { defaultOptions } from "../../src/options.js";
import type { Logger } from "../../src/log.js";

/** criu 4.2's feature_list (criu/cr-check.c), in its order. */
const CRIU_42 = [
  "mnt_id", "mem_dirty_track", "aio_remap", "timerfd", "tun", "tun_ns", "userns", "fdinfo_lock", "seccomp_suspend",
  "seccomp_filters", "loginuid", "cgroupns", "autofs", "tcp_half_closed", "compat_cr", "uffd", "uffd-noncoop",
  "can_map_vdso", "sk_ns", "sk_unix_file", "net_diag_raw", "nsid", "link_nsid", "kcmp_epoll", "timens",
  "external_net_ns", "clone3_set_tid", "newifindex", "nftables", "has_ipt_legacy", "pidfd_store", "ns_pid",
  "apparmor_stacking", "network_lock_nftables", "sockopt_buf_lock", "memfd_hugetlb", "move_mount_set_group",
  "openat2", "get_rseq_conf", "ipv6_freebind", "pagemap_scan", "timer_cr_ids", "overlayfs_maps", "breakpoints",
  "pagemap_scan_guard_pages",
];

test("every criu 4.2 feature name is known, in criu's order, and has a probe", () => {
  assert.deepEqual([...FEATURE_NAMES], CRIU_42);
  for (const name of CRIU_42) {
    assert.ok(isFeatureName(name), name);
    const p = probeFor(name);
    assert.ok(p, `no probe for ${name}`);
    assert.ok(p.breaks.length > 10, `${name} says what it breaks`);
  }
  assert.equal(isFeatureName("list"), false);
  assert.equal(isFeatureName("ptrace"), false, "crest's own probe names are not criu feature names");
  assert.equal(isFeatureName("MNT_ID"), false);
});

test("probe ids are unique and every probe has a category", () => {
  const ids = PROBES.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length);
  for (const p of PROBES) assert.ok(["basic", "extra", "experimental", "feature"].includes(p.category), p.id);
  // What every dump and restore needs is in the basic run.
  for (const id of ["ptrace", "pagemap_scan", "clone3_set_tid", "pr_set_mm_map", "seccomp_suspend", "get_rseq_conf"]) {
    assert.equal(probeFor(id)?.category, "basic", id);
  }
});

test("--feature list: every name on one line, separated by spaces", () => {
  const line = featureList();
  assert.doesNotMatch(line, /\n/);
  assert.deepEqual(line.split(" "), CRIU_42);
});

test("the names wrapped for --help as criu's pr_check_features does", () => {
  const text = featureHelp();
  assert.ok(text.startsWith("\n"));
  assert.ok(text.endsWith("pagemap_scan_guard_pages\n"));
  const lines = text.slice(1, -1).split("\n");
  assert.ok(lines.length > 5);
  for (const l of lines) {
    assert.ok(l.startsWith(" ".repeat(28)), JSON.stringify(l));
    assert.ok(l.length <= 80, JSON.stringify(l));
  }
  assert.equal(lines[0], `${" ".repeat(28)}mnt_id, mem_dirty_track, aio_remap, timerfd, tun, `);
  assert.deepEqual(lines.join("").split(",").map((s) => s.trim()), CRIU_42);
});

test("categories: basic always, --extra, --experimental, --all both", () => {
  const o = { all: false, extra: false, experimental: false };
  assert.deepEqual(categoriesFor(o), ["basic"]);
  assert.deepEqual(categoriesFor({ ...o, extra: true }), ["basic", "extra"]);
  assert.deepEqual(categoriesFor({ ...o, experimental: true }), ["basic", "experimental"]);
  assert.deepEqual(categoriesFor({ ...o, all: true }), ["basic", "extra", "experimental"]);
});

const ok = (id: string, category: Outcome["category"]): Outcome => ({ id, category, breaks: `${id} breaks` });
const bad = (id: string, category: Outcome["category"]): Outcome => ({ ...ok(id, category), missing: `${id} is missing` });

test("verdict: all there is 'Looks good.' and exit code 0", () => {
  assert.deepEqual(verdict([ok("a", "basic"), ok("b", "extra")]), { lines: [{ level: "msg", text: CHECK_GOOD }], code: 0 });
});

test("verdict: a missing basic feature is an error naming what it breaks, 'Does not look good.', exit code 1", () => {
  const v = verdict([bad("a", "basic"), ok("b", "basic"), bad("c", "extra")]);
  assert.equal(v.code, 1);
  assert.deepEqual(v.lines, [
    { level: "error", text: "a is missing: a breaks" },
    { level: "warn", text: CHECK_BAD },
  ]);
});

test("verdict: only extra features missing is criu's 'Looks good but ...' and exit code 1", () => {
  const v = verdict([ok("a", "basic"), bad("b", "extra"), bad("c", "experimental")]);
  assert.equal(v.code, 1);
  assert.deepEqual(v.lines, [
    { level: "warn", text: "b is missing: b breaks" },
    { level: "warn", text: "c is missing: c breaks" },
    { level: "msg", text: CHECK_MAYBE },
  ]);
  assert.equal(CHECK_MAYBE, "Looks good but some kernel features are missing\nwhich, depending on your process tree, may cause\ndump or restore failure.");
});

test("feature verdicts: 'NAME is supported' (0) or the reason and 'NAME is not supported' (1)", () => {
  assert.deepEqual(featureVerdict("uffd", ok("uffd", "extra")), { lines: [{ level: "msg", text: "uffd is supported" }], code: 0 });
  assert.deepEqual(featureVerdict("uffd", bad("uffd", "extra")), {
    lines: [{ level: "error", text: "uffd is missing: uffd breaks" }, { level: "msg", text: "uffd is not supported" }],
    code: 1,
  });
  assert.equal(unknownFeature("nope"), "Unknown feature nope");
});

/** A Logger that keeps what it is given. */
function captureLog(): { log: Logger; out: string[] } {
  const out: string[] = [];
  const keep = (level: string) => (text: string) => void out.push(`${level}:${text}`);
  const log = { msg: keep("msg"), error: keep("error"), warn: keep("warn"), info: () => {}, debug: () => {} };
  return { log: log as unknown as Logger, out };
}

const withFeature = (feature: string) => {
  const o = defaultOptions("check");
  return { ...o, check: { ...o.check, feature } };
};

test("check --feature list and an unknown name, without probing anything", () => {
  const o = defaultOptions("check");
  const a = captureLog();
  assert.equal(check({ ...o, check: { ...o.check, feature: "list" } }, a.log), 0);
  assert.deepEqual(a.out, [`msg:${CRIU_42.join(" ")}`]);
  const b = captureLog();
  assert.equal(check({ ...o, check: { ...o.check, feature: "no_such_thing" } }, b.log), 1);
  assert.deepEqual(b.out, ["error:Unknown feature no_such_thing"]);
});

test("check --feature of a criu feature crest does not have answers no, with the reason", () => {
  const a = captureLog();
  assert.equal(check(withFeature("compat_cr"), a.log), 1);
  assert.deepEqual(a.out, [
    "error:crest does not checkpoint 32-bit tasks: criu checkpoints 32-bit (ia32 and x32) tasks with it",
    "msg:compat_cr is not supported",
  ]);
});
