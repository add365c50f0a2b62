// crest crit beside Debian's crit, in the same run (not in CI):
//   node scripts/build.mjs && node dist/bench/crit.js
//
// Image sets:
// - a dump by crest of bigmem holding 1 GiB (CREST_BENCH_CRIT_MIB) of memory:
//   every image file decoded (pages-*.img is not: crit does not decode it, the
//   pagemap that describes it is), one command per file as one would run them;
// - the worst pagemap a 1 GiB set can have: 262,144 single-page runs (every
//   other page of 2 GiB present), written with crest's image layer.
// Each tool decodes each set plain and with --pretty, best of CREST_BENCH_ROUNDS
// (default 3) rounds; crest's output is checked against crit's on the way.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IMG, writeImage } from "../src/images/index.js";
import { CREST, dumpWorkload, imagesDir, startWorkload, stop } from "../test/cr/harness.js";
import { CRIT } from "../test/crit.js";

const MIB = Number(process.env.CREST_BENCH_CRIT_MIB ?? 1024);
const ROUNDS = Number(process.env.CREST_BENCH_ROUNDS ?? 3);
const NOT_CRIT = /\.log$|^pages-|^(ifaddr|route6?|rule|ip6?tables|nftables)-\d+\.img$|\.tar\.gz(\.img)?$|^parent$/;

interface Tool { name: string; argv: (file: string, pretty: boolean) => string[] }
const TOOLS: Tool[] = [
  { name: "crest crit", argv: (f, p) => [CREST, "crit", "decode", ...(p ? ["--pretty"] : []), "-i", f] },
  { name: "crit (Debian 3.17)", argv: (f, p) => [CRIT, "decode", ...(p ? ["--pretty"] : []), "-i", f] },
];

/** Seconds to decode every file, one command each; the outputs, for the check. */
function decodeAll(tool: Tool, files: string[], pretty: boolean): { secs: number; out: string[] } {
  const t0 = process.hrtime.bigint();
  const out = files.map((f) => {
    const [bin, ...args] = tool.argv(f, pretty);
    const r = spawnSync(bin!, args, { encoding: "utf8", maxBuffer: 1 << 30 });
    if (r.status !== 0) throw new Error(`${tool.name} decode ${f}: ${r.stderr}`);
    return r.stdout;
  });
  return { secs: Number(process.hrtime.bigint() - t0) / 1e9, out };
}

function bench(label: string, dir: string): void {
  const files = readdirSync(dir).filter((f) => !NOT_CRIT.test(f)).map((f) => join(dir, f));
  const total = readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
  const decoded = files.reduce((n, f) => n + statSync(f).size, 0);
  console.log(`\n${label}: ${files.length} files decoded (${(decoded / 1024).toFixed(1)} KiB) of a ${(total / 2 ** 20).toFixed(0)} MiB set`);
  for (const pretty of [false, true]) {
    const best = TOOLS.map((tool) => {
      let secs = Infinity;
      let out: string[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        const r = decodeAll(tool, files, pretty);
        if (r.secs < secs) ({ secs, out } = r);
      }
      return { tool, secs, out };
    });
    const [crest, crit] = best as [typeof best[0], typeof best[0]];
    // The same JSON but for the fields crit 3.17 lacks: the sizes tell how close.
    const sizes = `${crest.out.reduce((n, s) => n + s.length, 0)} vs ${crit.out.reduce((n, s) => n + s.length, 0)} bytes of JSON`;
    for (const b of best) console.log(`  decode${pretty ? " --pretty" : "         "}  ${b.tool.name.padEnd(20)} ${(b.secs * 1000).toFixed(0).padStart(7)} ms`);
    console.log(`  crest / crit: ${(crest.secs / crit.secs).toFixed(2)} (${sizes})`);
  }
}

const tmp = mkdtempSync(join(tmpdir(), "crest-bench-crit-"));
try {
  const w = startWorkload("bigmem", [String(MIB)], { mib: MIB });
  try {
    dumpWorkload(w);
    bench(`crest's dump of bigmem ${MIB} MiB`, imagesDir(w));
  } finally {
    stop(w);
    rmSync(w.dir, { recursive: true, force: true });
  }
  const runs = 262144;
  const set = join(tmp, "fragmented");
  spawnSync("mkdir", ["-p", set]);
  writeImage(set, IMG.pagemap, 1, {
    head: { pages_id: 1 },
    entries: Array.from({ length: runs }, (_, i) => ({ vaddr: 0x7f00_0000_0000n + BigInt(i) * 8192n, compat_nr_pages: 1, flags: 4, nr_pages: 1n })),
  });
  bench(`a pagemap of ${runs} single-page runs (1 GiB of pages)`, set);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
