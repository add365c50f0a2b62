// The bench's service row: `crest service` under load, beside `criu
// service` when there is a criu to compare with. 20 clients (CREST_BENCH_RPC_CLIENTS)
// at once, each with its own `loop` process, which it dumps and restores
// through the service, one request per connection, until 500
// (CREST_BENCH_RPC_REQUESTS) requests have been served. Every request must
// succeed, and every process must pass its own check at the end: the first
// that does not fails the row, named.
//
// The clients speak criu's RPC themselves (criu_req / criu_resp over
// SOCK_SEQPACKET, as any client does): one process, non-blocking sockets,
// one poll(2) over all of them, so a client's latency is measured from its
// connect to its answer without threads. Between a dump's answer and the
// restore, the client waits for its PID to be free (this process is the
// subreaper that reaps it), as any restore to the same PID must.
//
// Memory: VmRSS of the service process and of its workers (its children:
// a worker per connection), sampled every 100 ms while every client is
// busy (after the first wave of answers, before the first client is done).
// A single sample catches the workers at whatever step each is in, so start,
// middle and end are each the mean over a fifth of the samples: the first,
// the middle and the last. Flat means the end of the service's RSS, and of
// the workers' RSS per worker, is within TOLERANCE of its start.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { criu_req, criu_req_type, criu_resp, decode, encode } from "../src/images/index.js";
import { SYS } from "../src/sys/constants.js";
import { native } from "../src/sys/native.js";
import { sockaddr } from "../src/kinds/sockets/unix-name.js";
import { sleepMs, wait4 } from "../src/sys/syscalls.js";
import { alive, finish, imagesDir, startWorkload, stop, waitFor, type Workload } from "../test/cr/harness.js";

const CLIENTS = Number(process.env.CREST_BENCH_RPC_CLIENTS ?? 20);
const REQUESTS = Number(process.env.CREST_BENCH_RPC_REQUESTS ?? 500);
/** How far the end's memory may be from the start's and still be flat. */
const TOLERANCE = 0.1;

const AF_UNIX = 1, SOCK_SEQPACKET = 5, SOCK_NONBLOCK = 0o4000, SOCK_CLOEXEC = 0o2000000;
const POLLIN = 1, POLLERR = 8, POLLHUP = 16, MSG_DONTWAIT = 0x40, MSG_TRUNC = 0x20, MSG_PEEK = 2;
const EAGAIN = 11, EINPROGRESS = 115, WNOHANG = 1;

export interface LoadTool {
  name: string;
  bin: string;
}

/** A VmRSS sample of the service and its workers, in KiB. */
interface Sample {
  service: number;
  workers: number[];
}

export interface LoadResult {
  tool: string;
  served: number;
  seconds: number;
  dumps: number[];
  restores: number[];
  /** every 100 ms while all clients were busy */
  samples: Sample[];
  /** null when every request succeeded and every process passed; else what failed first. */
  failure: string | null;
}

/** struct sockaddr_un of a path, with its closing NUL. */
const pathAddr = (path: string): Buffer => sockaddr(Buffer.from(`${path}\0`));

