// crest check on this machine (Linux 6.18, root in a VM, no soft-dirty, no
// CAP_SYS_RESOURCE), through the command line as criu's callers use it
// (zdtm: `check --feature NAME`, exit code only), and every feature name's
// answer here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { crest } from "./harness.js";
import { CHECK_GOOD, CHECK_MAYBE, CREST_LACKS, FEATURE_FACTS, FEATURE_NAMES, type FeatureName } from "../../src/kernel/features.js";
import { PROBES, type FactId } from "../../src/kernel/probes.js";
import { facts } from "../../src/kernel/facts.js";
import { check } from "../../src/faces/check.js";
import { defaultOptions } from "../../src/options.js";
import type { Logger } from "../../src/log.js";

type FactHere = "supported" | "not checked" | "not supported";

/**
 * Every kernel fact on this machine. All are supported but these:
 * - apparmor_stacking: not checked in a run (this VM has no AppArmor), not
 *   supported when asked for by name;
 * - net_diag_raw: no CONFIG_INET_RAW_DIAG (asked for by name only: crest
 *   does not need it, and answers yes to the feature);
 * - autofs: no autofs in this kernel (mount answers ENODEV).
 * Some that might look doubtful are here: uffd-wp (userfaultfd with
 * WP_ASYNC and PAGEMAP_SCAN, Linux 6.7+, needs no soft-dirty bits),
 * timer_cr_ids (Linux 6.16+), breakpoints (this VM's debug registers do
 * fire), tun and tun_ns (/dev/net/tun exists), nftables and
 * network_lock_nftables (the tests install Debian's nftables), memfd_hugetlb (the
 * kernel has hugetlbfs), loginuid (CONFIG_AUDITSYSCALL).
 */
const FACTS_HERE: Record<FactId, FactHere> = {
  ptrace: "supported", seccomp_suspend: "supported", get_rseq_conf: "supported", pending_signals: "supported",
  seccomp_filters: "supported", clone3_set_tid: "supported", namespaces: "supported", pr_set_mm_map: "supported",
  special_mremap: "supported", can_map_vdso: "supported", loginuid: "supported", clone_parent_vs_pid: "supported",
  breakpoints: "supported", pagemap_scan: "supported", process_vm_readv: "supported", map_files: "supported",
  pagemap_scan_guard_pages: "supported", "uffd-wp": "supported", uffd: "supported", "uffd-noncoop": "supported",
  memfd: "supported", memfd_hugetlb: "supported", aio_remap: "supported", proc: "supported", kcmp: "supported",
  pidfd_getfd: "supported", sysv_next_id: "supported", mnt_id: "supported", fdinfo_lock: "supported", timerfd: "supported",
  kcmp_epoll: "supported", inotify_setnextwd: "supported", cgroupns: "supported", userns: "supported", timens: "supported",
  ns_pid: "supported", openat2: "supported", timer_cr_ids: "supported", move_mount_set_group: "supported",
  overlayfs_maps: "supported", apparmor_stacking: "not checked", autofs: "not supported", sock_diag: "supported",
  net_diag_raw: "not supported", tcp_repair: "supported", tcp_half_closed: "supported", sockopt_buf_lock: "supported",
  ipv6_freebind: "supported", sk_ns: "supported", sk_unix_file: "supported", tun: "supported", tun_ns: "supported",
  nsid: "supported", link_nsid: "supported", nftables: "supported", network_lock_nftables: "supported", newifindex: "supported",
  has_ipt_legacy: "supported",
};

const MOUNTS = /^crest does not checkpoint autofs mounts: /;

/**
 * Every criu feature name's answer here: supported (true), or the reason
 * `--feature` gives. Supported means crest itself does what criu does with
 * the feature on this kernel; timens is the one pure kernel fact among them
 * (zdtm's timens tests expect the dump to fail, and crest refuses a time
 * namespace unshared for children only or nested: it passes them). The others are no because crest lacks what
 * the feature is for, whatever the kernel has (zdtm would otherwise pass
 * options or run flavours crest refuses).
 */
