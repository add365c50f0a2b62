// A task's pages across an image chain (pre-dump, then dump --prev-images-dir):
// a pagemap entry flagged PE_PARENT says its pages are in the parent images
// (the `parent` link beside the images), whose own entries may send them on
// to their parent in turn. A restore resolves the chain once, into runs of
// each pages file it reads from. Dedup (criu's `dedup`, `--auto-dedup`)
// punches out of the parents' pages files the pages a later image holds
// anew: no restore of the chain's last images reads them there.
import { closeSync, existsSync, openSync, readdirSync, realpathSync } from "node:fs";
import { basename } from "node:path";
import { IMG, type pagemap_entry } from "../../images/index.js";
import { RestoreImages } from "../../images/store.js";
import { resumFiles } from "../../images/manifest.js";
import { PAGE_SIZE, SYS } from "../../sys/constants.js";
import { native } from "../../sys/native.js";
import { check } from "../../sys/errno.js";
import { PE, pageCount, pageRuns, splitRuns, type PageRun } from "./pages.js";

/** One pages file of a task's chain: the task's own (layer 0), then each parent's. */
export interface PageLayer {
  images: RestoreImages;
  pagesId: number;
  /** That directory's pagemap entries for the task. */
  entries: pagemap_entry[];
}

export interface ChainPages {
  layers: PageLayer[];
  /** Every run of the task's pages, in address order, each naming its layer. */
  runs: PageRun[];
}

type BigRanges = Array<{ start: bigint; end: bigint }>;
const CHAIN_MAX = 128;

function rangesOf(entries: readonly pagemap_entry[], flag: number): BigRanges {
  const out: BigRanges = [];
  for (const e of entries) {
    if (!((e.flags ?? PE.PRESENT) & flag)) continue;
    const end = e.vaddr + BigInt(pageCount(e) * PAGE_SIZE);
    const last = out[out.length - 1];
    if (last && last.end === e.vaddr) last.end = end;
    else out.push({ start: e.vaddr, end });
  }
  return out;
}

/** Ranges of `a` (sorted, disjoint) that lie inside `b` (sorted, disjoint). */
function intersect(a: BigRanges, b: BigRanges): BigRanges {
  const out: BigRanges = [];
  let j = 0;
  for (const r of a) {
    while (j < b.length && b[j]!.end <= r.start) j++;
    for (let k = j; k < b.length && b[k]!.start < r.end; k++) {
      const s = r.start > b[k]!.start ? r.start : b[k]!.start, e = r.end < b[k]!.end ? r.end : b[k]!.end;
      if (s < e) out.push({ start: s, end: e });
    }
  }
  return out;
}

const total = (rs: BigRanges): bigint => rs.reduce((n, r) => n + (r.end - r.start), 0n);
const hex = (r: { start: bigint; end: bigint }): string => `0x${r.start.toString(16)}-0x${r.end.toString(16)}`;

/**
 * The task's pages (process `vpid`, its pagemap `entries` and pages file
 * `pagesId` in `images`), following PE_PARENT entries up the chain; an
 * entry no parent holds fails, naming the pages and the directory.
 */
export function resolveChain(images: RestoreImages, vpid: number, entries: pagemap_entry[], pagesId: number): ChainPages {
  const layers: PageLayer[] = [{ images, pagesId, entries }];
  const runs: PageRun[] = pageRuns(entries);
  let need = rangesOf(entries, PE.PARENT);
  let here = images;
  while (need.length) {
    const what = `pages ${hex(need[0]!)} of process ${vpid} in ${here.name(IMG.pagemap, vpid)}`;
    if (layers.length > CHAIN_MAX) throw here.invalid(IMG.pagemap, vpid, `the parent chain is longer than ${CHAIN_MAX} (a loop of parent links?)`);
    // Resolved by the kernel: the link is relative to where it is, and the directory may be a client's /proc/PID/fd/N.
    const dir = `${here.dir}/parent`;
    if (!existsSync(dir)) throw here.invalid(IMG.pagemap, vpid, `${what} are in the parent images, and ${here.dir} has no parent link`);
    const up = new RestoreImages(realpathSync.native(dir));
    if (!up.exists(IMG.pagemap, vpid)) throw up.invalid(IMG.pagemap, vpid, `missing: the parent images have no pagemap for process ${vpid}, which ${what} need`);
    const pm = up.read(IMG.pagemap, vpid);
    const present = intersect(need, rangesOf(pm.entries, PE.PRESENT));
    const further = intersect(need, rangesOf(pm.entries, PE.PARENT));
    if (total(present) + total(further) !== total(need)) {
      throw up.invalid(IMG.pagemap, vpid, `the parent images do not hold every page of process ${vpid} its child images say they do (first asked: ${hex(need[0]!)})`);
    }
    const layer = layers.length;
    for (const r of splitRuns(pageRuns(pm.entries), present).inside) runs.push({ ...r, layer });
    layers.push({ images: up, pagesId: pm.head.pages_id, entries: pm.entries });
    need = further;
    here = up;
  }
  runs.sort((a, b) => (a.vaddr < b.vaddr ? -1 : a.vaddr > b.vaddr ? 1 : 0));
  return { layers, runs };
}

