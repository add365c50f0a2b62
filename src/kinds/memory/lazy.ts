// Lazy restore (restore --lazy-pages, with `crest lazy-pages` started
// first), criu's protocol: the restore connects to the daemon's unix socket
// lazy-pages.socket in the work directory and, for each task, sends its PID
// (an int) and then, in a one-byte message, its userfaultfd (SCM_RIGHTS);
// 0x52535446 ("RSTF") once the tree is restored. The private anonymous
// mappings with pages in the images are registered with that userfaultfd
// for missing pages and left empty: the daemon copies each page in on the
// task's first touch (UFFDIO_COPY from the images, through the parent
// chain), and pushes the rest in the background once the restore has
// finished; a touched page the images do not hold gets the zero page. It
// follows the tasks' fork, mremap, munmap and MADV_DONTNEED (the
// userfaultfd's events) and ends when every page of every task is in.
//
// crest's restore sends a pidfd of the task with its userfaultfd (a second
// fd in the same message): the daemon hands both to a guard process (the
// face's), which holds the userfaultfds too, so that a daemon that dies
// leaves the tasks' faults waiting rather than filled with zeros, and ends
// the tree.
import { closeSync, readFileSync, readSync, writeSync } from "node:fs";
import { decodeIov, encodeIov, PS } from "../../images/page-server.js";
import type { PageLink } from "../../images/tls.js";
import type { Logger } from "../../log.js";
import { workPath, type Options } from "../../options.js";
import { IMG, type pagemap_entry, type vma_entry } from "../../images/index.js";
import { RestoreImages, type PageSource } from "../../images/store.js";
import { native } from "../../sys/native.js";
import { AT_FDCWD, MAP, O, PAGE_SIZE, SYS } from "../../sys/constants.js";
import { check, EAGAIN, EEXIST, EINTR, ENOENT, ENOMEM, ENOSPC, EPERM, ESRCH, errnoName } from "../../sys/errno.js";
import {
  UFFD_API, UFFD_EVENT, UFFD_FEATURE, UFFD_MSG_SIZE, UFFDIO_API,
  uffdCopy, uffdRegisterMissing, uffdUnregister, uffdWake, uffdZeroPage,
} from "../../sys/uffd.js";
import type { Remote } from "../../remote/remote.js";
import { type RestoreRun, type RestoreTask } from "../context.js";
import { sendWithFiles } from "../sockets/queue.js";
import { takeFd } from "../sockets/unix.js";
import { passFd } from "../files/inherit.js";
import { resolveChain } from "./chain.js";
import { pageCount, PE, splitRuns, type PageRun } from "./pages.js";
import { is, isGuard, isSpecial, MAP_DROPPABLE, MAP_TYPE, VMA } from "./vma.js";

/** The daemon's socket, in the work directory (criu's LAZY_PAGES_SOCK_NAME). */
export const LAZY_SOCKET = "lazy-pages.socket";
/** What the restore sends once the tree is restored (criu's LAZY_PAGES_RESTORE_FINISHED): above any PID. */
export const RESTORE_FINISHED = 0x52535446;
/** The events the daemon follows (criu's NEED_UFFD_API_FEATURES). */
export const LAZY_FEATURES = UFFD_FEATURE.EVENT_FORK | UFFD_FEATURE.EVENT_REMAP | UFFD_FEATURE.EVENT_UNMAP | UFFD_FEATURE.EVENT_REMOVE;

export const AF_UNIX = 1, SOCK_STREAM = 1, SOCK_CLOEXEC = 0x80000;
/** _IO(0xAA, 0x00): /dev/userfaultfd's "make one". */
const USERFAULTFD_IOC_NEW = 0xaa00;

export const lazySocketPath = (opts: Options): string => workPath(opts, LAZY_SOCKET);

/** struct sockaddr_un for a path (the kernel's limit: 107 bytes and a NUL). */
export function unixAddress(path: string): Buffer {
  const p = Buffer.from(path);
  if (p.length > 107) throw new Error(`the lazy-pages socket path ${path} is longer than a unix socket address may be (107 bytes): use a shorter --work-dir`);
  const a = Buffer.alloc(2 + p.length + 1);
  a.writeUInt16LE(AF_UNIX, 0);
  p.copy(a, 2);
  return a;
}

