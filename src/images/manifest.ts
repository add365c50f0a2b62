// An image set that knows itself: crest-manifest.json, written by a dump or
// pre-dump beside CRIU's images (criu skips files it does not know), names
// every file of the set with its size and CRC-32, and the `parent` link of
// an image chain. A restore checks a set that has one before it creates
// anything: a file missing, extra, of another size or altered fails it,
// naming the file. Sets without one (criu's) are not checked.
//
// Which names a manifest covers: regular files named *.img and crest's own
// crest-*.json (the manifests themselves aside), and whether there is a
// `parent` link (not where it points: moving a chain means re-pointing it).
// Everything else in the directory is left alone: logs (dump.log,
// restore.log), CRIU's service files rewritten after the dump (stats-dump,
// stats-restore), the dump's staging directory (.crest-dump-*).
//
// Checksums are computed as the dump writes (store.ts; the pages by the
// main and the writer thread, their pieces' sums combined), never by reading
// the set back. The CRC-32 is zlib's (node's zlib.crc32, native): 3.4 GB/s
// here, three times sha256; it is there to catch damage, not to authenticate.
//
// A crest page server that receives a dump's pagemaps and pages writes its
// own manifest of what it wrote (crest-manifest-page-server.json); the dump's
// says `page_server`, and without the server's (criu's page server), the
// pagemap-*.img and pages-*.img files the dump's does not name are not checked.
import { closeSync, fstatSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, realpathSync, renameSync, writeFileSync, constants as fsc } from "node:fs";
import type { MessagePort, Worker } from "node:worker_threads";
import { join } from "node:path";
import { crc32 as zlibCrc32 } from "node:zlib";
import { ImageError, type ImageOutput } from "./file.js";

export const MANIFEST = "crest-manifest.json";
export const PAGE_SERVER_MANIFEST = "crest-manifest-page-server.json";
const VERSION = 1;
/** The link of an image chain to its parent images. */
const PARENT = "parent";
const CHAIN_MAX = 128;
/**
 * Pages files up to this much in all are summed at once, before anything is
 * created: a thread costs 30 ms or more to start (a Node environment of its
 * own), as long as summing 32 MiB here takes.
 */
const INLINE_PAGES_MAX = 32 << 20;

export interface ManifestFile {
  size: number;
  /** zlib's CRC-32 of the whole file, 8 hex digits. */
  crc32: string;
}

export interface Manifest {
  crest_manifest: number;
  checksum: "crc32";
  /** The `parent` link's target, as the dump made it. */
  parent?: string;
  /** The pagemaps and pages went to a page server (--page-server). */
  page_server?: boolean;
  files: Record<string, ManifestFile>;
}

/** Whether a manifest accounts for the file `name` of an images directory. */
export function covered(name: string): boolean {
  if (name === MANIFEST || name === PAGE_SERVER_MANIFEST) return false;
  return name.endsWith(".img") || (name.startsWith("crest-") && name.endsWith(".json"));
}

const isPages = (name: string): boolean => /^pages-\d+\.img$/.test(name);
export const isPageServers = (name: string): boolean => isPages(name) || /^pagemap-(shmem-)?\d+\.img$/.test(name);

/**
 * zlib's CRC-32, continued from `crc`. zlib is loaded with this module, so
 * crest's startup snapshot holds it: loaded at its first use, it cost every
 * dump and restore 1 to 3 ms.
 */
export function crc32(data: Uint8Array, crc = 0): number {
  return zlibCrc32(data, crc);
}

export const crcHex = (crc: number): string => (crc >>> 0).toString(16).padStart(8, "0");

// CRC-32 in GF(2) polynomial terms, bit-reflected as zlib keeps it (bit 31 is
// x^0): the CRC of A then B is the CRC of A times x^(8 * |B|), mod the
// polynomial, plus the CRC of B. That lets two threads sum parts of one file.
const POLY = 0xedb88320;

