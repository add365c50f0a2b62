// The pure side of `crest check`: criu's feature names, what crest answers
// for each, its verdict messages, and how results turn into output and an
// exit code.
import type { FactId } from "./probes.js";

/**
 * criu 4.2's `--feature` names, in the order of its table (cr-check.c,
 * feature_list). zdtm asks for them to decide which tests to run.
 */
export const FEATURE_NAMES = [
  "mnt_id", "mem_dirty_track", "aio_remap", "timerfd", "tun", "tun_ns", "userns", "fdinfo_lock",
  "seccomp_suspend", "seccomp_filters", "loginuid", "cgroupns", "autofs", "tcp_half_closed",
  "compat_cr", "uffd", "uffd-noncoop", "can_map_vdso", "sk_ns", "sk_unix_file", "net_diag_raw",
  "nsid", "link_nsid", "kcmp_epoll", "timens", "external_net_ns", "clone3_set_tid", "newifindex",
  "nftables", "has_ipt_legacy", "pidfd_store", "ns_pid", "apparmor_stacking",
  "network_lock_nftables", "sockopt_buf_lock", "memfd_hugetlb", "move_mount_set_group", "openat2",
  "get_rseq_conf", "ipv6_freebind", "pagemap_scan", "timer_cr_ids", "overlayfs_maps",
  "breakpoints", "pagemap_scan_guard_pages",
] as const;

export type FeatureName = (typeof FEATURE_NAMES)[number];

export function isFeatureName(name: string): name is FeatureName {
  return (FEATURE_NAMES as readonly string[]).includes(name);
}

/**
 * Which probes a plain `check` runs: basic always (what every dump and restore
 * needs), extra with --extra or --all (needed for some processes only),
 * experimental with --experimental or --all. "feature" probes run only when
 * asked for by name (--feature, or a kind consulting the fact).
 */
export type Category = "basic" | "extra" | "experimental" | "feature";

/**
 * A criu feature crest cannot offer whatever the kernel has: `--feature`
 * answers no with the reason, so that callers do not count on it (zdtm
 * runs its test with --pidfd-store on `pidfd_store`, pre-dumps on
 * `mem_dirty_track`, lazy restores on `uffd`).
 */
export interface CrestLacks {
  /** Why not, naming crest: "crest does not checkpoint AIO rings yet". */
  crest: string;
  /** What criu does with the feature: "criu ... with it". */
  criu: string;
  /**
   * The kernel fact behind the feature, probed (and logged) by `--feature`,
   * when it is not the feature's own name; null for none.
   */
  fact?: FactId | null;
}

const MOUNTS = "crest does not checkpoint autofs mounts";

/**
 * The feature names crest answers no to. Every other name is the fact of
 * that name, which crest itself relies on (or, for timens, a kernel fact
 * that decides zdtm tests crest passes).
 */
export const CREST_LACKS: Partial<Record<FeatureName, CrestLacks>> = {
  aio_remap: { crest: "crest does not checkpoint AIO rings yet", criu: "criu restores AIO rings with it" },
  tun: { crest: "crest does not checkpoint tun devices", criu: "criu checkpoints tun and tap devices with it" },
  tun_ns: { crest: "crest does not checkpoint tun devices", criu: "criu checkpoints tun devices of other network namespaces with it" },
  autofs: { crest: MOUNTS, criu: "criu restores autofs mounts with it" },
  compat_cr: { crest: "crest does not checkpoint 32-bit tasks", criu: "criu checkpoints 32-bit (ia32 and x32) tasks with it", fact: null },
  can_map_vdso: { crest: "crest does not map vDSOs (it moves the kernel's own to where the task had it)", criu: "criu maps a fresh vDSO in restored tasks with it" },
  pidfd_store: {
    crest: "crest does not implement --pidfd-store (criu's RPC option pidfd_store_sk, which crest's RPC refuses) yet",
    criu: "criu keeps pidfds of the dumped tasks between pre-dumps with it, to notice a PID reused",
    fact: "pidfd_getfd",
  },
  apparmor_stacking: { crest: "crest does not checkpoint AppArmor profiles or namespaces yet", criu: "criu checkpoints AppArmor namespaces with it" },
  openat2: { crest: "crest does not use openat2", criu: "criu resolves paths with it" },
  overlayfs_maps: { crest: "crest does not rely on it (it opens mapped files through map_files)", criu: "criu matches files mapped from overlayfs by the device and inode in /proc/PID/maps" },
  breakpoints: { crest: "crest does not use hardware breakpoints", criu: "criu stops its parasite faster with them" },
};