/**
 * Whether a mapping's pages are left to the daemon: private anonymous
 * memory (heap and stack included), but not the kernel's areas, memory the
 * kernel may drop anyway, nor mlock'ed memory (populated, with zeros, as it
 * is mapped: before the userfaultfd could be told about it), nor hugetlb
 * memory (as criu: its pages are restored whole, eagerly).
 */
export function lazyVma(v: vma_entry): boolean {
  return is(v, VMA.ANON_PRIVATE) && !isSpecial(v) && !isGuard(v) && !is(v, VMA.ANON_SHARED) &&
    (v.flags & MAP_TYPE) !== MAP_DROPPABLE && !(v.flags & (MAP.LOCKED | MAP.HUGETLB));
}

type Range = { start: bigint; end: bigint };

/** The lazy mappings, in address order. */
export function lazyRanges(vmas: readonly vma_entry[]): Range[] {
  return vmas.filter(lazyVma).map((v) => ({ start: v.start, end: v.end })).sort((a, b) => (a.start < b.start ? -1 : 1));
}

/**
 * Splits a task's runs (address order) into those the daemon serves (cut
 * at mapping edges: one UFFDIO_COPY stays inside one mapping) and those the
 * restore reads in itself.
 */
export function splitLazy(runs: PageRun[], vmas: readonly vma_entry[]): { lazy: PageRun[]; eager: PageRun[] } {
  const s = splitRuns(runs, lazyRanges(vmas));
  return { lazy: s.inside, eager: s.outside };
}

// --- restore side ----------------------------------------------------------

interface LazyClient {
  sk: number;
}

/** The restores that leave pages to a daemon: their connection to it. */
const lazyClients = new WeakMap<RestoreRun, LazyClient>();

/** Sends all of buf on a stream socket. */
function sendAll(sk: number, buf: Buffer, files: number[], what: string): void {
  const n = check(sendWithFiles(sk, buf, files, 0), what);
  if (n !== buf.length) throw new Error(`${what}: sent ${n} of ${buf.length} bytes`);
}

/**
 * restore --lazy-pages, before anything is created: connects to the
 * daemon. No daemon listening fails the restore at once, naming the socket.
 */