/** a * b mod the CRC-32 polynomial. */
function multModP(a: number, b: number): number {
  let p = 0;
  for (let m = 0x80000000; m !== 0; m >>>= 1) {
    if (a & m) p ^= b;
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/** x^(2^k) mod the polynomial, k = 0..63. */
const X2K: number[] = [];
for (let k = 0, x = 0x40000000; k < 64; k++, x = multModP(x, x)) X2K.push(x);

/** The CRC-32 of A then B, from A's CRC, B's and B's length in bytes. */
export function crc32Combine(crcA: number, crcB: number, lenB: number): number {
  // x^(8 lenB): a product of the x^(2^k) for the bits of 8 lenB.
  let shift = 0x80000000;
  for (let k = 3, n = lenB; n > 0; k++, n = Math.floor(n / 2)) if (n % 2) shift = multModP(shift, X2K[k]!);
  return (multModP(shift, crcA >>> 0) ^ (crcB >>> 0)) >>> 0;
}

/** A running size and CRC-32 of a file as it is written. */
export class Checksum {
  size = 0;
  crc = 0;

  update(data: Uint8Array): void {
    this.crc = crc32(data, this.crc);
    this.size += data.length;
  }

  /** The next `len` bytes, summed elsewhere to `crc`. */
  append(crc: number, len: number): void {
    this.crc = crc32Combine(this.crc, crc, len);
    this.size += len;
  }

  get file(): ManifestFile {
    return { size: this.size, crc32: crcHex(this.crc) };
  }
}

export function encodeManifest(m: Manifest): string {
  const files: Record<string, ManifestFile> = {};
  for (const name of Object.keys(m.files).sort()) files[name] = { size: m.files[name]!.size, crc32: m.files[name]!.crc32 };
  return JSON.stringify({ ...m, files }, null, 1) + "\n";
}

/** Parses a manifest; anything malformed is an ImageError naming `path`. */
export function decodeManifest(text: string, path: string): Manifest {
  const bad = (detail: string): never => {
    throw new ImageError(path, "corrupt", `${detail} (--no-verify restores without the check)`);
  };
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (e) {
    return bad(`not a manifest: ${(e as Error).message}`);
  }
  if (typeof m !== "object" || m === null) return bad("not a manifest: not a JSON object");
  const o = m as Record<string, unknown>;
  if (o.crest_manifest !== VERSION) return bad(`manifest version ${String(o.crest_manifest)}; crest reads version ${VERSION}`);
  if (o.checksum !== "crc32") return bad(`checksum ${String(o.checksum)}; crest knows crc32`);
  if (o.parent !== undefined && typeof o.parent !== "string") return bad("`parent` is not a string");
  if (o.page_server !== undefined && typeof o.page_server !== "boolean") return bad("`page_server` is not a boolean");
  if (typeof o.files !== "object" || o.files === null || Array.isArray(o.files)) return bad("`files` is not an object");
  const files: Record<string, ManifestFile> = {};
  for (const [name, f] of Object.entries(o.files as Record<string, unknown>)) {
    const e = f as Record<string, unknown> | null;
    if (!covered(name) || name.includes("/")) return bad(`names ${JSON.stringify(name)}, which is not an image file name`);
    if (typeof e !== "object" || e === null || !Number.isSafeInteger(e.size) || (e.size as number) < 0 || typeof e.crc32 !== "string" || !/^[0-9a-f]{8}$/.test(e.crc32)) {
      return bad(`the entry of ${name} is not {size, crc32}`);
    }
    files[name] = { size: e.size as number, crc32: e.crc32 };
  }
  return { crest_manifest: VERSION, checksum: "crc32", ...(o.parent !== undefined ? { parent: o.parent as string } : {}), ...(o.page_server ? { page_server: true } : {}), files };
}

/** Writes a manifest into dir atomically (a temporary name, then renamed). */
export function writeManifest(dir: string, name: string, m: Manifest): void {
  const tmp = join(dir, `.${name}.tmp`);
  writeFileSync(tmp, encodeManifest(m), { mode: 0o600 });
  renameSync(tmp, join(dir, name));
}

/**
 * Files of `dir` changed in place on purpose since its dump (dedup punches
 * the pages a later image holds anew out of a parent's pages file) are
 * summed anew (read again: holes read fast) in the manifests of `dir` that
 * name them; a directory without a manifest is left alone.
 */
export function resumFiles(dir: string, names: readonly string[]): void {
  const buf = Buffer.allocUnsafe(4 << 20);
  for (const which of [MANIFEST, PAGE_SERVER_MANIFEST]) {
    const m = readManifest(dir, which);
    const mine = names.filter((n) => m?.files[n]);
    if (!m || !mine.length) continue;
    for (const name of mine) {
      const fd = openSync(join(dir, name), fsc.O_RDONLY);
      try {
        m.files[name] = { size: fstatSync(fd).size, crc32: crcHex(fdCrc(fd, buf)) };
      } finally {
        closeSync(fd);
      }
    }
    writeManifest(dir, which, m);
  }
}

/** The files a dump writes, summed as they are written. */
export class ManifestRecorder {
  private readonly files = new Map<string, ManifestFile>();

  /** Wraps an image file's output: its bytes are summed on their way; a discarded file is not recorded. */
  output(name: string, out: ImageOutput): ImageOutput {
    const sum = new Checksum();
    return {
      write: (data) => {
        sum.update(data);
        out.write(data);
      },
      close: () => {
        out.close();
        this.record(name, sum.file);
      },
      discard: () => {
        this.files.delete(name);
        out.discard();
      },
    };
  }

  record(name: string, f: ManifestFile): void {
    if (covered(name)) this.files.set(name, f);
  }

  /** The manifest of the files recorded that are still there (`present`: those a page server did not take). */
  manifest(present: ReadonlySet<string> | undefined, extra: { parent?: string; pageServer?: boolean }): Manifest {
    const files: Record<string, ManifestFile> = {};
    for (const [name, f] of this.files) if (!present || present.has(name)) files[name] = f;
    return {
      crest_manifest: VERSION, checksum: "crc32",
      ...(extra.parent !== undefined ? { parent: extra.parent } : {}),
      ...(extra.pageServer ? { page_server: true } : {}),
      files,
    };
  }
}

// ---- the check ----

/** One thing wrong with an image set. */
export interface Problem {
  /** The file's path. */
  file: string;
  what: string;
}

/** A pages file whose size is right, and whose CRC-32 is checked as the restore goes. */
export interface PendingSum {
  path: string;
  size: number;
  crc32: string;
}

export interface SetCheck {
  problems: Problem[];
  pending: PendingSum[];
  /** Files checked now (sizes and sums), and names left unchecked (criu's page server's). */
  checked: number;
  unchecked: string[];
}

function readManifest(dir: string, name: string): Manifest | null {
  const path = join(dir, name);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // No directory: the restore says so itself.
    if (code === "ENOENT" || code === "ENOTDIR") return null;
    throw new ImageError(path, "io", `cannot read: ${(e as Error).message}`, undefined, { cause: e });
  }
  return decodeManifest(text, path);
}

/** Whether the images in dir sent their pagemaps and pages to a page server (their manifest says so). */
export function sentToPageServer(dir: string): boolean {
  return readManifest(dir, MANIFEST)?.page_server === true;
}

/** zlib's CRC-32 of what is left to read of fd, read in chunks into `buf`. */
function fdCrc(fd: number, buf: Buffer): number {
  let crc = 0;
  for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) crc = crc32(buf.subarray(0, n), crc);
  return crc;
}

