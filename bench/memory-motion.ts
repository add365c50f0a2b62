// Memory in motion (issue 13), for each size in CREST_BENCH_MOTION_MIB
// (MiB, comma-separated; default 1024,4096): how long a dump keeps the
// task frozen, three ways.
//   - plain dump (the task killed): crest, and criu in the same run;
//   - crest dump --leave-running: frozen only to take the state and fork
//     the snapshot (snapshot.ts); also the whole command's time;
//   - crest pre-dump, then dump --prev-images-dir --track-mem of a process
//     writing 10% of its memory a second (memwrite): the final dump's frozen
//     time (criu 4.2 cannot pre-dump here: no soft-dirty); and the same with
//     dump --precopy (crest's own: the pages written since the pre-dump copied
//     once more while the tree runs, right before the freeze).
// And a lazy restore (restore --lazy-pages with crest lazy-pages) of a plain
// dump: the restore command's time, at whose end the tasks run, and the time
// until the daemon has every page in and exits.
// The snapshot's, the chain's and the lazy restore's images are restored and
// the workload's own check must pass.
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { IMG, readImage } from "../src/images/index.js";
import { alive, finish, procState, startWorkload, stop, waitFor, waitTreeGone, type Workload } from "../test/cr/harness.js";

interface Tool {
  name: string;
  bin: string;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const frozenOf = (dir: string) => readImage(dir, IMG.stats, "dump")[0]!.dump!.frozen_time / 1e6;
const secs = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

function run(bin: string, args: string[]): void {
  const r = spawnSync(bin, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${bin} ${args[0]} failed: ${r.stderr.trim().split("\n").pop()}`);
}

function ready(w: Workload): void {
  waitFor(`${w.name} to be ready`, () => (readFileSync(w.status, "utf8").startsWith("ready") ? true : null), 300_000);
}

/** Restores `dir` with crest and returns the workload's verdict. */
function restored(crest: string, w: Workload, dir: string): string {
  waitTreeGone(w, dir);
  run(crest, ["restore", "-D", dir, "-d"]);
  if (!alive(w.pid)) return "FAIL: not running after the restore";
  return finish(w);
}

/** A plain dump's frozen time (s) of a fresh bigmem of `mib`, by `tool`. */
function plain(tool: Tool, mib: number, tmp: string): number {
  const w = startWorkload("bigmem", [String(mib)], { mib });
  try {
    ready(w);
    const dir = join(tmp, `plain-${tool.name}`);
    mkdirSync(dir, { recursive: true });
    run(tool.bin, ["dump", "-t", String(w.pid), "-D", dir]);
    const f = frozenOf(dir);
    waitTreeGone(w, dir);
    rmSync(dir, { recursive: true, force: true });
    return f;
  } finally {
    stop(w);
  }
}

/** crest dump --leave-running of a fresh bigmem: frozen time, whole command, the restore's verdict. */
function snapshot(crest: string, mib: number, tmp: string): { frozen: number; wall: number; verdict: string } {
  const w = startWorkload("bigmem", [String(mib)], { mib });
  const dir = join(tmp, "snapshot");
  try {
    ready(w);
    const t0 = process.hrtime.bigint();
    run(crest, ["dump", "-t", String(w.pid), "-D", dir, "-R"]);
    const wall = secs(t0);
    process.kill(w.pid, "SIGKILL");
    return { frozen: frozenOf(dir), wall, verdict: restored(crest, w, dir) };
  } finally {
    stop(w);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** crest pre-dump, then the final dump of memwrite writing 10% of its pages a second: the final dump's frozen time. */
function chain(crest: string, mib: number, tmp: string, extra: string[] = []): { frozen: number; preFrozen: number; verdict: string } {
  const pages = mib * 256;
  const w = startWorkload("memwrite", [String(mib), String(Math.max(1, Math.floor(pages / 10)))], { mib });
  const pre = join(tmp, "pre"), final = join(tmp, "final");
  try {
    ready(w);
    run(crest, ["pre-dump", "-t", String(w.pid), "-D", pre]);
    run(crest, ["dump", "-t", String(w.pid), "-D", final, "--prev-images-dir", "../pre", "--track-mem", ...extra]);
    return { frozen: frozenOf(final), preFrozen: frozenOf(pre), verdict: restored(crest, w, final) };
  } finally {
    stop(w);
    rmSync(pre, { recursive: true, force: true });
    rmSync(final, { recursive: true, force: true });
  }
}

/** Whether pid runs (a process that exited may stay a zombie a while until PID 1 reaps it). */
function running(pid: number): boolean {
  try {
    return !/^[ZX]/.test(procState(pid).state);
  } catch {
    return false;
  }
}

/**
 * A lazy restore of a fresh bigmem's plain dump: the restore command's time
 * (the tasks run at its end, their memory still in the images) and the time
 * until the daemon has put every page in place and exited, both from the
 * restore's start.
 */
function lazyRestore(crest: string, mib: number, tmp: string): { start: number; all: number; verdict: string } {
  const w = startWorkload("bigmem", [String(mib)], { mib });
  const dir = join(tmp, "lazy");
  try {
    ready(w);
    run(crest, ["dump", "-t", String(w.pid), "-D", dir]);
    waitTreeGone(w, dir);
    const pidfile = join(tmp, "lazy-pages.pid");
    run(crest, ["lazy-pages", "-D", dir, "-d", "--pidfile", pidfile]);
    const daemon = Number(readFileSync(pidfile, "utf8"));
    const t0 = process.hrtime.bigint();
    run(crest, ["restore", "-D", dir, "--lazy-pages", "-d"]);
    const start = secs(t0);
    waitFor("the lazy-pages daemon to have every page in", () => (running(daemon) ? null : true), 300_000);
    const all = secs(t0);
    return { start, all, verdict: alive(w.pid) ? finish(w) : "FAIL: not running after the restore" };
  } finally {
    stop(w);
    rmSync(dir, { recursive: true, force: true });
  }
}

export function printMemoryInMotion(tools: readonly Tool[], tmp: string, rounds: number): void {
  const sizes = (process.env.CREST_BENCH_MOTION_MIB ?? "1024,4096").split(",").map(Number);
  const crest = tools.find((t) => t.name === "crest")!;
  const criu = tools.find((t) => t.name === "criu");
  const ms = (x: number) => `${(x * 1000).toFixed(1)} ms`;
  console.log(`\nMemory in motion: frozen time of a dump (median of ${rounds})`);
  console.log(`${"".padEnd(46)}${"frozen".padStart(12)}${"vs criu plain".padStart(15)}${"vs crest plain".padStart(16)}`);
  for (const mib of sizes) {
    const crestPlain: number[] = [], criuPlain: number[] = [], snap: ReturnType<typeof snapshot>[] = [], ch: ReturnType<typeof chain>[] = [], pc: ReturnType<typeof chain>[] = [];
    const lazy: ReturnType<typeof lazyRestore>[] = [];
    try {
      for (let i = 0; i < rounds; i++) {
        crestPlain.push(plain(crest, mib, tmp));
        if (criu) criuPlain.push(plain(criu, mib, tmp));
        snap.push(snapshot(crest.bin, mib, tmp));
        ch.push(chain(crest.bin, mib, tmp));
        pc.push(chain(crest.bin, mib, tmp, ["--precopy"]));
        lazy.push(lazyRestore(crest.bin, mib, tmp));
      }
    } catch (e) {
      console.log(`${mib} MiB: failed: ${(e as Error).message}`);
      continue;
    }
    const base = criuPlain.length ? median(criuPlain) : NaN, own = median(crestPlain);
    const row = (name: string, x: number) => {
      const pct = (b: number) => (Number.isNaN(b) ? "" : `${((x / b) * 100).toFixed(1)}%`);
      console.log(`${name.padEnd(46)}${ms(x).padStart(12)}${pct(base).padStart(15)}${pct(own).padStart(16)}`);
    };
    console.log(`${mib} MiB`);
    if (criuPlain.length) row("  criu dump (plain)", base);
    row("  crest dump (plain)", own);
    row("  crest dump --leave-running (snapshot)", median(snap.map((s) => s.frozen)));
    console.log(`${"    whole command".padEnd(46)}${`${median(snap.map((s) => s.wall)).toFixed(3)} s`.padStart(12)}`);
    row("  crest pre-dump", median(ch.map((c) => c.preFrozen)));
    row("  crest dump after a pre-dump (10%/s written)", median(ch.map((c) => c.frozen)));
    row("    the same with --precopy", median(pc.map((c) => c.frozen)));
    console.log(`${"  crest restore --lazy-pages: tasks run after".padEnd(46)}${ms(median(lazy.map((l) => l.start))).padStart(12)}`);
    console.log(`${"    every page in place after".padEnd(46)}${ms(median(lazy.map((l) => l.all))).padStart(12)}`);
    const bad = [...snap, ...ch, ...pc, ...lazy].map((r) => r.verdict).filter((v) => v !== "PASS");
    if (bad.length) console.log(`  verdicts after restore: ${[...new Set(bad)].join("; ")}`);
  }
}