export function connectLazy(run: RestoreRun): void {
  const path = lazySocketPath(run.opts);
  const sk = check(native.syscall(SYS.socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "make a unix socket for the lazy-pages daemon");
  const addr = unixAddress(path);
  const r = native.syscall(SYS.connect, sk, addr, addr.length);
  if (r < 0) {
    closeSync(sk);
    throw new Error(`--lazy-pages: no lazy-pages daemon listens on ${path} (${errnoName(-r)}); start \`crest lazy-pages -D ${run.opts.images.dir}\` first (with the same --work-dir), then the restore`);
  }
  lazyClients.set(run, { sk });
  run.cleanup.push(() => {
    closeSync(sk);
    lazyClients.delete(run);
  });
  run.log.info(`Connected to the lazy-pages daemon at ${path}`);
}

/** Whether this restore leaves pages to a lazy-pages daemon. */
export const restoresLazily = (run: RestoreRun): boolean => lazyClients.has(run);

/**
 * Makes the task's userfaultfd (the task makes it: it belongs to the
 * task's memory), registers the lazy mappings `vmas` with it for missing
 * pages and sends it, with a pidfd of the task, to the daemon, which serves
 * the task's faults from now on. Runs once the mappings exist and before
 * anything touches them.
 */
export function handOverLazy(task: RestoreTask, run: RestoreRun, r: Remote, vmas: readonly Range[]): void {
  const client = lazyClients.get(run)!;
  const what = `the userfaultfd of task ${task.vpid}`;
  let fd = r.syscall(SYS.userfaultfd, O.CLOEXEC | O.NONBLOCK);
  // In a user namespace of its own the task may not (kernel faults need CAP_SYS_PTRACE out here):
  // /dev/userfaultfd, opened by crest and passed in, makes one for whoever holds it open.
  if (fd === -EPERM) fd = userfaultfdThroughDevice(task, r);
  if (fd < 0) throw new Error(`--lazy-pages: task ${task.vpid} cannot make a userfaultfd (${errnoName(-fd)}); restore it without --lazy-pages`);
  let uffd: number;
  try {
    uffd = takeFd(task.pid, fd, what);
  } finally {
    r.call(`close ${what} in it`, SYS.close, fd);
  }
  const pidfd = check(native.syscall(SYS.pidfd_open, task.pid, 0), `open a pidfd of process ${task.pid}`);
  try {
    const api = new BigUint64Array([UFFD_API, LAZY_FEATURES, 0n]);
    const e = native.syscall(SYS.ioctl, uffd, UFFDIO_API, api);
    if (e < 0) throw new Error(`--lazy-pages: the kernel's userfaultfd cannot follow fork, mremap, munmap and MADV_DONTNEED (UFFDIO_API: ${errnoName(-e)}), which a lazy restore needs`);
    for (const v of vmas) {
      const e = uffdRegisterMissing(uffd, v.start, v.end - v.start);
      if (e < 0) throw new Error(`--lazy-pages: cannot register 0x${v.start.toString(16)}-0x${v.end.toString(16)} of task ${task.vpid} for missing pages (${errnoName(-e)})`);
    }
    const pid = Buffer.alloc(4);
    pid.writeInt32LE(task.vpid);
    sendAll(client.sk, pid, [], `send task ${task.vpid} to the lazy-pages daemon`);
    sendAll(client.sk, Buffer.alloc(1), [uffd, pidfd], `send ${what} to the lazy-pages daemon`);
  } finally {
    closeSync(uffd);
    closeSync(pidfd);
  }
  run.log.info(`${vmas.length} mapping(s) of task ${task.vpid} left to the lazy-pages daemon`);
}

/** A userfaultfd of the task's memory made by the task with /dev/userfaultfd (USERFAULTFD_IOC_NEW, Linux 6.1+); -errno if not. */
function userfaultfdThroughDevice(task: RestoreTask, r: Remote): number {
  const dev = native.syscall(SYS.openat, AT_FDCWD, "/dev/userfaultfd", O.RDWR | O.CLOEXEC, 0);
  if (dev < 0) return -EPERM;
  let theirs: number;
  try {
    theirs = passFd(r, task.vpid, dev, "/dev/userfaultfd");
  } finally {
    closeSync(dev);
  }
  const fd = r.syscall(SYS.ioctl, theirs, USERFAULTFD_IOC_NEW, O.CLOEXEC | O.NONBLOCK);
  r.call(`close /dev/userfaultfd in task ${task.vpid}`, SYS.close, theirs);
  return fd;
}

/** Tells the daemon the tree is restored: it pushes the pages not touched yet from now on. */
export function finishLazy(run: RestoreRun): void {
  const client = lazyClients.get(run);
  if (!client) return;
  const fin = Buffer.alloc(4);
  fin.writeUInt32LE(RESTORE_FINISHED);
  sendAll(client.sk, fin, [], "tell the lazy-pages daemon the restore has finished");
}

// --- the daemon ------------------------------------------------------------

/** A run of pages still to copy into a task: where it goes now, and where its bytes are. */
interface Iov {
  start: number;
  end: number;
  layer: number;
  off: number;
}

/** One userfaultfd the daemon serves: a restored task's, or a child's it forked. */
export interface LazyTask {
  vpid: number;
  uffd: number;
  /** Pages files of the task's chain, by layer (shared with the children it forks). */
  sources: PageSource[];
  /** Runs still to copy, in address order. */
  iovs: Iov[];
  total: number;
  copied: number;
  /** The task's memory is gone (it exited or exec'd). */
  gone: boolean;
  forked: boolean;
}

/** Background copies grow to this size. */
const XFER_MAX = 4 << 20;
/** A fault brings in this much around it at most (the rest of its run first). */
const FAULT_CLUSTER = 16 * PAGE_SIZE;

/**
 * The pages of one task the daemon serves: its pagemap resolved through
 * the parent chain, the runs in lazy mappings (as the restore leaves them).
 */
export function openLazyTask(images: RestoreImages, vpid: number, uffd: number, remote: boolean = false): LazyTask {
  const mm = images.read(IMG.mm, vpid)[0];
  if (!mm) throw images.invalid(IMG.mm, vpid, "empty");
  const pm = images.read(IMG.pagemap, vpid);
  const chain = resolveChain(images, vpid, pm.entries, pm.head.pages_id);
  const sources = chain.layers.map((l) => l.images.pages(l.pagesId, { what: `process ${vpid}` }));
  const vmas = mm.vmas.filter((v) => !isGuard(v));
  // From a page server: the images' PE_LAZY pages (theirs alone, or also in the pages file as criu marks them).
  const far = remote ? remoteRuns(pm.entries, true) : [];
  const own = chain.runs.filter((p) => !(p.layer ?? 0)), up = chain.runs.filter((p) => (p.layer ?? 0) > 0);
  const runs = remote ? [...up, ...splitRuns(own, far.map(range)).outside, ...far] : chain.runs;
  runs.sort((a, b) => (a.vaddr < b.vaddr ? -1 : a.vaddr > b.vaddr ? 1 : 0));
  const missing = remote ? [] : remoteRuns(pm.entries, false);
  if (missing.length) {
    for (const s of sources) s.close();
    throw images.invalid(IMG.pagemap, vpid, `process ${vpid} has ${missing.reduce((n, p) => n + p.len / PAGE_SIZE, 0)} page(s) (first at 0x${missing[0]!.vaddr.toString(16)}) the images do not hold: they were left lazy by the dump (dump --lazy-pages); start crest lazy-pages with --page-server --address A --port P, where that dump serves them`);
  }
  const iovs = splitLazy(runs, vmas).lazy.map((p) => ({ start: Number(p.vaddr), end: Number(p.vaddr) + p.len, layer: p.layer ?? 0, off: p.off }));
  for (const p of iovs) {
    if (p.layer === REMOTE) continue;
    if (p.off + (p.end - p.start) > sources[p.layer]!.size) {
      for (const s of sources) s.close();
      throw images.invalid(IMG.pages, chain.layers[p.layer]!.pagesId, `truncated: process ${vpid} needs its bytes up to ${p.off + p.end - p.start}`);
    }
  }
  const total = iovs.reduce((n, p) => n + (p.end - p.start) / PAGE_SIZE, 0);
  return { vpid, uffd, sources, iovs, total, copied: 0, gone: false, forked: false };
}

/** The layer of a run whose pages come from the page server; its `off` is then the pages' address in the images. */
export const REMOTE = -1;

const range = (p: PageRun) => ({ start: p.vaddr, end: p.vaddr + BigInt(p.len) });

/**
 * The runs of a task's pagemap (its own images, not the parents') that a
 * page server holds: entries marked PE_LAZY alone (a dump --lazy-pages left
 * them in the task), and with `all` those marked PE_LAZY and PE_PRESENT
 * too (criu marks so every page it could restore lazily; its page server
 * --lazy-pages serves them). As runs of layer REMOTE, `off` their address.
 */
export function remoteRuns(entries: readonly pagemap_entry[], all: boolean): PageRun[] {
  const out: PageRun[] = [];
  for (const e of entries) {
    const f = e.flags ?? PE.PRESENT;
    if (!(f & PE.LAZY) || (f & PE.PRESENT && !all)) continue;
    out.push({ vaddr: e.vaddr, len: pageCount(e) * PAGE_SIZE, off: Number(e.vaddr), layer: REMOTE });
  }
  return out;
}

/** Removes [start, end) from the sorted runs (cutting the ones it overlaps). */
export function dropRange(iovs: Iov[], start: number, end: number): Iov[] {
  const out: Iov[] = [];
  for (const p of iovs) {
    if (p.end <= start || p.start >= end) {
      out.push(p);
      continue;
    }
    if (p.start < start) out.push({ ...p, end: start });
    if (p.end > end) out.push({ ...p, start: end, off: p.off + (end - p.start) });
  }
  return out;
}

/** Moves the runs in [from, from+len) to `to` (mremap), keeping where their bytes are. */
export function remapRange(iovs: Iov[], from: number, to: number, len: number): Iov[] {
  const moved: Iov[] = [];
  for (const p of iovs) {
    const s = Math.max(p.start, from), e = Math.min(p.end, from + len);
    if (s < e) moved.push({ start: s - from + to, end: e - from + to, layer: p.layer, off: p.off + (s - p.start) });
  }
  // What was at the destination is gone (mremap unmaps it), and what left the source.
  const rest = dropRange(dropRange(iovs, from, from + len), to, to + len);
  return [...rest, ...moved].sort((a, b) => a.start - b.start);
}

/** The run holding addr (binary search), or -1. */
function findIov(iovs: readonly Iov[], addr: number): number {
  let lo = 0, hi = iovs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const p = iovs[mid]!;
    if (addr < p.start) hi = mid - 1;
    else if (addr >= p.end) lo = mid + 1;
    else return mid;
  }
  return -1;
}

