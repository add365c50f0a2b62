// The harness for checkpoint/restore tests on real processes (the ZDTM idea):
// start a workload from test/workloads, wait until it is ready, dump it with
// the crest command, wait until its PID is free, restore it, tell it to check
// itself (SIGTERM) and read its verdict.
import assert from "node:assert/strict";
import { spawnSync, spawn } from "node:child_process";
import { chownSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, rmSync } from "node:fs";
import { basename, join } from "node:path";
import { native, projectRoot } from "../../src/sys/native.js";
import { SYS, PR, WNOHANG } from "../../src/sys/constants.js";
import { wait4, sleepMs } from "../../src/sys/syscalls.js";
import { IMG, readImage } from "../../src/images/index.js";
import { critBatch } from "../crit.js";

export const CREST = join(projectRoot(), "bin", "crest");
export const WORKLOADS = join(projectRoot(), "build", "workloads");

/**
 * The workload directories (images, logs) this test process made. A test
 * file whose tests all passed removes them as it exits (a full run made
 * several GB of them); after a failure they stay for a look. A directory
 * something is still mounted below stays too: removing it would reach into
 * the mount.
 */
const workloadDirs: string[] = [];
process.on("exit", (code) => {
  if (code !== 0 || process.env.CREST_KEEP_WORKLOADS) return;
  const mounted = readFileSync("/proc/self/mountinfo", "utf8").split("\n").map((l) => l.split(" ")[4] ?? "");
  for (const d of workloadDirs) {
    if (!mounted.some((m) => m === d || m.startsWith(`${d}/`))) rmSync(d, { recursive: true, force: true });
  }
});

// Orphans (restored with -d, after crest exits) come back to this process,
// so it can reap them and free their PIDs at once.
native.syscall(SYS.prctl, PR.SET_CHILD_SUBREAPER, 1, 0, 0, 0);