/** The runs read from one layer, in address order. */
export const runsOf = (runs: readonly PageRun[], layer: number): PageRun[] => runs.filter((r) => (r.layer ?? 0) === layer);

const FALLOC_FL_KEEP_SIZE = 1, FALLOC_FL_PUNCH_HOLE = 2;

/** Punches runs (pages of `path`, by their offsets) out of the file, keeping its size and the other pages' offsets; returns the bytes. */
function punch(path: string, runs: readonly PageRun[]): number {
  if (!runs.length) return 0;
  const sorted = [...runs].sort((a, b) => a.off - b.off);
  const fd = openSync(path, "r+");
  let bytes = 0;
  try {
    // Runs next to each other in the file: one call.
    let start = sorted[0]!.off, end = start + sorted[0]!.len;
    const hole = () => {
      check(native.syscall(SYS.fallocate, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, start, end - start), `punch ${end - start} bytes at ${start} out of ${path}`);
      bytes += end - start;
    };
    for (const r of sorted.slice(1)) {
      if (r.off === end) end += r.len;
      else {
        hole();
        start = r.off;
        end = r.off + r.len;
      }
    }
    hole();
  } finally {
    closeSync(fd);
  }
  return bytes;
}

/**
 * The pages process `vpid`'s images hold anew, punched out of every parent
 * image that held an older copy (following its PE_PARENT entries up, as a
 * restore would); returns the bytes punched. A directory without a parent
 * link, or a parent without the process, ends the walk.
 */
export function dedupTask(images: RestoreImages, vpid: number): number {
  let need = rangesOf(images.read(IMG.pagemap, vpid).entries, PE.PRESENT);
  let here = images, bytes = 0;
  for (let depth = 0; need.length && existsSync(`${here.dir}/parent`); depth++) {
    if (depth > CHAIN_MAX) throw here.invalid(IMG.pagemap, vpid, `the parent chain is longer than ${CHAIN_MAX} (a loop of parent links?)`);
    const up = new RestoreImages(realpathSync.native(`${here.dir}/parent`));
    if (!up.exists(IMG.pagemap, vpid)) break;
    const pm = up.read(IMG.pagemap, vpid);
    const older = splitRuns(pageRuns(pm.entries), intersect(need, rangesOf(pm.entries, PE.PRESENT))).inside;
    const punched = punch(up.name(IMG.pages, pm.head.pages_id), older);
    // The parent's manifest follows: the file holds zeros there now.
    if (punched) resumFiles(up.dir, [basename(up.name(IMG.pages, pm.head.pages_id))]);
    bytes += punched;
    need = intersect(need, rangesOf(pm.entries, PE.PARENT));
    here = up;
  }
  return bytes;
}

/** dedupTask for every process of the images in `dir` (each pagemap-PID.img); returns the bytes punched. */
export function dedupImages(dir: string): number {
  const images = new RestoreImages(dir);
  let bytes = 0;
  for (const name of readdirSync(dir)) {
    const m = /^pagemap-(\d+)\.img$/.exec(name);
    if (m) bytes += dedupTask(images, Number(m[1]));
  }
  return bytes;
}
