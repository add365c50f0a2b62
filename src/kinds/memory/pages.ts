// Memory contents. Dump: PAGEMAP_SCAN finds the pages that hold data (present
// or swapped, not the shared zero page nor guard pages, and for private file
// mappings only the copied-on-write ones), process_vm_readv copies them into
// a page-aligned buffer, which is written to pages-N.img; pagemap-PID.img
// says where each run of pages belongs. Restore: the task reads its own pages from the image
// with preadv straight into place, so the data never passes through crest;
// over memory inherited from its parent, crest compares each page and
// writes only those that differ.
import { closeSync, fstatSync, openSync, readSync, statSync, writeSync } from "node:fs";
import { PagemapRuns, type pagemap_entry } from "../../images/index.js";
import type { PageSink, PageSource } from "../../images/store.js";
import { sharedAligned } from "../../images/writer-thread.js";
import { native } from "../../sys/native.js";
import { AT_FDCWD, MADV, O, PAGE_SIZE, SEEK, SYS } from "../../sys/constants.js";
import { check, EACCES, ENOENT } from "../../sys/errno.js";
import { PagemapScanner, PAGE_IS, reportsGuards } from "../../sys/pagemap.js";
import { RemoteError, type Remote } from "../../remote/remote.js";
import { passFd } from "../files/inherit.js";
import type { Stats } from "../context.js";

/** pagemap_entry flags. */
export const PE = { PARENT: 1, LAZY: 2, PRESENT: 4 } as const;

/** Pages with data of a private mapping: present or swapped, neither file-backed nor the zero page. */
const PRIVATE_DATA = { mask: PAGE_IS.FILE | PAGE_IS.PFNZERO, inverted: PAGE_IS.FILE | PAGE_IS.PFNZERO, anyof: PAGE_IS.PRESENT | PAGE_IS.SWAPPED, returned: PAGE_IS.PRESENT };
/** The same without guard pages, which show as swapped and fault when read. */
const UNGUARDED = PAGE_IS.FILE | PAGE_IS.PFNZERO | PAGE_IS.GUARD;
const PRIVATE_DATA_UNGUARDED = { ...PRIVATE_DATA, mask: UNGUARDED, inverted: UNGUARDED };

const IOV_MAX = 1024;
/** The most one preadv of the restore reads. */
const CALL_MAX = 1 << 30;
const POPULATE_MIN_PAGES = 64;
const BUF_SIZE = 16 << 20;
/**
 * Page-aligned buffers, reused for every batch of every task. Each user holds
 * its own while it works: writers can be open at once (a task's pages writer
 * still holds read pages when its shared memory is dumped by another). Shared
 * memory, so the image store's writer thread can write them out.
 */
const spareBuffers: Buffer[] = [];
const takeBuffer = (): Buffer => spareBuffers.pop() ?? sharedAligned(BUF_SIZE, PAGE_SIZE);
const giveBack = (b: Buffer): void => void spareBuffers.push(b);
/** A writer's buffer while it has given its own back (deferring). */
const NO_BUFFER = Buffer.alloc(0);
/** The task's memory, read with process_vm_readv (one object for every run that comes from there). */
const VM: PageOrigin = { kind: "vm" };

/** Pages a lazy restore could take (dumpPrivate): the threads' stack pages (addresses) excepted; `leave`: left in the task. */
export interface LazyMarks {
  stack: readonly number[];
  leave: boolean;
}

/**
 * What a snapshot dump copies later (PagesWriter.replay): a run found at the
 * freeze (`origin`: where its bytes are, none for an entry alone;
 * `entered`: in the pagemap already), or a mapping to scan in the snapshot.
 */
type DeferredPages = { vaddr: number; len: number; flags: number; origin: PageOrigin | undefined; entered: boolean } | { scan: { start: number; end: number; lazy: LazyMarks | null } };

