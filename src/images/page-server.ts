// criu's page server: pagemaps and their pages sent over TCP instead of
// written where the dump runs (criu/page-xfer.c; the same bytes on the wire).
// Each message is a page_server_iov (u32 cmd, u64 nr_pages, u64 vaddr,
// u64 dst_id: 32 bytes); cmd's low 16 bits are the command, the high ones a
// pagemap entry's flags; dst_id is the image's id << 8 | its type (1: a
// task's pagemap-ID.img, 2: pagemap-shmem-ID.img). The sender opens an image
// (OPEN2, answered with one byte: whether the server's images have a parent
// link), adds its entries (ADD_F, each PE_PRESENT one followed by its
// pages), and at the end asks CLOSE, answered with an int32 status. The
// server writes each image and a pages-N.img of its own numbering.
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, unlinkSync, writeSync, writevSync, constants as fsc } from "node:fs";
import { basename, join } from "node:path";
import { Checksum, decodeManifest, ManifestRecorder, PAGE_SERVER_MANIFEST, writeManifest } from "./manifest.js";
import { native } from "../sys/native.js";
import { SYS } from "../sys/constants.js";
import { check } from "../sys/errno.js";
import { IMG } from "./kinds.js";
import { fileOutput, ImageError, imagePath, readImage, writeImage } from "./file.js";
import { PagemapRuns } from "./pagemap-runs.js";
import type { PageSink } from "./store.js";
import type { WriterThread } from "./writer-thread.js";
import { loadCreds, plainLink, tlsLink, type PageLink } from "./tls.js";
import { workPath, type Options, type TlsOptions } from "../options.js";

const IOV_SIZE = 32;
const PAGE = 4096;
export const PS = { ADD: 1, HOLE: 2, OPEN: 3, OPEN2: 4, PARENT: 5, ADD_F: 6, GET: 7, CLOSE: 0x1023, FORCE_CLOSE: 0x1024 } as const;
const TYPE_PID = 1, TYPE_SHMEM = 2;
/** Type numbers older criu versions sent (criu's decode_pm). */
const LEGACY: Record<number, number> = { 10: TYPE_PID, 11: TYPE_PID, 27: TYPE_SHMEM, 28: TYPE_SHMEM, 29: TYPE_SHMEM };
const PE_PARENT = 1, PE_PRESENT = 4;

export interface Iov {
  cmd: number;
  flags: number;
  nrPages: number;
  vaddr: bigint;
  dstId: bigint;
}

export function encodeIov(cmd: number, flags: number, nrPages: number, vaddr: bigint, dstId: bigint): Buffer {
  const b = Buffer.alloc(IOV_SIZE);
  b.writeUInt32LE(((flags << 16) | cmd) >>> 0, 0);
  b.writeBigUInt64LE(BigInt(nrPages), 8);
  b.writeBigUInt64LE(vaddr, 16);
  b.writeBigUInt64LE(dstId, 24);
  return b;
}

export function decodeIov(b: Buffer): Iov {
  const raw = b.readUInt32LE(0);
  return { cmd: raw & 0xffff, flags: raw >>> 16, nrPages: Number(b.readBigUInt64LE(8)), vaddr: b.readBigUInt64LE(16), dstId: b.readBigUInt64LE(24) };
}

/** An image's dst_id, and back: which pagemap image it names. */
export const dstId = (shmem: boolean, id: number): bigint => (BigInt(id) << 8n) | BigInt(shmem ? TYPE_SHMEM : TYPE_PID);
export function decodeDst(dst: bigint): { shmem: boolean; id: number } {
  const t = Number(dst & 0xffn);
  const type = LEGACY[t] ?? t;
  if (type !== TYPE_PID && type !== TYPE_SHMEM) throw new Error(`the page server was sent an image of unknown type ${t}`);
  return { shmem: type === TYPE_SHMEM, id: Number(dst >> 8n) };
}

// ---- sockets (IPv4, blocking, through the syscalls) ----