function vmRssKiB(pid: number): number {
  try {
    return Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

/** The service's RSS and its live workers' (its children: the worker processes it forked or spawned). */
function sample(service: number): Sample {
  const workers: number[] = [];
  for (const tid of readdirSync(`/proc/${service}/task`)) {
    let children = "";
    try {
      children = readFileSync(`/proc/${service}/task/${tid}/children`, "utf8");
    } catch {
      continue;
    }
    for (const c of children.split(" ").filter(Boolean)) {
      const rss = vmRssKiB(Number(c));
      if (rss > 0) workers.push(rss);
    }
  }
  return { service: vmRssKiB(service), workers };
}

/** `TOOL service` listening at a fresh address in dir; its process (its pid is the service's: both launchers exec). */
function startService(tool: LoadTool, dir: string): { child: ChildProcess; address: string } {
  const address = join(dir, "service.sock");
  const child = spawn(tool.bin, ["service", "--address", address, "-o", "service.log", "-v2"], { cwd: dir, stdio: "ignore" });
  // Reaped here (wait4), synchronously: the event loop must not wait for it.
  child.unref();
  waitFor(`${tool.name} service to listen`, () => {
    const st = wait4(child.pid!, WNOHANG);
    if (st) {
      const log = existsSync(join(dir, "service.log")) ? readFileSync(join(dir, "service.log"), "utf8").trim().split("\n").pop() : "";
      throw new Error(`${tool.name} service ended before it listened (${st.exited ? `exit code ${st.code}` : `signal ${st.code}`}): ${log}`);
    }
    if (!existsSync(address)) return false;
    const fd = native.syscall(SYS.socket, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    const addr = pathAddr(address);
    const r = native.syscall(SYS.connect, fd, addr, addr.length);
    native.syscall(SYS.close, fd);
    return r === 0;
  });
  return { child, address };
}

type Phase = "connect" | "answer" | "gone" | "idle" | "done";

interface Client {
  n: number;
  w: Workload;
  dir: string;
  /** What the next request is: a dump while the process runs, a restore once it is dumped. */
  next: "dump" | "restore";
  phase: Phase;
  fd: number;
  /** When this step began: the request's connect, or the dump's answer while its PID is awaited. */
  t0: bigint;
  /** This client's requests so far (for naming a failure). */
  requests: number;
}

/** Runs the load against one tool's service; never throws for a failed request (it is the result's failure). */
export function rpcLoad(tool: LoadTool): LoadResult {
  const dir = mkdtempSync(`/tmp/crest-bench-rpc-${tool.name}-`);
  const res: LoadResult = { tool: tool.name, served: 0, seconds: 0, dumps: [], restores: [], samples: [], failure: null };
  const clients: Client[] = [];
  let service = 0;
  try {
    const started = startService(tool, dir);
    service = started.child.pid!;
    const addr = pathAddr(started.address);
    for (let n = 0; n < CLIENTS; n++) {
      const w = startWorkload("loop");
      const images = imagesDir(w, `imgs-${tool.name}`);
      mkdirSync(images, { recursive: true });
      clients.push({ n, w, dir: images, next: "dump", phase: "idle", fd: -1, t0: 0n, requests: 0 });
    }
    let issued = 0;
    let sampled = 0n;
    const fail = (c: Client, why: string, what = `its request ${c.requests} (${c.next})`) => {
      res.failure ??= `${tool.name}: client ${c.n} (process ${c.w.pid}), ${what}: ${why}`;
    };
    const send = (c: Client) => {
      const req = c.next === "dump"
        ? { type: criu_req_type.DUMP, opts: { images_dir_fd: -1, images_dir: c.dir, pid: c.w.pid, log_file: "dump.log", log_level: 2 } }
        : { type: criu_req_type.RESTORE, opts: { images_dir_fd: -1, images_dir: c.dir, log_file: "restore.log", log_level: 2 } };
      const bytes = encode(criu_req, req);
      const r = native.syscall(SYS.sendto, c.fd, bytes, bytes.length, 0, null, 0);
      if (r !== bytes.length) return fail(c, `cannot send the request: errno ${-r}`);
      c.phase = "answer";
    };
    const tryConnect = (c: Client) => {
      if (c.fd < 0) c.fd = native.syscall(SYS.socket, AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      const r = native.syscall(SYS.connect, c.fd, addr, addr.length);
      // A full backlog: try again on the next turn (a unix socket's connect never completes in the background).
      if (r === -EAGAIN || r === -EINPROGRESS) return;
      if (r < 0) return fail(c, `cannot connect to the service: errno ${-r}`);
      send(c);
    };
    const answered = (c: Client) => {
      const len = native.syscall(SYS.recvfrom, c.fd, null, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT, null, null);
      if (len === -EAGAIN) return;
      const buf = Buffer.alloc(Math.max(len, 1));
      const got = len > 0 ? native.syscall(SYS.recvfrom, c.fd, buf, len, MSG_DONTWAIT, null, null) : len;
      native.syscall(SYS.close, c.fd);
      c.fd = -1;
      const secs = Number(process.hrtime.bigint() - c.t0) / 1e9;
      if (got <= 0) return fail(c, got === 0 ? "the service closed the connection without an answer" : `cannot read the answer: errno ${-got}`);
      const resp = decode(criu_resp, buf.subarray(0, got));
      if (!resp.success) return fail(c, `${resp.cr_errmsg || `failed, errno ${resp.cr_errno ?? 0}`} (log: ${join(c.dir, `${c.next}.log`)})`);
      res.served++;
      if (c.next === "dump") {
        res.dumps.push(secs);
        c.next = "restore";
        c.phase = "gone";
        c.t0 = process.hrtime.bigint();
      } else {
        if (resp.restore?.pid !== c.w.pid) return fail(c, `the restored process is ${resp.restore?.pid}, not ${c.w.pid}`);
        res.restores.push(secs);
        c.next = "dump";
        c.phase = "idle";
      }
    };
    const t0 = process.hrtime.bigint();
    while (!res.failure && clients.some((c) => c.phase !== "done")) {
      const now = process.hrtime.bigint();
      if (now - sampled >= 100_000_000n && res.served >= CLIENTS && clients.every((c) => c.phase !== "done")) {
        res.samples.push(sample(service));
        sampled = now;
      }
      for (const c of clients) {
        if (c.phase === "gone") {
          // Reap it if it came back to this subreaper (after a restore it is ours); free once /proc has no such PID.
          try {
            wait4(c.w.pid, WNOHANG);
          } catch { /* not our child */ }
          if (!alive(c.w.pid)) c.phase = "idle";
          else if (process.hrtime.bigint() - c.t0 > 15_000_000_000n) fail(c, "the process is still there 15 s after the answer", `its request ${c.requests} (dump)`);
        }
        if (c.phase === "idle") {
          // A dump takes its restore's turn with it: every process ends restored.
          if (c.next === "dump") {
            if (issued + 2 > REQUESTS) {
              c.phase = "done";
              continue;
            }
            issued += 2;
          }
          c.requests++;
          c.t0 = process.hrtime.bigint();
          c.phase = "connect";
        }
        if (c.phase === "connect") tryConnect(c);
      }
      const waiting = clients.filter((c) => c.phase === "answer");
      const pfds = new Int32Array(waiting.flatMap((c) => [c.fd, POLLIN]));
      const busy = clients.some((c) => c.phase === "gone" || c.phase === "connect");
      const r = waiting.length ? native.syscall(SYS.poll, pfds, waiting.length, busy ? 2 : 100) : 0;
      if (r > 0) {
        waiting.forEach((c, i) => {
          if ((pfds[i * 2 + 1]! >>> 16) & (POLLIN | POLLERR | POLLHUP)) answered(c);
        });
      } else if (!waiting.length && busy) {
        sleepMs(2);
      }
    }
    res.seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    // Each process checks itself: it ran on across every restore.
    if (!res.failure) {
      for (const c of clients) {
        let verdict: string;
        try {
          verdict = finish(c.w);
        } catch (e) {
          verdict = (e as Error).message;
        }
        if (verdict !== "PASS") {
          res.failure = `${tool.name}: client ${c.n}'s process ${c.w.pid} after ${c.requests} requests: ${verdict}`;
          break;
        }
      }
    }
  } catch (e) {
    res.failure ??= `${tool.name}: ${(e as Error).message}`;
  } finally {
    for (const c of clients) {
      if (c.fd >= 0) native.syscall(SYS.close, c.fd);
      stop(c.w);
    }
    if (service && alive(service)) {
      process.kill(service, "SIGTERM");
      waitFor(`${tool.name} service to stop`, () => (wait4(service, WNOHANG), !alive(service)), 15_000);
    }
    if (!res.failure) {
      for (const c of clients) rmSync(c.w.dir, { recursive: true, force: true });
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return res;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil(p * s.length) - 1)] ?? NaN;
};
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const mib = (kib: number) => (kib / 1024).toFixed(1);

/** Start, middle and end: the means of f over the first, the middle and the last fifth of the samples. */
function windows(samples: Sample[], f: (s: Sample) => number): number[] {
  const n = Math.max(1, Math.floor(samples.length / 5));
  const mid = Math.floor((samples.length - n) / 2);
  return [samples.slice(0, n), samples.slice(mid, mid + n), samples.slice(-n)].map((w) => mean(w.map(f)));
}

/** "flat", or by how much the end is above the start. */
function flat(start: number, end: number): { ok: boolean; text: string } {
  const d = (end - start) / start;
  return { ok: Math.abs(d) <= TOLERANCE, text: `${d >= 0 ? "+" : ""}${(d * 100).toFixed(1)}%` };
}

/** Runs the row for each tool (crest first) and prints it; returns false if any failed. */
export function printRpcLoad(tools: LoadTool[]): boolean {
  console.log(`\nService under load: ${CLIENTS} clients at once, each dumping and restoring its own \`loop\` process through \`service\`, ${REQUESTS} requests`);
  const rs = tools.map(rpcLoad);
  for (const r of rs) if (r.failure) console.log(`FAILED: ${r.failure}`);
  const ok = rs.filter((r) => !r.failure);
  if (!ok.length) return false;
  const [c, k] = rs[0]!.failure ? [undefined, ok[0]] : [ok[0], ok[1]];
  const cols = [c, k].filter((x): x is LoadResult => x !== undefined);
  const both = c && k;
  console.log(`${"".padEnd(24)}${cols.map((r) => r.tool.padStart(10)).join("")}${both ? "crest/criu".padStart(12) : ""}`);
  const rows: Array<[string, (r: LoadResult) => number, (x: number) => string]> = [
    ["requests/s", (r) => r.served / r.seconds, (x) => x.toFixed(1)],
    ["dump p50", (r) => pct(r.dumps, 0.5), (x) => `${x.toFixed(3)} s`],
    ["dump p95", (r) => pct(r.dumps, 0.95), (x) => `${x.toFixed(3)} s`],
    ["restore p50", (r) => pct(r.restores, 0.5), (x) => `${x.toFixed(3)} s`],
    ["restore p95", (r) => pct(r.restores, 0.95), (x) => `${x.toFixed(3)} s`],
  ];
  for (const [name, f, fmt] of rows) {
    console.log(`${name.padEnd(24)}${cols.map((r) => fmt(f(r)).padStart(10)).join("")}${both ? `${(f(c) / f(k)).toFixed(2)}x`.padStart(12) : ""}`);
  }
  console.log(`${"wall time".padEnd(24)}${cols.map((r) => `${r.seconds.toFixed(1)} s`.padStart(10)).join("")}`);
  console.log(`VmRSS, MiB, all clients busy (start / middle / end: means over the first, middle and last fifth of the samples taken every 100 ms; flat: the end within ${TOLERANCE * 100}% of the start)`);
  for (const r of cols) {
    if (r.samples.length < 5) {
      console.log(`  ${r.tool}: too short a run to sample (${r.samples.length} samples)`);
      continue;
    }
    const lines: Array<[string, number[], boolean]> = [
      ["service", windows(r.samples, (s) => s.service), true],
      ["per worker", windows(r.samples.filter((s) => s.workers.length), (s) => mean(s.workers)), true],
      ["workers together", windows(r.samples, (s) => s.workers.reduce((a, b) => a + b, 0)), false],
    ];
    for (const [what, xs, judged] of lines) {
      const v = flat(xs[0]!, xs[2]!);
      console.log(`  ${`${r.tool} ${what}`.padEnd(24)}${xs.map((x) => mib(x).padStart(8)).join("")}${v.text.padStart(9)}${judged ? `  ${v.ok ? "flat" : "NOT flat"}` : ""}`);
    }
    console.log(`  ${`${r.tool} workers`.padEnd(24)}${windows(r.samples, (s) => s.workers.length).map((x) => x.toFixed(1).padStart(8)).join("")}   (how many, ${r.samples.length} samples)`);
  }
  return rs.every((r) => !r.failure);
}

// Alone: `node dist/bench/rpc-load.js` (crest, and CREST_BENCH_CRIU if set).
if (process.argv[1] && import.meta.url === `file://${process.argv[1]}`) {
  const { CREST } = await import("../test/cr/harness.js");
  const tools: LoadTool[] = [{ name: "crest", bin: CREST }];
  if (process.env.CREST_BENCH_CRIU) tools.push({ name: "criu", bin: process.env.CREST_BENCH_CRIU });
  if (!printRpcLoad(tools)) process.exitCode = 1;
}