/** Where the bytes of a run of pages come from. */
export type PageOrigin =
  /** The task's memory at the same address, by process_vm_readv. */
  | { kind: "vm" }
  /**
   * A file at an offset: /proc/PID/mem for pages the task cannot read itself,
   * a shmem object or memfd. `size`: where the file ends; the rest of its last
   * page reads as zeros, as it does through a mapping.
   */
  | { kind: "fd"; fd: number; offset: number; size?: number }
  /** Bytes read already (a snapshot's pages its copy-on-write child does not have). */
  | { kind: "bytes"; data: Buffer };

/**
 * A writer of one pages-N.img: batches runs of pages through an aligned
 * buffer of its own. A full buffer is written behind (by the store's writer
 * thread) while the next one fills from the task.
 */
export class PagesWriter {
  private buf = takeBuffer();
  /** The buffer being written behind, if any. */
  private other: Buffer | null = null;
  private used = 0;
  /** Where the queued process_vm_readv ranges start in the buffer. */
  private readBase = 0;
  private readonly local = new BigUint64Array(2);
  private readonly remote = new BigUint64Array(IOV_MAX * 2);
  /** The remote iovecs as 32-bit halves (remoteIov). */
  private readonly remoteHalves = new Uint32Array(this.remote.buffer);
  private nRemote = 0;
  /** The pagemap's entries, as they are recorded. */
  readonly entries = new PagemapRuns();
  /**
   * Snapshot dumps (defer()), in address order: runs found at the freeze,
   * and mappings to scan in the snapshot itself (deferScan), both copied by
   * replay(), which writes their pagemap entries.
   */
  private deferred: DeferredPages[] | null = null;
  /** Whether a mapping was left to scan in the snapshot: the pagemap entries after it wait for replay(). */
  private scanDeferred = false;

  constructor(private pid: number, private readonly sink: PageSink, private readonly stats: Stats) {}

  /** While deferring: the task's /proc/PID/mem, through which runs are read at once (now()). */
  private nowMem: number | null = null;

  /** From now on runs are recorded, not copied: replay() copies them, from a snapshot of the task. */
  defer(): void {
    this.deferred = [];
    // Not needed until the replay: a tree's writers all wait for theirs.
    giveBack(this.buf);
    this.buf = NO_BUFFER;
  }

  /** While deferring, the runs fn adds are read at once through `mem` and kept in order: memory a snapshot lacks. */
  now(mem: number, fn: () => void): void {
    this.nowMem = mem;
    try {
      fn();
    } finally {
      this.nowMem = null;
    }
  }

  /**
   * While deferring: the pages with data of the private mapping [start, end)
   * are found by replay(), in the snapshot: its copy-on-write child has the
   * same pages (so the scan is not frozen time). Not for a dump that copies
   * against parent images, whose tracking is the task's own.
   */
  deferScan(start: number, end: number, lazy: LazyMarks | null): void {
    this.scanDeferred = true;
    this.deferred!.push({ scan: { start, end, lazy } });
  }

  /**
   * Copies what was deferred in its order (the pagemap's), from process
   * `pid` (a copy-on-write child of the task) and its /proc/PID/mem `mem`
   * for what was to be read through the task's own, `taskMem`.
   */
  replay(pid: number, mem: number, taskMem: number): void {
    const items = this.deferred ?? [];
    this.deferred = null;
    if (this.buf === NO_BUFFER) this.buf = takeBuffer();
    this.pid = pid;
    // The child's pages, read through its /proc/PID/mem, not process_vm_readv:
    // the kernel copies a page shared copy-on-write (all of the child's)
    // before it lets anyone pin it, as process_vm_readv does (the kernel's
    // gup_must_unshare), so reading that way would copy the whole memory a
    // second time, in the kernel, and hold it until the child dies. A read
    // through /proc/PID/mem takes the page without pinning it.
    let scanner: PagemapScanner | null = null;
    try {
      for (const it of items) {
        if ("scan" in it) {
          scanner ??= new PagemapScanner(pid);
          this.stats.pagesWritten += this.dumpPrivate(scanner, it.scan.start, it.scan.end, mem, null, it.scan.lazy);
          continue;
        }
        const o = it.origin;
        if (!it.entered) this.entry(it.vaddr, it.len, it.flags);
        if (o) this.copy(it.vaddr, it.len, o.kind === "vm" ? { kind: "fd", fd: mem, offset: it.vaddr } : o.kind === "fd" && o.fd === taskMem ? { ...o, fd: mem } : o);
      }
    } finally {
      scanner?.close();
    }
  }

