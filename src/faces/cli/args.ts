// The command line, parsed as criu parses it (getopt_long): long options
// with `=value` or a separate value, unique prefixes of long names, bundled
// short options, optional arguments only when attached (`-v4`), `no-` forms
// of boolean options, options before or after the command. Every criu option
// is known; the ones crest does not implement yet are refused by name.
import { CGROUP_MODES, addExternal, defaultOptions, type CgroupMode, type CgroupRoot, type Command, type JoinNs, type Options } from "../../options.js";
import { parseConfigText, readConfigs, type ConfigEnv } from "./config.js";

export const COMMANDS: readonly Command[] = [
  "dump", "pre-dump", "restore", "check", "service", "swrk", "page-server", "lazy-pages", "dedup",
  "cpuinfo", "exec", "show",
];
/** Commands this version of crest carries out. */
export const IMPLEMENTED: ReadonlySet<Command> = new Set<Command>(["dump", "pre-dump", "restore", "check", "swrk", "service", "page-server", "dedup", "lazy-pages"]);

type ArgKind = "none" | "required" | "optional";

interface OptSpec {
  long: string;
  short?: string;
  arg: ArgKind;
  /** A boolean option that also has a `no-` form. */
  bool?: boolean;
  /** Applies the option; absent means crest does not support it yet. */
  /** Sets the option; returns false for a value crest refuses, as an option it does not implement. */
  apply?: (o: Options, value: string | undefined, on: boolean) => void | false;
}

/** atoi(): leading digits, 0 if none (criu's -v parsing relies on it). */
function atoi(s: string): number {
  const m = /^\s*([+-]?\d+)/.exec(s);
  return m ? parseInt(m[1]!, 10) : 0;
}

/** criu's --join-ns value: NS:{PID|NS_FILE}[,EXTRA]. */
export function parseJoinNs(v: string): JoinNs {
  const m = /^([a-z]+):([^,]+)(?:,(.*))?$/.exec(v);
  if (!m) throw new UsageError(`bad --join-ns value '${v}': it must be NS:PID or NS:NS_FILE (net:1234, net:/run/netns/x)`);
  return { kind: m[1]!, file: m[2]!, ...(m[3] !== undefined ? { extra: m[3] } : {}) };
}

/** criu's --inherit-fd value: fd[N]:KEY. */
function parseInheritFd(v: string): { fd: number; key: string } {
  const m = /^fd\[(\d+)\]:(.+)$/.exec(v);
  if (!m) throw new UsageError(`bad --inherit-fd value '${v}': it must be fd[N]:KEY`);
  return { fd: Number(m[1]), key: m[2]! };
}

/** criu's parse_size: a number with an optional K, M or G. */
function parseSize(v: string): number {
  const n = atoi(v);
  if (n < 0 || !/^\s*\d/.test(v)) throw new UsageError(`bad size '${v}' (a number of bytes, with K, M or G)`);
  return v.includes("G") ? n * 2 ** 30 : v.includes("M") ? n * 2 ** 20 : v.includes("K") ? n * 2 ** 10 : n;
}

/** criu's parse_manage_cgroups: no value is soft. */
function parseCgroupMode(v: string | undefined): CgroupMode {
  if (v === undefined) return "soft";
  if (!CGROUP_MODES.includes(v as CgroupMode)) throw new UsageError(`Unknown cgroups mode \`${v}' selected (ignore, none, props, soft, full or strict)`);
  return v as CgroupMode;
}

/** --cgroup-root [CONTROLLER:]PATH, split at the first ':' as criu does. */
function parseCgroupRoot(v: string): CgroupRoot {
  const at = v.indexOf(":");
  return at < 0 ? { path: v } : { controller: v.slice(0, at), path: v.slice(at + 1) };
}

