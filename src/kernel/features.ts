// The pure side of `crest check`: criu's feature names, its verdict
// messages, and how results turn into output and an exit code.

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
 * named with --feature (criu's own table has such entries too).
 */
export type Category = "basic" | "extra" | "experimental" | "feature";

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
