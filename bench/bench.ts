// npm run bench: checkpoint and restore a process with 1 GiB (CREST_BENCH_MIB)
// of non-zero memory, reported against a reference measured in the same run:
// writing as many fresh pages to the same filesystem. Then the time against
// the number of tasks: trees of 1, 10 and 100 processes, and one process
// with 100 threads. With a working `criu` on PATH, the same is measured for it.
import { spawnSync } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { native } from "../src/sys/native.js";
import { IMG, readImage } from "../src/images/index.js";
import { crest, finish, imagesDir, startWorkload, stop, waitTreeGone, alive, type Workload } from "../test/cr/harness.js";

const MIB = Number(process.env.CREST_BENCH_MIB ?? 1024);
const bytes = MIB << 20;
const secs = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;
const gbs = (s: number) => (bytes / s / 1e9).toFixed(2);

/** Writes `bytes` of fresh non-zero pages to a new file, as a dump must. */
function reference(file: string): number {
  const chunk = Buffer.from(native.aligned(16 << 20));
  chunk.fill(0x5a);
  const fd = openSync(file, "w");
  const t0 = process.hrtime.bigint();
  for (let done = 0; done < bytes; done += chunk.length) writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - done));
  closeSync(fd);
  return secs(t0);
}

interface Result { dump: number; frozen: number; restore: number; verdict: string }

function run(tool: string, cmd: (args: string[]) => { code: number; stderr: string }, w: Workload): Result {
  const dir = imagesDir(w, `imgs-${tool}`);
  mkdirSync(dir, { recursive: true });
  let t0 = process.hrtime.bigint();
  const d = cmd(["dump", "-t", String(w.pid), "-D", dir, "-o", "dump.log"]);
  const dump = secs(t0);
  if (d.code !== 0) throw new Error(`${tool} dump failed: ${d.stderr}`);
  const stats = readImage(dir, IMG.stats, "dump")[0]!.dump!;
  waitTreeGone(w, dir);
  t0 = process.hrtime.bigint();
  const r = cmd(["restore", "-D", dir, "-o", "restore.log", "-d"]);
  const restore = secs(t0);
  if (r.code !== 0 || !alive(w.pid)) throw new Error(`${tool} restore failed: ${r.stderr}`);
  const verdict = finish(w);
  rmSync(dir, { recursive: true, force: true });
  return { dump, frozen: stats.frozen_time / 1e6, restore, verdict };
}

function criuWorks(): string | null {
  const which = spawnSync("sh", ["-c", "command -v criu"], { encoding: "utf8" });
  if (which.status !== 0) return "criu is not on PATH";
  const check = spawnSync("criu", ["check"], { encoding: "utf8" });
  return check.status === 0 ? null : `criu check fails here: ${(check.stderr || check.stdout).trim().split("\n").pop()}`;
}

const ROUNDS = Number(process.env.CREST_BENCH_ROUNDS ?? 3);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const medianResult = (rs: Result[]): Result => ({
  dump: median(rs.map((r) => r.dump)), frozen: median(rs.map((r) => r.frozen)), restore: median(rs.map((r) => r.restore)),
  verdict: rs.every((r) => r.verdict === "PASS") ? "PASS" : rs.map((r) => r.verdict).join("; "),
});

const tmp = mkdtempSync("/tmp/crest-bench-");
const refs: number[] = [];

// On a VM, memory the guest touches for the first time is several times
// slower than memory it reuses: touch enough first that the reference and
// the tools all run on reused memory.
for (let i = 0; i < 4; i++) reference(join(tmp, `warmup-${i}.img`));
rmSync(tmp, { recursive: true });
mkdirSync(tmp);

type Tool = Parameters<typeof run>[1];

/** Runs one tool ROUNDS times on fresh workloads; with `reference`, each round also writes the reference. */
function measure(tool: string, cmd: Tool, workload: string, args: string[], withReference: boolean): Result {
  const rs: Result[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const w = startWorkload(workload, args);
    const refFile = join(tmp, "reference.img");
    try {
      if (withReference) {
        refs.push(reference(refFile));
        rmSync(refFile);
      }
      rs.push(run(tool, cmd, w));
    } finally {
      stop(w);
    }
  }
  return medianResult(rs);
}

const criuWhy = criuWorks();
const tools: Array<[string, Tool]> = [["crest", crest]];
if (!criuWhy) {
  tools.push(["criu", (a) => {
    const r = spawnSync("criu", a, { encoding: "utf8" });
    return { code: r.status ?? -1, stderr: r.stderr };
  }]);
}
const results = tools.map(([tool, cmd]) => [tool, measure(tool, cmd, "bigmem", [String(MIB)], true)] as const);
const TASKS: Array<[string, string, number]> = [["forest", "1", 1], ["forest", "10", 10], ["forest", "100", 100], ["threads", "100", 101]];
const perTasks = tools.map(([tool, cmd]) => [tool, TASKS.map(([w, arg, n]) => [`${w} ${arg}`, n, measure(tool, cmd, w, [arg], false)] as const)] as const);
const ref = median(refs);
const line = (name: string, s: number, extra = "") => console.log(`${name.padEnd(26)} ${s.toFixed(3).padStart(7)} s  ${gbs(s).padStart(5)} GB/s  ${(ref / s).toFixed(2)}x reference${extra}`);
console.log(`${MIB} MiB of non-zero memory, images in ${tmp}, median of ${ROUNDS} runs\n`);

line("reference: write pages", ref);
for (const [tool, r] of results) {
  line(`${tool} dump`, r.dump, `, frozen ${r.frozen.toFixed(3)} s`);
  line(`${tool} restore`, r.restore, `, verdict ${r.verdict}`);
}
console.log("\ntime against the number of tasks (wall, including ~0.2 s of crest start-up)");
console.log(`${"".padEnd(26)} ${"tasks".padStart(5)}  ${"dump".padStart(7)}  ${"restore".padStart(7)}  per task`);
for (const [tool, rows] of perTasks) {
  for (const [name, n, r] of rows) {
    console.log(`${`${tool} ${name}`.padEnd(26)} ${String(n).padStart(5)}  ${r.dump.toFixed(3).padStart(6)}s  ${r.restore.toFixed(3).padStart(6)}s  ${(((r.dump + r.restore) / n) * 1000).toFixed(1)} ms, verdict ${r.verdict}`);
  }
}
if (criuWhy) console.log(`\ncriu: not measured (${criuWhy})`);
rmSync(tmp, { recursive: true, force: true });
