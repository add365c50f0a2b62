// npm run demo:migrate: a process moved from one crest to another over TCP,
// on this machine between two directories, as a live migration does it:
// pre-dump rounds send its memory through a page server while it runs on
// (each round only what it wrote since); then the final dump, and the other
// side restores it from what it received. `npm run demo:migrate -- --lazy`
// makes the last step criu's lazy migration: the final dump leaves the
// pages written since the last round in the frozen process and serves them;
// the other side restores at once and a lazy-pages daemon fetches them on
// first touch (the process runs in a PID namespace of its own: the frozen
// one still holds its PIDs). The process rewrites its memory all the time
// and checks every page at the end.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { alive, CREST, crest, finish, startWorkload, stop, waitFor, waitGone } from "../test/cr/harness.js";
import { IMG, readImage } from "../src/images/index.js";
import { sleepMs, wait4 } from "../src/sys/syscalls.js";
import { native } from "../src/sys/native.js";

const say = (s: string) => process.stdout.write(`${s}\n`);
const MIB = 256, WRITES = 2000;
const PORT = 27461, LAZY_PORT = 27462;
const lazy = process.argv.includes("--lazy");

function run(args: string[]): number {
  say(`$ crest ${args.join(" ")}`);
  const t0 = process.hrtime.bigint();
  const r = crest(args);
  if (r.code !== 0) throw new Error(`crest ${args[0]} failed:\n${r.stderr}`);
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** The destination's page server for one round, listening once this returns; its images dir linked to the previous round's. */
function pageServer(dst: string, round: string, parent?: string): void {
  mkdirSync(join(dst, round));
  if (parent) symlinkSync(`../${parent}`, join(dst, round, "parent"));
  run(["page-server", "-D", join(dst, round), "--port", String(PORT), "-d", "-o", "page-server.log"]);
}

/** What a round's dump says of itself (stats-dump): pages sent, pages left to the parent, frozen time. */
function stats(dir: string): { written: bigint; parent: bigint; frozenMs: number } {
  const d = readImage(dir, IMG.stats, "dump")[0]!.dump!;
  return { written: d.pages_written, parent: d.pages_skipped_parent, frozenMs: d.frozen_time / 1000 };
}

/** The images of a round the page server did not receive (with `all`, every one) go to the destination too, as a migration tool copies them. */
function copyRest(src: string, dst: string, all = false): void {
  for (const f of readdirSync(src)) {
    if ((!all && /^(pagemap|pages)-/.test(f)) || f === "parent" || f.endsWith(".log")) continue;
    copyFileSync(join(src, f), join(dst, f));
  }
}

/**
 * The lazy last step: the final dump leaves what was written since the last
 * round in the frozen tree and serves it; the destination restores at once
 * (its lazy-pages daemon fetching from the dump), and the dump ends once
 * everything went. Returns the workload as it runs on the destination.
 */
function lazyFinal(src: string, dst: string): typeof w {
  const final = join(src, "final");
  const args = ["dump", "-t", String(w.pid), "-D", final, "--prev-images-dir", "../pre2", "--track-mem", "--lazy-pages", "--port", String(LAZY_PORT), "-o", "dump.log", "-v4"];
  say(`$ crest ${args.join(" ")} &`);
  const t0 = process.hrtime.bigint();
  // Not through child_process: this script waits for it without an event loop.
  const dump = native.spawn({ path: CREST, argv: ["crest", ...args], env: Object.entries(process.env).map(([k, v]) => `${k}=${v}`), fds: [-1, -1, -1] });
  waitFor("the final dump to serve its lazy pages", () => existsSync(join(final, "dump.log")) && /Lazy pages: serving/.test(readFileSync(join(final, "dump.log"), "utf8")), 60_000);
  say(`  final dump: its images are written; the pages written since the last round stay in the frozen process, served on port ${LAZY_PORT}`);
  mkdirSync(join(dst, "final"));
  symlinkSync("../pre2", join(dst, "final", "parent"));
  copyRest(final, join(dst, "final"), true);
  run(["lazy-pages", "-D", join(dst, "final"), "--page-server", "--address", "127.0.0.1", "--port", String(LAZY_PORT), "-d", "-o", "lazy-pages.log"]);
  const pidfile = join(dst, "final", "root.pid");
  const rms = run(["restore", "-D", join(dst, "final"), "--lazy-pages", "-o", "restore.log", "-v4", "-d", "--pidfile", pidfile]);
  const pid = Number(readFileSync(pidfile, "utf8"));
  say(`  restored on the destination in ${rms.toFixed(0)} ms, before its memory is there: PID ${pid} here (PID 1 of its namespace, as it was) is ${alive(pid) ? "running" : "NOT running"}`);
  const st = wait4(dump, 0, "wait for the final dump")!;
  const s = stats(final);
  say(`  the final dump ended (exit ${st.raw >> 8}) ${(Number(process.hrtime.bigint() - t0) / 1e6).toFixed(0)} ms after it started, once the daemon had every page ` +
    `(${s.written} pages in its images, ${s.parent} left on the destination's chain, the rest sent lazily): ${readFileSync(join(final, "dump.log"), "utf8").trim().split("\n").pop()}`);
  return { ...w, pid };
}

if (process.getuid?.() !== 0) {
  say("crest needs root (it traces processes and creates PIDs): run the demo as root.");
  process.exit(1);
}

let w = startWorkload("memwrite", [String(MIB), String(WRITES)], lazy ? { ns: "pid" } : {});
try {
  const src = join(w.dir, "source"), dst = join(w.dir, "destination");
  mkdirSync(src);
  mkdirSync(dst);
  say(`Started test/workloads/memwrite.c as PID ${w.pid}: ${MIB} MiB of memory, ${WRITES} pages rewritten a second.`);
  say(`Source images: ${src}\nDestination images (written by the page server): ${dst}\n`);

  const rounds = ["pre1", "pre2"];
  rounds.forEach((round, i) => {
    const parent = rounds[i - 1];
    pageServer(dst, round, parent);
    const ms = run(["pre-dump", "-t", String(w.pid), "-D", join(src, round), ...(parent ? ["--prev-images-dir", `../${parent}`] : []), "--track-mem",
      "--page-server", "--address", "127.0.0.1", "--port", String(PORT), "-o", "dump.log"]);
    const s = stats(join(src, round));
    say(`  round ${i + 1}: ${s.written} pages sent (${Number(s.written) / 256} MiB), ${s.parent} left in the last round's; frozen ${s.frozenMs.toFixed(1)} ms of ${ms.toFixed(0)} ms; the process ran on\n`);
    copyRest(join(src, round), join(dst, round));
    sleepMs(500);
  });

  if (lazy) {
    w = lazyFinal(src, dst);
  } else {
    pageServer(dst, "final", "pre2");
    const ms = run(["dump", "-t", String(w.pid), "-D", join(src, "final"), "--prev-images-dir", "../pre2", "--track-mem",
      "--page-server", "--address", "127.0.0.1", "--port", String(PORT), "-o", "dump.log"]);
    waitGone(w.pid);
    const s = stats(join(src, "final"));
    say(`  final dump: ${s.written} pages sent, ${s.parent} already there; frozen ${s.frozenMs.toFixed(1)} ms of ${ms.toFixed(0)} ms; PID ${w.pid} is gone from the source\n`);
    copyRest(join(src, "final"), join(dst, "final"));
    const rms = run(["restore", "-D", join(dst, "final"), "-o", "restore.log", "-v4", "-d"]);
    say(`  restored on the destination in ${rms.toFixed(0)} ms: PID ${w.pid} is ${alive(w.pid) ? "running" : "NOT running"}; the log ends: ${readFileSync(join(dst, "final", "restore.log"), "utf8").trim().split("\n").pop()}`);
  }
  sleepMs(1000);
  say(`\nAsking it to check every page of its memory (SIGTERM): ${finish(w)}`);
} finally {
  stop(w);
}