  /** Records len bytes at vaddr in the pagemap: in this pages file (PE_PRESENT) or the parent images' (PE_PARENT). */
  private entry(vaddr: number, len: number, flags: number): void {
    this.sink.run?.(vaddr, len, flags);
    this.entries.add(vaddr, len / PAGE_SIZE, flags);
  }

  /** A pagemap entry, and the bytes of `origin` in the image: now, or at replay() while deferring. */
  private record(vaddr: number, len: number, flags: number, origin?: PageOrigin): void {
    if (!this.deferred) {
      this.entry(vaddr, len, flags);
      if (origin) return this.copy(vaddr, len, origin);
      return;
    }
    // In the pagemap now (tracking reads it while frozen), unless a mapping before is to be scanned in the snapshot.
    const entered = !this.scanDeferred;
    if (entered) this.entry(vaddr, len, flags);
    this.deferred.push({ vaddr, len, flags, origin, entered });
  }

  /** Pages the parent images hold as they are now: a pagemap entry, no bytes. */
  addParent(vaddr: number, len: number): void {
    this.record(vaddr, len, PE.PARENT);
    this.stats.pagesSkippedParent += len / PAGE_SIZE;
  }

  /** Pages left in the task for a remote lazy restore (dump --lazy-pages): a PE_LAZY entry, no bytes. */
  addLazy(vaddr: number, len: number): void {
    this.record(vaddr, len, PE.LAZY);
    this.stats.pagesLazy += len / PAGE_SIZE;
  }

  /** Copies len bytes of data that belong at vaddr into the image (flags: PE_PRESENT, and PE_LAZY for pages that could be restored lazily). */
  add(vaddr: number, len: number, origin: PageOrigin, flags: number = PE.PRESENT): void {
    if (!this.deferred || this.nowMem === null) return this.record(vaddr, len, flags, origin);
    const data = Buffer.allocUnsafe(len);
    if (readSync(this.nowMem, data, 0, len, vaddr) !== len) throw new Error(`read less than ${len} bytes of memory of process ${this.pid} at 0x${vaddr.toString(16)}`);
    this.record(vaddr, len, flags, { kind: "bytes", data });
  }

  private copy(vaddr: number, len: number, origin: PageOrigin): void {
    for (let done = 0; done < len;) {
      if (this.used === BUF_SIZE || this.nRemote === IOV_MAX) this.flushRead();
      const n = Math.min(len - done, BUF_SIZE - this.used);
      if (origin.kind === "vm") {
        this.remoteIov(this.nRemote++, vaddr + done, n);
        this.used += n;
      } else if (origin.kind === "bytes") {
        this.flushRead();
        origin.data.copy(this.buf, this.used, done, done + n);
        this.used += n;
        this.readBase = this.used;
      } else {
        this.flushRead();
        const t0 = process.hrtime.bigint();
        const at = origin.offset + done;
        const want = origin.size === undefined ? n : Math.max(0, Math.min(n, origin.size - at));
        const got = want ? readSync(origin.fd, this.buf, this.used, want, at) : 0;
        if (got !== want) throw new Error(`read ${got} of ${want} bytes of memory of process ${this.pid} at offset ${at}`);
        this.buf.fill(0, this.used + got, this.used + n);
        this.stats.memdumpUs += Number((process.hrtime.bigint() - t0) / 1000n);
        this.used += n;
        this.readBase = this.used;
      }
      done += n;
    }
  }

  /** Remote iovec i of process_vm_readv, set from numbers (no BigInt a run). */
  private remoteIov(i: number, addr: number, len: number): void {
    const h = this.remoteHalves;
    h[i * 4] = addr >>> 0;
    h[i * 4 + 1] = (addr - (addr >>> 0)) / 0x1_0000_0000;
    h[i * 4 + 2] = len;
    h[i * 4 + 3] = 0;
  }