const SPECS: OptSpec[] = [
  { long: "tree", short: "t", arg: "required", apply: (o, v) => {
    const pid = atoi(v ?? "");
    if (pid <= 0) throw new UsageError(`bad --tree value '${v}': it must be a PID`);
    o.dump.tree = pid;
  } },
  { long: "leave-stopped", short: "s", arg: "none", apply: (o) => { o.dump.leaveStopped = true; o.dump.leaveRunning = false; } },
  { long: "leave-running", short: "R", arg: "none", apply: (o) => { o.dump.leaveRunning = true; o.dump.leaveStopped = false; } },
  { long: "restore-detached", short: "d", arg: "none", bool: true, apply: (o, _v, on) => { o.restore.detached = on; } },
  { long: "daemon", arg: "none", bool: true, apply: (o, _v, on) => { o.restore.detached = on; } },
  { long: "restore-sibling", short: "S", arg: "none", bool: true, apply: (o, _v, on) => { o.restore.sibling = on; } },
  // crest's own: restore without checking the images against their manifest.
  { long: "no-verify", arg: "none", apply: (o) => { o.restore.noVerify = true; } },
  { long: "images-dir", short: "D", arg: "required", apply: (o, v) => { o.images.dir = v!; } },
  { long: "work-dir", short: "W", arg: "required", apply: (o, v) => { o.images.workDir = v!; } },
  { long: "log-file", short: "o", arg: "required", apply: (o, v) => { o.log.file = v!; } },
  { long: "verbosity", short: "v", arg: "optional", apply: (o, v) => {
    if (v === undefined) o.log.level++;
    else if (v.startsWith("v")) o.log.level += v.length + 1;
    else o.log.level = atoi(v);
  } },
  { long: "pidfile", arg: "required", apply: (o, v) => { o.restore.pidfile = v!; } },
  { long: "help", short: "h", arg: "none" },
  { long: "version", short: "V", arg: "none" },
  { long: "root", short: "r", arg: "required", apply: (o, v) => { o.mnt.root = v!; } },
  { long: "ext-unix-sk", short: "x", arg: "optional", apply: (o, v) => {
    // criu's unix_sk_ids_parse: INO[,INO...], each becoming unix[INO] of --external.
    for (const part of v ? v.split(",").filter((p) => p !== "") : []) {
      const ino = atoi(part);
      if (!/^\s*\d+$/.test(part) || ino <= 0) throw new UsageError(`Can't parse unix socket inode from optarg: ${v}`);
      o.external.push(`unix[${ino}]`);
    }
    o.extUnixSk = true;
  } },
  { long: "tcp-established", arg: "none", bool: true, apply: (o, _v, on) => { o.net.tcpEstablished = on; } },
  { long: "close", arg: "required" },
  { long: "log-pid", arg: "none", bool: true, apply: (o, _v, on) => { o.log.perPid = on; } },
  { long: "evasive-devices", arg: "none", bool: true, apply: (o, _v, on) => { o.features.evasiveDevices = on; } },
  // criu's older spelling of --external veth[IN]:OUT.
  { long: "veth-pair", arg: "required", apply: (o, v) => { const [inside, outside] = v!.split("="); o.external.push(`veth[${inside}]:${outside ?? ""}`); } },
  { long: "action-script", arg: "required", apply: (o, v) => { o.actionScripts.push(v!); } },
  { long: "link-remap", arg: "none", bool: true, apply: (o, _v, on) => { o.features.linkRemap = on; } },
  { long: "shell-job", short: "j", arg: "none", bool: true, apply: (o, _v, on) => { o.features.shellJob = on; } },
  { long: "file-locks", short: "l", arg: "none", bool: true, apply: (o, _v, on) => { o.features.fileLocks = on; } },
  { long: "page-server", arg: "none", bool: true, apply: (o, _v, on) => { o.service.pageServer = on; } },
  { long: "address", arg: "required", apply: (o, v) => { o.service.address = v!; } },
  { long: "port", arg: "required", apply: (o, v) => {
    const port = Number(v);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`Unable to parse value of --port ('${v}')`);
    o.service.port = port;
  } },
  { long: "prev-images-dir", arg: "required", apply: (o, v) => { o.dump.prevImagesDir = v!; } },
  { long: "ms", arg: "none", apply: () => { throw new UsageError('--ms is deprecated; see "Check options" of crest --help'); } },
  { long: "track-mem", arg: "none", bool: true, apply: (o, _v, on) => { o.dump.trackMem = on; } },
  { long: "auto-dedup", arg: "none", bool: true, apply: (o, _v, on) => { o.dump.autoDedup = on; } },
  // crest's own: one more round of copying before the freeze of a dump after a pre-dump.
  { long: "precopy", arg: "none", bool: true, apply: (o, _v, on) => { o.dump.precopy = on; } },
  { long: "libdir", short: "L", arg: "required" },
  { long: "cpu-cap", arg: "optional" },
  { long: "force-irmap", arg: "none", bool: true, apply: (o, _v, on) => { o.features.forceIrmap = on; } },
  { long: "ext-mount-map", short: "M", arg: "required", apply: (o, v) => {
    // criu's ext_mount_add: KEY:VAL is mnt[KEY]:VAL of --external (VAL may be empty: LXC's "console:"); "auto" its autodetection.
    if (v === "auto") {
      o.mnt.autoExternal = true;
      return;
    }
    const i = v!.indexOf(":");
    if (i <= 0) throw new UsageError(`--ext-mount-map ${v}: crest takes KEY:VAL or auto, as criu`);
    o.external.push(`mnt[${v!.slice(0, i)}]:${v!.slice(i + 1)}`);
  } },
  { long: "exec-cmd", arg: "none" },
  { long: "manage-cgroups", arg: "optional", apply: (o, v) => { o.cgroups.mode = parseCgroupMode(v); } },
  { long: "cgroup-root", arg: "required", apply: (o, v) => { o.cgroups.roots.push(parseCgroupRoot(v!)); } },
  { long: "inherit-fd", arg: "required", apply: (o, v) => { o.inheritFd.push(parseInheritFd(v!)); } },
  { long: "join-ns", short: "J", arg: "required", apply: (o, v) => { o.restore.joinNs.push(parseJoinNs(v!)); } },
  { long: "feature", arg: "required", apply: (o, v) => { o.check.feature = v!; } },
  { long: "skip-mnt", arg: "required", apply: (o, v) => { o.mnt.skip.push(v!); } },
  { long: "enable-fs", arg: "required", apply: (o, v) => { o.mnt.enableFs.push(...v!.split(",").filter((n) => n !== "")); } },
  { long: "enable-external-sharing", arg: "none", apply: (o) => { o.mnt.externalSharing = true; } },
  { long: "enable-external-masters", arg: "none", apply: (o) => { o.mnt.externalMasters = true; } },
  { long: "freeze-cgroup", arg: "required", apply: (o, v) => { o.cgroups.freeze = v!; } },
  { long: "ghost-limit", arg: "required", apply: (o, v) => { o.dump.ghostLimit = parseSize(v!); } },
  { long: "irmap-scan-path", arg: "required", apply: (o, v) => { o.features.irmapScanPaths.push(v!); } },
  { long: "lsm-profile", arg: "required" },
  { long: "timeout", arg: "required", apply: (o, v) => { o.dump.timeout = atoi(v!); } },
  { long: "external", arg: "required", apply: (o, v) => {
    const bad = addExternal(o, v!);
    if (bad) throw new UsageError(bad);
  } },
  // criu takes "net" only.
  { long: "empty-ns", arg: "required", apply: (o, v) => {
    if (v !== "net") throw new UsageError(`--empty-ns ${v}: only net is supported, as with criu`);
    o.net.emptyNs = true;
  } },
  { long: "lazy-pages", arg: "none", bool: true, apply: (o, _v, on) => { o.restore.lazyPages = on; } },
  { long: "extra", arg: "none", bool: true, apply: (o, _v, on) => { o.check.extra = on; } },
  { long: "experimental", arg: "none", bool: true, apply: (o, _v, on) => { o.check.experimental = on; } },
  { long: "all", arg: "none", apply: (o) => { o.check.all = o.check.extra = o.check.experimental = true; } },
  { long: "cgroup-props", arg: "required", apply: (o, v) => { o.cgroups.props = v!; } },
  { long: "cgroup-props-file", arg: "required", apply: (o, v) => { o.cgroups.propsFile = v!; } },
  { long: "cgroup-dump-controller", arg: "required", apply: (o, v) => { o.cgroups.dumpControllers.push(v!); } },
  { long: "skip-in-flight", arg: "none", bool: true, apply: (o, _v, on) => { o.net.skipInFlight = on; } },
  { long: "deprecated", arg: "none", bool: true },
  { long: "display-stats", arg: "none", bool: true, apply: (o, _v, on) => { o.log.displayStats = on; } },
  { long: "weak-sysctls", arg: "none", bool: true },
  { long: "status-fd", arg: "required", apply: (o, v) => {
    if (!/^\s*[+-]?\d/.test(v!)) throw new UsageError(`Unable to parse a value of --status-fd ('${v}')`);
    o.restore.statusFd = atoi(v!);
  } },
  { long: "tcp-close", arg: "none", bool: true, apply: (o, _v, on) => { o.net.tcpClose = on; } },
  { long: "ps-socket", arg: "required" },
  { long: "stream", arg: "none", bool: true },
  // Read before anything else (config.ts); recorded here for the model.
  { long: "config", arg: "required", apply: (o, v) => { o.config.file = v!; } },
  { long: "no-default-config", arg: "none", apply: (o) => { o.config.noDefault = true; } },
  { long: "tls-cacert", arg: "required", apply: (o, v) => { (o.service.tls ??= {}).cacert = v!; } },
  { long: "tls-cacrl", arg: "required", apply: (o, v) => { (o.service.tls ??= {}).cacrl = v!; } },
  { long: "tls-cert", arg: "required", apply: (o, v) => { (o.service.tls ??= {}).cert = v!; } },
  { long: "tls-key", arg: "required", apply: (o, v) => { (o.service.tls ??= {}).key = v!; } },
  { long: "tls", arg: "none", bool: true, apply: (o, _v, on) => { (o.service.tls ??= {}).on = on; } },
  { long: "tls-no-cn-verify", arg: "none", apply: (o) => { (o.service.tls ??= {}).noCnVerify = true; } },
  { long: "cgroup-yard", arg: "required", apply: (o, v) => { o.cgroups.yard = v!; } },
  { long: "pre-dump-mode", arg: "required", apply: (o, v) => {
    if (v !== "splice" && v !== "read") throw new UsageError(`Unable to parse value of --pre-dump-mode ('${v}': splice or read)`);
    o.dump.preDumpMode = v;
  } },
  { long: "file-validation", arg: "required" },
  { long: "skip-file-rwx-check", arg: "none", bool: true },
  { long: "lsm-mount-context", arg: "required" },
  { long: "network-lock", arg: "required", apply: (o, v) => {
    if (v !== "iptables" && v !== "nftables" && v !== "skip") throw new UsageError(`Invalid value for --network-lock: ${v} (iptables, nftables or skip)`);
    o.net.lock = v;
  } },
  { long: "mntns-compat-mode", arg: "none", bool: true, apply: (o, _v, on) => { o.mnt.compatMode = on; } },
  { long: "unprivileged", arg: "none", bool: true },
  // How criu finds a ghost's holes (FIEMAP or SEEK_DATA); crest always uses SEEK_DATA/SEEK_HOLE.
  { long: "ghost-fiemap", arg: "none", bool: true, apply: () => {} },
  { long: "allow-uprobes", arg: "none", bool: true },
];

