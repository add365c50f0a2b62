// The bench's podman row: `podman container checkpoint` and `podman container
// restore` (podman 4.3 through runc) of the counter container of
// test/containers/, with crest as criu and with the criu the bench compares
// with (CREST_BENCH_CRIU), taking turns, CREST_BENCH_ROUNDS times each. Each
// time is the podman command's wall time (podman, runc and criu together;
// podman and runc start criu three times per command, twice for a VERSION
// request, so crest's start-up counts three times); "in criu" is the last
// timestamp of the dump.log / restore.log criu (or crest) wrote: its own part
// from the log's opening (crest's log opens when its request has arrived,
// after its start-up). Each round's verdict: the count the restored container
// serves through its published port went on from where it was.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { makeCriuDir } from "../test/containers/criu-dir.js";
import { RUNTIMES, waitFor, type Container } from "../test/containers/runtimes.js";

interface Tool {
  name: string;
  bin: string;
}

interface Round {
  checkpoint: number;
  restore: number;
  /** criu's own part, from its logs' last timestamp. */
  inDump: number;
  inRestore: number;
  verdict: string;
}

const secs = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** The last "(SS.ssssss)" timestamp of a criu log: how long criu ran. */
function logSeconds(path: string): number {
  try {
    const stamps = [...readFileSync(path, "utf8").matchAll(/^\((\d+\.\d+)\)/gm)];
    return stamps.length ? Number(stamps[stamps.length - 1]![1]) : NaN;
  } catch {
    return NaN;
  }
}

function round(tool: Tool, tmp: string, i: number): Round {
  const podman = RUNTIMES.find((r) => r.name === "podman")!;
  const work = mkdtempSync(join(tmp, `podman-${tool.name}-`));
  const r: Round = { checkpoint: NaN, restore: NaN, inDump: NaN, inRestore: NaN, verdict: "" };
  let ct: Container | undefined;
  try {
    const criu = makeCriuDir(work, tool.bin);
    ct = podman.start(work, `crest-bench-${tool.name}-${process.pid}-${i}`);
    const c = ct;
    const before = waitFor(`${c.name}'s count to reach 3`, () => { const n = c.count(); return n !== null && n >= 3 && n; });
    let t0 = process.hrtime.bigint();
    const dump = podman.checkpoint(c, criu, work);
    r.checkpoint = secs(t0);
    if (dump.code !== 0) throw new Error(`checkpoint failed: ${dump.output.trim().split("\n").pop()}`);
    r.inDump = logSeconds(podman.criuLog(c, work, "dump"));
    t0 = process.hrtime.bigint();
    const restore = podman.restore(c, criu, work);
    r.restore = secs(t0);
    if (restore.code !== 0) throw new Error(`restore failed: ${restore.output.trim().split("\n").pop()}`);
    r.inRestore = logSeconds(podman.criuLog(c, work, "restore"));
    const after = waitFor(`${c.name}'s count after the restore`, () => c.count());
    r.verdict = after >= before ? "PASS" : `FAIL: counts from ${after} after the restore, had counted to ${before}`;
  } catch (e) {
    r.verdict = `FAIL: ${(e as Error).message.split("\n").filter(Boolean).slice(0, 2).join(" ")}`;
  } finally {
    if (ct) podman.remove(ct);
    rmSync(work, { recursive: true, force: true });
  }
  return r;
}

/** Measures and prints the podman row for crest and the criu compared with (tools[1], if any). */
export function printPodmanCr(tools: Tool[], tmp: string, rounds: number): void {
  const podman = RUNTIMES.find((r) => r.name === "podman")!;
  const why = podman.missing() ?? podman.noCheckpoint();
  if (why) {
    console.log(`\npodman: not measured (${why})`);
    return;
  }
  const rs: Round[][] = tools.map(() => []);
  for (let i = 0; i < rounds; i++) tools.forEach((tool, t) => rs[t]!.push(round(tool, tmp, i)));
  console.log("\npodman 4.3 (runc): `podman container checkpoint` and `restore` of the counter container (test/containers/), wall time; in criu: its log's span");
  console.log(`${"".padEnd(24)}${tools.map((t) => t.name.padStart(10)).join("")}${tools.length > 1 ? "crest/criu".padStart(12) : ""}`);
  const rows: Array<[string, (r: Round) => number]> = [
    ["checkpoint", (r) => r.checkpoint], ["  in criu", (r) => r.inDump], ["restore", (r) => r.restore], ["  in criu", (r) => r.inRestore],
  ];
  for (const [name, f] of rows) {
    // A figure a round could not give (its tool failed there) is not given.
    const m = rs.map((xs) => (xs.some((x) => Number.isNaN(f(x))) ? NaN : median(xs.map(f))));
    const cell = (x: number) => (Number.isNaN(x) ? "failed" : `${x.toFixed(3)} s`).padStart(10);
    const ratio = m.length > 1 && !Number.isNaN(m[0]! / m[1]!) ? `${(m[0]! / m[1]!).toFixed(2)}x`.padStart(12) : "";
    console.log(`${name.padEnd(24)}${m.map(cell).join("")}${ratio}`);
  }
  const verdicts = rs.map((xs, t) => {
    const bad = [...new Set(xs.filter((x) => x.verdict !== "PASS").map((x) => x.verdict))];
    return bad.length ? ` ${tools[t]!.name}: ${bad.join("; ")}` : "";
  }).join("");
  if (verdicts) console.log(`verdicts:${verdicts}`);
}
