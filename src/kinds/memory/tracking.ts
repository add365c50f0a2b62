// Which pages a task wrote since the last dump (pre-dump, then dump
// --prev-images-dir --track-mem), without soft-dirty: the task's private
// mappings are registered with a userfaultfd of its own memory in
// asynchronous write-protect mode and write-protected; a later PAGEMAP_SCAN
// tells the pages written since (PAGE_IS_WRITTEN) from those not
// (pagemap.ts, pages.ts).
//
// The kernel drops the registration when the userfaultfd's last holder
// closes it, and crest exits between dumps: a holder process keeps the
// task's userfaultfds open until the next dump takes them over (or all
// tracked tasks are gone). Its PID and the fd of each task's userfaultfd in
// it are written beside the images (crest-mem-track.json, which criu does not
// read). A lost holder loses nothing but time: a mapping no longer
// registered reports every page written, so the next dump copies them all.
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../../log.js";
import type { SmapsEntry } from "../../proc/index.js";
import { parseStat } from "../../proc/index.js";
import type { Remote } from "../../remote/remote.js";
import { native } from "../../sys/native.js";
import { O, PAGE_SIZE, SIG, SYS } from "../../sys/constants.js";
import { errnoName } from "../../sys/errno.js";
import { UFFD_FEATURE, UFFD_USER_MODE_ONLY, uffdApi, uffdRegisterWp, uffdWriteProtect } from "../../sys/uffd.js";
import { takeFd } from "../sockets/unix.js";
import { privatePages } from "./vma.js";
import { parentPages, type ParentPages } from "./pages.js";
import { dumpState, type DumpRun, type DumpTask } from "../context.js";
import { IMG } from "../../images/index.js";
import { parentImagesDir, type Options } from "../../options.js";
import { RestoreImages } from "../../images/store.js";
import { sentToPageServer } from "../../images/manifest.js";

/** The record of a tracking beside the images. */
export const TRACK_FILE = "crest-mem-track.json";
/**
 * Beside it while a dump changes the tracking's marks (a pre-dump renewing
 * them, a dump --precopy's round): left behind by a crest that did not
 * finish, it says the marks no longer match the images. Not one of the
 * images (the manifest does not cover it).
 */
const TRACK_BUSY = ".crest-mem-track.busy";

interface TrackRecord {
  holder: { pid: number; start: number };
  /** Each tracked task by crest's PID, with its start time and the holder's fd of its userfaultfd. */
  tasks: Array<{ pid: number; start: number; fd: number }>;
}

/** A task tracked from now on: crest's fd of its userfaultfd. */
export interface Tracked {
  pid: number;
  uffd: number;
}

/** When a process started, in clock ticks after boot (a PID reused since starts later); null once it is gone (or dead, a zombie). */
export function startTime(pid: number): number | null {
  try {
    const st = parseStat(readFileSync(`/proc/${pid}/stat`, "utf8"));
    return st.state === "Z" || st.state === "X" ? null : st.starttime;
  } catch {
    return null;
  }
}

/**
 * The tracking an earlier dump left in its images directory, while its
 * holder lives: the userfaultfd of each task it tracks, to go on with.
 */
export class PrevTracking {
  private constructor(private readonly dir: string, private readonly rec: TrackRecord, private readonly pidfd: number) {}

  static open(dir: string, log: Logger): PrevTracking | null {
    if (existsSync(join(dir, TRACK_BUSY))) {
      log.warn(`the memory tracking of ${dir} was left changed by a dump that did not finish (${TRACK_BUSY}): every page is dumped`);
      return null;
    }
    let rec: TrackRecord;
    try {
      rec = JSON.parse(readFileSync(join(dir, TRACK_FILE), "utf8")) as TrackRecord;
    } catch {
      log.info(`${dir} has no memory tracking of crest's: every page is dumped`);
      return null;
    }
    const pidfd = native.syscall(SYS.pidfd_open, rec.holder.pid, 0);
    if (pidfd < 0 || startTime(rec.holder.pid) !== rec.holder.start) {
      if (pidfd >= 0) closeSync(pidfd);
      log.warn(`the memory tracking of ${dir} ended (its holder, process ${rec.holder.pid}, is gone): every page is dumped`);
      return null;
    }
    return new PrevTracking(dir, rec, pidfd);
  }

  /**
   * Marks the images while their tracking's marks are changed (TRACK_BUSY):
   * returns what takes the mark away, once the tracking has ended (stop());
   * null where the images' directory cannot be written.
   */
  markBusy(): (() => void) | null {
    const path = join(this.dir, TRACK_BUSY);
    try {
      writeFileSync(path, `${process.pid}\n`);
    } catch {
      return null;
    }
    return () => rmSync(path, { force: true });
  }

  /** markBusy for a pre-dump or dump that renews the marks, which goes on where the images cannot be marked (it says so). */
  markRenewing(log: Logger, what: string): () => void {
    const unmark = this.markBusy();
    if (unmark) return unmark;
    log.warn(`cannot mark ${this.dir} while its memory tracking is renewed: should this ${what} not finish, a dump against it would trust marks renewed for this one`);
    return () => {};
  }