/** A mistake in how crest was called: printed with a hint to --help, exit 1. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Long names, including the `no-` forms of boolean options, to their specs. */
const LONG = new Map<string, { spec: OptSpec; on: boolean }>();
for (const spec of SPECS) {
  LONG.set(spec.long, { spec, on: true });
  if (spec.bool) LONG.set(`no-${spec.long}`, { spec, on: false });
}
const SHORT = new Map(SPECS.filter((s) => s.short).map((s) => [s.short!, s]));

function findLong(name: string): { spec: OptSpec; on: boolean; name: string } {
  const exact = LONG.get(name);
  if (exact) return { ...exact, name };
  // getopt_long accepts any unambiguous prefix.
  const hits = [...LONG.keys()].filter((k) => k.startsWith(name));
  const specs = new Set(hits.map((k) => LONG.get(k)!.spec));
  if (hits.length === 0) throw new UsageError(`unknown option --${name}`);
  if (specs.size > 1) throw new UsageError(`option --${name} is ambiguous (${hits.map((h) => `--${h}`).join(", ")})`);
  return { ...LONG.get(hits[0]!)!, name: hits[0]! };
}

export interface ParsedArgs {
  /** The first non-option word. */
  command?: string;
  /** Non-option words after the command. */
  rest: string[];
  options: Options;
  help: boolean;
  version: boolean;
  /**
   * Known criu options crest does not implement yet, as given. main refuses
   * them in the log as well as on stderr, as callers (zdtm) read the log.
   */
  refused: string[];
}

