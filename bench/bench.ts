// npm run bench: crest beside criu, in one run, on the same workloads.
//
// Memory: a process with 1 GiB (CREST_BENCH_MIB) of non-zero memory dumped
// and restored, against a reference measured in the same run: writing as
// many fresh pages to the same filesystem, which a dump must do. Tasks:
// trees of 1, 10 and 100 processes and one process with 100 threads. TCP:
// one process holding 1,000 and 200 (CREST_BENCH_CONNS, comma-separated)
// established loopback connections, both ends, 100 bytes in flight each way,
// dumped and restored with --tcp-established, and what crest's network lock
// and unlock took (criu 4.2 built here aborts dumping more than about 250 of
// them with nftables: "bit out of range 0 - FD_SETSIZE on fd_set").
// A tool that fails a row gets the row marked, and the run goes on.
// Every row gives crest's time as a ratio of criu's, and crest's injected
// syscalls and ptrace stops per task.
//
// VNC: CRIU's wiki scenario (test/vnc/scenario.ts): Xvnc, icewm, an X client
// drawing through MIT-SHM, in new PID and IPC namespaces, a TigerVNC viewer
// connected over TCP, dumped and restored with the wiki's options; icewm's
// network status applet is off for both tools (criu cannot restore the
// /proc/PID/net/dev it holds); skipped without the X programs.
// CREST_BENCH_VNC_XTERM=1 adds the wiki's xterm with a shell (criu 4.2
// refuses to dump it here: "ctty inheritance detected"; its row then says so).
//
// Memory in motion (bench/memory-motion.ts): the frozen time of dump
// --leave-running (snapshots) and of a dump after a pre-dump, and how soon a
// lazy restore runs the tasks and has every page in, 1 and 4 GiB.
//
// RPC: the service under load (bench/rpc-load.ts): 20 clients at once
// dumping and restoring their own process through `crest service` (and
// `criu service`), 500 requests, with the service's memory over the run.
//
// criu is CREST_BENCH_CRIU, or `criu` on PATH: any criu-compatible binary
// that `check`s fine here. Without one the run says so and gives crest's
// rows alone.
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { native } from "../src/sys/native.js";
import { IMG, readImage } from "../src/images/index.js";
import { CREST, finish, imagesDir, startWorkload, stop, waitTreeGone, alive, type Workload } from "../test/cr/harness.js";
import { missingPrograms, VncSession } from "../test/vnc/scenario.js";
import { printRpcLoad } from "./rpc-load.js";
import { printPodmanCr } from "./podman-cr.js";
import { printMemoryInMotion } from "./memory-motion.js";

const MIB = Number(process.env.CREST_BENCH_MIB ?? 1024);
const CONNS = (process.env.CREST_BENCH_CONNS ?? "1000,200").split(",").map(Number);
const ROUNDS = Number(process.env.CREST_BENCH_ROUNDS ?? 5);
const bytes = MIB << 20;
const secs = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

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

interface Tool {
  name: string;
  bin: string;
}

interface Result {
  dump: number;
  frozen: number;
  restore: number;
  /** crest's injected syscalls and ptrace stops, dump + restore (from --display-stats); NaN for criu. */
  syscalls: number;
  stops: number;
  verdict: string;
  /** ms crest's network lock and unlock took, from its logs (NaN for criu, or without connections). */
  lockMs: number;
  unlockMs: number;
}

/** The "Injected syscalls" and "Ptrace stops" lines crest's --display-stats prints. */
function remoteCounts(out: string): { syscalls: number; stops: number } {
  const n = (what: string) => Number(new RegExp(`^${what}: (\\d+)$`, "m").exec(out)?.[1] ?? NaN);
  return { syscalls: n("Injected syscalls"), stops: n("Ptrace stops") };
}

/** "... with nftables in 12.3 ms": what crest's log says the lock (or unlock) took. */
function lockTime(log: string, what: "Locked" | "Unlocked"): number {
  return Number(new RegExp(`${what} the network of \\d+ TCP connection\\(s\\).* in ([\\d.]+) ms`).exec(log)?.[1] ?? NaN);
}