  private flushRead(): void {
    if (this.nRemote) {
      const t0 = process.hrtime.bigint();
      const want = this.used - this.readBase;
      this.local[0] = BigInt(native.address(this.buf) + this.readBase);
      this.local[1] = BigInt(want);
      const n = check(native.syscall(SYS.process_vm_readv, this.pid, this.local, 1, this.remote, this.nRemote, 0), `read memory of process ${this.pid}`);
      if (n !== want) throw new Error(`read ${n} of ${want} bytes of memory of process ${this.pid}: its mappings changed while frozen`);
      this.nRemote = 0;
      this.stats.memdumpUs += Number((process.hrtime.bigint() - t0) / 1000n);
    }
    this.readBase = this.used;
    if (this.used === BUF_SIZE) this.writeBehind();
  }

  /** Hands the full buffer to the writer thread and goes on in the other (once its own write is done). */
  private writeBehind(): void {
    this.sink.drain();
    this.sink.writeBehind(this.buf, 0, this.used);
    const next = this.other ?? takeBuffer();
    this.other = this.buf;
    this.buf = next;
    this.used = 0;
    this.readBase = 0;
  }

  /** The last, partial buffer: handed over as a copy, so that it can be reused at once. */
  private flushWrite(): void {
    const t0 = process.hrtime.bigint();
    this.sink.write(this.buf, 0, this.used);
    this.stats.memwriteUs += Number((process.hrtime.bigint() - t0) / 1000n);
    this.used = 0;
    this.readBase = 0;
  }

  /**
   * Copies out the pages with data of a private mapping: those present or
   * swapped, except the zero page and (in file mappings) pages still the
   * file's, and guard pages (recorded as VMAs of their own, see memory.ts).
   * Returns how many pages were written. With `lazy` (a mapping that
   * could be restored lazily) the pages are marked PE_LAZY as criu marks
   * them, but the pages under the threads' stack pointers (`stack`, page
   * addresses); with `leave` (dump --lazy-pages), those are left in the
   * task: PE_LAZY alone, no bytes.
   */
  dumpPrivate(scanner: PagemapScanner, start: number, end: number, mem: number | null, parent: ParentPages | null = null, lazy: LazyMarks | null = null): number {
    // Tens of thousands of pieces in a dump against parent images (pages written here and there), all
    // frozen time: no object made for a piece that the task's memory holds.
    const origin = (at: number): PageOrigin => (mem === null ? VM : { kind: "fd", fd: mem, offset: at });
    const stack = lazy?.stack ?? [];
    const lazyFlags = PE.PRESENT | PE.LAZY;
    let pages = 0, s = 0;
    privateData(scanner, start, end, parent, (pieceStart, pieceEnd, inParent) => {
      const len = pieceEnd - pieceStart;
      if (inParent) return this.addParent(pieceStart, len);
      if (!lazy) {
        this.add(pieceStart, len, origin(pieceStart));
        pages += len / PAGE_SIZE;
        return;
      }
      // The stack pages are in address order, as the pieces.
      while (s < stack.length && stack[s]! < pieceStart) s++;
      for (let at = pieceStart; ; s++) {
        const sp = s < stack.length && stack[s]! < pieceEnd ? stack[s]! : pieceEnd;
        if (sp > at) {
          if (lazy.leave) this.addLazy(at, sp - at);
          else {
            this.add(at, sp - at, origin(at), lazyFlags);
            pages += (sp - at) / PAGE_SIZE;
          }
        }
        if (sp === pieceEnd) break;
        this.add(sp, PAGE_SIZE, origin(sp));
        pages++;
        at = sp + PAGE_SIZE;
      }
    });
    return pages;
  }

