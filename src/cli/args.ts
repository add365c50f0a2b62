// The command line, parsed as criu parses it (getopt_long): long options
// with `=value` or a separate value, unique prefixes of long names, bundled
// short options, optional arguments only when attached (`-v4`), `no-` forms
// of boolean options, options before or after the command. Every criu option
// is known; the ones crest does not implement yet are refused by name.
import { defaultOptions, type Command, type Options } from "../options.js";

export const COMMANDS: readonly Command[] = [
  "dump", "pre-dump", "restore", "check", "service", "swrk", "page-server", "lazy-pages", "dedup",
  "cpuinfo", "exec", "show",
];
/** Commands this version of crest carries out. */
export const IMPLEMENTED: ReadonlySet<Command> = new Set<Command>(["dump", "restore"]);

type ArgKind = "none" | "required" | "optional";

interface OptSpec {
  long: string;
  short?: string;
  arg: ArgKind;
  /** A boolean option that also has a `no-` form. */
  bool?: boolean;
  /** Applies the option; absent means crest does not support it yet. */
  apply?: (o: Options, value: string | undefined, on: boolean) => void;
}

/** atoi(): leading digits, 0 if none (criu's -v parsing relies on it). */
function atoi(s: string): number {
  const m = /^\s*([+-]?\d+)/.exec(s);
  return m ? parseInt(m[1]!, 10) : 0;
}

const SPECS: OptSpec[] = [
  { long: "tree", short: "t", arg: "required", apply: (o, v) => {
    const pid = atoi(v ?? "");
    if (pid <= 0) throw new UsageError(`bad --tree value '${v}': it must be a PID`);
    o.tree = pid;
  } },
  { long: "leave-stopped", short: "s", arg: "none", apply: (o) => { o.leaveStopped = true; o.leaveRunning = false; } },
  { long: "leave-running", short: "R", arg: "none", apply: (o) => { o.leaveRunning = true; o.leaveStopped = false; } },
  { long: "restore-detached", short: "d", arg: "none", bool: true, apply: (o, _v, on) => { o.restoreDetached = on; } },
  { long: "daemon", arg: "none", bool: true, apply: (o, _v, on) => { o.restoreDetached = on; } },
  { long: "restore-sibling", short: "S", arg: "none", bool: true },
  { long: "images-dir", short: "D", arg: "required", apply: (o, v) => { o.imagesDir = v!; } },
  { long: "work-dir", short: "W", arg: "required", apply: (o, v) => { o.workDir = v!; } },
  { long: "log-file", short: "o", arg: "required", apply: (o, v) => { o.logFile = v!; } },
  { long: "verbosity", short: "v", arg: "optional", apply: (o, v) => {
    if (v === undefined) o.logLevel++;
    else if (v.startsWith("v")) o.logLevel += v.length + 1;
    else o.logLevel = atoi(v);
  } },
  { long: "pidfile", arg: "required", apply: (o, v) => { o.pidfile = v!; } },
  { long: "help", short: "h", arg: "none" },
  { long: "version", short: "V", arg: "none" },
  { long: "join-ns", short: "J", arg: "required" },
  { long: "root", short: "r", arg: "required" },
  { long: "ext-unix-sk", short: "x", arg: "optional" },
  { long: "tcp-established", arg: "none", bool: true },
  { long: "close", arg: "required" },
  { long: "log-pid", arg: "none", bool: true },
  { long: "evasive-devices", arg: "none", bool: true },
  { long: "veth-pair", arg: "required" },
  { long: "action-script", arg: "required" },
  { long: "link-remap", arg: "none", bool: true },
  { long: "shell-job", short: "j", arg: "none", bool: true },
  { long: "file-locks", short: "l", arg: "none", bool: true },
  { long: "page-server", arg: "none", bool: true },
  { long: "address", arg: "required" },
  { long: "port", arg: "required" },
  { long: "prev-images-dir", arg: "required" },
  { long: "ms", arg: "none" },
  { long: "track-mem", arg: "none", bool: true },
  { long: "auto-dedup", arg: "none", bool: true },
  { long: "libdir", short: "L", arg: "required" },
  { long: "cpu-cap", arg: "optional" },
  { long: "force-irmap", arg: "none", bool: true },
  { long: "ext-mount-map", short: "M", arg: "required" },
  { long: "exec-cmd", arg: "none" },
  { long: "manage-cgroups", arg: "optional" },
  { long: "cgroup-root", arg: "required" },
  { long: "inherit-fd", arg: "required" },
  { long: "feature", arg: "required" },
  { long: "skip-mnt", arg: "required" },
  { long: "enable-fs", arg: "required" },
  { long: "enable-external-sharing", arg: "none" },
  { long: "enable-external-masters", arg: "none" },
  { long: "freeze-cgroup", arg: "required" },
  { long: "ghost-limit", arg: "required" },
  { long: "irmap-scan-path", arg: "required" },
  { long: "lsm-profile", arg: "required" },
  { long: "timeout", arg: "required" },
  { long: "external", arg: "required" },
  { long: "empty-ns", arg: "required" },
  { long: "lazy-pages", arg: "none" },
  { long: "extra", arg: "none", bool: true },
  { long: "experimental", arg: "none", bool: true },
  { long: "all", arg: "none" },
  { long: "cgroup-props", arg: "required" },
  { long: "cgroup-props-file", arg: "required" },
  { long: "cgroup-dump-controller", arg: "required" },
  { long: "tcp-skip-in-flight", arg: "none", bool: true },
  { long: "deprecated", arg: "none", bool: true },
  { long: "display-stats", arg: "none", bool: true },
  { long: "weak-sysctls", arg: "none", bool: true },
  { long: "status-fd", arg: "required" },
  { long: "tcp-close", arg: "none", bool: true },
  { long: "ps-socket", arg: "required" },
  { long: "stream", arg: "none", bool: true },
  { long: "config", arg: "required" },
  { long: "no-default-config", arg: "none" },
  { long: "tls-cacert", arg: "required" },
  { long: "tls-cacrl", arg: "required" },
  { long: "tls-cert", arg: "required" },
  { long: "tls-key", arg: "required" },
  { long: "tls", arg: "none", bool: true },
  { long: "tls-no-cn-verify", arg: "none" },
  { long: "cgroup-yard", arg: "required" },
  { long: "pre-dump-mode", arg: "required" },
  { long: "file-validation", arg: "required" },
  { long: "skip-file-rwx-check", arg: "none", bool: true },
  { long: "lsm-mount-context", arg: "required" },
  { long: "network-lock", arg: "required" },
  { long: "mntns-compat-mode", arg: "none", bool: true },
  { long: "unprivileged", arg: "none", bool: true },
  { long: "ghost-fiemap", arg: "none", bool: true },
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
}

/** Parses argv (without the program name). Throws UsageError for unknown, malformed or unsupported options. */
export function parseArgs(argv: string[]): ParsedArgs {
  const found: Array<{ spec: OptSpec; on: boolean; value?: string; shown: string }> = [];
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

  const command = words[0];
  const opts = defaultOptions(COMMANDS.includes(command as Command) ? (command as Command) : "dump");
  let help = false;
  let version = false;
  for (const f of found) {
    if (f.spec.long === "help") help = true;
    else if (f.spec.long === "version") version = true;
    else if (!f.spec.apply) throw new UsageError(`option ${f.shown} is not supported by crest yet`);
    else f.spec.apply(opts, f.value, f.on);
  }
  return { command, rest: words.slice(1), options: opts, help, version };
}
