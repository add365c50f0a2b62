// npm run bench:codec: crest's image codec against the generic codec it
// replaced (test/pb-reference.ts), in one run, on real images: those of
// test/fixtures/images, or of the image directories given (such as the
// dump of a tree of 100 processes).
//
//   node dist/bench/codec.js [DIR...]
//
// Hot: every entry decoded and encoded over and over, per message type (the
// best of several batches, in µs per entry). Cold: one pass decoding every
// entry, then one encoding them all, in a fresh process, as a command does:
// V8 has compiled none of the codec then, and compiles it as it goes (the
// median of CREST_BENCH_ROUNDS processes; wall and CPU time, the CPU of
// V8's compiler threads included). Encoding is as the image files do it:
// into the codec's own buffer (crest) or a new one (before).
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  COMMON_MESSAGES, IMG, decode, kindByMagic, pagemap_entry, prepareCodecs, type ImageKind, type MessageType,
} from "../src/images/index.js";
import { encodeFramed } from "../src/images/pb.js";
import { referenceDecode, referenceEncodeWithPrefix } from "../test/pb-reference.js";

const here = dirname(fileURLToPath(import.meta.url));
const ROUNDS = Number(process.env.CREST_BENCH_ROUNDS ?? 9);

interface Entry {
  type: MessageType<unknown>;
  bytes: Buffer;
}

interface Codec {
  name: string;
  decode(type: MessageType<unknown>, bytes: Buffer): unknown;
  encode(type: MessageType<unknown>, msg: unknown): Buffer;
}

const CODECS: Codec[] = [
  { name: "before", decode: referenceDecode, encode: (t, m) => referenceEncodeWithPrefix(t, m as never, 4) },
  { name: "crest", decode, encode: (t, m) => encodeFramed(t, m as never) },
];

/** Kinds whose files hold raw payloads between entries: left out. */
const WITH_PAYLOADS = new Set(["GHOST_FILE", "PIPES_DATA", "FIFO_DATA", "SK_QUEUES", "TCP_STREAM", "IPCNS_SHM", "IPCNS_SEM", "IPCNS_MSG"]);

/** Every entry of the image files in dirs (and in their subdirectories), as raw messages. */
function entriesOf(dirs: string[]): Entry[] {
  const out: Entry[] = [];
  const visit = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) {
        visit(path);
        continue;
      }
      const b = readFileSync(path);
      if (b.length < 8) continue;
      let kind = kindByMagic(b.readUInt32LE(0), b.readUInt32LE(4));
      if (!kind?.type || WITH_PAYLOADS.has(kind.name)) continue;
      if (name.startsWith("pagemap-shmem")) kind = IMG.shmemPagemap as ImageKind<unknown, never>;
      let pos = kind.header === "inventory" ? 4 : 8, first = true;
      while (pos + 4 <= b.length) {
        const len = b.readUInt32LE(pos);
        const type = kind.name.endsWith("PAGEMAP") && !first ? pagemap_entry : kind.type;
        out.push({ type: type as MessageType<unknown>, bytes: b.subarray(pos + 4, pos + 4 + len) });
        pos += 4 + len;
        first = false;
      }
    }
  };
  for (const d of dirs) visit(d);
  return out;
}

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

/** The best time of batches of fn, in ms, over about `budget` ms. */
function best(fn: () => void, budget = 150): number {
  let min = Infinity;
  for (let spent = 0; spent < budget;) {
    const t0 = process.hrtime.bigint();
    fn();
    const t = ms(t0);
    spent += t;
    min = Math.min(min, t);
  }
  return min;
}

/** In a child process: one cold pass of a codec; prints its times. */
function coldPass(codecName: string, dirs: string[]): void {
  const codec = CODECS.find((c) => c.name === codecName)!;
  const entries = entriesOf(dirs);
  // As in crest's startup snapshot.
  if (codec.name === "crest") prepareCodecs(COMMON_MESSAGES);
  const cpu = (a: NodeJS.CpuUsage) => { const b = process.cpuUsage(a); return (b.user + b.system) / 1000; };
  const objs: unknown[] = [];
  let c0 = process.cpuUsage(), t0 = process.hrtime.bigint();
  for (const e of entries) objs.push(codec.decode(e.type, e.bytes));
  const decWall = ms(t0), decCpu = cpu(c0);
  c0 = process.cpuUsage();
  t0 = process.hrtime.bigint();
  entries.forEach((e, i) => codec.encode(e.type, objs[i]));
  console.log(JSON.stringify({ decWall, decCpu, encWall: ms(t0), encCpu: cpu(c0) }));
}