/** zlib's CRC-32 of a whole file. */
export function fileCrc(path: string, buf: Buffer): number {
  const fd = openSync(path, fsc.O_RDONLY);
  try {
    return fdCrc(fd, buf);
  } finally {
    closeSync(fd);
  }
}

/**
 * Checks one images directory against its manifest: names, sizes, and the
 * sums of every file but the pages files, which are left `pending` (summed
 * while the restore reads them: checkPending). Null: no manifest.
 */
export function checkSet(dir: string, o: { deferPages?: boolean } = {}): SetCheck | null {
  const m = readManifest(dir, MANIFEST);
  if (!m) return null;
  const ps = readManifest(dir, PAGE_SERVER_MANIFEST);
  const expected = new Map(Object.entries(m.files));
  if (ps) for (const [n, f] of Object.entries(ps.files)) expected.set(n, f);
  const out: SetCheck = { problems: [], pending: [], checked: 0, unchecked: [] };
  const problem = (name: string, what: string) => out.problems.push({ file: join(dir, name), what });
  const buf = Buffer.allocUnsafe(256 << 10);
  // One readdir, then one open and fstat a file: 700 files of a 100-task dump are checked in about 30 ms.
  const entries = new Map(readdirSync(dir, { withFileTypes: true }).map((d) => [d.name, d]));
  for (const name of entries.keys()) {
    if (name === PARENT || !covered(name) || expected.has(name)) continue;
    if (m.page_server && !ps && isPageServers(name)) out.unchecked.push(name);
    else problem(name, `extra: not in ${MANIFEST} (not written by the dump: left by an older dump into this directory, or added since)`);
  }
  // The parent link is there if the dump made one; where it points may change (images moved), and the chain's walk checks it.
  let link: string | undefined;
  try {
    link = readlinkSync(join(dir, PARENT));
  } catch {
    link = undefined;
  }
  if (m.parent !== undefined && link === undefined) problem(PARENT, `missing: the dump linked its parent images as ${m.parent}`);
  else if (m.parent === undefined && link !== undefined) problem(PARENT, `extra: the dump had no parent images, the link points to ${link}`);
  for (const [name, f] of [...expected].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const path = join(dir, name);
    const entry = entries.get(name);
    if (!entry) {
      problem(name, `missing: ${MANIFEST} names it (${f.size} bytes)`);
      continue;
    }
    if (!entry.isFile()) {
      problem(name, "not a regular file");
      continue;
    }
    const fd = openSync(path, fsc.O_RDONLY | fsc.O_NOFOLLOW);
    try {
      const size = fstatSync(fd).size;
      if (size !== f.size) {
        problem(name, `${size < f.size ? "truncated" : "grown"}: ${size} bytes, the dump wrote ${f.size}`);
        continue;
      }
      if (o.deferPages && isPages(name)) {
        out.pending.push({ path, size: f.size, crc32: f.crc32 });
        continue;
      }
      const crc = crcHex(fdCrc(fd, buf));
      if (crc !== f.crc32) problem(name, `altered: its CRC-32 is ${crc}, the dump wrote ${f.crc32}`);
      out.checked++;
    } finally {
      closeSync(fd);
    }
  }
  return out;
}