/** What the daemon reports to its face as it goes. */
export interface LazyEvents {
  /** A userfaultfd the daemon now serves (the child's of a fork), to hold too. */
  forked(t: LazyTask): void;
  /** A task's memory is gone (it exited or exec'd): its userfaultfd need not be held any more. */
  gone?(t: LazyTask): void;
}

/** How often every task is checked for a memory gone (reap), at most. */
const REAP_EVERY_MS = 20;
/** An address a probe names: page-aligned, above any mmap_min_addr, below any task's top. */
const PROBE_ADDR = 2 ** 32;

/**
 * Whether a task's memory is gone (exited, exec'd), without touching it: a
 * UFFDIO_COPY from address 0, which nothing of ours maps, fails ESRCH (or
 * ENOSPC) at once when the memory is gone, and otherwise EFAULT, ENOENT or
 * EEXIST with nothing copied (no page is filled: the copy from us fails
 * first). A fork event tells of each child, but nothing tells of its exit.
 */
export function memoryGone(uffd: number, addr: number = PROBE_ADDR): boolean {
  const r = uffdCopy(uffd, addr, 0, PAGE_SIZE);
  return r.err === -ESRCH || r.err === -ENOSPC;
}

/**
 * The daemon's serving: userfaultfds come in (add), their events are read
 * (events) and answered, and the pages not touched are pushed (push) once
 * the restore has finished. Everything is synchronous: the face polls.
 */
