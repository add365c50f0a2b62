// npm run demo: a process that counts, checkpointed, killed, restored with
// the same PID, and counting on from where it was.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { alive, crest, finish, imagesDir, startWorkload, stop, waitGone } from "../test/cr/harness.js";
import { sleepMs } from "../src/sys/syscalls.js";

const say = (s: string) => process.stdout.write(`${s}\n`);
const ms = (t0: bigint) => (Number(process.hrtime.bigint() - t0) / 1e6).toFixed(0);
const lastLines = (file: string, n: number) => readFileSync(file, "utf8").trim().split("\n").slice(-n).map((l) => `    | ${l}`).join("\n");

function step(title: string, args: string[]): void {
  say(`\n$ crest ${args.join(" ")}`);
  const t0 = process.hrtime.bigint();
  const r = crest(args);
  if (r.code !== 0) throw new Error(`${title} failed:\n${r.stderr}`);
  say(`  ${title} took ${ms(t0)} ms`);
}

if (process.getuid?.() !== 0) {
  say("crest needs root (it traces processes and creates PIDs): run the demo as root.");
  process.exit(1);
}

const w = startWorkload("loop");
try {
  say(`Started test/workloads/loop.c as PID ${w.pid}: it counts and prints every second.`);
  sleepMs(2500);
  say(`  its output so far:\n${lastLines(w.log, 2)}`);

  const dir = imagesDir(w);
  step("checkpoint", ["dump", "-t", String(w.pid), "-D", dir, "-o", "dump.log", "-v4"]);
  waitGone(w.pid);
  const frozen = readFileSync(join(dir, "dump.log"), "utf8").trim().split("\n").pop();
  say(`  PID ${w.pid} is gone; the log ends: ${frozen}`);
  say(`  images (CRIU format, decode them with crit):`);
  for (const f of readdirSync(dir).sort()) say(`    ${f.padEnd(18)} ${statSync(join(dir, f)).size} bytes`);

  sleepMs(1000);
  step("restore", ["restore", "-D", dir, "-o", "restore.log", "-v4", "-d"]);
  say(`  PID ${w.pid} is ${alive(w.pid) ? "back" : "NOT back"}; the log ends: ${readFileSync(join(dir, "restore.log"), "utf8").trim().split("\n").pop()}`);
  sleepMs(2500);
  say(`  and it carries on counting where it left off:\n${lastLines(w.log, 4)}`);

  say(`\nAsking it to check itself (SIGTERM): ${finish(w)}`);
} finally {
  stop(w);
}