const FEATURES_HERE: Record<FeatureName, true | RegExp> = {
  mnt_id: true, // crest records the mount id of open files
  mem_dirty_track: true, // userfaultfd write-protection (uffd-wp): pre-dump and --track-mem
  aio_remap: /^crest does not checkpoint AIO rings yet: /,
  timerfd: true,
  tun: /^crest does not checkpoint tun devices: /,
  tun_ns: /^crest does not checkpoint tun devices: /,
  userns: true, // the user namespace kind keeps the maps (zdtm's uns flavour runs)
  fdinfo_lock: true, // --file-locks
  seccomp_suspend: true,
  seccomp_filters: true,
  loginuid: true, // restored by the props kind
  cgroupns: true, // the cgroup kind keeps a cgroup namespace rooted below crest's (criu's cgns_prefix)
  autofs: MOUNTS /* and the kernel has no autofs either */,
  tcp_half_closed: true, // closing TCP states are repaired
  compat_cr: /^crest does not checkpoint 32-bit tasks: /,
  uffd: true, // restore --lazy-pages with crest lazy-pages (docs/lazy-pages.md)
  "uffd-noncoop": true, // its daemon follows fork, mremap, munmap and MADV_DONTNEED
  can_map_vdso: /^crest does not map vDSOs \(it moves the kernel's own/,
  sk_ns: true, // the tree's sockets are checked to be of its namespace
  sk_unix_file: true, // names of unix sockets bound in the tree's own mount namespace
  net_diag_raw: true, // crest needs no sock_diag for raw sockets (the kernel lacks it here)
  nsid: true,
  link_nsid: true, // a veth's peer outside the tree's namespace
  kcmp_epoll: true,
  timens: true, // a kernel fact (see above)
  external_net_ns: true, // --external net[INO]:KEY
  clone3_set_tid: true,
  newifindex: true,
  nftables: true, // a namespace's ruleset, with nft
  has_ipt_legacy: true, // iptables-legacy is installed (the tests install Debian's iptables)
  pidfd_store: /^crest does not implement --pidfd-store \(criu's RPC option pidfd_store_sk, which crest's RPC refuses\) yet: /,
  ns_pid: true,
  apparmor_stacking: /^crest does not checkpoint AppArmor /,
  network_lock_nftables: true, // crest's default network lock here
  sockopt_buf_lock: true,
  memfd_hugetlb: true, // hugetlb memfds (memfd_create MFD_HUGETLB)
  move_mount_set_group: true, // the restore's peer groups (kinds/namespaces/mnt.ts)
  openat2: /^crest does not use openat2: /,
  get_rseq_conf: true,
  ipv6_freebind: true,
  pagemap_scan: true,
  timer_cr_ids: true, // PR_TIMER_CREATE_RESTORE_IDS, Linux 6.16+
  overlayfs_maps: /^crest does not rely on it \(it opens mapped files through map_files\): /,
  breakpoints: /^crest does not use hardware breakpoints: /,
  pagemap_scan_guard_pages: true,
};

/** The `ID: ...` lines a -v4 run logs for the facts it evaluated, in order. */
function factLines(stderr: string): Array<[string, FactHere]> {
  const ids = new Set<string>(PROBES.map((p) => p.id));
  return stderr.split("\n").flatMap((l) => {
    const m = /^\(\d+\.\d+\) ([\w-]+): (supported|not checked|not supported)(?:$|: )/.exec(l);
    return m && ids.has(m[1]!) ? [[m[1]!, m[2] as FactHere]] : [];
  });
}

test("crest check: every basic probe passes here: 'Looks good.', exit code 0, nothing on stderr", () => {
  const r = crest(["check"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${CHECK_GOOD}\n`);
  assert.equal(r.stderr, "");
});

test("crest check -v4 runs the basic probes only, each supported", () => {
  const r = crest(["check", "-v4"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${CHECK_GOOD}\n`);
  assert.deepEqual(factLines(r.stderr), PROBES.filter((p) => p.category === "basic").map((p) => [p.id, "supported"]));
});

test("crest check --all -v4: every probe of the run, with the verdict this machine gives", () => {
  const r = crest(["check", "--all", "-v4"]);
  // Category by category, as criu runs them.
  const run = (["basic", "extra", "experimental"] as const).flatMap((c) => PROBES.filter((p) => p.category === c));
  assert.deepEqual(factLines(r.stderr), run.map((p) => [p.id, FACTS_HERE[p.id]]));
  // Each missing fact is a warning naming the reason and what it breaks; no errors (basic facts are all here).
  const warnings = r.stderr.split("\n").filter((l) => /^\(\d+\.\d+\) (Warn|Error): /.test(l)).map((l) => l.replace(/^\(\d+\.\d+\) /, ""));
  // (net_diag_raw, which this kernel lacks too, is no probe of a run: crest does not need it.)
  assert.deepEqual(warnings, [`Warn: mounting autofs is not supported by this kernel (ENODEV): ${facts.probe("autofs").breaks}`]);
  assert.equal(r.stdout, `${CHECK_MAYBE}\n`);
  assert.equal(r.code, 1);
});

test("crest check --feature list prints criu's feature names", () => {
  const r = crest(["check", "--feature", "list"]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split(" "), [...FEATURE_NAMES]);
});

test("crest check --feature, as zdtm asks: clone3_set_tid is supported, pidfd_store is not (crest has no --pidfd-store)", () => {
  const zdtm = ["check", "--no-default-config", "-verbosity=0", "--feature"];
  const yes = crest([...zdtm, "clone3_set_tid"]);
  assert.equal(yes.code, 0, yes.stderr);
  assert.equal(yes.stdout, "clone3_set_tid is supported\n");
  const no = crest([...zdtm, "pidfd_store"]);
  assert.equal(no.code, 1);
  assert.equal(no.stdout, "pidfd_store is not supported\n");
  assert.equal(no.stderr, "", "-v0 prints only the verdict");
  const said = crest(["check", "--feature", "pidfd_store"]);
  assert.equal(said.code, 1);
  assert.match(said.stderr, /^Error: crest does not implement --pidfd-store /);
});

test("crest check --feature with an unknown name: criu's message, non-zero", () => {
  const r = crest(["check", "--feature", "no_such_feature"]);
  assert.notEqual(r.code, 0);
  assert.equal(r.stdout, "");
  assert.match(r.stderr, /Unknown feature no_such_feature/);
});

/** A Logger that keeps what it is given, info included. */
function captureLog(): { log: Logger; out: string[] } {
  const out: string[] = [];
  const keep = (level: string) => (text: string) => void out.push(`${level}:${text}`);
  const log = { msg: keep("msg"), error: keep("error"), warn: keep("warn"), info: keep("info"), debug: () => {} };
  return { log: log as unknown as Logger, out };
}

test("every feature name's answer here, and the kernel fact behind it as logged", () => {
  // In this process (each fact probed once), as `crest check --feature NAME` runs it.
  for (const name of FEATURE_NAMES) {
    const { log, out } = captureLog();
    const o = defaultOptions("check");
    const code = check({ ...o, check: { ...o.check, feature: name } }, log);
    const want = FEATURES_HERE[name];
    const verdicts = out.filter((l) => !l.startsWith("info:"));
    if (want === true) {
      assert.deepEqual(verdicts, [`msg:${name} is supported`], name);
      assert.equal(code, 0, name);
    } else {
      assert.equal(verdicts.length, 2, `${name}: ${verdicts.join(" | ")}`);
      assert.match(verdicts[0]!.replace(/^error:/, ""), want, name);
      assert.equal(verdicts[1], `msg:${name} is not supported`);
      assert.equal(code, 1, name);
    }
    // The kernel's side, probed even when crest's answer is no (asked by name, "not checked" is "not supported").
    const lacks = CREST_LACKS[name];
    const fact = lacks?.fact !== undefined ? lacks.fact : name === "external_net_ns" ? null : FEATURE_FACTS[name] ?? (name as FactId);
    const logged = out.filter((x) => /^info:[\w-]+: (supported|not supported)/.test(x)).map((l) => /^info:([\w-]+): (supported|not supported)/.exec(l)!.slice(1));
    assert.deepEqual(logged, fact === null ? [] : [[fact, FACTS_HERE[fact] === "supported" ? "supported" : "not supported"]], name);
  }
});