  /** The task's record, where it is the process tracked (not a new one, nor a reused PID). */
  private trackedAs(pid: number): TrackRecord["tasks"][number] | undefined {
    const t = this.rec.tasks.find((x) => x.pid === pid);
    return t && startTime(pid) === t.start ? t : undefined;
  }

  /** Whether it tracks the task. */
  tracks(pid: number): boolean {
    return this.trackedAs(pid) !== undefined;
  }

  /** crest's fd of the task's userfaultfd, or null if the task is not the one tracked (new, or a reused PID). */
  take(pid: number): number | null {
    const t = this.trackedAs(pid);
    if (!t) return null;
    const fd = native.syscall(SYS.pidfd_getfd, this.pidfd, t.fd, 0);
    return fd < 0 ? null : fd;
  }

  /** Ends the holder: the tracking goes on only through the fds crest took. */
  stop(): void {
    endHolder(this.rec.holder.pid);
  }

  close(): void {
    closeSync(this.pidfd);
  }
}

/**
 * Starts (or, with the userfaultfd an earlier dump left, renews) tracking of
 * the task's private mappings: each is registered, and the pages with data
 * the dump found (`data`: sorted ranges) write-protected, so that a write
 * from now on marks its page; any other page the task fills from now on is
 * new, and marked as written too. Only those pages: write-protecting a page
 * not there would leave a marker that PAGEMAP_SCAN reports as swapped, data
 * that is not. Runs while the task is frozen. Returns crest's fd of the
 * userfaultfd, or null where the task cannot have one (its seccomp filter
 * forbids userfaultfd, say): logged, and its next dump copies every page.
 */
export function track(r: Remote, vmas: readonly SmapsEntry[], data: ReadonlyArray<{ start: number; end: number }>, prev: number | null, log: Logger): number | null {
  const pid = r.pid;
  let uffd = prev;
  if (uffd === null) {
    const fd = r.syscall(SYS.userfaultfd, O.CLOEXEC | O.NONBLOCK | UFFD_USER_MODE_ONLY);
    if (fd < 0) {
      log.warn(`process ${pid} cannot track its memory (userfaultfd: ${errnoName(-fd)}): its next dump copies every page`);
      return null;
    }
    try {
      uffd = takeFd(pid, fd, `the userfaultfd of process ${pid}`);
    } finally {
      // At once: the kinds after memory list the task's fds.
      r.call(`close the userfaultfd crest made in process ${pid}`, SYS.close, fd);
    }
    uffdApi(uffd, UFFD_FEATURE.WP_ASYNC, `process ${pid}'s memory`);
  }
  let i = 0;
  for (const m of vmas) {
    if (!privatePages(m)) continue;
    const e = uffdRegisterWp(uffd, m.start, m.end - m.start);
    if (e < 0) {
      log.debug(`process ${pid}: 0x${m.start.toString(16)}-0x${m.end.toString(16)} (${m.path || "anonymous"}) is not tracked (${errnoName(-e)}): its pages are dumped every time`);
      continue;
    }
    while (i < data.length && data[i]!.end <= m.start) i++;
    for (let j = i; j < data.length && data[j]!.start < m.end;) {
      // Ranges that follow each other (pages copied, then pages left in the parent, ...) in one call.
      const from = data[j]!.start;
      let to = data[j++]!.end;
      while (j < data.length && data[j]!.start === to && to < m.end) to = data[j++]!.end;
      const start = Math.max(from, m.start), end = Math.min(to, m.end);
      uffdWriteProtect(uffd, start, end - start, `0x${start.toString(16)}-0x${end.toString(16)} of process ${pid}`);
    }
  }
  return uffd;
}

/**
 * Hands the userfaultfds to a holder process of their own (in a session of
 * its own, out of the tree), which keeps them open while any tracked task
 * lives; crest's own fds are closed. Returns the record to write beside the
 * images (TRACK_FILE), and the holder's PID.
 */
export function holdTracking(tracked: readonly Tracked[]): { record: string; holder: number } {
  const nul = openSync("/dev/null", "r+");
  // Polls: a shell is all it takes, and the fds stay open in it (and in its sleep).
  const script = 'while :; do for p; do if kill -0 "$p" 2>/dev/null; then sleep 2; continue 2; fi; done; exit 0; done';
  let pid: number;
  try {
    pid = native.spawn({
      path: "/bin/sh", argv: ["crest-mem-track", "-c", script, "crest-mem-track", ...tracked.map((t) => String(t.pid))],
      env: ["PATH=/usr/bin:/bin"], setsid: 1, fds: [nul, nul, nul, ...tracked.map((t) => t.uffd)],
    });
  } finally {
    closeSync(nul);
    for (const t of tracked) closeSync(t.uffd);
  }
  if (pid < 0) throw new Error(`cannot start the process that keeps the memory tracking: ${errnoName(-pid)}`);
  const rec: TrackRecord = {
    holder: { pid, start: startTime(pid) ?? 0 },
    tasks: tracked.map((t, i) => ({ pid: t.pid, start: startTime(t.pid) ?? 0, fd: 3 + i })),
  };
  return { record: JSON.stringify(rec) + "\n", holder: pid };
}