/** The directories of an image chain: dir, then each parent the `parent` links lead to. */
export function chainDirs(dir: string): string[] {
  const dirs = [dir];
  let real: string;
  try {
    real = realpathSync.native(dir);
  } catch {
    return dirs;
  }
  const seen = new Set([real]);
  for (let here = dir; dirs.length <= CHAIN_MAX;) {
    let up: string;
    try {
      up = realpathSync.native(join(here, PARENT));
    } catch {
      break;
    }
    if (seen.has(up)) break; // a loop: the restore's chain walk refuses it
    seen.add(up);
    dirs.push(up);
    here = up;
  }
  return dirs;
}

export class ManifestError extends ImageError {
  constructor(readonly problems: Problem[]) {
    const first = problems[0]!;
    super(first.file, "invalid", "");
    this.message = problems.map((p) => `${p.file}: ${p.what}`).join("; ") +
      ` — the image set does not match the manifest its dump wrote (--no-verify restores without the check)`;
    this.name = "ManifestError";
  }
}

// ---- pages, summed beside the restore ----

/** A piece of a pages file, summed on its own; the pieces' sums are combined. */
interface Range {
  /** Which of the files (its index). */
  file: number;
  path: string;
  off: number;
  len: number;
}

const RANGE_BYTES = 16 << 20;
/** Slots of the shared state: the next range to claim, ranges done. */
const NEXT = 0, DONE = 1;

