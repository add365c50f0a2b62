// The image fuzzer: real image sets (dumps of a few workloads), seeded
// mutations of one file of a set at a time (bit flips, truncation, entries
// swapped, duplicated or dropped, one decoded value set out of range and the
// file re-encoded through crest's own codec), each fed to crest's image
// decoder (in this process) and to `crest restore` (bounded by a timeout).
// What passes: the decoder gives a value or an ImageError naming the file;
// the restore either exits 1 with one line naming an image file (and no
// JavaScript error of crest's own, no stack), with nothing of the tree left
// alive, or restores a tree (a harmless mutation), which is then killed.
// Anything else is a finding, reported with the seed and mutation that made it.
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { IMG, ImageError, ImageReader, ImageWriter, toCritJson, type ImageKind, type MessageType } from "../../src/images/index.js";
import { fileOutput } from "../../src/images/file.js";
import { sleepMs, wait4 } from "../../src/sys/syscalls.js";
import { WNOHANG } from "../../src/sys/constants.js";
import { projectRoot } from "../../src/sys/native.js";

const CREST = join(projectRoot(), "bin", "crest");

/**
 * What every fuzzed restore adds to its command line: the manifest's check
 * would refuse every mutated set before crest reads it (manifest.test.ts
 * tests that check).
 */
export const RESTORE_EXTRA: readonly string[] = ["--no-verify"];

/** How long one restore may take before it counts as a hang and is killed. */
export const RESTORE_TIMEOUT_MS = 30_000;

// --- a seeded generator --------------------------------------------------------------

/** xorshift32 over a seed: the same seed gives the same mutations. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = (seed >>> 0) || 0x9e3779b9;
  }
  u32(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }
  /** 0 <= n < max */
  int(max: number): number {
    return max <= 0 ? 0 : this.u32() % max;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }
}

// --- image files by name -------------------------------------------------------------

const KINDS = Object.values(IMG) as ImageKind<unknown, never>[];

function patternRegex(pattern: string): RegExp {
  const esc = pattern.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`^${esc.replace(/%l?u/, "\\d+").replace("%d", "-?\\d+").replace("%x", "[0-9a-f]+").replace("%s", "[^/]+")}$`);
}
const BY_NAME = KINDS.map((k) => ({ k, re: patternRegex(k.pattern) }));

/** The image kind a file name is of, as crest reads it. */
export function kindOfFile(name: string): ImageKind<unknown, never> | undefined {
  return BY_NAME.find((b) => b.re.test(name))?.k;
}

/** The image files of a set that crest reads (not the logs, not its own notes). */
export function imageFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => kindOfFile(f) !== undefined).sort();
}

// --- the decoder ---------------------------------------------------------------------

export type DecodeOutcome = { ok: true } | { ok: false; error: string; finding?: string };

/**
 * Decodes one file as crest and crit read it: the kind's reader, then each
 * entry to crit's JSON, plain and pretty. A failure must be an ImageError
 * naming the file; anything else is a finding.
 */
export function decodeFile(path: string): DecodeOutcome {
  const kind = kindOfFile(basename(path));
  if (!kind) return { ok: false, error: "not an image file name", finding: `${path}: no image kind for this name` };
  try {
    const r = new ImageReader(path, kind);
    try {
      const v = kind.read(r);
      if (Array.isArray(v) && kind.type) {
        for (const e of v) {
          toCritJson(kind.type as MessageType<unknown>, e);
          toCritJson(kind.type as MessageType<unknown>, e, { pretty: true });
        }
      }
    } finally {
      r.close();
    }
    return { ok: true };
  } catch (e) {
    const err = e as Error;
    if (e instanceof ImageError && err.message.includes(path)) return { ok: false, error: err.message };
    return { ok: false, error: err.message, finding: `decoding ${basename(path)}: ${err.name}: ${err.message}` };
  }
}

// --- mutations -----------------------------------------------------------------------

export interface Mutation {
  file: string;
  how: string;
}

/** A value of the decoded file and where it is ("[2].vmas[5].start"). */
interface Leaf {
  path: string;
  get: () => unknown;
  set: (v: unknown) => void;
}

function leaves(v: unknown, path: string, out: Leaf[], arrays: Array<{ path: string; a: unknown[] }>): void {
  if (Array.isArray(v)) {
    arrays.push({ path, a: v });
    v.forEach((x, i) => {
      if (typeof x === "object" && x !== null && !(x instanceof Uint8Array)) leaves(x, `${path}[${i}]`, out, arrays);
      else if (typeof x === "number" || typeof x === "bigint") out.push({ path: `${path}[${i}]`, get: () => v[i], set: (n) => (v[i] = n) });
    });
    return;
  }
  if (typeof v !== "object" || v === null || v instanceof Uint8Array) return;
  const o = v as Record<string, unknown>;
  for (const [k, x] of Object.entries(o)) {
    if (typeof x === "number" || typeof x === "bigint") out.push({ path: `${path}.${k}`, get: () => o[k], set: (n) => (o[k] = n) });
    else leaves(x, `${path}.${k}`, out, arrays);
  }
}

