// A fuzzing campaign: dump a few workloads once, then for each run i of
// COUNT (its generator seeded from SEED and i, so one run replays alone)
// mutate a fresh copy of one set, decode the mutated file and restore the set.
// Also a decoder-only pass, many more mutations fed to the decoder alone.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { IMG, readImage } from "../../src/images/index.js";
import { dumpWorkload, imagesDir, startWorkload, stop, type Workload } from "../cr/harness.js";
import { copySet, decodeFile, mutateSet, restoreMutated, Rng, type ImageSet, type Mutation, type RestoreOutcome } from "./fuzz.js";

/** The workloads whose images are fuzzed: how each is started, dumped and restored. */
const WORKLOADS: Array<{ name: string; args?: string[]; ns?: string; dump?: string[]; restore?: string[] }> = [
  // Files, a pipe, unix sockets, SysV objects (its own IPC namespace), a flock, a child.
  { name: "mixed", ns: "ipc", dump: ["--file-locks"], restore: ["--file-locks"] },
  // Sessions, groups, zombies, a shared file.
  { name: "tree" },
  // Signal actions, masks, queued signals with their siginfo.
  { name: "signals" },
  // eventfd, signalfd, timerfd, pidfd.
  { name: "fds-anon" },
];

/** Dumps each workload once; returns the image sets and the workloads (stopped already; their directories to remove). */
export function dumpSets(names?: readonly string[]): { sets: ImageSet[]; dirs: string[] } {
  const sets: ImageSet[] = [];
  const dirs: string[] = [];
  for (const wl of WORKLOADS.filter((w) => !names || names.includes(w.name))) {
    const w: Workload = startWorkload(wl.name, wl.args ?? [], wl.ns ? { ns: wl.ns } : {});
    dirs.push(w.dir);
    try {
      dumpWorkload(w, wl.dump ?? []);
    } finally {
      stop(w);
    }
    const tree = readImage(imagesDir(w), IMG.pstree);
    sets.push({ name: wl.name, dir: imagesDir(w), restoreOpts: wl.restore ?? [], pids: tree[0]!.pid === w.pid ? tree.flatMap((e) => e.threads) : [] });
  }
  return { sets, dirs };
}

export interface Finding {
  run: number;
  set: string;
  mutation: Mutation;
  leg: "decode" | "restore";
  what: string;
}

export interface CampaignReport {
  seed: number;
  restores: number;
  outcomes: Record<RestoreOutcome, number>;
  restoreSeconds: number;
  decodes: number;
  decodeFailures: number;
  decodeSeconds: number;
  findings: Finding[];
  /** How often each message (files' names and numbers blanked) came back: what the refusals look like. */
  messages: Map<string, number>;
}

/** The seed of run i: the campaign's seed and i, mixed (a run replays from these two alone). */
export function runSeed(seed: number, i: number): number {
  let x = (seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
  return (x ^ (x >>> 13)) >>> 0;
}

/** count restores of mutated sets, and decodeCount mutations fed to the decoder alone. */
export function campaign(sets: readonly ImageSet[], opts: { seed: number; count: number; decodeCount?: number; only?: number; progress?: (line: string) => void }): CampaignReport {
  const work = mkdtempSync("/tmp/crest-fuzz-");
  const report: CampaignReport = {
    seed: opts.seed, restores: 0, outcomes: { refused: 0, restored: 0, finding: 0 }, restoreSeconds: 0,
    decodes: 0, decodeFailures: 0, decodeSeconds: 0, findings: [], messages: new Map(),
  };
  const decodeLeg = (i: number, set: ImageSet, dir: string, m: Mutation) => {
    const t0 = process.hrtime.bigint();
    const d = decodeFile(join(dir, m.file));
    report.decodeSeconds += Number(process.hrtime.bigint() - t0) / 1e9;
    report.decodes++;
    if (!d.ok) report.decodeFailures++;
    if (!d.ok && d.finding) report.findings.push({ run: i, set: set.name, mutation: m, leg: "decode", what: d.finding });
  };
  try {
    for (let i = 0; i < opts.count; i++) {
      if (opts.only !== undefined && i !== opts.only) continue;
      const set = sets[i % sets.length]!;
      const dir = copySet(set, join(work, "set"));
      const m = mutateSet(new Rng(runSeed(opts.seed, i)), dir);
      decodeLeg(i, set, dir, m);
      const r = restoreMutated(set, dir);
      report.restores++;
      report.restoreSeconds += r.ms / 1000;
      report.outcomes[r.outcome]++;
      if (r.outcome === "finding") report.findings.push({ run: i, set: set.name, mutation: m, leg: "restore", what: r.message });
      if (r.message) {
        const key = r.message.replace(/\/(tmp|proc)\/\S*\//g, "").replace(/\d+/g, "N");
        report.messages.set(key, (report.messages.get(key) ?? 0) + 1);
      }
      opts.progress?.(`${i} ${set.name} ${m.file}: ${m.how} -> ${r.outcome}${r.message ? `: ${r.message}` : ""}`);
      if (opts.only !== undefined) opts.progress?.(`restore.log:\n${readFileSync(join(dir, "restore.log"), "utf8")}`);
    }
    // The decoder alone: every mutation on a fresh copy, many more of them (in this process, no restore).
    const decodeCount = opts.decodeCount ?? 0;
    for (let i = 0; i < decodeCount; i++) {
      const set = sets[i % sets.length]!;
      const dir = join(work, `d${i % sets.length}`);
      if (i < sets.length) copySet(set, dir);
      const m = mutateSet(new Rng(runSeed(opts.seed ^ 0x5bd1e995, i)), dir);
      decodeLeg(opts.count + i, set, dir, m);
      // Put the file back for the next mutation of this set.
      copyBack(set, dir, m.file);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return report;
}

/** Puts the set's own copy of a file back (the mutated one may have been truncated or grown). */
function copyBack(set: ImageSet, dir: string, file: string): void {
  writeFileSync(join(dir, file), readFileSync(join(set.dir, file)));
}

/** The report as text: counts, rates, the messages seen, every finding. */
export function describe(r: CampaignReport): string {
  const lines = [
    `seed ${r.seed}: ${r.restores} restores of mutated sets in ${r.restoreSeconds.toFixed(1)} s (${(r.restores / Math.max(r.restoreSeconds, 1e-9)).toFixed(1)} mutations/s): ` +
      `${r.outcomes.refused} refused, ${r.outcomes.restored} restored (harmless), ${r.outcomes.finding} findings`,
    `decoder: ${r.decodes} mutated files decoded in ${r.decodeSeconds.toFixed(2)} s (${(r.decodes / Math.max(r.decodeSeconds, 1e-9)).toFixed(0)} mutations/s), ${r.decodeFailures} refused`,
    `${r.findings.length} findings`,
    ...r.findings.map((f) => `  run ${f.run} (${f.set}, ${f.leg}): ${f.mutation.file}: ${f.mutation.how}: ${f.what}`),
    "refusals by message:",
    ...[...r.messages].sort((a, b) => b[1] - a[1]).map(([m, n]) => `  ${n} × ${m}`),
  ];
  return lines.join("\n");
}