export class LazyServer {
  /** The userfaultfds served: the restored tasks', and the forked children's until their memory is gone. */
  readonly tasks: LazyTask[] = [];
  /** Forked children whose memory went away (dropped from tasks, for the log). */
  readonly left = { children: 0, copied: 0, total: 0 };
  /** Userfaultfds served in all. */
  served = 0;
  private reaped = 0;
  private readonly buf: Buffer;
  private readonly bufAddr: number;
  private readonly msgs = Buffer.alloc(UFFD_MSG_SIZE * 64);
  private next = 0;
  private xfer = 64 << 10;

  constructor(readonly images: RestoreImages, private readonly log: Logger, private readonly on: LazyEvents, private readonly remote: RemotePages | null = null) {
    this.buf = Buffer.from(native.aligned(XFER_MAX, PAGE_SIZE));
    this.bufAddr = native.address(this.buf);
  }

  add(vpid: number, uffd: number): LazyTask {
    const t = openLazyTask(this.images, vpid, uffd, this.remote !== null);
    this.tasks.push(t);
    this.served++;
    this.log.info(`process ${vpid}: ${t.total} page(s) to serve (userfaultfd ${uffd})`);
    return t;
  }

  /** Tasks with pages still to copy. */
  get pending(): LazyTask[] {
    return this.tasks.filter((t) => !t.gone && t.iovs.length);
  }

