// crest check, the pure parts: criu's feature names and crest's answers,
// the list and help formats, how probe results become output and an exit
// code, and the kernel facts' cache (on probes of its own).
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CHECK_BAD, CHECK_GOOD, CHECK_MAYBE, CREST_LACKS, CREST_NEEDS_NOT, FEATURE_FACTS, FEATURE_NAMES, categoriesFor, featureHelp, featureList, featureVerdict,
  isFeatureName, unknownFeature, verdict, type Outcome,
} from "../../src/kernel/features.js";
import { PROBES } from "../../src/kernel/probes.js";
import { Facts, facts } from "../../src/kernel/facts.js";
import { missing, type Probe } from "../../src/kernel/probe.js";
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

test("every criu 4.2 feature name is known, in criu's order, and has an answer", () => {
  assert.deepEqual([...FEATURE_NAMES], CRIU_42);
  for (const name of CRIU_42) {
    assert.ok(isFeatureName(name), name);
    const lacks = CREST_LACKS[name];
    if (lacks) {
      // crest's own reason, and what criu does with it.
      assert.match(lacks.crest, /^crest /, name);
      assert.match(lacks.criu, /^criu/, name);
      if (lacks.fact) assert.ok(facts.isFact(lacks.fact), `${name}: ${lacks.fact}`);
      if (lacks.fact === undefined) assert.ok(facts.isFact(name), `${name} has a fact of its name, or says which`);
    } else if (FEATURE_FACTS[name]) {
      assert.ok(facts.isFact(FEATURE_FACTS[name]!), `${name}: crest answers it from the fact ${FEATURE_FACTS[name]}`);
    } else if (!CREST_NEEDS_NOT[name]) {
      assert.ok(facts.isFact(name), `${name}: crest answers it from the fact of that name`);
    }
  }
  assert.equal(isFeatureName("list"), false);
  assert.equal(isFeatureName("ptrace"), false, "crest's own probe names are not criu feature names");
  assert.equal(isFeatureName("MNT_ID"), false);
});

test("probe ids are unique, every probe has a category and says what it breaks", () => {
  const ids = PROBES.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length);
  for (const p of PROBES) {
    assert.ok(["basic", "extra", "experimental", "feature"].includes(p.category), p.id);
    assert.ok(p.breaks.length > 10, `${p.id} says what it breaks`);
  }
  // What every dump and restore needs is in the basic run.
  for (const id of ["ptrace", "pagemap_scan", "clone3_set_tid", "pr_set_mm_map", "seccomp_suspend", "get_rseq_conf", "pidfd_getfd"] as const) {
    assert.equal(facts.probe(id).category, "basic", id);
  }
  // The facts the kinds consult, or will.
  for (const id of ["inotify_setnextwd", "uffd-wp", "nftables", "tcp_repair"] as const) assert.ok(facts.isFact(id), id);
});

/** Probes that count their runs: a supported one, a missing one, one with nothing to check, one that breaks. */
function countingProbes(): { probes: Array<Probe & { id: "yes" | "no" | "none" | "broken" }>; runs: Map<string, number> } {
  const runs = new Map<string, number>();
  const probe = (id: "yes" | "no" | "none" | "broken", run: () => void | string) => ({
    id, category: "extra" as const, breaks: `${id} breaks things`,
    run: () => {
      runs.set(id, (runs.get(id) ?? 0) + 1);
      return run();
    },
  });
  return {
    runs,
    probes: [
      probe("yes", () => {}),
      probe("no", () => missing("no is not supported by this kernel (ENOSYS)")),
      probe("none", () => "there is no such device here"),
      probe("broken", () => {
        throw new TypeError("the probe itself broke");
      }),
    ],
  };
}

test("facts: each probe runs when its fact is first asked for, once, and its verdict is kept", () => {
  const { probes, runs } = countingProbes();
  const f = new Facts(probes);
  assert.equal(runs.size, 0, "nothing runs before it is asked for");
  assert.deepEqual(f.get("yes"), { supported: true });
  assert.equal(f.has("yes"), true);
  assert.deepEqual([...runs], [["yes", 1]], "only the fact asked for ran, once");
  assert.deepEqual(f.get("no"), { supported: false, reason: "no is not supported by this kernel (ENOSYS)" });
  assert.equal(f.has("no"), false);
  assert.deepEqual(f.get("none"), { supported: false, reason: "there is no such device here", nothingToCheck: true });
  const broken = f.get("broken");
  assert.equal(broken.supported, false);
  assert.ok(!broken.supported && broken.reason === "the probe itself broke" && broken.error instanceof TypeError);
  for (const id of ["yes", "no", "none", "broken"] as const) f.get(id);
  assert.deepEqual([...runs], [["yes", 1], ["no", 1], ["none", 1], ["broken", 1]]);
  assert.equal(f.isFact("maybe"), false);
  assert.throws(() => f.get("maybe" as "yes"), /no probe for the kernel fact maybe/);
  assert.equal(f.probe("no").breaks, "no breaks things");
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

test("check --feature pidfd_store: no, whatever the kernel has: crest does not implement --pidfd-store", () => {
  const a = captureLog();
  assert.equal(check(withFeature("pidfd_store"), a.log), 1);
  assert.deepEqual(a.out, [
    "error:crest does not implement --pidfd-store (criu's RPC option pidfd_store_sk, which crest's RPC refuses) yet: " +
      "criu keeps pidfds of the dumped tasks between pre-dumps with it, to notice a PID reused",
    "msg:pidfd_store is not supported",
  ]);
});

test("check --feature of a criu feature crest does not have answers no, with the reason", () => {
  const a = captureLog();
  assert.equal(check(withFeature("compat_cr"), a.log), 1);
  assert.deepEqual(a.out, [
    "error:crest does not checkpoint 32-bit tasks: criu checkpoints 32-bit (ia32 and x32) tasks with it",
    "msg:compat_cr is not supported",
  ]);
});