  /**
   * Copies what is still there of len bytes at vaddr from a task that runs
   * on (pre-dump), through /proc/PID/mem (whatever the protection is now):
   * pages unmapped since they were found are left out. Returns the pages copied.
   */
  addLive(mem: number, vaddr: number, len: number): number {
    let copied = 0;
    for (let at = vaddr; at < vaddr + len;) {
      this.flushRead();
      const n = Math.min(vaddr + len - at, BUF_SIZE - this.used);
      let got = 0;
      try {
        got = readSync(mem, this.buf, this.used, n, at);
      } catch {
        // EIO: the first page is gone
      }
      got -= got % PAGE_SIZE;
      if (!got) {
        at += PAGE_SIZE;
        continue;
      }
      this.entry(at, got, PE.PRESENT);
      this.used += got;
      this.readBase = this.used;
      copied += got / PAGE_SIZE;
      at += got;
    }
    return copied;
  }

  /**
   * Copies pieces (in address order) from a task that runs on: those the
   * parent images hold get their PE_PARENT entry, the others are read by
   * process_vm_readv, as many to a call as the buffer and IOV_MAX take (the
   * thousands of single pages a task wrote here and there). A piece unmapped
   * since it was found stops its call (the kernel reads no further), and is
   * read page by page through /proc/PID/mem instead (addLive), which leaves
   * out what is gone. Returns the pages copied.
   */
  addLivePieces(mem: number, pieces: ReadonlyArray<{ start: number; end: number; inParent: boolean }>): number {
    let copied = 0;
    for (let i = 0; i < pieces.length;) {
      this.flushRead();
      // The batch: pieces up to the IOV_MAX-th to read, or as many as the buffer's room takes.
      const room = BUF_SIZE - this.used;
      let end = i, n = 0, bytes = 0;
      for (; end < pieces.length; end++) {
        const p = pieces[end]!, len = p.end - p.start;
        if (p.inParent) continue;
        if (n === IOV_MAX || bytes + len > room) break;
        this.remoteIov(n++, p.start, len);
        bytes += len;
      }
      let got = 0;
      if (n) {
        const t0 = process.hrtime.bigint();
        this.local[0] = BigInt(native.address(this.buf) + this.used);
        this.local[1] = BigInt(bytes);
        got = native.syscall(SYS.process_vm_readv, this.pid, this.local, 1, this.remote, n, 0);
        this.stats.memdumpUs += Number((process.hrtime.bigint() - t0) / 1000n);
      }
      // In order: the parent's pieces, and those read whole; the first that is not (if any) page by page, and the
      // batch goes on after it.
      for (let done = 0; i < end; i++) {
        const p = pieces[i]!, len = p.end - p.start;
        if (p.inParent) {
          this.addParent(p.start, len);
        } else if (done + len <= got) {
          this.entry(p.start, len, PE.PRESENT);
          this.used += len;
          done += len;
          copied += len / PAGE_SIZE;
        } else {
          this.readBase = this.used;
          copied += this.addLive(mem, p.start, len);
          i++;
          break;
        }
      }
      this.readBase = this.used;
      // A piece longer than the buffer's room: through addLive, which goes on from buffer to buffer.
      if (n === 0 && i < pieces.length) {
        const p = pieces[i++]!;
        copied += this.addLive(mem, p.start, p.end - p.start);
      }
    }
    return copied;
  }

  /**
   * Copies out a shmem object (shared anonymous memory) through an fd of
   * it: the data segments SEEK_DATA/SEEK_HOLE find, at their offsets in the
   * object; the tail of a last page the file only partly covers is zeros.
   * Returns how many pages were written.
   */
  dumpShmem(fd: number, size: number): number {
    let pages = 0;
    for (let at = 0; at < size;) {
      const data = native.syscall(SYS.lseek, fd, at, SEEK.DATA);
      if (data < 0) break; // ENXIO: no data after `at`
      const hole = Math.min(check(native.syscall(SYS.lseek, fd, data, SEEK.HOLE), `find holes of shared memory of process ${this.pid}`), size);
      const from = Math.floor(data / PAGE_SIZE) * PAGE_SIZE;
      const to = Math.ceil(hole / PAGE_SIZE) * PAGE_SIZE;
      this.add(from, to - from, { kind: "fd", fd, offset: from, size });
      pages += (to - from) / PAGE_SIZE;
      at = to;
    }
    return pages;
  }

