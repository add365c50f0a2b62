// Remote lazy pages, the side that has them: `crest dump --lazy-pages`
// (after its images are committed, the tasks still frozen) and `crest
// page-server --lazy-pages` (from an images directory) answer a lazy-pages
// daemon's requests over TCP (with --tls, through images/tls.ts's relay, as
// a page server), in criu's page-server protocol
// (criu/page-xfer.c): the daemon asks PS_IOV_GET {nr_pages, vaddr, dst_id =
// the PID of the images}, and is answered PS_IOV_ADD_F with PE_PRESENT
// {nr_pages (maybe fewer: up to the end of the run holding vaddr), vaddr,
// dst_id} and the pages' bytes; at the end it sends PS_IOV_CLOSE, answered
// with an int32 status (0), and closes. Only pages the images mark PE_LAZY
// are served (criu serves nothing else); a request for any other page, or
// a connection that ends before CLOSE, fails the session by name.
//
// The client side (the daemon fetching) is `RemotePages` in lazy.ts.
import { closeSync, openSync, readSync, writeSync } from "node:fs";
import { statusReady } from "../../pipelines/actions.js";
import type { Logger } from "../../log.js";
import type { pagemap_entry } from "../../images/index.js";
import { acceptPageClient, decodeIov, encodeIov, listenPageServer, pageClientLink, PS } from "../../images/page-server.js";
import type { PageLink } from "../../images/tls.js";
import type { Options } from "../../options.js";
import { PAGE_SIZE } from "../../sys/constants.js";
import type { DumpRun, DumpTask } from "../context.js";
import { IMG } from "../../images/index.js";
import { RestoreImages } from "../../images/store.js";
import { pageCount, pageRuns, PE } from "./pages.js";

const IOV_SIZE = 32;
/** Pages in one answer at most (a request for more gets fewer; the daemon asks again). */
const ANSWER_MAX = 1024;
/** criu's default page-server port. */
export const DEFAULT_PORT = 1234;

/** The lazy pages of one process of the images: where their bytes come from, and which were sent. */
export interface LazyPagesOf {
  vpid: number;
  /** The runs marked PE_LAZY, in address order. */
  runs: Array<{ start: number; end: number }>;
  /** Reads len bytes of the page run at vaddr into buf (the frozen task's memory, or a pages file). */
  read(buf: Buffer, len: number, vaddr: number): void;
  /** Pages sent at least once, per run. */
  sent: Uint8Array[];
  close?(): void;
}

/**
 * The PE_LAZY runs of a pagemap: those a dump --lazy-pages left in the task
 * (PE_LAZY alone), or with `inImages` those the pages file holds too
 * (PE_LAZY and PE_PRESENT, as every dump marks the pages it could restore lazily).
 */
export function lazyRunsOf(entries: readonly pagemap_entry[], inImages: boolean): Array<{ start: number; end: number }> {
  const out: Array<{ start: number; end: number }> = [];
  for (const e of entries) {
    const f = e.flags ?? PE.PRESENT;
    if (!(f & PE.LAZY) || !(f & PE.PRESENT) !== !inImages) continue;
    const start = Number(e.vaddr), end = start + pageCount(e) * PAGE_SIZE;
    const last = out[out.length - 1];
    if (last && last.end === start) last.end = end;
    else out.push({ start, end });
  }
  return out;
}

/** The lazy pages of a frozen task, read through its /proc/PID/mem. */
export function frozenTaskPages(vpid: number, pid: number, entries: readonly pagemap_entry[]): LazyPagesOf {
  const runs = lazyRunsOf(entries, false);
  const mem = openSync(`/proc/${pid}/mem`, "r");
  return {
    vpid, runs, sent: runs.map((r) => new Uint8Array((r.end - r.start) / PAGE_SIZE)),
    read(buf, len, vaddr) {
      const got = readSync(mem, buf, 0, len, vaddr);
      if (got !== len) throw new Error(`read ${got} of ${len} bytes of process ${pid}'s memory at 0x${vaddr.toString(16)}`);
    },
    close: () => closeSync(mem),
  };
}

/** The run of `of` holding addr (binary search), or -1. */
function runAt(of: LazyPagesOf, addr: number): number {
  let lo = 0, hi = of.runs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = of.runs[mid]!;
    if (addr < r.start) hi = mid - 1;
    else if (addr >= r.end) lo = mid + 1;
    else return mid;
  }
  return -1;
}

/** The daemon's connection failed (reset, broken pipe). */
class ConnectionError extends Error {}