const AF_INET = 2, SOCK_STREAM = 1, SOCK_CLOEXEC = 0o2000000, SOL_SOCKET = 1, SO_REUSEADDR = 2, SO_RCVTIMEO = 20, SO_SNDTIMEO = 21, IPPROTO_TCP = 6, TCP_NODELAY = 1;
/** criu's --timeout default, in seconds. */
const DEFAULT_TIMEOUT = 10;

function sockaddr(address: string, port: number): Buffer {
  const parts = address.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`page server address ${address}: crest takes an IPv4 address (a.b.c.d) so far`);
  }
  const a = Buffer.alloc(16);
  a.writeUInt16LE(AF_INET, 0);
  a.writeUInt16BE(port, 2);
  parts.forEach((p, i) => (a[4 + i] = p));
  return a;
}

function tcpSocket(): number {
  const fd = check(native.syscall(SYS.socket, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), "make a TCP socket");
  native.syscall(SYS.setsockopt, fd, IPPROTO_TCP, TCP_NODELAY, Buffer.from([1, 0, 0, 0]), 4);
  return fd;
}

/**
 * The connection to the page server a dump sends its pages to (--page-server
 * --address A --port P), if any; with --tls, once its handshake and checks
 * are done (before the dump touches the tree, as criu).
 */
export function pageServerFor(opts: Options): PageLink | undefined {
  const o = opts.service;
  if (!o.pageServer) return undefined;
  if (!o.address) throw new Error("--page-server needs --address (and --port, 1234 by default): where the page server listens");
  const port = o.port ?? 1234;
  const peer = `page server at ${o.address}:${port}`;
  const tcp = connectPageServer(o.address, port);
  // With TLS, the dump writes to the relay's socketpair, which reads on only as the TLS socket drains.
  const link = o.tls?.on ? tlsLink(tcp, tlsFiles(opts), "client", peer, o.address) : plainLink(tcp, peer);
  // A server that takes nothing (or does not answer) fails the dump instead of keeping the tree frozen for ever.
  return stallingAfter(link, opts);
}

/**
 * The link, its blocking sends and receives ended with EAGAIN once
 * --timeout seconds (criu's default 10) go by without progress, which
 * explain() names: for the side that waits on a peer that may be stopped
 * or stuck (a dump's page server; a lazy-pages daemon's).
 */
export function stallingAfter(link: PageLink, opts: Options): PageLink {
  const secs = opts.dump.timeout ?? DEFAULT_TIMEOUT;
  const timeval = Buffer.alloc(16);
  timeval.writeBigInt64LE(BigInt(secs));
  for (const opt of [SO_SNDTIMEO, SO_RCVTIMEO]) native.syscall(SYS.setsockopt, link.fd, SOL_SOCKET, opt, timeval, timeval.length);
  return { ...link, explain: (e) => link.explain(stalled(e, secs)) };
}

/** An EAGAIN of a blocking send or receive on a page server's socket: --timeout went by without progress. */
function stalled(e: unknown, secs: number): unknown {
  if (!/EAGAIN/.test((e as Error).message ?? "")) return e;
  return new Error(`${(e as Error).message.replace(/EAGAIN.*/, "")}it took nothing and answered nothing for ${secs} s (--timeout): is it stopped or stuck?`);
}

/**
 * The page server's side of an accepted connection, with --tls once its
 * handshake and checks are done; `lazy`: a lazy-pages daemon's, which a
 * dump or page-server --lazy-pages answers with pages.
 */
export function pageClientLink(fd: number, opts: Options, lazy = false): PageLink {
  const peer = lazy ? `lazy-pages daemon at ${peerName(fd)}` : `page server's client ${peerName(fd)}`;
  if (!opts.service.tls?.on) return plainLink(fd, peer);
  return tlsLink(fd, tlsFiles(opts), lazy ? "lazy server" : "server", peer, opts.service.address);
}

/** --tls's files, relative ones in the work directory (criu works there). */
export function tlsFiles(opts: Options): TlsOptions {
  const t = opts.service.tls ?? {};
  return {
    ...t,
    ...(t.cacert !== undefined ? { cacert: workPath(opts, t.cacert) } : {}),
    ...(t.cacrl !== undefined ? { cacrl: workPath(opts, t.cacrl) } : {}),
    ...(t.cert !== undefined ? { cert: workPath(opts, t.cert) } : {}),
    ...(t.key !== undefined ? { key: workPath(opts, t.key) } : {}),
  };
}