  close(): void {
    try {
      this.flushRead();
      this.flushWrite();
    } finally {
      this.sink.close();
      if (this.buf !== NO_BUFFER) giveBack(this.buf);
      if (this.other) {
        // It may still be being written from.
        this.sink.drain();
        giveBack(this.other);
      }
    }
  }
}

/** The pages the parent images of a dump hold for a task (any entry of its pagemap there), as sorted ranges. */
export type ParentPages = Array<{ start: number; end: number }>;

export function parentPages(entries: readonly pagemap_entry[]): ParentPages {
  const out: ParentPages = [];
  for (const e of entries) {
    const start = Number(e.vaddr), end = start + pageCount(e) * PAGE_SIZE;
    const last = out[out.length - 1];
    if (last && last.end === start) last.end = end;
    else out.push({ start, end });
  }
  return out;
}

/** A piece of a private mapping's data, [start, end): copied, or left in the parent images. */
export type PieceVisitor = (start: number, end: number, inParent: boolean) => void;

/**
 * The categories that tell a page unchanged since tracking started: present,
 * in a tracked mapping, not written (untracked pages read as written). A
 * page not present is copied whatever they say: swapped out, or a marker
 * the kernel left where a tracked page was dropped (MADV_DONTNEED of a file
 * mapping), which PAGEMAP_SCAN reports as swapped too.
 */
const TRACKED = PAGE_IS.PRESENT | PAGE_IS.WPALLOWED | PAGE_IS.WRITTEN;
const UNCHANGED = PAGE_IS.PRESENT | PAGE_IS.WPALLOWED;

/**
 * The pages with data of [start, end) (as dumpPrivate copies them), in
 * address order, to `visit`; with the parent images' pages, those the task
 * has not written since they were dumped there (tracked, and not
 * PAGE_IS_WRITTEN) are left in the parent. A page the parent does not have
 * is copied, whatever its tracking says.
 */
export function privateData(scanner: PagemapScanner, start: number, end: number, parent: ParentPages | null, visit: PieceVisitor): void {
  const q = reportsGuards() ? PRIVATE_DATA_UNGUARDED : PRIVATE_DATA;
  if (!parent) {
    scanner.scan(start, end, q, (s, e) => visit(s, e, false));
    return;
  }
  // Both in address order: one pass over the parent's ranges for all the regions.
  let j = 0;
  scanner.scan(start, end, { ...q, returned: q.returned | TRACKED }, (regStart, regEnd, categories) => {
    if ((categories & TRACKED) !== UNCHANGED) return visit(regStart, regEnd, false);
    while (j < parent.length && parent[j]!.end <= regStart) j++;
    let at = regStart;
    for (let k = j; k < parent.length && parent[k]!.start < regEnd; k++) {
      const s = Math.max(parent[k]!.start, regStart), e = Math.min(parent[k]!.end, regEnd);
      if (s > at) visit(at, s, false);
      visit(s, e, true);
      at = e;
    }
    if (at < regEnd) visit(at, regEnd, false);
  });
}

/**
 * A run of pages of one pages-N.img: where the pages go, how many bytes,
 * where they are in the file, and which file of the image chain it is
 * (`layer`: 0, the task's own; 1, its parent images'; ...).
 */
export interface PageRun {
  vaddr: bigint;
  len: number;
  off: number;
  layer?: number;
}

/** The present entries as runs with their offsets in the pages file, which holds them in entry order. */
export function pageRuns(entries: pagemap_entry[]): PageRun[] {
  const runs: PageRun[] = [];
  let off = 0;
  for (const e of entries) {
    if (!((e.flags ?? PE.PRESENT) & PE.PRESENT)) continue;
    const len = pageCount(e) * PAGE_SIZE;
    runs.push({ vaddr: e.vaddr, len, off });
    off += len;
  }
  return runs;
}