/**
 * Sums the ranges claimed one at a time from state[NEXT], into crcs[i].
 * Run by the summing thread and by the restore once it waits for the
 * verdict: whoever is free takes the next range. It is also the thread's
 * source (toString), so it refers to nothing outside its arguments.
 */
function sumRanges(
  ranges: Range[], state: Int32Array, crcs: Int32Array,
  fs: Pick<typeof import("node:fs"), "openSync" | "readSync" | "closeSync">,
  crc32: (data: Uint8Array, crc: number) => number,
  fail: (i: number, what: string) => void,
): void {
  const buf = Buffer.allocUnsafe(4 << 20);
  const fds = new Map<string, number>();
  try {
    for (let i; (i = Atomics.add(state, 0, 1)) < ranges.length;) {
      const r = ranges[i]!;
      try {
        let fd = fds.get(r.path);
        if (fd === undefined) fds.set(r.path, (fd = fs.openSync(r.path, "r")));
        let crc = 0, at = 0;
        for (let n; at < r.len; at += n) {
          n = fs.readSync(fd, buf, 0, Math.min(buf.length, r.len - at), r.off + at);
          if (n === 0) break;
          crc = crc32(buf.subarray(0, n), crc);
        }
        if (at < r.len) fail(i, `changed during the restore: it ends at ${r.off + at} bytes`);
        crcs[i] = crc;
      } catch (e) {
        fail(i, `cannot read: ${(e as Error).message}`);
      }
      Atomics.add(state, 1, 1);
      Atomics.notify(state, 1);
    }
  } finally {
    for (const fd of fds.values()) fs.closeSync(fd);
  }
}

/** The summing thread: sumRanges, its failures posted; it ends by itself once no range is left. */
const SUMMER = `
const fs = require("node:fs");
const { crc32 } = require("node:zlib");
const { workerData: { ranges, state, crcs, results } } = require("node:worker_threads");
// What it posted stays readable after it ends (a restore that fails before it asks may not stop it).
results.unref();
${sumRanges.toString()}
sumRanges(ranges, new Int32Array(state), new Int32Array(crcs), fs, crc32, (i, what) => results.postMessage([i, what]));
`;

/**
 * The pages files of a set, summed while the restore reads them into the
 * tasks (the tasks read their pages with preadv straight into place: crest
 * never holds those bytes): in ranges, by a second thread from the start
 * and by the restore's own thread once it waits for the verdict, which
 * combines the ranges' sums. The restore asks it before it lets the tree run.
 */
export class PagesCheck {
  private readonly worker: Worker | null;
  private readonly state = new Int32Array(new SharedArrayBuffer(8));
  private readonly ranges: Range[] = [];
  private readonly crcs: Int32Array;
  private readonly results: MessagePort | null;
  /** Loaded only for a thread to start (in most restores the pages were summed inline: no thread, and no module to load). */
  private threads: typeof import("node:worker_threads") | undefined;
  private stopped = false;

  constructor(readonly files: PendingSum[], private readonly log: (msg: string) => void = () => {}) {
    files.forEach((f, file) => {
      for (let off = 0; off < f.size; off += RANGE_BYTES) this.ranges.push({ file, path: f.path, off, len: Math.min(RANGE_BYTES, f.size - off) });
    });
    this.crcs = new Int32Array(new SharedArrayBuffer(4 * this.ranges.length));
    if (!files.length) {
      this.worker = this.results = null;
      return;
    }
    this.threads = process.getBuiltinModule("node:worker_threads");
    const { port1, port2 } = new this.threads.MessageChannel();
    this.results = port1;
    this.worker = new this.threads.Worker(SUMMER, {
      eval: true,
      workerData: { ranges: this.ranges, state: this.state.buffer, crcs: this.crcs.buffer, results: port2 },
      transferList: [port2],
    });
    this.worker.unref();
    this.results.unref();
  }

