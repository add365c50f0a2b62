// npm run interop: crest and criu restoring each other's images.
//
// For each workload, three cycles on fresh processes: criu dumps and crest
// restores, crest dumps and criu restores, and criu dumps and restores
// itself. A workload checks its own state after the restore (PASS or what it
// found wrong). crest must restore what criu dumped as well as criu does,
// and criu must restore what crest dumped as well as it restores its own
// images: a cycle with crest in it that fails where criu's own passes is a
// defect of crest's, and the run exits 1. Where criu's own cycle fails too
// (what criu does not keep: it cannot dump some of these workloads at all),
// the row says so.
//
// criu is CREST_CRIU, or `criu` on PATH, and must pass `criu check` (Debian's
// 3.17 does not on this kernel; docs/zdtm.md says how to build 4.2).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmdirSync, writeFileSync } from "node:fs";
import { CREST, finish, imagesDir, startWorkload, stop, waitTreeGone } from "../cr/harness.js";

/**
 * The cgroups workload's cgroups (v1 memory with a limit and a child's
 * cgroup below, v1 pids with a limit, a v2 one), made before it starts and
 * removed once it is dumped, so that the restorer makes them again.
 */
function cgroupsFor(tag: string): { args: string[]; remove: () => void } {
  const cg = "/sys/fs/cgroup", name = `crest-interop-${process.pid}-${tag}`;
  const app = `${cg}/memory/${name}/app`, pids = `${cg}/pids/${name}`, v2 = `${cg}/unified/${name}`;
  for (const d of [`${app}/kid`, pids, v2]) mkdirSync(d, { recursive: true });
  writeFileSync(`${app}/memory.limit_in_bytes`, String(48 << 20));
  writeFileSync(`${pids}/pids.max`, "64");
  const remove = () => {
    for (const d of [`${app}/kid`, app, `${cg}/memory/${name}`, pids, v2]) {
      for (let i = 0; i < 200 && existsSync(d); i++) {
        try {
          rmdirSync(d);
        } catch {
          spawnSync("sleep", ["0.02"]);
        }
      }
    }
  };
  return { args: [`${app}/cgroup.procs`, `${pids}/cgroup.procs`, `${v2}/cgroup.procs`, "--", `${app}/kid/cgroup.procs`], remove };
}

const CASES: Array<{ name: string; args?: string[]; extra?: string[]; cgroups?: boolean }> = [
  { name: "sk-unix" }, { name: "sk-unix-scm" }, { name: "sk-inet", args: ["all"], extra: ["--tcp-established"] },
  { name: "sk-netlink" }, { name: "sk-packet" }, { name: "tty-pty" }, { name: "files-pipes" }, { name: "threads", args: ["4"] },
  { name: "signals" }, { name: "timers" }, { name: "fds-epoll" }, { name: "fds-inotify" }, { name: "maps-objects" },
  { name: "cgroups", cgroups: true },
];

const criu = process.env.CREST_CRIU ?? spawnSync("sh", ["-c", "command -v criu"], { encoding: "utf8" }).stdout.trim();
if (!criu || spawnSync(criu, ["check"]).status !== 0) {
  console.log(`interop: no working criu (CREST_CRIU=${process.env.CREST_CRIU ?? ""}, criu on PATH: ${criu || "none"}); nothing to compare`);
  process.exit(0);
}

/** One cycle: `dumper` dumps a fresh workload, `restorer` restores it; the workload's verdict (first line) or what failed. */
function cycle(c: (typeof CASES)[number], dumper: string, restorer: string): string {
  const cg = c.cgroups ? cgroupsFor(`${name(dumper)}-${name(restorer)}`) : undefined;
  const w = startWorkload(c.name, cg?.args ?? c.args ?? []);
  try {
    const dir = imagesDir(w, "imgs-interop");
    mkdirSync(dir, { recursive: true });
    const run = (bin: string, args: string[]) => spawnSync(bin, [...args, "-v4", ...(c.extra ?? [])], { encoding: "utf8" });
    const d = run(dumper, ["dump", "-t", String(w.pid), "-D", dir, "-o", "dump.log"]);
    if (d.status !== 0) return `dump failed (${dir}/dump.log)`;
    waitTreeGone(w, dir);
    cg?.remove();
    const r = run(restorer, ["restore", "-D", dir, "-o", "restore.log", "-d"]);
    if (r.status !== 0) return `restore failed (${dir}/restore.log)`;
    try {
      return finish(w).split("\n")[0]!;
    } catch (e) {
      return `no report from the workload (${(e as Error).message})`;
    }
  } finally {
    stop(w);
    cg?.remove();
  }
}

const name = (bin: string) => (bin === CREST ? "crest" : "criu");
let defects = 0;
console.log(`criu: ${criu}\n`);
for (const c of CASES) {
  const own = cycle(c, criu, criu);
  const pass = own === "PASS";
  for (const [dumper, restorer] of [[criu, CREST], [CREST, criu]] as const) {
    const got = cycle(c, dumper, restorer);
    const bad = got !== "PASS" && pass;
    if (bad) defects++;
    const note = got === "PASS" ? "" : bad ? "  <- criu's own cycle passes" : `  (criu's own: ${own})`;
    console.log(`${c.name.padEnd(14)} ${name(dumper)} dump, ${name(restorer)} restore: ${got}${note}`);
  }
}

/**
 * An image chain: crest pre-dumps, then dumps with --prev-images-dir and
 * --track-mem (criu 4.2 cannot pre-dump here: no soft-dirty), and `extra`
 * (--precopy: a layer more in the chain); `restorer` restores through the chain.
 */
function chainCycle(restorer: string, extra: string[]): string {
  const w = startWorkload("memwrite", ["16", "200"]);
  try {
    const pre = imagesDir(w, "pre"), dir = imagesDir(w, "final");
    const p = spawnSync(CREST, ["pre-dump", "-t", String(w.pid), "-D", pre, "-o", "pre-dump.log", "-v4"], { encoding: "utf8" });
    if (p.status !== 0) return `pre-dump failed (${pre}/pre-dump.log)`;
    const d = spawnSync(CREST, ["dump", "-t", String(w.pid), "-D", dir, "--prev-images-dir", "../pre", "--track-mem", ...extra, "-o", "dump.log", "-v4"], { encoding: "utf8" });
    if (d.status !== 0) return `dump failed (${dir}/dump.log)`;
    waitTreeGone(w, dir);
    const r = spawnSync(restorer, ["restore", "-D", dir, "-o", "restore.log", "-v4", "-d"], { encoding: "utf8" });
    if (r.status !== 0) return `restore failed (${dir}/restore.log)`;
    return finish(w).split("\n")[0]!;
  } finally {
    stop(w);
  }
}
for (const extra of [[], ["--precopy"]]) {
  for (const restorer of [CREST, criu]) {
    const got = chainCycle(restorer, extra);
    if (got !== "PASS") defects++;
    console.log(`${"memwrite".padEnd(14)} crest pre-dump + dump ${["--track-mem", ...extra].join(" ")}, ${name(restorer)} restore: ${got}`);
  }
}
console.log(defects ? `\n${defects} cycle(s) with crest fail where criu's own passes` : "\nevery cycle with crest does as well as criu's own");
process.exit(defects ? 1 : 0);