/** With --tls, its files read now, each missing or bad one named: before anything starts, not once a peer came. */
export function checkTlsFiles(opts: Options): void {
  if (opts.service.tls?.on) loadCreds(tlsFiles(opts));
}

/** a.b.c.d:port of a connected socket's other end, for messages. */
function peerName(fd: number): string {
  const a = Buffer.alloc(16);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(16);
  if (native.syscall(SYS.getpeername, fd, a, len) < 0 || a.readUInt16LE(0) !== AF_INET) return "(unknown address)";
  return `${a[4]}.${a[5]}.${a[6]}.${a[7]}:${a.readUInt16BE(2)}`;
}

/** Connects to a page server. */
export function connectPageServer(address: string, port: number): number {
  const fd = tcpSocket();
  const a = sockaddr(address, port);
  const r = native.syscall(SYS.connect, fd, a, a.length);
  if (r < 0) {
    closeSync(fd);
    check(r, `connect to the page server at ${address}:${port}`);
  }
  return fd;
}

/** A listening socket on address:port (port 0: one the kernel picks); returns it and the port. */
export function listenPageServer(address: string, port: number): { fd: number; port: number } {
  const fd = tcpSocket();
  native.syscall(SYS.setsockopt, fd, SOL_SOCKET, SO_REUSEADDR, Buffer.from([1, 0, 0, 0]), 4);
  const a = sockaddr(address, port);
  check(native.syscall(SYS.bind, fd, a, a.length), `bind the page server to ${address}:${port}`);
  check(native.syscall(SYS.listen, fd, 1), "listen for the page server's client");
  const got = Buffer.alloc(16);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(16);
  check(native.syscall(SYS.getsockname, fd, got, len), "find the page server's port");
  return { fd, port: got.readUInt16BE(2) };
}

export function acceptPageClient(listener: number): number {
  return check(native.syscall(SYS.accept4, listener, 0, 0, SOCK_CLOEXEC), "accept the page server's client");
}

function readFully(fd: number, buf: Buffer, what: string): boolean {
  let got = 0;
  while (got < buf.length) {
    const n = readSync(fd, buf, got, buf.length - got, null);
    if (n === 0) {
      if (got === 0) return false;
      throw new Error(`${what}: the connection closed in the middle of a message`);
    }
    got += n;
  }
  return true;
}

function writeFully(fd: number, buf: Buffer): void {
  for (let done = 0; done < buf.length;) done += writeSync(fd, buf, done, buf.length - done);
}

// ---- the sender ----
//
// As criu (criu/page-xfer.c, mem.c): each task's pages go as the dump reads
// them, while the tree is frozen: OPEN2 for its pagemap image, then its runs
// in address order, each an ADD_F with the entry's flags, the pages of a
// PE_PRESENT one right after (PE_PARENT and lazy ones carry none); CLOSE once
// the whole dump is done. crest's pages writer hands its buffers to a sink
// (PageStream.image below) that cuts them at the runs and sends each piece
// with its ADD_F, on the store's writer thread once it runs, so that the main
// thread reads the next buffer meanwhile; nothing of it is written locally.
// The server writes one image at a time: an image whose first bytes come
// while another is on the wire (a shared memory object found while its task's
// pages are being sent) is staged locally and sent at the end, from the staging directory.

/** How the store's writer thread is reached. */
export interface StreamThread {
  /** The writer thread, if it runs (it takes tens of ms to start): else sends are made on this thread. */
  running(): WriterThread | null;
  /** Asks for it to be started (a full buffer of pages: worth it). */
  start(): void;
  /** Waits until it has done everything handed over; throws its first failure. */
  drain(): void;
}

/** The name a send's failure on the writer thread carries, told apart by PageStream.explain. */
const ON_THE_WIRE = "the page server connection";

