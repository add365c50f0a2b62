// The pre-dump pipeline (criu's pre-dump): the tree is frozen only to find
// each task's pages and to start tracking what it writes from then on
// (kinds/memory/tracking.ts); it runs on while crest copies the pages. The
// next pre-dump or dump (--prev-images-dir, --track-mem) copies only the
// pages written since and leaves the rest in these images (PE_PARENT).
// Images, as criu's pre-dump writes them: pagemap-PID.img and pages-N.img
// per task, stats-dump, the inventory (dump_uptime, pre_dump_mode) last;
// the `parent` link of a chain; and crest-mem-track.json, the tracking.
//
// Pages are copied once the tree runs again (criu's --pre-dump-mode read;
// crest does so in either mode), so a page may be copied as it is a moment
// after the freeze: one written after the freeze was written after tracking
// began too, and the next dump copies it again.
import { closeSync, mkdirSync, openSync, readFileSync } from "node:fs";
import type { Logger } from "../../log.js";
import type { Options } from "../../options.js";
import type { RunHooks } from "../hooks.js";
import { freezeTree, thawTree, type FrozenTree } from "./freeze.js";
import { dedup, closeAll, openTask } from "./dump.js";
import { TreeNamespaces } from "./tree-ids.js";
import { DumpImages } from "../../images/store.js";
import { pageServerFor } from "../../images/page-server.js";
import { IMG, IMAGES_V1_1, criu_pre_dump_mode, lsmtype } from "../../images/index.js";
import { parseSmaps, type SmapsEntry } from "../../proc/index.js";
import { earlyMappings, readEarlySmaps } from "../../kinds/memory/early-smaps.js";
import { PagemapScanner } from "../../sys/pagemap.js";
import { PAGE_SIZE, SIG } from "../../sys/constants.js";
import { newStats, type Stats } from "../../kinds/context.js";
import { PagesWriter, privateData } from "../../kinds/memory/pages.js";
import { privatePages } from "../../kinds/memory/vma.js";
import { openParentTracking, type ParentImages, type PrevTracking, TRACK_FILE, endHolder, holdTracking, track, uptimeUs, type Tracked } from "../../kinds/memory/tracking.js";
import type { Remote } from "../../remote/remote.js";
import { displayDumpStats } from "../stats.js";
import { faultPoint } from "../../fault.js";

/** criu's DEFAULT_TIMEOUT: seconds freezing may take when --timeout is not given. */
const DEFAULT_TIMEOUT = 10;
const TRAP_BIT = 1n << BigInt(SIG.TRAP - 1);

/** What the frozen tree told of one task: its pages to copy or leave in the parent, and its memory, open. */
interface Plan {
  pid: number;
  vpid: number;
  /** The pieces of its private mappings' data: copied, or left in the parent images. */
  pieces: Array<{ start: number; end: number; inParent: boolean }>;
  /** /proc/PID/mem, opened while frozen: it reads the memory of that program, not of one it may exec since. */
  mem: number;
}

const us = (from: bigint): number => Number((process.hrtime.bigint() - from) / 1000n);