interface Found {
  spec: OptSpec;
  on: boolean;
  value?: string;
  shown: string;
}

/** getopt_long over one argument list: the options in order, and the other words. */
function scan(argv: readonly string[]): { found: Found[]; words: string[] } {
  const found: Found[] = [];
  const words: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      words.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      const hit = findLong(name);
      let value = eq < 0 ? undefined : a.slice(eq + 1);
      if (hit.spec.arg === "none" && value !== undefined) throw new UsageError(`option --${hit.name} takes no value`);
      if (hit.spec.arg === "required" && value === undefined) {
        if (i + 1 >= argv.length) throw new UsageError(`option --${hit.name} needs a value`);
        value = argv[++i];
      }
      found.push({ spec: hit.spec, on: hit.on, value, shown: `--${hit.name}` });
      continue;
    }
    if (a.startsWith("-") && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const spec = SHORT.get(a[j]!);
        if (!spec) throw new UsageError(`unknown option -${a[j]}`);
        const attached = a.slice(j + 1);
        if (spec.arg === "none") {
          found.push({ spec, on: true, shown: `-${a[j]}` });
          continue;
        }
        let value: string | undefined = attached || undefined;
        if (spec.arg === "required" && value === undefined) {
          if (i + 1 >= argv.length) throw new UsageError(`option -${a[j]} needs a value`);
          value = argv[++i];
        }
        found.push({ spec, on: true, value, shown: `-${a[j]}` });
        break;
      }
      continue;
    }
    words.push(a);
  }
  return { found, words };
}