export interface Workload {
  name: string;
  pid: number;
  dir: string;
  status: string;
  log: string;
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the crest command and returns what it said. */
export function crest(args: string[], env: Record<string, string> = {}): Run {
  const r = spawnSync(CREST, args, { encoding: "utf8", env: { ...process.env, ...env }, timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Starts crest without waiting for it (restore in the foreground waits for its task). */
export function crestAsync(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(CREST, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

function readStatus(w: Workload): string {
  try {
    return readFileSync(w.status, "utf8");
  } catch {
    return "";
  }
}

/** Waits until fn() is truthy, or throws after ms. */
export function waitFor<T>(what: string, fn: () => T, ms = 10_000): T {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    sleepMs(10);
  }
}

/**
 * Starts a workload in its own session, stdin /dev/null, output to a log,
 * cwd a fresh directory; with `ns`, through `crest run --ns NS` (the root is
 * then PID 1 of its own PID namespace, and w.pid its PID out here). `fds`
 * become its fds 3, 4, ...; `env` is added to its environment
 * (CREST_WL_SABOTAGE=N); `loUp` brings the loopback of a new network
 * namespace up before the workload starts; `mib`: the memory it fills
 * before it is ready, which it is given time for (where new memory is
 * slow to touch, a few seconds a GiB).
 */
export function startWorkload(name: string, args: string[] = [], opts: { stdout?: number; ns?: string; fds?: number[]; env?: string[]; loUp?: boolean; mib?: number } = {}): Workload {
  const dir = mkdtempSync(`/tmp/crest-${name}-`);
  workloadDirs.push(dir);
  const w: Workload = { name, pid: 0, dir, status: join(dir, "status"), log: join(dir, "out.log") };
  let pid: number;
  // In a user namespace of its own (crest run: ids 0-65535 are 100000-165535 here) its root owns its directory.
  if (opts.ns?.split(",").includes("user")) chownSync(dir, 100000, 100000);
  if (opts.ns) {
    // loUp: a new network namespace's loopback is down; brought up before the workload starts (as zdtm's ns flavour does).
    const up = opts.loUp ? ["/bin/sh", "-c", 'ip link set lo up && exec "$0" "$@"'] : [];
    const env = { ...process.env, ...Object.fromEntries((opts.env ?? []).map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)])) };
    const r = spawnSync(CREST, ["run", "--ns", opts.ns, "--log", w.log, "--", ...up, join(WORKLOADS, name), w.status, ...args], { encoding: "utf8", cwd: dir, env });
    if (r.status !== 0) throw new Error(`crest run ${name} failed: ${r.stderr}`);
    pid = Number(r.stdout.trim());
  } else {
    const nul = openSync("/dev/null", "r");
    const out = openSync(w.log, "a");
    pid = native.spawn({
      path: join(WORKLOADS, name), argv: [name, w.status, ...args],
      env: ["PATH=/usr/bin:/bin", "LANG=C", ...(opts.env ?? [])], setsid: 1, fds: [nul, opts.stdout ?? out, out, ...(opts.fds ?? [])], cwd: dir,
    });
    closeSync(nul);
    closeSync(out);
  }
  if (pid < 0) throw new Error(`cannot start workload ${name}: errno ${-pid}`);
  w.pid = pid;
  waitFor(`${name} to get ready`, () => readStatus(w).startsWith("ready") || reapIfDead(w), 10_000 + (opts.mib ?? 0) * 25);
  if (!readStatus(w).startsWith("ready")) throw new Error(`${name} died before it was ready: ${readFileSync(w.log, "utf8")}`);
  return w;
}

/** Reaps the workload if it has exited; returns true then. */
function reapIfDead(w: Workload): boolean {
  return wait4(w.pid, WNOHANG) !== null;
}

/** A connected pair of unix stream sockets made by this process. */
export function socketpair(): [number, number] {
  const fds = new Int32Array(2);
  if (native.syscall(SYS.socketpair, 1 /* AF_UNIX */, 1 /* SOCK_STREAM */, 0, fds) < 0) throw new Error("socketpair failed");
  return [fds[0]!, fds[1]!];
}

/** A pipe made by this process: [read end, write end]. */
export function pipe(): [number, number] {
  const fds = new Int32Array(2);
  if (native.syscall(SYS.pipe2, fds, 0) < 0) throw new Error("pipe2 failed");
  return [fds[0]!, fds[1]!];
}

/** The state letter of /proc/PID/stat and the TracerPid of /proc/PID/status. */
export function procState(pid: number): { state: string; tracer: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return { state: stat.slice(stat.lastIndexOf(")") + 2)[0]!, tracer: Number(/TracerPid:\s*(\d+)/.exec(status)![1]) };
}

export function alive(pid: number): boolean {
  return existsSync(`/proc/${pid}`);
}

/** Waits until nothing holds pid any more, reaping it if it is our child. */
export function waitGone(pid: number): void {
  waitFor(`PID ${pid} to be free`, () => {
    try {
      wait4(pid, WNOHANG);
    } catch {
      // not our child (any more)
    }
    return !alive(pid);
  }, 15_000);
}

export function imagesDir(w: Workload, name = "imgs"): string {
  return join(w.dir, name);
}

/** Dumps the workload (killing it), checks the dump log, and waits for its PID to be free. */
export function dumpWorkload(w: Workload, extra: string[] = []): Run {
  const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log", "-v4", ...extra]);
  if (r.code !== 0) throw new Error(`crest dump of ${w.name} failed (${r.code}): ${r.stderr}\n${dumpLog(w)}`);
  if (!extra.includes("-R") && !extra.includes("-s")) waitTreeGone(w, imagesDir(w));
  return r;
}

/**
 * Waits until every PID of a dumped tree is free. The rest of a tree comes
 * back to this subreaper when its root dies: it is reaped here. (A tree in
 * its own PID namespace names other PIDs; the kernel reaps those with its init.)
 */
export function waitTreeGone(w: Workload, dir: string): void {
  waitGone(w.pid);
  const pids = readImage(dir, IMG.pstree).map((e) => e.pid);
  if (pids[0] === w.pid) pids.forEach(waitGone);
}

export function dumpLog(w: Workload, file = "dump.log"): string {
  const p = join(imagesDir(w), file);
  return existsSync(p) ? readFileSync(p, "utf8") : "";
}

/**
 * Restores the workload detached; it comes back with the same PID (in its
 * own PID namespace, the same PIDs inside: w.pid becomes its PID out here).
 */
export function restoreWorkload(w: Workload, extra: string[] = [], dir = imagesDir(w)): Run {
  const pidfile = join(w.dir, `restored-${Date.now()}.pid`);
  const r = crest(["restore", "-D", dir, "-o", "restore.log", "-v4", "-d", "--pidfile", pidfile, ...extra]);
  if (r.code !== 0) throw new Error(`crest restore of ${w.name} failed (${r.code}): ${r.stderr}\n${dumpLog(w, "restore.log")}`);
  w.pid = Number(readFileSync(pidfile, "utf8"));
  if (!alive(w.pid)) throw new Error(`${w.name} is not running after restore`);
  return r;
}

/**
 * The whole cycle on a started workload: dump, crit decodes every image,
 * `check` looks at the images, restore, and the workload's own verdict must
 * be PASS. The workload is stopped in any case.
 */
export function roundTrip(w: Workload, check?: (w: Workload) => void): void {
  try {
    dumpWorkload(w);
    const undecoded = critDecodeAll(imagesDir(w));
    if (undecoded.length) throw new Error(`crit cannot decode every image of ${w.name}:\n${undecoded.join("\n")}`);
    check?.(w);
    restoreWorkload(w);
    const verdict = finish(w);
    if (verdict !== "PASS") throw new Error(`${w.name} after restore: ${verdict}`);
  } finally {
    stop(w);
  }
}

/** roundTrip of a workload started here. */
export function cycle(name: string, args: string[] = [], check?: (w: Workload) => void, opts: { ns?: string; loUp?: boolean } = {}): void {
  roundTrip(startWorkload(name, args, opts), check);
}

/** Sends SIGTERM and returns the workload's verdict ("PASS" or "FAIL: ..."). */
export function finish(w: Workload): string {
  process.kill(w.pid, "SIGTERM");
  const verdict = waitFor(`${w.name} to report`, () => {
    const s = readStatus(w);
    return s.startsWith("PASS") || s.startsWith("FAIL") ? s : null;
  }, 30_000);
  waitGone(w.pid);
  return (verdict as string).trim();
}

/** Kills a workload that is still around (test cleanup). */
/** Every process below pid (read before anything is killed: orphans move to PID 1). */
function descendants(pid: number): number[] {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const kids = tids.flatMap((t) => {
    try {
      return readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").split(" ").filter(Boolean).map(Number);
    } catch {
      return [];
    }
  });
  return kids.flatMap((k) => [k, ...descendants(k)]);
}

/** Kills the workload and every process below it (a child in a session of its own would outlive it). */
export function stop(w: Workload): void {
  const below = descendants(w.pid);
  try {
    process.kill(w.pid, "SIGKILL");
  } catch {
    return;
  } finally {
    for (const p of below) {
      try {
        process.kill(p, "SIGKILL");
      } catch {
        // gone already
      }
    }
  }
  waitGone(w.pid);
}

export { CRIT } from "../crit.js";

/**
 * Starts a workload holding something crest refuses, dumps it: the dump must
 * fail naming it (`what`), and the workload run on untraced and untouched.
 */
export function assertDumpRefused(name: string, args: string[], what: RegExp, opts: { ns?: string } = {}): void {
  const w = startWorkload(name, args, opts);
  try {
    const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, what);
    assert.match(dumpLog(w), /Dumping FAILED/);
    assert.equal(procState(w.pid).tracer, 0);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
}

/** Images criu writes as other tools' output (ip ... save, iptables-save, nft list ruleset, tar), which crit does not decode. */
const RAW_IMAGES = /^(ifaddr|route6?|rule|ip6?tables|nftables)-\d+\.img$|\.tar\.gz(\.img)?$/;

/** Decodes every image file of dir as `crit decode -i` would; returns the files that failed, with crit's complaint. */
export function critDecodeAll(dir: string): string[] {
  // Not images: logs, the pages themselves, the `parent` link of a chain, crest's own files (crest-*.json), directories (a layer of a chain: dump --precopy).
  const files = readdirSync(dir, { withFileTypes: true }).filter((e) => !e.isDirectory()).map((e) => e.name)
    .filter((f) => !f.endsWith(".log") && !f.startsWith("pages-") && !RAW_IMAGES.test(f) && f !== "parent" && !/^crest-.*\.json$/.test(f));
  return critBatch(["decode", ...files.map((f) => join(dir, f))]).filter((r) => !r.ok).map((r) => `${basename(r.file)}: ${r.error}`);
}

/** Moves a file aside (for corruption tests) and returns its new name. */
export function moveAside(path: string): string {
  renameSync(path, `${path}.aside`);
  return `${path}.aside`;
}

/** Runs a command in the network namespace of process pid (nsenter); throws with its stderr if it fails. */
export function inNetns(pid: number, argv: string[], input?: string): string {
  const r = spawnSync("nsenter", [`--net=/proc/${pid}/ns/net`, "--", ...argv], { encoding: "utf8", input });
  if (r.status !== 0) throw new Error(`${argv.join(" ")} in the network namespace of ${pid} failed: ${r.stderr}`);
  return r.stdout;
}

/** Runs a command in this process's network namespace; throws with its stderr if it fails. */
export function onHost(argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${argv.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

/**
 * A veth pair from this namespace into the network namespace of process
 * pid (started with `ns: "...,net"`): `outside` here with outsideCidr, up;
 * `inside` there with insideCidr, up, and the loopback up.
 */
export function vethTo(pid: number, v: { outside: string; inside: string; outsideCidr: string; insideCidr: string }): void {
  onHost(["ip", "link", "add", v.outside, "type", "veth", "peer", "name", v.inside, "netns", String(pid)]);
  onHost(["ip", "addr", "add", v.outsideCidr, "dev", v.outside]);
  onHost(["ip", "link", "set", v.outside, "up"]);
  inNetns(pid, ["ip", "link", "set", "lo", "up"]);
  inNetns(pid, ["ip", "addr", "add", v.insideCidr, "dev", v.inside]);
  inNetns(pid, ["ip", "link", "set", v.inside, "up"]);
}

/** Whether this namespace has a link of that name. */
export function hasLink(name: string): boolean {
  return spawnSync("ip", ["link", "show", name], { encoding: "utf8" }).status === 0;
}