/** Values a careless or hostile image could hold instead of v. */
function outOfRange(rng: Rng, v: number | bigint): number | bigint {
  if (typeof v === "bigint") {
    return rng.pick([0n, 1n, -1n, (1n << 63n) - 1n, (1n << 64n) - 1n, 1n << 47n, v + 1n, v - 1n, v + 4096n, v << 12n, v ^ (1n << BigInt(rng.int(64))), rng.u64()]);
  }
  return rng.pick([0, 1, -1, 0x7fffffff, 0xffffffff, 0x80000000, 65536, 1 << 20, v + 1, v - 1, v * 2 + 1, v + 4096, v ^ (1 << rng.int(31)), rng.u32()]);
}

/** Writes a decoded value back through the kind's writer; false if the codec refuses it. */
function rewrite(path: string, kind: ImageKind<unknown, never>, value: unknown): boolean {
  const tmp = `${path}.fuzz`;
  const w = new ImageWriter(tmp, kind, fileOutput(tmp));
  try {
    (kind.write as (w: ImageWriter, v: unknown) => void)(w, value);
    w.close();
  } catch {
    w.discard();
    return false;
  }
  writeFileSync(path, readFileSync(tmp));
  rmSync(tmp);
  return true;
}

function readValue(path: string, kind: ImageKind<unknown, never>): unknown {
  const r = new ImageReader(path, kind);
  try {
    return kind.read(r);
  } finally {
    r.close();
  }
}

/** One structural or value mutation through the codec; undefined when the file offers none that encodes. */
function codecMutation(rng: Rng, path: string, kind: ImageKind<unknown, never>): string | undefined {
  if (kind.header === "raw") return undefined;
  let value: unknown;
  try {
    value = readValue(path, kind);
  } catch {
    return undefined; // already broken by an earlier mutation
  }
  const ls: Leaf[] = [];
  const arrays: Array<{ path: string; a: unknown[] }> = [];
  leaves(value, "", ls, arrays);
  const lists = arrays.filter((x) => x.a.length > 0);
  for (let tries = 0; tries < 8; tries++) {
    const op = rng.int(4);
    let how: string;
    let undo: () => void;
    if (op === 0 && lists.length) {
      const { path: p, a } = rng.pick(lists);
      const i = rng.int(a.length), j = rng.int(a.length);
      [a[i], a[j]] = [a[j], a[i]];
      how = `swapped entries ${i} and ${j} of ${p || "the file"}`;
      undo = () => ([a[i], a[j]] = [a[j], a[i]]);
    } else if (op === 1 && lists.length) {
      const { path: p, a } = rng.pick(lists);
      const i = rng.int(a.length);
      a.splice(i, 0, structuredClone(a[i]));
      how = `duplicated entry ${i} of ${p || "the file"}`;
      undo = () => a.splice(i, 1);
    } else if (op === 2 && lists.length) {
      const { path: p, a } = rng.pick(lists);
      const i = rng.int(a.length);
      const [gone] = a.splice(i, 1);
      how = `dropped entry ${i} of ${p || "the file"}`;
      undo = () => a.splice(i, 0, gone);
    } else if (ls.length) {
      const leaf = rng.pick(ls);
      const old = leaf.get() as number | bigint;
      const v = outOfRange(rng, old);
      leaf.set(v);
      how = `set ${leaf.path.replace(/^\./, "")} from ${old} to ${v}`;
      undo = () => leaf.set(old);
    } else {
      return undefined;
    }
    if (rewrite(path, kind, value)) return how;
    undo();
  }
  return undefined;
}

/** Mutates one image file of the set in dir (a copy); says what it did. */
export function mutateSet(rng: Rng, dir: string): Mutation {
  const files = imageFiles(dir);
  // Pages are data: most of a flip there only changes memory; they get truncations and flips, rarely.
  const meta = files.filter((f) => !f.startsWith("pages-"));
  const file = rng.int(10) === 0 ? rng.pick(files) : rng.pick(meta);
  const path = join(dir, file);
  const kind = kindOfFile(file)!;
  const bytes = readFileSync(path);
  const op = rng.int(10);
  if (op < 4) {
    const how = codecMutation(rng, path, kind);
    if (how) return { file, how };
  }
  if (op < 6 && bytes.length > 0) {
    const at = rng.int(bytes.length);
    truncateSync(path, at);
    return { file, how: `truncated to ${at} of ${bytes.length} bytes` };
  }
  const n = 1 + rng.int(4);
  const flips: string[] = [];
  for (let i = 0; i < n && bytes.length; i++) {
    const at = rng.int(bytes.length), bit = rng.int(8);
    bytes[at]! ^= 1 << bit;
    flips.push(`${at}.${bit}`);
  }
  writeFileSync(path, bytes);
  return { file, how: `flipped bits ${flips.join(", ")} (byte.bit)` };
}

// --- the restore ---------------------------------------------------------------------

/** A dumped workload's images and how to restore them. */
export interface ImageSet {
  name: string;
  dir: string;
  restoreOpts: string[];
  /** The PIDs of the dumped tree as crest makes them again (empty in a PID namespace of its own). */
  pids: number[];
}