/** Writes pieces to fd in order, in one writev where it can. */
function writevFully(fd: number, views: Uint8Array[]): void {
  for (let i = 0; i < views.length;) {
    let n = writevSync(fd, views.slice(i, i + 1024));
    for (; i < views.length && n >= views[i]!.length; i++) n -= views[i]!.length;
    if (n) views[i] = views[i]!.subarray(n);
  }
}

/** A dump's connection to its page server as it sends: one image's pages on the wire at a time. */
export class PageStream {
  /** The image whose runs and pages are on the wire. */
  private owner: ImageStream | null = null;
  /** OPEN2s not answered yet: the answers (the has-parent byte) are read at the end, so as never to wait for the server. */
  private answers = 0;
  /** The writer thread once it sends: from then on every send goes through it, in order. */
  private handed: WriterThread | null = null;
  /** The first image that was closed short. */
  private short: string | undefined;
  /** The pagemap images sent (file names), which the dump does not keep. */
  readonly streamed = new Set<string>();

  constructor(readonly link: PageLink, private readonly thread: StreamThread) {}

  /**
   * The sink of the pages of one pagemap image (`name`, pagemap-ID.img or
   * pagemap-shmem-ID.img); `local` makes the sink to stage them in
   * instead, if the wire is another image's when its first pages come.
   */
  image(shmem: boolean, id: number | bigint, name: string, local: () => PageSink): PageSink {
    return new ImageStream(this, dstId(shmem, Number(id)), name, local);
  }

  /** Puts an image on the wire (OPEN2) if it is free. */
  take(img: ImageStream): boolean {
    if (this.owner) return false;
    this.owner = img;
    this.streamed.add(img.name);
    this.send(encodeIov(PS.OPEN2, 0, 0, 0n, img.dst), null, [0, 0, IOV_SIZE]);
    this.answers++;
    return true;
  }

  /**
   * Takes an image off the wire; `short`: a run whose pages never came (its
   * dump failed, which is reported; a dump that commits so would be a bug).
   */
  release(img: ImageStream, short?: { vaddr: number }): void {
    if (this.owner === img) this.owner = null;
    if (short) this.short ??= `pages of ${img.name} at 0x${short.vaddr.toString(16)} were recorded but never came`;
  }

  /**
   * Sends heads and pieces of data in the order `plan` says (triples: 0
   * heads / 1 data, offset, length); `behind`: data is sent from in place
   * while the caller goes on (until drain()), else copied or sent before this returns.
   */
  send(heads: Uint8Array, data: Buffer | null, plan: number[], behind = false): void {
    if (behind) this.thread.start();
    const t = (this.handed ??= this.thread.running());
    if (t) return t.sendv(this.link.fd, ON_THE_WIRE, heads, data, plan, behind);
    const views: Uint8Array[] = [];
    for (let i = 0; i < plan.length; i += 3) views.push((plan[i] ? data! : heads).subarray(plan[i + 1]!, plan[i + 1]! + plan[i + 2]!));
    try {
      writevFully(this.link.fd, views);
    } catch (e) {
      throw this.link.explain(new Error(`sending pages failed: ${(e as Error).message}`));
    }
  }

  /** Waits until what was handed to the writer thread is sent. */
  drain(): void {
    if (!this.handed) return;
    try {
      this.thread.drain();
    } catch (e) {
      throw this.explain(e);
    }
  }

  /** A failure of the writer thread's: one of its sends, named by the page server; another as it was. */
  explain(e: unknown): unknown {
    if (!(e instanceof ImageError) || e.file !== ON_THE_WIRE) return e;
    return this.link.explain(new Error(`sending pages failed: ${e.message.slice(ON_THE_WIRE.length + 2).replace(/^send failed: /, "")}`));
  }