function readExactly(sk: number, buf: Buffer, what: string): boolean {
  let got = 0;
  while (got < buf.length) {
    let n: number;
    try {
      n = readSync(sk, buf, got, buf.length - got, null);
    } catch (e) {
      throw new ConnectionError(`${what}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (n === 0) {
      if (got === 0) return false;
      throw new ConnectionError(`${what}: the connection closed in the middle of a message`);
    }
    got += n;
  }
  return true;
}

function writeAll(sk: number, buf: Buffer, what: string): void {
  try {
    for (let done = 0; done < buf.length;) done += writeSync(sk, buf, done, buf.length - done);
  } catch (e) {
    throw new ConnectionError(`${what}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** Answers one request of the daemon (in `head`); "closed" once it has asked to close. */
function answer(sk: number, head: Buffer, buf: Buffer, byPid: Map<number, LazyPagesOf>, count: () => number, total: number, log: Logger): true | "closed" {
  const iov = decodeIov(head);
  if (iov.cmd === PS.CLOSE || iov.cmd === PS.FORCE_CLOSE) {
    writeAll(sk, Buffer.alloc(4), "answer the lazy-pages daemon's close");
    // As criu: wait for the other side to close first (no TIME_WAIT here).
    const rest = Buffer.alloc(1);
    if (readExactly(sk, rest, "wait for the lazy-pages daemon to close")) throw new Error("the lazy-pages daemon sent more after it asked to close");
    log.info(`Lazy pages: the daemon took ${count()} of ${total} lazy page(s) and closed the session`);
    return "closed";
  }
  if (iov.cmd !== PS.GET) throw new Error(`the lazy-pages daemon sent command ${iov.cmd}, which a lazy page server does not take (only PS_IOV_GET and PS_IOV_CLOSE)`);
  const vpid = Number(iov.dstId);
  const of = byPid.get(vpid);
  const vaddr = Number(iov.vaddr);
  const hex = `0x${vaddr.toString(16)}`;
  if (!of) throw new Error(`the lazy-pages daemon asked for pages of process ${vpid}, which the images have no lazy pages of`);
  const i = runAt(of, vaddr);
  if (i < 0 || vaddr % PAGE_SIZE || iov.nrPages <= 0) {
    throw new Error(`the lazy-pages daemon asked for ${iov.nrPages} page(s) at ${hex} of process ${vpid}, which are not lazy pages of it (the images hold them, or it has no such memory)`);
  }
  const run = of.runs[i]!;
  const nr = Math.min(iov.nrPages, (run.end - vaddr) / PAGE_SIZE, ANSWER_MAX);
  of.read(buf, nr * PAGE_SIZE, vaddr);
  writeAll(sk, encodeIov(PS.ADD_F, PE.PRESENT, nr, iov.vaddr, iov.dstId), "answer the lazy-pages daemon");
  writeAll(sk, buf.subarray(0, nr * PAGE_SIZE), "send pages to the lazy-pages daemon");
  of.sent[i]!.fill(1, (vaddr - run.start) / PAGE_SIZE, (vaddr - run.start) / PAGE_SIZE + nr);
  log.debug(`Lazy pages: sent ${nr} page(s) at ${hex} of process ${vpid}`);
  return true;
}

export interface LazySession {
  /** Pages asked for and sent (a page sent twice, to a forked child, counts once). */
  sent: number;
  total: number;
}

/**
 * Listens on --address:--port (every address, 1234 by default), takes one
 * lazy-pages daemon (with --tls: its handshake and certificate checks first)
 * and answers its requests until it asks to close; `listening` is called
 * once it listens. Throws if the handshake fails, the daemon's connection
 * ends before it asked to close, or it asks for a page that is not lazy.
 */
export function serveLazyPages(procs: LazyPagesOf[], opts: Options, log: Logger, listening: (port: number) => void = () => {}): LazySession {
  const byPid = new Map(procs.map((p) => [p.vpid, p]));
  const total = procs.reduce((n, p) => n + p.runs.reduce((m, r) => m + (r.end - r.start) / PAGE_SIZE, 0), 0);
  const address = opts.service.address ?? "0.0.0.0";
  const l = listenPageServer(address, opts.service.port ?? DEFAULT_PORT);
  let link: PageLink | undefined;
  try {
    log.info(`Lazy pages: serving ${total} page(s) of ${procs.length} process(es) on ${address}:${l.port}`);
    listening(l.port);
    const sk = acceptPageClient(l.fd);
    closeSync(l.fd);
    l.fd = -1;
    const daemon = (link = pageClientLink(sk, opts, true));
    log.info(`Lazy pages: a lazy-pages daemon connected${opts.service.tls?.on ? " (TLS handshake completed)" : ""}`);
    const fd = daemon.fd;
    const head = Buffer.alloc(IOV_SIZE);
    const buf = Buffer.allocUnsafe(ANSWER_MAX * PAGE_SIZE);
    const count = () => procs.reduce((n, p) => n + p.sent.reduce((m, s) => m + s.reduce((k, b) => k + b, 0), 0), 0);
    const broken = (why: string) => {
      // With TLS, the relay's socketpair shows only that the connection ended; TLS may say why (a certificate refused).
      const tlsWhy = daemon.reason();
      return new Error(`the lazy-pages daemon closed its connection before it asked to close (${count()} of ${total} lazy page(s) sent${why}${tlsWhy ? `; ${tlsWhy}` : ""}): it failed or was killed, and the restored tree cannot have its memory`);
    };
    for (;;) {
      let got: boolean | "closed";
      try {
        got = readExactly(fd, head, "read a request of the lazy-pages daemon");
        if (got) got = answer(fd, head, buf, byPid, count, total, log);
      } catch (e) {
        throw e instanceof ConnectionError ? broken(`; ${e.message}`) : e;
      }
      if (!got) throw broken("");
      if (got === "closed") return { sent: count(), total };
    }
  } finally {
    if (l.fd >= 0) closeSync(l.fd);
    link?.close();
    for (const p of procs) p.close?.();
  }
}

/**
 * dump --lazy-pages, once the images are committed: serves the frozen
 * tasks' lazy pages on --address:--port until the restore side's daemon
 * has asked to close. Throws (the dump fails, and the tree runs on, as
 * criu's does) if the daemon's connection breaks first.
 */
export function serveDumpedPages(run: DumpRun, tasks: readonly DumpTask[]): void {
  run.log.info("Starting lazy pages server");
  const procs: LazyPagesOf[] = [];
  try {
    for (const t of tasks) if (!t.zombie) procs.push(frozenTaskPages(t.vpid, t.pid, t.pagemap.entries()));
  } catch (e) {
    for (const p of procs) p.close?.();
    throw e;
  }
  try {
    // As criu (run_tcp_server's status_ready): --status-fd is told once the server listens (zdtm's --lazy-migrate waits for it).
    serveLazyPages(procs, run.opts, run.log, () => statusReady(run.opts, run.log));
  } catch (e) {
    // As criu's log ends: the cause, this, then "Dumping FAILED."
    run.log.error((e as Error).message);
    throw new Error("Lazy pages transfer FAILED.");
  }
  run.log.info("Lazy pages transfer finished successfully");
}

/**
 * page-server --lazy-pages: the lazy pages of the images directory -D
 * (entries PE_LAZY and PE_PRESENT, read from its pages files), for a
 * lazy-pages daemon --page-server elsewhere (criu's: "lazy migration" of a
 * dump written here). `listening` is called once it listens.
 */
export function serveImagePages(opts: Options, log: Logger, listening: (port: number) => void): void {
  const dir = opts.images.dir;
  const images = new RestoreImages(dir);
  if (!images.exists(IMG.inventory)) throw new Error(`${dir} holds no images (no inventory.img): no lazy pages to serve`);
  const procs: LazyPagesOf[] = [];
  try {
    for (const t of images.read(IMG.pstree)) {
      if (!images.exists(IMG.pagemap, t.pid)) continue; // a zombie
      const pm = images.read(IMG.pagemap, t.pid);
      const runs = lazyRunsOf(pm.entries, true);
      // Where each page of those runs is in the pages file (which holds the present entries in order).
      const file = pageRuns(pm.entries);
      const pages = images.pages(pm.head.pages_id, { what: `process ${t.pid}` });
      procs.push({
        vpid: t.pid, runs, sent: runs.map((r) => new Uint8Array((r.end - r.start) / PAGE_SIZE)),
        read(buf, len, vaddr) {
          for (let at = 0; at < len;) {
            const a = BigInt(vaddr + at);
            const f = file.find((r) => r.vaddr <= a && a < r.vaddr + BigInt(r.len));
            if (!f) throw new Error(`${pages.path}: no page of process ${t.pid} at 0x${a.toString(16)}`);
            const n = Math.min(len - at, f.len - Number(a - f.vaddr));
            const got = pages.read(buf, at, n, f.off + Number(a - f.vaddr));
            if (got !== n) throw new Error(`${pages.path}: read ${got} of ${n} bytes for process ${t.pid}`);
            at += n;
          }
        },
        close: () => pages.close(),
      });
    }
  } catch (e) {
    for (const p of procs) p.close?.();
    throw e;
  }
  serveLazyPages(procs, opts, log, listening);
}