  get done(): boolean {
    return this.pending.length === 0;
  }

  /** Reads and answers what is queued on a task's userfaultfd. */
  events(t: LazyTask): void {
    // A task found gone (while answering its events) has its userfaultfd closed: nothing more to read.
    while (!t.gone) {
      const n = native.syscall(SYS.read, t.uffd, this.msgs, this.msgs.length);
      if (n === -EAGAIN || n === 0) return;
      if (n === -EINTR) continue;
      if (n < 0) throw new Error(`read the userfaultfd of process ${t.vpid}: ${errnoName(-n)}`);
      for (let at = 0; at + UFFD_MSG_SIZE <= n && !t.gone; at += UFFD_MSG_SIZE) this.event(t, this.msgs.subarray(at, at + UFFD_MSG_SIZE));
    }
  }

  private event(t: LazyTask, m: Buffer): void {
    const ev = m.readUInt8(0);
    const a = (i: number) => Number(m.readBigUInt64LE(8 + 8 * i));
    switch (ev) {
      case UFFD_EVENT.PAGEFAULT: return this.fault(t, Number(m.readBigUInt64LE(16) & ~BigInt(PAGE_SIZE - 1)));
      case UFFD_EVENT.FORK: {
        const child: LazyTask = { ...t, uffd: m.readInt32LE(8), iovs: t.iovs.map((p) => ({ ...p })), copied: 0, total: t.iovs.reduce((n, p) => n + (p.end - p.start) / PAGE_SIZE, 0), forked: true };
        this.tasks.push(child);
        this.served++;
        this.log.info(`process ${t.vpid} forked: its child's ${child.total} page(s) still to serve (userfaultfd ${child.uffd})`);
        this.on.forked(child);
        return;
      }
      case UFFD_EVENT.REMAP:
        t.iovs = remapRange(t.iovs, a(0), a(1), a(2));
        return;
      case UFFD_EVENT.REMOVE: {
        // MADV_DONTNEED/REMOVE: the range reads as zeros from now on, the mapping stays; no more faults of it to answer.
        const e = uffdUnregister(t.uffd, a(0), a(1) - a(0));
        if (e === -ENOMEM) return this.gone(t);
        if (e < 0) throw new Error(`unregister 0x${a(0).toString(16)}-0x${a(1).toString(16)} of process ${t.vpid}: ${errnoName(-e)}`);
        t.iovs = dropRange(t.iovs, a(0), a(1));
        return;
      }
      case UFFD_EVENT.UNMAP:
        t.iovs = dropRange(t.iovs, a(0), a(1));
        return;
      default:
        throw new Error(`process ${t.vpid}: unexpected userfaultfd event 0x${ev.toString(16)}`);
    }
  }

  private gone(t: LazyTask): void {
    if (t.gone) return;
    t.gone = true;
    // Nothing more comes on it, and the guard need not hold it any more.
    closeSync(t.uffd);
    this.on.gone?.(t);
    t.uffd = -1;
    this.log.info(`${t.forked ? `a child process ${t.vpid} forked` : `process ${t.vpid}`}: its memory is gone, ${t.iovs.length} run(s) left unserved`);
    t.iovs = [];
    // A tree that forks without pause makes children by the thousand: those gone leave a count, not an entry.
    if (t.forked) {
      const i = this.tasks.indexOf(t);
      if (i >= 0) this.tasks.splice(i, 1);
      this.left.children++;
      this.left.copied += t.copied;
      this.left.total += t.total;
    }
  }

  /**
   * Finds the tasks whose memory is gone (exited or exec'd: the kernel has
   * no event for it) and lets their userfaultfds go, at most every
   * REAP_EVERY_MS. Without it, a forked child that exits is found gone only
   * when a copy into it fails, and one with nothing left to copy never is:
   * a tree that forks without pause fills the daemon's fd table
   * (EMFILE), the faster the slower its copies (from a page server).
   */
  reap(now: number = Date.now()): void {
    if (now - this.reaped < REAP_EVERY_MS) return;
    this.reaped = now;
    for (const t of [...this.tasks]) if (!t.gone && memoryGone(t.uffd)) this.gone(t);
  }