/** criu's feature names crest answers with a kernel fact of another name. */
export const FEATURE_FACTS: Partial<Record<FeatureName, FactId>> = {
  // Dirty pages between pre-dumps: userfaultfd write-protection where soft-dirty bits are missing.
  mem_dirty_track: "uffd-wp",
};

/**
 * The feature names crest answers yes to whatever the kernel fact of that
 * name says: crest does what criu uses the feature for without it. The
 * fact is still probed, for the log.
 */
export const CREST_NEEDS_NOT: Partial<Record<FeatureName, string>> = {
  net_diag_raw: "crest reads raw sockets from its own copies of them and needs no sock_diag for them",
  external_net_ns: "crest takes --external net[INO]:KEY on dump and joins the namespace --inherit-fd gives on restore",
};

export const CHECK_GOOD = "Looks good.";
export const CHECK_BAD = "Does not look good.";
export const CHECK_MAYBE =
  "Looks good but some kernel features are missing\n" +
  "which, depending on your process tree, may cause\n" +
  "dump or restore failure.";

/** The categories a check run covers, as criu decides them from its options. */
export function categoriesFor(o: { all: boolean; extra: boolean; experimental: boolean }): Category[] {
  const out: Category[] = ["basic"];
  if (o.all || o.extra) out.push("extra");
  if (o.all || o.experimental) out.push("experimental");
  return out;
}

/** One probe's result: missing is why it failed, absent when it passed. */
export interface Outcome {
  id: string;
  category: Category;
  /** What crest (or criu, for what crest does not do) cannot do without it. */
  breaks: string;
  missing?: string;
}

export type Level = "msg" | "error" | "warn";
export interface Line {
  level: Level;
  text: string;
}

/** The line naming a failed probe: what is missing, then what it breaks. */
export function missingLine(o: Outcome): string {
  return `${o.missing}: ${o.breaks}`;
}

/**
 * criu's verdict: a missing basic feature is an error and "Does not look
 * good."; a missing extra or experimental one is a warning and the "Looks
 * good but ..." message. Either way the exit code is 1 (criu returns
 * `cr_check() != 0`).
 */
export function verdict(outcomes: readonly Outcome[]): { lines: Line[]; code: number } {
  const lines: Line[] = [];
  const basicMissing = outcomes.filter((o) => o.missing !== undefined && o.category === "basic");
  for (const o of basicMissing) lines.push({ level: "error", text: missingLine(o) });
  if (basicMissing.length) {
    lines.push({ level: "warn", text: CHECK_BAD });
    return { lines, code: 1 };
  }
  const otherMissing = outcomes.filter((o) => o.missing !== undefined);
  for (const o of otherMissing) lines.push({ level: "warn", text: missingLine(o) });
  lines.push({ level: "msg", text: otherMissing.length ? CHECK_MAYBE : CHECK_GOOD });
  return { lines, code: otherMissing.length ? 1 : 0 };
}

/** What `--feature NAME` prints for one probed feature, and its exit code. */
export function featureVerdict(name: string, o: Outcome): { lines: Line[]; code: number } {
  if (o.missing === undefined) return { lines: [{ level: "msg", text: `${name} is supported` }], code: 0 };
  return {
    lines: [{ level: "error", text: missingLine(o) }, { level: "msg", text: `${name} is not supported` }],
    code: 1,
  };
}

/** criu's message for a name it does not know (it exits with 1). */
export function unknownFeature(name: string): string {
  return `Unknown feature ${name}`;
}

/**
 * `--feature list`: every name on one line, separated by spaces, as criu
 * printed it before 2.6 (criu 4.x lists them only in --help).
 */
export function featureList(): string {
  return FEATURE_NAMES.join(" ");
}

/**
 * The names wrapped as criu's --help prints them (pr_check_features): lines
 * start with `offset`, names are separated by `sep`, no line grows past
 * `width`; the text starts with a newline.
 */
export function featureHelp(offset = " ".repeat(28), sep = ", ", width = 80): string {
  let out = "";
  let pos = width + 1;
  FEATURE_NAMES.forEach((name, i) => {
    if (pos + name.length + sep.length > width) {
      out += `\n${offset}`;
      pos = offset.length;
    }
    out += name;
    pos += name.length;
    if (i < FEATURE_NAMES.length - 1) {
      out += sep;
      pos += sep.length;
    }
  });
  return `${out}\n`;
}