  /** Sums what is left with the thread, then compares; throws a ManifestError for any pages file that is not what the dump wrote. */
  wait(): void {
    if (!this.worker) return;
    const t0 = process.hrtime.bigint();
    // A file's first failure, by file, reported in the files' order.
    const failed = new Map<number, string>();
    const fail = (i: number, what: string) => void (failed.has(this.ranges[i]!.file) || failed.set(this.ranges[i]!.file, what));
    const before = Math.min(Atomics.load(this.state, NEXT), this.ranges.length);
    sumRanges(this.ranges, this.state, this.crcs, { openSync, readSync, closeSync }, crc32, fail);
    for (let done; (done = Atomics.load(this.state, DONE)) < this.ranges.length;) Atomics.wait(this.state, DONE, done, 1000);
    for (let m; (m = this.threads!.receiveMessageOnPort(this.results!));) fail(...(m.message as [number, string]));
    const bytes = this.files.reduce((n, f) => n + f.size, 0);
    this.log(
      `Pages files summed: ${this.files.length} files, ${bytes} bytes in ${this.ranges.length} ranges, ${this.ranges.length - before} of them ` +
        `by this thread once it waited for the verdict (${(process.hrtime.bigint() - t0) / 1000n} us)`,
    );
    this.stop();
    const sums = this.files.map(() => new Checksum());
    this.ranges.forEach((r, i) => sums[r.file]!.append(this.crcs[i]!, r.len));
    const problems: Problem[] = [];
    this.files.forEach((f, file) => {
      const crc = crcHex(sums[file]!.crc);
      const what = failed.get(file) ?? (crc === f.crc32 ? undefined : `altered: its CRC-32 is ${crc}, the dump wrote ${f.crc32}`);
      if (what !== undefined) problems.push({ file: f.path, what });
    });
    if (problems.length) throw new ManifestError(problems);
  }

  stop(): void {
    if (!this.worker || this.stopped) return;
    this.stopped = true;
    void this.worker.terminate();
    this.results!.close();
  }
}

/**
 * Checks an image set and its parent chain against their manifests: throws
 * a ManifestError naming every file that is missing, extra, of another size
 * or altered (pages files: sizes only), and returns the sums of the pages
 * files under way (none with `sumPagesElsewhere`, which says who sums them).
 * Directories without a manifest are not checked.
 */
export function verifyImages(dir: string, log: (msg: string) => void, o: { deferPages?: boolean; sumPagesElsewhere?: string } = { deferPages: true }): PagesCheck {
  const problems: Problem[] = [];
  const pending: PendingSum[] = [];
  for (const d of chainDirs(dir)) {
    const c = checkSet(d, o);
    if (!c) {
      log(`${d} has no ${MANIFEST} (images not written by crest): not checked`);
      continue;
    }
    problems.push(...c.problems);
    pending.push(...c.pending);
    if (c.unchecked.length) log(`${d}: ${c.unchecked.join(", ")} came from a page server that wrote no manifest: not checked`);
    log(`${d}: ${c.checked} files checked against ${MANIFEST}, ${c.pending.length} pages files to sum`);
  }
  if (problems.length) throw new ManifestError(problems);
  const bytes = pending.reduce((n, f) => n + f.size, 0);
  if (o.sumPagesElsewhere !== undefined && pending.length) {
    log(`${pending.length} pages files (${bytes} bytes) are summed by ${o.sumPagesElsewhere}`);
    return new PagesCheck([]);
  }
  if (bytes > INLINE_PAGES_MAX) {
    log(`Summing ${pending.length} pages files (${bytes} bytes) on a second thread during the restore`);
    return new PagesCheck(pending, log);
  }
  const buf = Buffer.allocUnsafe(Math.min(bytes, 4 << 20) || 1);
  for (const f of pending) {
    const crc = crcHex(fileCrc(f.path, buf));
    if (crc !== f.crc32) problems.push({ file: f.path, what: `altered: its CRC-32 is ${crc}, the dump wrote ${f.crc32}` });
  }
  if (problems.length) throw new ManifestError(problems);
  return new PagesCheck([]);
}