  /** A missing page at addr: its bytes (with those after it in its run), or the zero page. */
  private fault(t: LazyTask, addr: number): void {
    const i = findIov(t.iovs, addr);
    if (i < 0) {
      const e = uffdZeroPage(t.uffd, addr, PAGE_SIZE);
      if (e === -EEXIST) uffdWake(t.uffd, addr, PAGE_SIZE);
      else if (e === -ESRCH || e === -ENOSPC) this.gone(t);
      else if (e < 0 && e !== -ENOENT && e !== -EAGAIN) throw new Error(`zero page at 0x${addr.toString(16)} of process ${t.vpid}: ${errnoName(-e)}`);
      return;
    }
    this.xfer = 64 << 10;
    const p = t.iovs[i]!;
    this.copy(t, addr, Math.min(p.end, addr + FAULT_CLUSTER));
    // The page may have been there already (copied since the fault was queued): the thread must not wait on.
    uffdWake(t.uffd, addr, PAGE_SIZE);
  }

  /**
   * Copies [start, end) (inside one run) into the task and drops it from
   * the runs: pages there already are skipped, pages of a mapping gone
   * are dropped. Throws if the images cannot give the bytes.
   */
  private copy(t: LazyTask, start: number, end: number): void {
    const i = findIov(t.iovs, start);
    const p = t.iovs[i]!;
    const len = end - start;
    const pos = p.off + (start - p.start);
    // A round trip to the page server for a task that exited since costs more than asking the kernel first.
    if (p.layer === REMOTE && memoryGone(t.uffd, start)) return this.gone(t);
    if (p.layer === REMOTE) this.remote!.fetch(t.vpid, pos, this.buf, len);
    else {
      const src = t.sources[p.layer]!;
      const got = src.read(this.buf, 0, len, pos);
      if (got !== len) throw new Error(`${src.path}: read ${got} of ${len} bytes at ${pos} for process ${t.vpid}`);
    }
    // A range the task split since (mprotect of a part) is no longer one mapping, which one
    // UFFDIO_COPY must stay in (ENOENT): the rest goes page by page, and a page no mapping
    // registers any more (unmapped, its events read) is skipped.
    let at = 0, copied = 0, single = false;
    while (at < len) {
      const r = uffdCopy(t.uffd, start + at, this.bufAddr + at, single ? PAGE_SIZE : len - at);
      at += r.done;
      copied += r.done;
      if (r.err === 0) continue;
      if (r.err === -EEXIST) at += PAGE_SIZE; // there already
      else if (r.err === -ENOENT) {
        if (single) at += PAGE_SIZE;
        else single = true;
      } else if (r.err === -ESRCH || r.err === -ENOSPC) return this.gone(t);
      else if (r.err === -EAGAIN) {
        // The mappings are changing (an event is queued): keep the rest for later.
        t.copied += copied / PAGE_SIZE;
        t.iovs = dropRange(t.iovs, start, start + at);
        return;
      } else throw new Error(`copy 0x${(start + at).toString(16)} of process ${t.vpid} in (UFFDIO_COPY): ${errnoName(-r.err)}`);
    }
    t.copied += copied / PAGE_SIZE;
    t.iovs = dropRange(t.iovs, start, end);
  }

  /** Pushes the next background chunk of one task (round robin); false if nothing is left. */
  push(): boolean {
    const live = this.pending;
    if (!live.length) return false;
    const t = live[this.next++ % live.length]!;
    const p = t.iovs[0]!;
    this.copy(t, p.start, Math.min(p.end, p.start + this.xfer));
    this.xfer = Math.min(XFER_MAX, this.xfer * 2);
    return true;
  }

  /** Stops serving: every userfaultfd and pages file closed. */
  close(): void {
    const sources = new Set<PageSource>();
    for (const t of this.tasks) {
      if (t.uffd >= 0) closeSync(t.uffd);
      t.uffd = -1;
      for (const s of t.sources) sources.add(s);
    }
    for (const s of sources) s.close();
  }
}