function main(): void {
  const dirs = process.argv.slice(2).filter((a) => !a.startsWith("--"));
  if (!dirs.length) dirs.push(resolve(here, "..", "..", "test", "fixtures", "images"));
  const entries = entriesOf(dirs);
  const byType = new Map<string, Entry[]>();
  for (const e of entries) byType.set(e.type.name, [...(byType.get(e.type.name) ?? []), e]);
  const bytes = entries.reduce((n, e) => n + e.bytes.length, 0);
  console.log(`${entries.length} entries (${bytes} bytes) of ${byType.size} message types, from ${dirs.join(" ")}\n`);

  // Hot, per message type, the codecs taking turns.
  const objs = new Map<string, unknown[]>();
  for (const [name, es] of byType) objs.set(name, es.map((e) => decode(e.type, e.bytes)));
  console.log("hot, µs per entry:        decode before / crest    encode before / crest");
  const total = CODECS.map(() => ({ dec: 0, enc: 0 }));
  for (const [name, es] of [...byType].sort((a, b) => b[1].length - a[1].length)) {
    const os = objs.get(name)!;
    const t = CODECS.map(() => ({ dec: Infinity, enc: Infinity }));
    for (let r = 0; r < 3; r++) {
      CODECS.forEach((c, i) => {
        t[i]!.dec = Math.min(t[i]!.dec, best(() => { for (const e of es) c.decode(e.type, e.bytes); }, 50));
        t[i]!.enc = Math.min(t[i]!.enc, best(() => { es.forEach((e, j) => c.encode(e.type, os[j])); }, 50));
      });
    }
    t.forEach((x, i) => { total[i]!.dec += x.dec; total[i]!.enc += x.enc; });
    const us = (x: number) => ((x * 1000) / es.length).toFixed(2).padStart(7);
    const [a, b] = t as [{ dec: number; enc: number }, { dec: number; enc: number }];
    console.log(`  ${name.padEnd(22)} ${String(es.length).padStart(5)}  ${us(a.dec)} / ${us(b.dec)} ${(a.dec / b.dec).toFixed(1).padStart(4)}x   ` +
      `${us(a.enc)} / ${us(b.enc)} ${(a.enc / b.enc).toFixed(1).padStart(4)}x`);
  }
  const [a, b] = total as [{ dec: number; enc: number }, { dec: number; enc: number }];
  console.log(`  ${"all (sum of types, ms)".padEnd(28)} ${a.dec.toFixed(2).padStart(7)} / ${b.dec.toFixed(2).padStart(7)} ${(a.dec / b.dec).toFixed(1).padStart(4)}x   ` +
    `${a.enc.toFixed(2).padStart(7)} / ${b.enc.toFixed(2).padStart(7)} ${(a.enc / b.enc).toFixed(1).padStart(4)}x`);

  // Cold: fresh processes, taking turns.
  const runs = new Map<string, Array<Record<string, number>>>(CODECS.map((c) => [c.name, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const c of CODECS) {
      const p = spawnSync(process.execPath, [fileURLToPath(import.meta.url), `--cold=${c.name}`, ...dirs], { encoding: "utf8" });
      if (p.status !== 0) throw new Error(`cold pass of ${c.name} failed: ${p.stderr}`);
      runs.get(c.name)!.push(JSON.parse(p.stdout) as Record<string, number>);
    }
  }
  const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[xs.length >> 1]!;
  console.log(`\ncold, one pass in a fresh process (median of ${ROUNDS}), ms: decode wall / cpu    encode wall / cpu`);
  for (const c of CODECS) {
    const rs = runs.get(c.name)!;
    const f = (k: string) => med(rs.map((x) => x[k]!)).toFixed(1).padStart(6);
    console.log(`  ${c.name.padEnd(8)}  ${f("decWall")} / ${f("decCpu")}     ${f("encWall")} / ${f("encCpu")}`);
  }
}

const cold = process.argv.find((a) => a.startsWith("--cold="));
if (cold) coldPass(cold.slice("--cold=".length), process.argv.slice(2).filter((a) => !a.startsWith("--")));
else main();