  /**
   * At commit, once the writer thread is drained: the OPEN2 answers, then
   * the images staged in `dir` (sent, and removed there), CLOSE and its status.
   */
  finish(dir: string): void {
    try {
      if (this.owner) throw new Error(`the pages of ${this.owner.name} were still being sent at the end of the dump`);
      if (this.short) throw new Error(this.short);
      const a = Buffer.alloc(this.answers);
      if (this.answers && !readFully(this.link.fd, a, "the page server's answers to OPEN2")) throw new Error("it closed the connection instead of answering OPEN2");
      this.answers = 0;
      for (const n of this.streamed) if (existsSync(join(dir, n))) unlinkSync(join(dir, n));
      sendAll(dir, this.link.fd);
    } catch (e) {
      throw this.link.explain(e);
    }
  }
}

interface Run {
  vaddr: number;
  len: number;
  flags: number;
  /** Bytes of it sent. */
  sent: number;
}

/** The pages of one pagemap image, sent with their runs as they come; or staged locally, if the wire was taken. */
class ImageStream implements PageSink {
  /** Runs recorded whose pages (or, for those without, whose ADD_F) are not sent yet, in order. */
  private runs: Run[] = [];
  private state: "waiting" | "streaming" | "local" = "waiting";
  private local: PageSink | null = null;

  constructor(private readonly stream: PageStream, readonly dst: bigint, readonly name: string, private readonly makeLocal: () => PageSink) {}

  /** On the wire, or staged: decided when the first pages (or the close) come. */
  private claim(): boolean {
    if (this.state === "waiting") {
      if (this.stream.take(this)) {
        this.state = "streaming";
      } else {
        this.state = "local";
        this.local = this.makeLocal();
        this.runs = [];
      }
    }
    return this.state === "streaming";
  }

  run(vaddr: number, len: number, flags: number): void {
    if (this.state === "local") return;
    const last = this.runs[this.runs.length - 1];
    if (last && last.flags === flags && last.vaddr + last.len === vaddr) last.len += len;
    else this.runs.push({ vaddr, len, flags, sent: 0 });
  }

  /** The ADD_Fs of the runs buf[off, off + len) holds, each before its piece; and the runs without pages up to the next with. */
  private pages(buf: Buffer, off: number, len: number, behind: boolean): void {
    const heads: Buffer[] = [];
    const plan: number[] = [];
    const head = (flags: number, bytes: number, vaddr: number) => {
      const last = plan.length - 3;
      // Heads one after the other go as one piece.
      if (last >= 0 && plan[last] === 0) plan[last + 2]! += IOV_SIZE;
      else plan.push(0, heads.length * IOV_SIZE, IOV_SIZE);
      heads.push(encodeIov(PS.ADD_F, flags, bytes / PAGE, BigInt(vaddr), this.dst));
    };
    const bare = () => this.runs.length > 0 && !(this.runs[0]!.flags & PE_PRESENT);
    for (;;) {
      while (bare()) {
        const r = this.runs.shift()!;
        head(r.flags, r.len, r.vaddr);
      }
      if (!len) break;
      const r = this.runs[0];
      if (!r) throw new Error(`${len} bytes of pages of ${this.name} came without their pagemap entry`);
      const n = Math.min(len, r.len - r.sent);
      head(r.flags, n, r.vaddr + r.sent);
      plan.push(1, off, n);
      r.sent += n;
      off += n;
      len -= n;
      if (r.sent === r.len) this.runs.shift();
    }
    if (!plan.length) return;
    const all = new Uint8Array(heads.length * IOV_SIZE);
    heads.forEach((h, i) => all.set(h, i * IOV_SIZE));
    this.stream.send(all, plan.some((_, i) => i % 3 === 0 && plan[i] === 1) ? buf : null, plan, behind);
  }

  write(buf: Uint8Array, off: number, len: number): void {
    if (!this.claim()) return this.local!.write(buf, off, len);
    this.pages(Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength), off, len, false);
  }

  writeBehind(buf: Buffer, off: number, len: number): void {
    if (!this.claim()) return this.local!.writeBehind(buf, off, len);
    this.pages(buf, off, len, true);
  }

  drain(): void {
    if (this.local) this.local.drain();
    else this.stream.drain();
  }

  close(): void {
    if (!this.claim()) return this.local!.close();
    try {
      this.pages(Buffer.alloc(0), 0, 0, false);
    } finally {
      this.stream.release(this, this.runs.find((r) => r.sent < r.len));
    }
  }
}