/**
 * The daemon's connection to a page server that holds the lazy pages
 * (lazy-pages --page-server: a dump --lazy-pages, or page-server
 * --lazy-pages), criu's protocol (lazy-server.ts has the other side).
 * Synchronous: a request, then its answer, read whole, on the TCP socket
 * or TLS's relay (a blocking socketpair end: neither polled nor nonblocking).
 */
export class RemotePages {
  private readonly head = Buffer.alloc(32);
  /** Pages fetched, for the log. */
  fetched = 0;

  private readonly sk: number;

  constructor(private readonly link: PageLink, private readonly where: string) {
    this.sk = link.fd;
  }

  private broken(what: string, e?: unknown): Error {
    // No answer for --timeout seconds (stallingAfter): named as such, the server is alive.
    if ((e as NodeJS.ErrnoException | undefined)?.code === "EAGAIN") return new Error(`${this.link.explain(e).message} (${what}): the restored tree cannot have its memory`);
    const why = e ? `${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` : "the connection closed";
    // With TLS, the relay's socketpair shows only that the connection ended; TLS may say why.
    const tlsWhy = this.link.reason();
    return new Error(`the page server at ${this.where} ${what}: ${why} (the dump side ended or died${tlsWhy ? `; ${tlsWhy}` : ""}): the restored tree cannot have its memory`);
  }

  private send(b: Buffer, what: string): void {
    try {
      for (let done = 0; done < b.length;) done += writeSync(this.sk, b, done, b.length - done);
    } catch (e) {
      throw this.broken(what, e);
    }
  }

  private recv(b: Buffer, what: string): void {
    for (let got = 0; got < b.length;) {
      let n: number;
      try {
        n = readSync(this.sk, b, got, b.length - got, null);
      } catch (e) {
        throw this.broken(what, e);
      }
      if (n === 0) throw this.broken(what);
      got += n;
    }
  }

  /** Reads len bytes of process vpid's pages at (images) address vaddr into buf, asking as often as the server answers with fewer. */
  fetch(vpid: number, vaddr: number, buf: Buffer, len: number): void {
    for (let at = 0; at < len;) {
      const want = (len - at) / PAGE_SIZE;
      const addr = BigInt(vaddr + at);
      this.send(encodeIov(PS.GET, 0, want, addr, BigInt(vpid)), `took no request for ${want} page(s) at 0x${addr.toString(16)} of process ${vpid}`);
      this.recv(this.head, `did not answer the request for ${want} page(s) at 0x${addr.toString(16)} of process ${vpid}`);
      const a = decodeIov(this.head);
      if (a.cmd !== PS.ADD_F || a.vaddr !== addr || a.dstId !== BigInt(vpid) || a.nrPages < 1 || a.nrPages > want) {
        throw new Error(`the page server at ${this.where} answered a request for ${want} page(s) at 0x${addr.toString(16)} of process ${vpid} with command ${a.cmd}, ${a.nrPages} page(s) at 0x${a.vaddr.toString(16)} of ${a.dstId}`);
      }
      this.recv(buf.subarray(at, at + a.nrPages * PAGE_SIZE), `closed in the middle of pages of process ${vpid}`);
      at += a.nrPages * PAGE_SIZE;
      this.fetched += a.nrPages;
    }
  }

  /** Every page is in: asks the server to close (PS_IOV_CLOSE), and takes its status. */
  close(): void {
    this.send(encodeIov(PS.CLOSE, 0, 0, 0n, 0n), "took no close");
    const status = Buffer.alloc(4);
    this.recv(status, "did not answer the close");
    if (status.readInt32LE(0) !== 0) throw new Error(`the page server at ${this.where} closed with status ${status.readInt32LE(0)}`);
  }
}

/** A PID, from a pidfd's fdinfo (in crest's PID namespace); null once the process is gone. */
export function pidOfPidfd(pidfd: number): number | null {
  const m = /^Pid:\s*(-?\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${pidfd}`, "utf8"));
  const pid = m ? Number(m[1]) : -1;
  return pid > 0 ? pid : null;
}