/** Ends a holder process (its session). */
export function endHolder(pid: number): void {
  try {
    process.kill(-pid, SIG.KILL);
  } catch {
    // gone already
  }
}

/** The system's uptime in microseconds, as criu keeps it in inventory.dump_uptime. */
export function uptimeUs(): bigint {
  const [sec, frac = "0"] = readFileSync("/proc/uptime", "utf8").split(" ")[0]!.split(".");
  return BigInt(sec!) * 1_000_000n + BigInt(frac.padEnd(2, "0").slice(0, 2)) * 10_000n;
}

/**
 * What a pre-dump, or a dump with --track-mem, takes on from its parent
 * images (--prev-images-dir): which pages they hold, and the tracking since
 * them. Opened before the tree is frozen, so that reading them (a pagemap
 * of thousands of entries when a task wrote pages here and there) is not
 * frozen time.
 */
export interface ParentTracking {
  images: ParentImages;
  prev: PrevTracking | null;
}

/**
 * Checks --prev-images-dir (which must hold images) and, where the run
 * `tracks` memory, opens its ParentTracking; null without a parent.
 */
export function openParentTracking(opts: Options, log: Logger, tracks: boolean): ParentTracking | null {
  const dir = parentImagesDir(opts);
  if (dir === null) return null;
  if (!existsSync(`${dir}/inventory.img`)) {
    throw new Error(`--prev-images-dir ${opts.dump.prevImagesDir}: ${dir} holds no images (no inventory.img there; a relative path is taken from the images directory, as criu takes it)`);
  }
  return tracks ? { images: new ParentImages(dir), prev: PrevTracking.open(dir, log) } : null;
}

/** The tasks a dump tracks from now on. */
const dumpTracked = dumpState<Tracked[]>("memory tracking", () => []);

/** The parent images of a pre-dump or dump with --track-mem: which pages they hold of each task, read at once. */
export class ParentImages {
  /** By the task's PID in its namespace, as the images name it. */
  private readonly pages = new Map<number, ParentPages>();
  /** They sent their pagemaps and pages to a page server: none is here to say which. */
  private readonly remote: boolean;

  constructor(dir: string) {
    this.remote = sentToPageServer(dir);
    if (this.remote) return;
    const images = new RestoreImages(dir);
    for (const name of readdirSync(dir)) {
      const m = /^pagemap-(\d+)\.img$/.exec(name);
      if (m) this.pages.set(Number(m[1]), parentPages(images.read(IMG.pagemap, Number(m[1])).entries));
    }
  }

  /**
   * The runs of pages they hold of the task, or null (none). Sent to a page
   * server, they count as holding every page, and the tracking alone says
   * which are unchanged, as with criu: every page present at that dump went,
   * and one not written since is the same.
   */
  holds(vpid: number): ParentPages | null {
    if (this.remote) return [{ start: 0, end: Number.MAX_SAFE_INTEGER }];
    return this.pages.get(vpid) ?? null;
  }
}

/**
 * Dump: the pages the parent images hold for the task, where the tracking
 * since them says which it has not written; null where every page is copied.
 * `prevFd`: the task's userfaultfd from the previous tracking, for trackTask.
 */
export function parentPagesOf(task: DumpTask, run: DumpRun): { parent: ParentPages | null; prevFd: number | null } {
  const prevFd = run.parent?.prev?.take(task.pid) ?? null;
  return { parent: prevFd === null ? null : run.parent!.images.holds(task.vpid), prevFd };
}

/** Dump, once the task's pages are copied: tracks it on with --track-mem, for a tree that runs on. */
export function trackTask(task: DumpTask, run: DumpRun, prevFd: number | null): void {
  const o = run.opts.dump;
  if (!o.trackMem || !(o.leaveRunning || o.leaveStopped)) {
    if (prevFd !== null) closeSync(prevFd);
    return;
  }
  const pm = task.pagemap;
  const data = Array.from({ length: pm.length }, (_, i) => ({ start: pm.vaddr(i), end: pm.vaddr(i) + pm.pages(i) * PAGE_SIZE }));
  const uffd = track(task.remotes[0]!, task.vmas, data, prevFd, run.log);
  if (uffd !== null) run.state(dumpTracked).push({ pid: task.pid, uffd });
}

/**
 * Dump, after every task: the new tracking goes to a holder of its own and
 * the previous one ends (where the tasks were tracked again, its marks are
 * gone: the parent images no longer match them). A dump that fails ends
 * the new holder too: its next dump copies every page.
 */
export function handOverTracking(run: DumpRun): void {
  const tracked = run.state(dumpTracked);
  const prev = run.parent?.prev;
  // As criu: the uptime at a tracked dump, which tells a task started since (a reused PID).
  if (run.opts.dump.trackMem) run.inventory.dump_uptime = uptimeUs();
  if (tracked.length) {
    const { record, holder } = holdTracking(tracked);
    tracked.length = 0;
    run.images.writeFile(TRACK_FILE, record);
    run.failed.push(() => endHolder(holder));
    prev?.stop();
  }
  prev?.close();
}