/**
 * Sends the pagemap images staged in `dir` (those whose pages came while
 * the wire was another image's) with their pages to the page server on
 * `sk`, and removes them from `dir` (they are the server's now); then asks
 * it to close and checks its status.
 */
function sendAll(dir: string, sk: number): void {
  const chunk = Buffer.allocUnsafe(4 << 20);
  const images = readdirSync(dir).map((f) => /^pagemap-(shmem-)?(\d+)\.img$/.exec(f)).filter((m): m is RegExpExecArray => m !== null);
  for (const m of images) {
    const shmem = m[1] !== undefined, id = Number(m[2]);
    const kind = shmem ? IMG.shmemPagemap : IMG.pagemap;
    const pm = readImage(dir, kind, id);
    const dst = dstId(shmem, id);
    writeFully(sk, encodeIov(PS.OPEN2, 0, 0, 0n, dst));
    if (!readFully(sk, Buffer.alloc(1), "the page server's answer to OPEN2")) throw new Error("it closed the connection instead of answering OPEN2");
    const pagesPath = imagePath(dir, IMG.pages, pm.head.pages_id);
    const pages = existsSync(pagesPath) ? openSync(pagesPath, "r") : -1;
    try {
      let off = 0;
      for (const e of pm.entries) {
        const nr = Number(e.nr_pages ?? BigInt(e.compat_nr_pages));
        const flags = e.flags ?? PE_PRESENT;
        writeFully(sk, encodeIov(PS.ADD_F, flags, nr, e.vaddr, dst));
        if (!(flags & PE_PRESENT)) continue;
        for (let left = nr * PAGE; left > 0;) {
          const n = readSync(pages, chunk, 0, Math.min(left, chunk.length), off);
          if (n <= 0) throw new Error(`${pagesPath} is shorter than its pagemap says`);
          writeFully(sk, chunk.subarray(0, n));
          off += n;
          left -= n;
        }
      }
    } finally {
      if (pages >= 0) closeSync(pages);
    }
    unlinkSync(join(dir, m[0]));
    if (pages >= 0) unlinkSync(pagesPath);
  }
  writeFully(sk, encodeIov(PS.CLOSE, 0, 0, 0n, 0n));
  const status = Buffer.alloc(4);
  if (!readFully(sk, status, "the page server's answer to CLOSE")) throw new Error("it closed the connection instead of answering CLOSE");
  if (status.readInt32LE(0) !== 0) {
    throw new Error(`the page server did not take the pages (status ${status.readInt32LE(0)})`);
  }
}

// ---- the receiver ----

/**
 * The manifest of what a page server wrote into `dir` (crest-manifest-page-server.json),
 * beside the dump's own: what an earlier session wrote there, and this one's files.
 */
function writeServerManifest(dir: string, sums: ManifestRecorder): void {
  const m = sums.manifest(undefined, {});
  try {
    const path = join(dir, PAGE_SERVER_MANIFEST);
    if (existsSync(path)) m.files = { ...decodeManifest(readFileSync(path, "utf8"), path).files, ...m.files };
  } catch {
    // an unreadable one is replaced
  }
  writeManifest(dir, PAGE_SERVER_MANIFEST, m);
}

/**
 * One session of a page server: writes what the sender sends into `dir`;
 * returns once it asked to close. A session that ends otherwise (the dump
 * failed, or its connection broke) removes the files it wrote: they hold
 * part of a dump that did not happen.
 */
export function servePages(sk: number, dir: string, log: (msg: string) => void): void {
  const made: string[] = [];
  try {
    serveSession(sk, dir, log, made);
  } catch (e) {
    for (const f of made) {
      try {
        unlinkSync(f);
      } catch {
        // gone already
      }
    }
    if (made.length) log(`Removed the ${made.length} file(s) this session wrote`);
    throw e;
  }
}