export type RestoreOutcome = "refused" | "restored" | "finding";

export interface RestoreResult {
  outcome: RestoreOutcome;
  /** crest's message (its first stderr line), or what is wrong. */
  message: string;
  ms: number;
}

/** Processes whose parent is this process (a subreaper: whatever a restore leaves comes here). */
export function children(): number[] {
  return readdirSync("/proc").filter((d) => /^\d+$/.test(d)).flatMap((d) => {
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === process.pid ? [Number(d)] : [];
    } catch {
      return [];
    }
  });
}

function descendants(pid: number): number[] {
  let kids: number[] = [];
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) kids = kids.concat(readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").split(" ").filter(Boolean).map(Number));
  } catch {
    return [];
  }
  return kids.flatMap((k) => [k, ...descendants(k)]);
}

/** Kills pid and everything below it, and reaps what comes back here, until the PIDs are free. */
export function killTree(pids: readonly number[]): void {
  const all = [...new Set(pids.flatMap((p) => [p, ...descendants(p)]))];
  for (const p of all) {
    try {
      process.kill(p, "SIGKILL");
    } catch {
      // gone
    }
  }
  for (let i = 0; i < 1000 && all.some((p) => existsSync(`/proc/${p}`)); i++) {
    for (const p of all) {
      try {
        wait4(p, WNOHANG);
      } catch {
        // not ours
      }
    }
    sleepMs(5);
  }
}

/**
 * Which of pids still run: a zombie (dead, its parent not yet told) or a PID
 * gone is not alive. Reaps what is this process's to reap, and gives a dying
 * process (a loaded machine may take a while) up to `ms` to go.
 */
export function living(pids: readonly number[], ms = 10_000): number[] {
  const runs = (p: number): boolean => {
    try {
      wait4(p, WNOHANG);
    } catch {
      // not ours
    }
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      return !"ZX".includes(stat.slice(stat.lastIndexOf(")") + 2)[0]!);
    } catch {
      return false;
    }
  };
  const end = Date.now() + ms;
  let left = [...new Set(pids)].filter(runs);
  while (left.length && Date.now() < end) {
    sleepMs(20);
    left = left.filter(runs);
  }
  return left;
}

/** A message that is a JavaScript error of crest's own rather than one about the images. */
const JS_ERROR = /Cannot read propert|Cannot set propert|is not a function|is not iterable|is not defined|Invalid array length|Invalid typed array length|Maximum call stack|Cannot convert|Cannot mix BigInt|Invalid time value|Unexpected end|ERR_[A-Z_]+|^\s+at /m;

/** Does the message name an image file of the set? */
function namesImage(message: string): boolean {
  return /[\w.-]+\.img\b|pagemap|stats-(dump|restore)|irmap-cache/.test(message);
}

/** Restores the (mutated) set in dir and judges what came out. */
export function restoreMutated(set: ImageSet, dir: string): RestoreResult {
  const pidfile = join(dir, "fuzz.pid");
  rmSync(pidfile, { force: true });
  const t0 = Date.now();
  const r = spawnSync(CREST, ["restore", "-D", dir, "-d", "-o", "restore.log", "--pidfile", pidfile, ...set.restoreOpts, ...RESTORE_EXTRA], {
    encoding: "utf8", timeout: RESTORE_TIMEOUT_MS, killSignal: "SIGKILL",
  });
  const ms = Date.now() - t0;
  const first = (r.stderr ?? "").split("\n")[0] ?? "";
  // What crest left running: anything still alive some time after crest is gone (killed, to go on).
  const leftover = () => {
    const left = living([...children(), ...set.pids]);
    if (left.length) killTree(left);
    living([...children(), ...set.pids]);
    return left;
  };
  if (r.error || r.signal) {
    leftover();
    return { outcome: "finding", message: `hang or crash: crest ${r.signal ? `killed by ${r.signal}` : r.error?.message} after ${ms} ms`, ms };
  }
  if (r.status === 0) {
    const root = existsSync(pidfile) ? Number(readFileSync(pidfile, "utf8")) : 0;
    killTree(root ? [root] : []);
    const left = leftover();
    return left.length ? { outcome: "finding", message: `restored, and processes ${left.join(", ")} outlived their root`, ms } : { outcome: "restored", message: "", ms };
  }
  const left = leftover();
  if (r.status !== 1) return { outcome: "finding", message: `exit code ${r.status}: ${first}`, ms };
  if (left.length) return { outcome: "finding", message: `processes ${left.join(", ")} left alive after: ${first}`, ms };
  if (JS_ERROR.test(r.stderr)) return { outcome: "finding", message: `a JavaScript error: ${first}`, ms };
  if (!namesImage(first)) return { outcome: "finding", message: `the message names no image: ${first}`, ms };
  return { outcome: "refused", message: first, ms };
}

/** A fresh copy of the set to mutate. */
export function copySet(set: ImageSet, into: string): string {
  rmSync(into, { recursive: true, force: true });
  cpSync(set.dir, into, { recursive: true });
  for (const f of readdirSync(into)) if (f.endsWith(".log")) rmSync(join(into, f));
  return into;
}