function cycle(tool: Tool, w: Workload, extra: string[]): Result {
  const dir = imagesDir(w, `imgs-${tool.name}`);
  // criu needs the directory to exist; crest would make it.
  mkdirSync(dir, { recursive: true });
  const cmd = (args: string[]) => spawnSync(tool.bin, [...args, ...extra, "--display-stats"], { encoding: "utf8" });
  let t0 = process.hrtime.bigint();
  const d = cmd(["dump", "-t", String(w.pid), "-D", dir, "-o", "dump.log"]);
  const dump = secs(t0);
  if (d.status !== 0) throw new Error(`${tool.name} dump failed: ${d.stderr}`);
  const frozen = readImage(dir, IMG.stats, "dump")[0]!.dump!.frozen_time / 1e6;
  waitTreeGone(w, dir);
  t0 = process.hrtime.bigint();
  const r = cmd(["restore", "-D", dir, "-o", "restore.log", "-d"]);
  const restore = secs(t0);
  if (r.status !== 0 || !alive(w.pid)) throw new Error(`${tool.name} restore failed: ${r.stderr}`);
  const verdict = finish(w);
  const logs = ["dump.log", "restore.log"].map((f) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), "utf8") : ""));
  rmSync(dir, { recursive: true, force: true });
  const a = remoteCounts(d.stdout), b = remoteCounts(r.stdout);
  return {
    dump, frozen, restore, syscalls: a.syscalls + b.syscalls, stops: a.stops + b.stops, verdict,
    lockMs: lockTime(logs[0]!, "Locked"), unlockMs: lockTime(logs[1]!, "Unlocked"),
  };
}

/**
 * Runs every tool ROUNDS times on fresh workloads, the tools taking turns
 * within each round (so that drift in the machine's state weighs on them
 * alike); the median of each figure, per tool.
 */
function measure(workload: string, args: string[], each?: () => void, extra: string[] = []): Result[] {
  const rs: Result[][] = tools.map(() => []);
  for (let i = 0; i < ROUNDS; i++) {
    tools.forEach((tool, t) => {
      // A tool that failed this row once is not run again on it; the row says why.
      if (rs[t]!.some((r) => Number.isNaN(r.dump) || Number.isNaN(r.restore))) return;
      const w = startWorkload(workload, args, workload === "bigmem" ? { mib: Number(args[0]) } : {});
      try {
        each?.();
        rs[t]!.push(cycle(tool, w, extra));
      } catch (e) {
        rs[t]!.push({ ...failed, verdict: `FAIL: ${(e as Error).message.split("\n").filter(Boolean).slice(0, 2).join(" ")}` });
        dropLeftLocks(tool);
      } finally {
        stop(w);
      }
    });
  }
  return rs.map(medianOf);
}

const failed: Result = { dump: NaN, frozen: NaN, restore: NaN, syscalls: NaN, stops: NaN, verdict: "", lockMs: NaN, unlockMs: NaN };

/** criu killed in the middle of a dump leaves its nftables lock (table inet CRIU-...) behind: removed, and said. */
function dropLeftLocks(tool: Tool): void {
  const tables = spawnSync("nft", ["list", "tables"], { encoding: "utf8" }).stdout ?? "";
  for (const [, family, name] of tables.matchAll(/^table (\S+) (CRIU-\S+)$/gm)) {
    console.error(`bench: removing the network lock ${tool.name} left behind (table ${family} ${name})`);
    spawnSync("nft", ["delete", "table", family!, name!]);
  }
}

function medianOf(rs: Result[]): Result {
  // A figure some round could not give (its tool failed there) is not given.
  const m = (f: (r: Result) => number) => (rs.some((r) => Number.isNaN(f(r))) ? NaN : median(rs.map(f)));
  return {
    dump: m((r) => r.dump), frozen: m((r) => r.frozen), restore: m((r) => r.restore), syscalls: m((r) => r.syscalls),
    stops: m((r) => r.stops), lockMs: m((r) => r.lockMs), unlockMs: m((r) => r.unlockMs), verdict: rs.every((r) => r.verdict === "PASS") ? "PASS" : rs.map((r) => r.verdict).join("; "),
  };
}

/** The criu to compare with, or why there is none. */
function findCriu(): Tool | string {
  const bin = process.env.CREST_BENCH_CRIU ?? spawnSync("sh", ["-c", "command -v criu"], { encoding: "utf8" }).stdout.trim();
  if (!bin) return "criu is not on PATH and CREST_BENCH_CRIU is not set";
  const check = spawnSync(bin, ["check"], { encoding: "utf8" });
  if (check.status !== 0) return `${bin} check fails here: ${(check.stderr || check.stdout || String(check.error)).trim().split("\n").pop()}`;
  return { name: "criu", bin };
}