function serveSession(sk: number, dir: string, log: (msg: string) => void, made: string[]): void {
  const hasParent = existsSync(join(dir, "parent"));
  let nextPages = 1;
  while (existsSync(imagePath(dir, IMG.pages, nextPages))) nextPages++;
  // Each file summed as it is written, for the manifest.
  const sums = new ManifestRecorder();
  let open: { dst: bigint; shmem: boolean; id: number; pagesId: number; pages: number; sum: Checksum; entries: PagemapRuns } | null = null;
  const finish = () => {
    if (!open) return;
    closeSync(open.pages);
    made.push(imagePath(dir, open.shmem ? IMG.shmemPagemap : IMG.pagemap, open.id));
    sums.record(basename(imagePath(dir, IMG.pages, open.pagesId)), open.sum.file);
    writeImage(dir, open.shmem ? IMG.shmemPagemap : IMG.pagemap, open.id, { head: { pages_id: open.pagesId }, entries: open.entries },
      (path) => sums.output(basename(path), fileOutput(path)));
    open = null;
  };
  const start = (dst: bigint) => {
    finish();
    const { shmem, id } = decodeDst(dst);
    const pagesId = nextPages++;
    log(`Opening ${shmem ? "pagemap-shmem" : "pagemap"}-${id}.img (pages-${pagesId}.img)`);
    const pages = openSync(imagePath(dir, IMG.pages, pagesId), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC, 0o600);
    made.push(imagePath(dir, IMG.pages, pagesId));
    open = { dst, shmem, id, pagesId, pages, sum: new Checksum(), entries: new PagemapRuns() };
  };
  const head = Buffer.alloc(IOV_SIZE);
  const chunk = Buffer.allocUnsafe(4 << 20);
  for (;;) {
    let more: boolean;
    try {
      more = readFully(sk, head, "a page server message");
    } catch (e) {
      // A sender that ends with answers unread resets the connection.
      if ((e as NodeJS.ErrnoException).code !== "ECONNRESET") throw e;
      more = false;
    }
    if (!more) throw new Error("the sender closed the connection before it asked to close (the dump did not end well)");
    const iov = decodeIov(head);
    switch (iov.cmd) {
      case PS.OPEN:
      case PS.OPEN2:
        start(iov.dstId);
        if (iov.cmd === PS.OPEN2) writeFully(sk, Buffer.from([hasParent ? 1 : 0]));
        break;
      case PS.PARENT: {
        const { shmem, id } = decodeDst(iov.dstId);
        const b = Buffer.alloc(4);
        b.writeInt32LE(hasParent && existsSync(imagePath(join(dir, "parent"), shmem ? IMG.shmemPagemap : IMG.pagemap, id)) ? 1 : 0);
        writeFully(sk, b);
        break;
      }
      case PS.ADD:
      case PS.ADD_F:
      case PS.HOLE: {
        if (!open || (open as { dst: bigint }).dst !== iov.dstId) start(iov.dstId);
        const o = open!;
        const flags = iov.cmd === PS.ADD_F ? iov.flags : iov.cmd === PS.ADD ? PE_PRESENT : PE_PARENT;
        // A run the sender cut (at its buffers' ends) is one entry again, as a dump writes it.
        o.entries.add(Number(iov.vaddr), iov.nrPages, flags);
        if (!(flags & PE_PRESENT)) break;
        for (let left = iov.nrPages * PAGE; left > 0;) {
          const want = Math.min(left, chunk.length);
          if (!readFully(sk, chunk.subarray(0, want), "pages")) throw new Error("the connection closed in the middle of pages");
          writeFully(o.pages, chunk.subarray(0, want));
          o.sum.update(chunk.subarray(0, want));
          left -= want;
        }
        break;
      }
      case PS.CLOSE:
      case PS.FORCE_CLOSE: {
        finish();
        writeServerManifest(dir, sums);
        writeFully(sk, Buffer.alloc(4));
        return;
      }
      default:
        // 0x16 0x03: a TLS handshake record, read as a command.
        if (iov.cmd === 0x0316) throw new Error("the sender speaks TLS (its handshake came as the first message): run the page server with --tls and its certificates");
        throw new Error(`the page server was sent command ${iov.cmd}, which crest does not serve (${iov.cmd === PS.GET ? "lazy pages" : "unknown"})`);
    }
  }
}