/**
 * Splits runs (in address order) at the edges of `ranges` (sorted, disjoint):
 * the parts inside one of them, and the rest.
 */
export function splitRuns(runs: PageRun[], ranges: Array<{ start: bigint; end: bigint }>): { inside: PageRun[]; outside: PageRun[] } {
  const inside: PageRun[] = [], outside: PageRun[] = [];
  if (!ranges.length) return { inside, outside: runs };
  let i = 0;
  for (const run of runs) {
    let at = run.vaddr;
    const end = run.vaddr + BigInt(run.len);
    const piece = (to: bigint, into: PageRun[]) => {
      if (to > at) into.push({ ...run, vaddr: at, len: Number(to - at), off: run.off + Number(at - run.vaddr) });
      at = to;
    };
    while (at < end) {
      while (i < ranges.length && ranges[i]!.end <= at) i++;
      const r = ranges[i];
      if (!r || r.start >= end) { piece(end, outside); break; }
      piece(r.start > at ? r.start : at, outside);
      piece(r.end < end ? r.end : end, inside);
    }
  }
  return { inside, outside };
}

/**
 * Fills memory of the task from pages-N.img by a preadv run inside it. The
 * entries must be in file order (as written); `dest` maps an entry's vaddr
 * to where its pages go now (identity for private memory).
 */
export function fillFromPages(r: Remote, pages: PageSource, entries: pagemap_entry[], stats: Stats, dest: (vaddr: bigint) => bigint = (v) => v): void {
  fillRuns(r, pages, pageRuns(entries).map((p) => ({ ...p, vaddr: dest(p.vaddr) })), stats);
}

/**
 * The task's fd of the pages file: opened by path, or, where the path is
 * not the same file in the task's mount namespace, crest's own fd passed in.
 */
function openPagesIn(r: Remote, pages: PageSource): number {
  r.resetScratch();
  const fd = r.syscall(SYS.openat, AT_FDCWD, r.putString(pages.path), O.RDONLY | O.CLOEXEC, 0);
  if (fd >= 0) {
    if (sameFile(r.pid, fd, pages.fd)) return fd;
    r.later({ what: `close a file of task ${r.pid} that is not ${pages.path}`, nr: SYS.close, args: [fd] });
  } else if (fd !== -ENOENT && fd !== -EACCES) {
    // EACCES: a task in a user namespace of its own may not read crest's images.
    throw new RemoteError(`open ${pages.path} in task ${r.pid}`, -fd);
  }
  return passFd(r, r.pid, pages.fd, pages.path);
}

/** The task's fd and crest's name the same inode. */
function sameFile(pid: number, theirs: number, mine: number): boolean {
  const a = statSync(`/proc/${pid}/fd/${theirs}`), b = fstatSync(mine);
  return a.ino === b.ino && a.dev === b.dev;
}

/**
 * The preadv calls of a restore: runs that follow each other in the file,
 * IOV_MAX at most a call and `max` bytes at most (one read transfers at
 * most 2 GiB less a page, the kernel's MAX_RW_COUNT), a longer run split.
 */
export function preadCalls(given: readonly PageRun[], max = CALL_MAX): PageRun[][] {
  const runs = given.flatMap((p) => (p.len <= max ? [p] : Array.from({ length: Math.ceil(p.len / max) }, (_, k) => ({
    ...p, vaddr: p.vaddr + BigInt(k * max), off: p.off + k * max, len: Math.min(max, p.len - k * max),
  }))));
  const calls: PageRun[][] = [];
  for (let i = 0; i < runs.length;) {
    const call = [runs[i]!];
    let bytes = runs[i]!.len;
    for (let j = i + 1; j < runs.length && call.length < IOV_MAX && runs[j]!.off === runs[i]!.off + bytes && bytes + runs[j]!.len <= max; j++) {
      call.push(runs[j]!);
      bytes += runs[j]!.len;
    }
    calls.push(call);
    i += call.length;
  }
  return calls;
}