/** Applies scanned options to opts, in order; returns whether --version was among them and the options crest refuses. */
function applyFound(opts: Options, found: readonly Found[]): { version: boolean; refused: string[] } {
  let version = false;
  const refused: string[] = [];
  for (const f of found) {
    if (f.spec.long === "help") continue;
    if (f.spec.long === "version") version = true;
    else if (!f.spec.apply) refused.push(f.shown);
    else if (f.spec.apply(opts, f.value, f.on) === false) refused.push(`${f.shown} ${f.value}`);
  }
  return { version, refused };
}

/**
 * Applies a configuration file's options on top of opts (criu's RPC
 * `config_file`, which overrides what the request said); returns the
 * options crest refuses, as `--opt (from FILE)`.
 */
export function applyConfigFile(opts: Options, file: string, text: string): string[] {
  return applyFound(opts, scanFile(file, parseConfigText(text, file))).refused;
}

/** A configuration file's options (only options: a word is an error naming the file). */
function scanFile(file: string, args: readonly string[]): Found[] {
  let r;
  try {
    r = scan(args);
  } catch (e) {
    throw new UsageError(`${file}: ${(e as Error).message}`);
  }
  if (r.words.length) throw new UsageError(`${file}: '${r.words[0]}' is not an option`);
  return r.found.map((f) => ({ ...f, shown: `${f.shown} (from ${file})` }));
}

/**
 * Parses argv (without the program name) after the configuration files
 * (read from `src`, none if absent), each overriding the one before, as criu
 * does. Throws UsageError for unknown, malformed or unsupported options and
 * ConfigError for a configuration file crest cannot read.
 */
export function parseArgs(argv: readonly string[], src?: ConfigEnv): ParsedArgs {
  // criu looks for --help before anything else, so a broken configuration file cannot hide it.
  if (argv.includes("--help") || argv.includes("-h")) {
    return { command: argv.find((a) => !a.startsWith("-")), rest: [], options: defaultOptions("dump"), help: true, version: false, refused: [] };
  }
  const passes: Found[][] = (src ? readConfigs(argv, src) : []).map((c) => scanFile(c.file, c.args));
  const cmdline = scan(argv);
  passes.push(cmdline.found);

  const command = cmdline.words[0];
  const opts = defaultOptions(COMMANDS.includes(command as Command) ? (command as Command) : "dump");
  const { version, refused } = applyFound(opts, passes.flat());
  return { command, rest: cmdline.words.slice(1), options: opts, help: false, version, refused };
}