export function preDump(opts: Options, log: Logger, hooks: RunHooks = {}): void {
  const dir = opts.images.dir;
  mkdirSync(dir, { recursive: true });
  log.info(`Pre-dumping processes (pid: ${opts.dump.tree})`);
  const parent = openParentTracking(opts, log, true);
  const pageServer = pageServerFor(opts);
  const images = new DumpImages(dir, pageServer);
  const prev = parent?.prev ?? null;
  // The parent's marks are renewed while frozen: a crest killed before the new holder has them leaves this mark.
  const unmark = prev?.markRenewing(log, "pre-dump");
  const tracked: Tracked[] = [];
  const plans: Plan[] = [];
  let holder: number | null = null;
  try {
    if (opts.dump.prevImagesDir !== undefined) images.linkParent(opts.dump.prevImagesDir);
    // Which mappings hold private pages, read before the freeze (early-smaps.ts).
    const early = readEarlySmaps(opts.dump.tree!);
    const t0 = process.hrtime.bigint();
    const frozen = freezeTree(opts.dump.tree!, log, opts.dump.timeout ?? DEFAULT_TIMEOUT);
    const freezingUs = us(t0);
    const frozenAt = process.hrtime.bigint();
    images.expectTasks(frozen.tasks.length);
    hooks.progress?.({ stage: "frozen", tasks: frozen.tasks.length });
    try {
      planTree(frozen, early, parent?.images ?? null, prev, plans, tracked, log);
      faultPoint("pre-dump:tracked");
    } finally {
      thawTree(frozen);
    }
    const frozenUs = us(frozenAt);
    log.info(`The tree runs on after ${frozenUs} us; copying its pages`);
    const stats = newStats();
    plans.forEach((p, i) => copyPages(p, i + 1, images, stats, log));
    faultPoint("pre-dump:copied");
    if (tracked.length) {
      const h = holdTracking(tracked.splice(0));
      holder = h.holder;
      images.writeFile(TRACK_FILE, h.record);
    }
    const entry = {
      freezing_time: freezingUs, frozen_time: frozenUs, memdump_time: stats.memdumpUs, memwrite_time: stats.memwriteUs,
      pages_scanned: BigInt(stats.pagesScanned), pages_skipped_parent: BigInt(stats.pagesSkippedParent),
      pages_written: BigInt(stats.pagesWritten), pages_lazy: 0n,
      // Shared memory is left to the dump.
      shpages_scanned: 0n, shpages_skipped_parent: 0n, shpages_written: 0n,
    };
    images.write(IMG.stats, "dump", [{ dump: entry }]);
    images.commit({
      img_version: IMAGES_V1_1, fdinfo_per_id: true, ns_per_id: true, lsmtype: lsmtype.NO_LSM,
      dump_uptime: uptimeUs(), pre_dump_mode: criu_pre_dump_mode.VM_READ,
    });
    if (images.removedStale.length) log.warn(`Removed ${images.removedStale.length} image file(s) an older dump left in ${images.dir}: ${images.removedStale.join(", ")}`);
    if (opts.log.displayStats) displayDumpStats(log, entry);
  } catch (e) {
    images.abort();
    for (const t of tracked) closeSync(t.uffd);
    if (holder !== null) endHolder(holder);
    // The tasks it tracked were tracked anew: the parent images no longer match its marks.
    if (plans.length) prev?.stop();
    unmark?.();
    throw e;
  } finally {
    for (const p of plans) closeSync(p.mem);
    prev?.close();
    pageServer?.close();
  }
  // The tracking went on in the new holder.
  prev?.stop();
  unmark?.();
  if (opts.dump.autoDedup) dedup(opts.images.dir, log);
}

/**
 * While the tree is frozen: each task's pages, then its tracking, started
 * or renewed (after the scan, which renewing clears); every task put back
 * as it was before the tree runs on.
 */
function planTree(frozen: FrozenTree, early: ReadonlyMap<number, SmapsEntry[]>, parent: ParentImages | null, prev: PrevTracking | null, plans: Plan[], tracked: Tracked[], log: Logger): void {
  const ns = new TreeNamespaces(frozen);
  const open: Array<{ remotes: Remote[] }> = [];
  try {
    for (const ft of frozen.tasks) {
      if (ft.zombie) continue;
      const vpid = ns.vpid(ft.status[0]!.nsPid, ft.pid);
      const vmas = earlyMappings(ft.pid, ft.status[0]!, early) ?? parseSmaps(readFileSync(`/proc/${ft.pid}/smaps`, "utf8"));
      const remotes = openTask(ft.pid, ft.threads, vmas, (ft.status[0]!.sigIgn & TRAP_BIT) !== 0n);
      open.push({ remotes });
      const prevFd = prev?.take(ft.pid) ?? null;
      const theirs = prevFd === null ? null : parent?.holds(vpid) ?? null;
      const pieces: Plan["pieces"] = [];
      const scanner = new PagemapScanner(ft.pid);
      try {
        for (const m of vmas) if (privatePages(m)) privateData(scanner, m.start, m.end, theirs, (start, end, inParent) => void pieces.push({ start, end, inParent }));
      } finally {
        scanner.close();
      }
      plans.push({ pid: ft.pid, vpid, pieces, mem: openSync(`/proc/${ft.pid}/mem`, "r") });
      const uffd = track(remotes[0]!, vmas, pieces, prevFd, log);
      if (uffd !== null) tracked.push({ pid: ft.pid, uffd });
      remotes[0]!.flush();
    }
  } finally {
    closeAll(open);
  }
}

/** Copies a task's pages as they are now (it runs): pagemap-VPID.img and pages-ID.img. */
function copyPages(p: Plan, pagesId: number, images: DumpImages, stats: Stats, log: Logger): void {
  const w = new PagesWriter(p.pid, images.pages(pagesId, { shmem: false, id: p.vpid }), stats);
  try {
    for (const piece of p.pieces) {
      const len = piece.end - piece.start;
      stats.pagesScanned += len / PAGE_SIZE;
      if (piece.inParent) w.addParent(piece.start, len);
      else stats.pagesWritten += w.addLive(p.mem, piece.start, len);
    }
  } finally {
    w.close();
  }
  // A task that exited meanwhile (a tree that forks and reaps all the time) is not in the next dump:
  // what was copied of it stays consistent with its pagemap and is never taken, as criu goes on past it.
  try {
    process.kill(p.pid, 0);
  } catch {
    log.warn(`process ${p.pid} exited during the pre-dump: the pages copied of it before are kept (the next dump will not find it)`);
  }
  images.write(IMG.pagemap, p.vpid, { head: { pages_id: pagesId }, entries: w.entries });
}