/**
 * Has the task read runs of pages-N.img into place with preadv (the calls
 * preadCalls makes of them), queued to run many to a stop: a task's pages
 * in its parent images come in thousands of calls where it wrote pages here
 * and there since (each skips the pages a later image holds).
 */
export function fillRuns(r: Remote, pages: PageSource, runs: PageRun[], stats: Stats): void {
  if (!runs.length) return;
  r.resetScratch();
  const path = pages.path;
  const fd = openPagesIn(r, pages);
  for (const batch of preadCalls(runs)) {
    const off = batch[0]!.off;
    let bytes = 0;
    const iov = Buffer.alloc(batch.length * 16);
    batch.forEach((p, j) => {
      iov.writeBigUInt64LE(p.vaddr, j * 16);
      iov.writeBigUInt64LE(BigInt(p.len), j * 16 + 8);
      bytes += p.len;
    });
    // Room for the iovecs: the queue runs first once half the scratch memory is taken.
    r.resetScratch();
    const iovAddr = r.put(iov);
    // Large runs: allocate their pages in one go rather than fault by fault inside preadv.
    for (const p of batch) {
      if (p.len >= POPULATE_MIN_PAGES * PAGE_SIZE) r.later({ what: "", nr: SYS.madvise, args: [p.vaddr, p.len, MADV.POPULATE_WRITE], unchecked: true });
    }
    // A regular file reads short only at its end (signals are blocked): checked sizes (checkPages) make that a change since.
    r.later({ what: () => `read ${bytes} bytes at ${off} of ${path} into task ${r.pid} (less: the file is shorter)`, nr: SYS.preadv, args: [fd, iovAddr, batch.length, off], want: bytes });
    stats.pagesRestored += bytes / PAGE_SIZE;
  }
  r.call(`close ${path} in task ${r.pid}`, SYS.close, fd);
}

/**
 * Restores runs of pages over memory the task inherited from its parent:
 * each page of the image is compared with what the task has there; an equal
 * page is left alone (it stays shared, copy-on-write, with the parent), a
 * different one is written through /proc/PID/mem (which copies it on write,
 * whatever the mapping's protection).
 */
export function restoreOverInherited(pid: number, pages: PageSource, runs: PageRun[], stats: Stats): void {
  if (!runs.length) return;
  const path = pages.path;
  const mem = openSync(`/proc/${pid}/mem`, "r+");
  const half = BUF_SIZE / 2;
  const buf = takeBuffer();
  const want = buf.subarray(0, half), have = buf.subarray(half);
  try {
    for (const run of runs) {
      for (let done = 0; done < run.len;) {
        const n = Math.min(run.len - done, half);
        const at = Number(run.vaddr) + done;
        if (pages.read(want, 0, n, run.off + done) !== n) throw new Error(`${path} is truncated: process ${pid} needs ${run.off + done + n} bytes`);
        if (readSync(mem, have, 0, n, at) !== n) throw new Error(`cannot read the memory process ${pid} inherited at 0x${at.toString(16)}`);
        // Runs of differing pages are written in one go.
        let from = -1;
        const flush = (to: number) => {
          if (from < 0) return;
          if (writeSync(mem, want, from, to - from, at + from) !== to - from) throw new Error(`cannot write memory of process ${pid} at 0x${(at + from).toString(16)}`);
          stats.pagesRestored += (to - from) / PAGE_SIZE;
          from = -1;
        };
        for (let p = 0; p < n; p += PAGE_SIZE) {
          if (want.subarray(p, p + PAGE_SIZE).equals(have.subarray(p, p + PAGE_SIZE))) {
            flush(p);
            stats.pagesSkippedCow++;
          } else if (from < 0) {
            from = p;
          }
        }
        flush(n);
        stats.pagesCompared += n / PAGE_SIZE;
        done += n;
      }
    }
  } finally {
    giveBack(buf);
    closeSync(mem);
  }
}

export const pageCount = (e: pagemap_entry): number => Number(e.nr_pages ?? BigInt(e.compat_nr_pages));