const tmp = mkdtempSync("/tmp/crest-bench-");
// On a VM, memory the guest touches for the first time is several times
// slower than memory it reuses: touch enough first that the reference and
// the tools all run on reused memory.
for (let i = 0; i < 4; i++) reference(join(tmp, `warmup-${i}.img`));
rmSync(tmp, { recursive: true });
mkdirSync(tmp);

const crest: Tool = { name: "crest", bin: CREST };
const criu = findCriu();
const tools = typeof criu === "string" ? [crest] : [crest, criu];

const refs: number[] = [];
const refFile = join(tmp, "reference.img");
const memory = measure("bigmem", [String(MIB)], () => {
  refs.push(reference(refFile));
  rmSync(refFile);
});
const ref = median(refs);
const TASKS: Array<[string, string, number]> = [["forest", "1", 1], ["forest", "10", 10], ["forest", "100", 100], ["threads", "100", 101]];
const perTasks = TASKS.map(([w, arg, n]) => ({ name: `${w} ${arg}`, n, rs: measure(w, [arg]) }));
// -v3: the lock's timings are info lines of crest's log.
// Both tools lock with nftables: criu's default, iptables, adds and removes a rule a connection (its restore of 1,000 took 156 s here).
const tcp = CONNS.map((n) => ({ n, rs: measure("sk-inet", ["many", String(n)], undefined, ["--tcp-established", "--network-lock", "nftables", "-v3"]) }));

/**
 * The VNC tree, ROUNDS times per tool, taking turns: a new session each
 * time, dumped and restored once; the verdict says whether the viewer that
 * stayed connected shows what the MIT-SHM client painted after the restore,
 * and what the client found of its segment.
 */
function measureVnc(): Result[] {
  const rs: Result[][] = tools.map(() => []);
  for (let i = 0; i < ROUNDS; i++) {
    tools.forEach((tool, t) => {
      const session = VncSession.start({ xterm: process.env.CREST_BENCH_VNC_XTERM === "1", netStatus: false, dir: mkdtempSync(join(tmp, "vnc-")) });
      try {
        session.connectViewer(0);
        session.paint(0x3050e0);
        session.waitViewerShows(0, 0x3050e0);
        const dir = join(session.dir, `imgs-${tool.name}`);
        const row: Result = { ...failed };
        try {
          const d = session.dump(dir, tool.bin);
          Object.assign(row, { dump: d.ms / 1000, frozen: d.frozenMs / 1000 });
          row.restore = session.restore(dir, tool.bin).ms / 1000;
          session.paint(0xe0c020);
          session.waitViewerShows(0, 0xe0c020);
          row.verdict = session.shmClientVerdict();
        } catch (e) {
          // A tool that cannot dump or restore the tree (criu and the xterm) gets its row marked, not the bench stopped.
          row.verdict = `FAIL: ${(e as Error).message.split("\n").filter(Boolean).slice(0, 2).join(" ")}`;
        }
        rs[t]!.push(row);
      } finally {
        session.stop();
        rmSync(session.dir, { recursive: true, force: true });
      }
    });
  }
  return rs.map(medianOf);
}
const vncMissing = missingPrograms();
const vnc = vncMissing.names.length ? undefined : measureVnc();

const s = (x: number) => (Number.isNaN(x) ? "failed" : `${x.toFixed(3)} s`);
const ratio = (a: number, b: number | undefined) => (b === undefined || Number.isNaN(a / b) ? "" : `${(a / b).toFixed(2)}x`);
// Each round's verdict, once each (every round of a tool tends to say the same).
const verdicts = (rs: Result[]) => rs.map((r, i) => (r.verdict === "PASS" ? "" : ` ${tools[i]!.name}: ${[...new Set(r.verdict.split("; "))].join("; ")}`)).join("");

console.log(`crest${typeof criu === "string" ? "" : ` and criu (${criu.bin})`}, median of ${ROUNDS} runs, images in ${tmp}`);
console.log(`\n${MIB} MiB of non-zero memory`);
console.log(`${"".padEnd(24)}${"crest".padStart(10)}${tools.length > 1 ? `${"criu".padStart(10)}${"crest/criu".padStart(12)}` : ""}${"vs reference".padStart(14)}`);
console.log(`${"reference: write pages".padEnd(24)}${s(ref).padStart(10)}`);
const [cm, km] = memory;
for (const [row, f] of [["dump", (r: Result) => r.dump], ["  frozen", (r: Result) => r.frozen], ["restore", (r: Result) => r.restore]] as const) {
  const a = f(cm!), b = km && f(km);
  console.log(`${row.padEnd(24)}${s(a).padStart(10)}${b !== undefined ? `${s(b).padStart(10)}${ratio(a, b).padStart(12)}` : ""}${row === "  frozen" ? "" : `${(ref / a).toFixed(2)}x`.padStart(14)}`);
}
if (verdicts(memory)) console.log(`verdicts:${verdicts(memory)}`);

