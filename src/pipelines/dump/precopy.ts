// dump --precopy (crest's own), after a pre-dump (--prev-images-dir with
// --track-mem): one more round of copying while the tree runs, right before
// the freeze, so that the frozen dump copies only what the tree writes in the
// last moments.
//
// For every task the previous dump tracks, PAGEMAP_SCAN finds the pages
// written since (present, neither the file's nor the zero page) and
// write-protects them again as it finds them (PM_SCAN_WP_MATCHING: a write
// after that marks its page anew). They are copied (process_vm_readv, and
// /proc/PID/mem for a piece unmapped meanwhile) into an image layer of their
// own, `precopy/` in the images directory, whose parent is the previous
// dump's images: a pre-dump's images, as criu writes them. The dump then takes that layer for its parent. Its pagemap is as long
// as the pages written since the round: the parent's runs are no longer
// split by every page written since the pre-dump, which is what a dump after
// a pre-dump spends its frozen time on (docs/design.md, Performance).
//
// The chain is one layer longer than criu's dump would make it (the dump ->
// precopy -> the previous images); criu and crest restore it alike. The round
// changes the previous tracking's marks, which then no longer match the
// previous images: once the dump is over, failed or not, that tracking ends
// (as a failed pre-dump ends it), and a next dump against the same parent
// copies every page. A mark beside the previous images (markBusy) says so
// from before the round until then, should crest not get there.
import { closeSync, mkdirSync, openSync, readFileSync, rmSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import type { Logger } from "../../log.js";
import type { Options } from "../../options.js";
import { faultPoint } from "../../fault.js";
import { DumpImages } from "../../images/store.js";
import { IMG, IMAGES_V1_1, criu_pre_dump_mode, lsmtype } from "../../images/index.js";
import { parseMaps, parseStatus, type MapEntry } from "../../proc/index.js";
import { PagemapScanner, PAGE_IS } from "../../sys/pagemap.js";
import { newStats, UnsupportedError, type Stats } from "../../kinds/context.js";
import { PagesWriter, type ParentPages } from "../../kinds/memory/pages.js";
import { privatePages, subtract } from "../../kinds/memory/vma.js";
import { readRunningTree } from "../../kinds/memory/early-smaps.js";
import { ParentImages, uptimeUs, type ParentTracking } from "../../kinds/memory/tracking.js";

/** The layer's directory, in the images directory (and the dump's `parent` link). */
export const PRECOPY_DIR = "precopy";

/** Pages written since the tracking began, with data of their own: present, not the file's, not the zero page. */
const WRITTEN = {
  mask: PAGE_IS.WRITTEN | PAGE_IS.PRESENT | PAGE_IS.FILE | PAGE_IS.PFNZERO,
  inverted: PAGE_IS.FILE | PAGE_IS.PFNZERO,
  anyof: 0, returned: PAGE_IS.PRESENT, protect: true,
};

export interface Precopy {
  /** What the dump goes on with: the round's images as its parent, and the previous tracking. */
  parent: ParentTracking;
  /**
   * Once the dump is over: the previous tracking ends (its marks no longer
   * match its images), and after a failed dump the layer goes too.
   */
  finish(ok: boolean): void;
}

/** The round, before the tree is frozen; null where there is no tracking to go on with. */
export function precopyRound(opts: Options, log: Logger, parent: ParentTracking | null): Precopy | null {
  if (!parent) throw new UnsupportedError("--precopy copies again what the tree wrote since a pre-dump: it needs --prev-images-dir and --track-mem");
  // The layer is written beside the images, which a page server or a lazy restore would not find there.
  if (opts.service.pageServer || opts.restore.lazyPages) throw new UnsupportedError("--precopy writes a layer of images of its own in the images directory: not with --page-server or --lazy-pages");
  const prev = parent.prev;
  if (!prev) {
    log.warn("--precopy: the previous dump's memory tracking is gone: no round before the freeze");
    return null;
  }
  // Marked first: a crest killed from here on leaves the mark, and the next dump against these images copies every page.
  const unmark = prev.markBusy();
  if (!unmark) throw new UnsupportedError(`--precopy marks the previous images while it changes their memory tracking, and cannot write in ${opts.dump.prevImagesDir}`);
  const dir = join(opts.images.dir, PRECOPY_DIR);
  const finish = (ok: boolean) => {
    if (!ok) rmSync(dir, { recursive: true, force: true });
    prev.stop();
    unmark();
  };
  const stats = newStats();
  const t0 = process.hrtime.bigint();
  let images: DumpImages | undefined;
  try {
    // An earlier dump's, in this directory, goes.
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    images = new DumpImages(dir);
    // As the dump's own link would hold it, from one directory deeper.
    const prevDir = opts.dump.prevImagesDir!;
    images.linkParent(isAbsolute(prevDir) ? prevDir : join("..", prevDir));
    // maps, not smaps (no walk of every page): a droppable or hugetlb mapping, which only smaps tells, is not
    // tracked, and its protecting scan stops at once.
    const tree = readRunningTree(opts.dump.tree!, (pid) => parseMaps(readFileSync(`/proc/${pid}/maps`, "utf8")));
    // The pagemaps are named by PID as the tree's own PID namespace sees it, as the dump names them.
    const level = nsPids(opts.dump.tree!).length - 1;
    let pagesId = 0;
    for (const [pid, vmas] of tree) {
      if (!prev.tracks(pid)) continue;
      const vpid = nsPids(pid)[level] ?? pid;
      copyWritten(pid, vpid, vmas, parent.images.holds(vpid), ++pagesId, images, stats);
    }
    faultPoint("dump:precopy");
    images.commit({
      img_version: IMAGES_V1_1, fdinfo_per_id: true, ns_per_id: true, lsmtype: lsmtype.NO_LSM,
      dump_uptime: uptimeUs(), pre_dump_mode: criu_pre_dump_mode.VM_READ,
    });
  } catch (e) {
    images?.abort();
    finish(false);
    throw new Error(`--precopy: ${(e as Error).message}`, { cause: e });
  }
  log.info(`--precopy: ${stats.pagesWritten} page(s) written since the previous dump copied in ${Number((process.hrtime.bigint() - t0) / 1000n)} us while the tree runs`);
  return { parent: { images: new ParentImages(dir), prev }, finish };
}

/** NSpid of a process: its PID in each PID namespace, the outermost first. */
function nsPids(pid: number): number[] {
  return parseStatus(readFileSync(`/proc/${pid}/status`, "utf8")).nsPid;
}

/**
 * A task's layer: the pages it wrote since the previous dump, protected again
 * and copied; the rest of what the previous images hold (`theirs`) left there.
 */
function copyWritten(pid: number, vpid: number, vmas: readonly MapEntry[], theirs: ParentPages | null, pagesId: number, images: DumpImages, stats: Stats): void {
  const scanner = new PagemapScanner(pid);
  const mem = openSync(`/proc/${pid}/mem`, "r");
  const w = new PagesWriter(pid, images.pages(pagesId, { shmem: false, id: vpid }), stats);
  try {
    const written: Array<{ start: number; end: number }> = [];
    // A mapping not tracked stops its scan (false): its pages are the dump's to copy.
    for (const m of vmas) if (privatePages(m)) scanner.scan(m.start, m.end, WRITTEN, (start, end) => void written.push({ start, end }));
    // Both in address order, and apart: the written pages copied, the rest of the parent's left there.
    const rest = theirs ? subtract(theirs, written) : [];
    const pieces: Array<{ start: number; end: number; inParent: boolean }> = [];
    for (let i = 0, j = 0; i < written.length || j < rest.length;) {
      if (j === rest.length || (i < written.length && written[i]!.start < rest[j]!.start)) pieces.push({ ...written[i++]!, inParent: false });
      else pieces.push({ ...rest[j++]!, inParent: true });
    }
    stats.pagesWritten += w.addLivePieces(mem, pieces);
  } finally {
    w.close();
    scanner.close();
    closeSync(mem);
  }
  images.write(IMG.pagemap, vpid, { head: { pages_id: pagesId }, entries: w.entries });
}
