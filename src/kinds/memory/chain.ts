// A task's pages across an image chain (pre-dump, then dump --prev-images-dir):
// a pagemap entry flagged PE_PARENT says its pages are in the parent images
// (the `parent` link beside the images), whose own entries may send them on
// to their parent in turn. A restore resolves the chain once, into runs of
// each pages file it reads from.
import { existsSync, realpathSync } from "node:fs";
import { IMG, type pagemap_entry } from "../../images/index.js";
import { RestoreImages } from "../../images/store.js";
import { PAGE_SIZE } from "../../sys/constants.js";
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