console.log("\nTasks (wall time of each command, start-up included)");
console.log(`${"".padEnd(14)}${"tasks".padStart(6)}${"crest dump".padStart(12)}${"restore".padStart(10)}` +
  `${tools.length > 1 ? `${"criu dump".padStart(11)}${"restore".padStart(10)}${"dump".padStart(7)}${"restore".padStart(9)}` : ""}` +
  `${"syscalls".padStart(10)}${"stops".padStart(8)} per task`);
for (const { name, n, rs } of perTasks) {
  const [c, k] = rs;
  console.log(`${name.padEnd(14)}${String(n).padStart(6)}${s(c!.dump).padStart(12)}${s(c!.restore).padStart(10)}` +
    `${k ? `${s(k.dump).padStart(11)}${s(k.restore).padStart(10)}${ratio(c!.dump, k.dump).padStart(7)}${ratio(c!.restore, k.restore).padStart(9)}` : ""}` +
    `${(c!.syscalls / n).toFixed(0).padStart(10)}${(c!.stops / n).toFixed(0).padStart(8)}${verdicts(rs)}`);
}
for (const { n, rs } of tcp) {
  const [c, k] = rs;
  console.log(`\nTCP: ${n} established loopback connections (both ends in one process), --tcp-established --network-lock nftables`);
  console.log(`${"".padEnd(24)}${"crest".padStart(10)}${k ? `${"criu".padStart(10)}${"crest/criu".padStart(12)}` : ""}`);
  for (const [row, f] of [["dump", (r: Result) => r.dump], ["  frozen", (r: Result) => r.frozen], ["restore", (r: Result) => r.restore]] as const) {
    console.log(`${row.padEnd(24)}${s(f(c!)).padStart(10)}${k ? `${s(f(k)).padStart(10)}${ratio(f(c!), f(k)).padStart(12)}` : ""}`);
  }
  console.log(`${"  network lock".padEnd(24)}${`${c!.lockMs.toFixed(1)} ms`.padStart(10)}`);
  console.log(`${"  network unlock".padEnd(24)}${`${c!.unlockMs.toFixed(1)} ms`.padStart(10)}`);
  if (verdicts(rs)) console.log(`verdicts:${verdicts(rs)}`);
}
if (vnc) {
  const [c, k] = vnc;
  console.log(`\nVNC: Xvnc, icewm (network status applet off), an MIT-SHM client${process.env.CREST_BENCH_VNC_XTERM === "1" ? ", an xterm with a shell" : ""} in new PID and IPC namespaces, a viewer connected over TCP;`);
  console.log("     dump -v4 --tcp-established, restore -v4 --tcp-established -d (the wiki's options)");
  console.log(`${"".padEnd(24)}${"crest".padStart(10)}${k ? `${"criu".padStart(10)}${"crest/criu".padStart(12)}` : ""}`);
  for (const [row, f] of [["dump", (r: Result) => r.dump], ["  frozen", (r: Result) => r.frozen], ["restore", (r: Result) => r.restore]] as const) {
    console.log(`${row.padEnd(24)}${s(f(c!)).padStart(10)}${k ? `${s(f(k)).padStart(10)}${ratio(f(c!), f(k)).padStart(12)}` : ""}`);
  }
  if (verdicts(vnc)) console.log(`verdicts:${verdicts(vnc)}`);
} else {
  console.log(`\nVNC: not measured (the scenario needs ${vncMissing.names.join(", ")}; apt-get install ${vncMissing.packages.join(" ")})`);
}
// Frozen time of snapshots and pre-dump chains: bench/memory-motion.ts.
printMemoryInMotion(tools, tmp, Math.min(ROUNDS, 3));
// podman checkpoint and restore of a container, crest and criu as its criu: bench/podman-cr.ts.
printPodmanCr(tools, tmp, ROUNDS);
// The service under load: bench/rpc-load.ts.
if (!printRpcLoad(tools)) process.exitCode = 1;
if (typeof criu === "string") console.log(`\ncriu: not measured (${criu})`);
rmSync(tmp, { recursive: true, force: true });
