// The image store: the one way the pipelines and the kinds reach the images
// of a run. Kinds name images by kind and key and never see paths, so a
// parent chain (pre-dump), a page server or lazy pages can later stand
// behind the same calls.
//
// A dump stages every image in a hidden directory inside the images
// directory and moves them into place only at commit, inventory last: a
// dump that fails leaves the directory as it found it, and an images
// directory without an inventory is never a finished dump.
import { PageStream } from "./page-server.js";
import type { PageLink } from "./tls.js";
import { closeSync, fstatSync, mkdtempSync, openSync, readdirSync, readSync, renameSync, rmdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync, writeSync, constants as fsc } from "node:fs";
import { basename, join, resolve } from "node:path";
import { Checksum, covered, crc32, isPageServers, MANIFEST, ManifestRecorder, writeManifest } from "./manifest.js";
import { fileOutput, ImageError, imageExists, imagePath, readImage, writeImage, type ImageKey, type ImageKind, type ImageOutput } from "./file.js";
import { IMG } from "./kinds.js";
import type { inventory_entry } from "./gen/index.js";
import type { EncodeInput } from "./pb.js";
import { WriterThread } from "./writer-thread.js";

/** Where the pages of one pages-N.img go as a dump writes them, in order. */
export interface PageSink {
  /** Appends len bytes of buf from off: copied, so buf may change once it returns. */
  write(buf: Uint8Array, off: number, len: number): void;
  /**
   * Appends them from the buffer itself (one made by sharedAligned), while
   * the caller goes on: buf must not change until drain() returns.
   */
  writeBehind(buf: Buffer, off: number, len: number): void;
  /** Waits until everything handed over is written. */
  drain(): void;
  close(): void;
  /**
   * Told each run of pages as the pagemap records it, before its bytes come
   * (flags: the entry's; bytes follow only for PE_PRESENT): a page server is
   * sent each with its pages.
   */
  run?(vaddr: number, len: number, flags: number): void;
}

/** The pagemap image a pages file belongs to: a task's (pagemap-ID.img, by its pid) or a shared memory object's (pagemap-shmem-ID.img). */
export interface PagemapOf {
  shmem: boolean;
  id: number | bigint;
}

/** The pages of one pages-N.img as a restore reads them. */
export interface PageSource {
  /** A local file a task under restore may open and read its pages from (preadv straight into place). */
  readonly path: string;
  /** crest's own fd of it, for a task that cannot reach the path (one with a mount namespace of its own). */
  readonly fd: number;
  readonly size: number;
  /** Reads len bytes at pos of the pages file into buf at off; returns how many it got. */
  read(buf: Uint8Array, off: number, len: number, pos: number): number;
  close(): void;
}

/**
 * Where a pagemap's pages may be: in the pages file of this image set, in
 * the parent images (a pre-dump chain, pagemap entries flagged in_parent), or
 * left to be served on demand (lazy pages).
 */
export interface PagesOptions {
  parent?: boolean;
  lazy?: boolean;
  /** What the pages belong to, for messages ("process 42"). */
  what?: string;
}

function refusePagesOptions(path: string, o: PagesOptions): void {
  const of = o.what ? ` of ${o.what}` : "";
  if (o.parent) throw new ImageError(path, "invalid", `pages${of} are in the parent images (an incremental dump after pre-dump); crest does not restore image chains yet`);
  if (o.lazy) throw new ImageError(path, "invalid", `pages${of} are lazy (left in the dumped tasks by dump --lazy-pages): restore them with --lazy-pages, beside crest lazy-pages --page-server --address A --port P taking them from that dump`);
}

/** The images a restore reads (and the few it writes, such as stats-restore). */
export class RestoreImages {
  constructor(readonly dir: string) {}

  read<V>(kind: ImageKind<V, never>, key?: ImageKey): V {
    return readImage(this.dir, kind, key);
  }

  exists(kind: ImageKind<unknown, never>, key?: ImageKey): boolean {
    return imageExists(this.dir, kind, key);
  }

  /** Reads an image that may be absent (CRIU treats many missing images as empty). */
  readOr<V, D>(kind: ImageKind<V, never>, key: ImageKey | undefined, absent: D): V | D {
    return this.exists(kind, key) ? this.read(kind, key) : absent;
  }

  /** The file name of an image, for messages. */
  name(kind: ImageKind<unknown, never>, key?: ImageKey): string {
    return imagePath(this.dir, kind, key);
  }

  /** The error for an image whose contents do not hold together. */
  invalid(kind: ImageKind<unknown, never>, key: ImageKey | undefined, detail: string): ImageError {
    return new ImageError(this.name(kind, key), "invalid", detail);
  }

  write<W>(kind: ImageKind<unknown, W>, key: ImageKey | undefined, value: NoInfer<W>): void {
    writeImage(this.dir, kind, key, value);
  }

  /** The pages of pages-ID.img. */
  pages(id: number, o: PagesOptions = {}): PageSource {
    const path = imagePath(this.dir, IMG.pages, id);
    refusePagesOptions(path, o);
    let fd: number;
    try {
      fd = openSync(path, fsc.O_RDONLY);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new ImageError(path, "missing", "");
      throw new ImageError(path, "io", (e as Error).message, undefined, { cause: e });
    }
    const size = fstatSync(fd).size;
    return {
      path: resolve(path), fd, size,
      read: (buf, off, len, pos) => readSync(fd, buf, off, len, pos),
      close: () => closeSync(fd),
    };
  }
}

/** Chunks as one array (most image files come in one piece: that copy is the file). */
function concat(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length <= 1) return chunks[0] ?? new Uint8Array(0);
  const data = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) at += (data.set(c, at), c.length);
  return data;
}

/** Trees of more tasks than this have their image files written by the writer thread. */
const WRITER_THREAD_TASKS = 32;
/** How a pages buffer's summing is split between this thread and the writer: moved by this much a buffer, in pieces of this many bytes. */
const SPLIT_STEP = 0.1, SPLIT_UNIT = 64 << 10;

/**
 * The images a dump writes: staged until commit, and, for a tree of several
 * tasks or a lot of memory, written by a second thread
 * (images/writer-thread.ts) while the dump goes on; a failed write there
 * fails the commit.
 */
export class DumpImages {
  private readonly staging: string;
  private done = false;
  private thread: WriterThread | null = null;
  /** Image files written while the writer thread starts (or held: holdFiles), for it to create once it runs, or the commit. */
  private backlog: Array<{ path: string; data: Uint8Array }> = [];
  private holding = false;
  /** ns spent summing pages for the manifest. */
  private pagesSumNs = 0n;
  /** Image files of an older dump that commit removed from the directory. */
  readonly removedStale: string[] = [];
  /** The sums of the files staged, for the manifest (manifest.ts). */
  private readonly sums = new ManifestRecorder();
  private parentLink: string | undefined;

  /** The pages sent to the page server as they come, if there is one. */
  private readonly stream: PageStream | null;

  /**
   * `pageServer`: a connection to a page server (--page-server), which the
   * pagemaps and their pages are sent to as the dump makes them (what is staged
   * here instead, at commit).
   */
  constructor(readonly dir: string, private readonly pageServer?: PageLink) {
    this.staging = mkdtempSync(join(dir, ".crest-dump-"));
    this.stream = pageServer ? new PageStream(pageServer, {
      running: () => (this.handing ? this.thread : null),
      start: () => void this.writer(),
      drain: () => this.thread?.drain(),
    }) : null;
  }

  /** Waits for the writer thread; a failure of a send to the page server is named by it. */
  private drainThread(): void {
    try {
      this.thread?.drain();
    } catch (e) {
      throw this.stream?.explain(e) ?? e;
    }
  }

  /**
   * The writer thread, started on first need: its start costs the main
   * thread milliseconds, and the thread itself tens more before it runs,
   * which a one-task dump would not win back.
   */
  private writer(): WriterThread {
    return (this.thread ??= new WriterThread());
  }

  /**
   * Told how many tasks the dump has: with many, the writer thread starts
   * now. A small tree's files are written sooner here: the thread's start
   * takes the second core from the tasks running their batches (on this
   * 2-core machine a 10-task dump took 390 ms with it, 280 ms without).
   */
  expectTasks(n: number): void {
    if (n > WRITER_THREAD_TASKS) this.writer();
  }

  /**
   * From now on image files are kept in memory until the commit (or handed
   * to the writer thread, once it runs): for a dump whose tree runs on,
   * creating them is then not frozen time.
   */
  holdFiles(): void {
    this.holding = true;
  }

  /** Whether writes go to the writer thread: it is running. */
  private get handing(): boolean {
    return this.thread?.ready ?? false;
  }

  /** An image file's bytes, collected and handed to the writer thread (kept until it runs). */
  private collect(path: string): ImageOutput {
    let chunks: Uint8Array[] = [];
    return {
      write: (data) => void chunks.push(new Uint8Array(data)),
      close: () => {
        // Handed over with the task's other images (flush), in one message.
        this.backlog.push({ path, data: concat(chunks) });
        chunks = [];
      },
      discard: () => void (chunks = []),
    };
  }

  /** Gives the backlog to the writer thread once it runs; or, when the dump cannot wait (`now`), writes it here. */
  private handOver(now = false): void {
    if (!this.backlog.length) return;
    if (this.handing) {
      this.thread!.files(this.backlog);
    } else if (now) {
      for (const { path, data } of this.backlog) {
        const out = fileOutput(path);
        out.write(data);
        out.close();
      }
    } else {
      return;
    }
    this.backlog = [];
  }

  /** Hands the image files written since to the writer thread, if it runs (a dump calls it after each task). */
  flush(): void {
    this.handOver();
  }

  write<W>(kind: ImageKind<unknown, W>, key: ImageKey | undefined, value: NoInfer<W>): void {
    // A pagemap sent to the page server with its pages is the server's to write.
    if (this.stream && (kind === IMG.pagemap || kind === IMG.shmemPagemap) && this.stream.streamed.has(basename(imagePath(this.staging, kind, key)))) return;
    if (this.done) writeImage(this.dir, kind, key, value);
    else writeImage(this.staging, kind, key, value, (path) => this.sums.output(basename(path), this.thread || this.holding ? this.collect(path) : fileOutput(path)));
  }

  /**
   * A sink for pages-ID.img, the pages of the pagemap `of`: with a page
   * server, sent there (page-server.ts, PageStream); else staged, on the
   * writer thread, or, until it runs, written here and handed over once it does.
   */
  pages(id: number, of?: PagemapOf): PageSink {
    if (!this.stream || !of) return this.localPages(id);
    return this.stream.image(of.shmem, of.id, basename(imagePath(this.staging, of.shmem ? IMG.shmemPagemap : IMG.pagemap, of.id)), () => this.localPages(id));
  }

  private localPages(id: number): PageSink {
    const path = imagePath(this.staging, IMG.pages, id);
    // Summed for the manifest as they are handed over: zlib's CRC-32 (3.7
    // GB/s here) costs about as much as reading the pages from the task, or
    // writing them. A buffer written behind is summed in two pieces, the
    // first here while the thread writes it, the rest by the thread after;
    // the split moves towards the side that waited for the other (the pages
    // writer waits for the thread before it hands over the next buffer).
    // The pieces' sums are combined at close. `parts`: the file's pieces in
    // order, summed or to be asked for.
    const parts: Array<{ crc: number; len: number } | { ticket: number; len: number }> = [];
    let writerBehind = false;
    let mine = 0.5;
    const drain = () => {
      if (!this.thread) return;
      writerBehind = this.thread.busy;
      this.drainThread();
    };
    const summed = (buf: Uint8Array, off: number, len: number) => {
      const t0 = process.hrtime.bigint();
      parts.push({ crc: crc32(buf.subarray(off, off + len)), len });
      this.pagesSumNs += process.hrtime.bigint() - t0;
    };
    /** Writes a full buffer behind on the thread, summed partly here, the rest there. */
    const shared = (thread: WriterThread, file: number, buf: Buffer, off: number, len: number, named?: string) => {
      mine = Math.min(1, Math.max(0, mine + (writerBehind ? SPLIT_STEP : -SPLIT_STEP)));
      const here = Math.min(len, Math.round((len * mine) / SPLIT_UNIT) * SPLIT_UNIT);
      const ticket = thread.writeShared(file, buf, off, len, named, here < len ? here : undefined);
      if (here) summed(buf, off, here);
      if (ticket !== undefined) parts.push({ ticket, len: len - here });
    };
    const record = () => {
      const sum = new Checksum();
      for (const p of parts) sum.append("crc" in p ? p.crc : this.thread!.sumOf(p.ticket), p.len);
      this.sums.record(basename(path), sum.file);
    };
    if (this.handing) {
      const thread = this.thread!;
      // A small pages file (no full buffer) goes with the task's other images,
      // in one message; the file is opened on the thread at the first full buffer.
      let file: number | undefined;
      let held: Uint8Array[] = [];
      const opened = () => {
        if (file === undefined) {
          file = thread.open(path);
          for (const c of held) thread.write(file, c, 0, c.length);
          held = [];
        }
        return file;
      };
      return {
        write: (buf, off, len) => {
          summed(buf, off, len);
          if (file === undefined) held.push(new Uint8Array(buf.subarray(off, off + len)));
          else thread.write(file, buf, off, len);
        },
        writeBehind: (buf, off, len) => shared(thread, opened(), buf, off, len),
        drain,
        close: () => {
          if (file === undefined) this.backlog.push({ path, data: concat(held) });
          else thread.close(file);
          record();
        },
      };
    }
    const fd = openSync(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC, 0o600);
    let handed: WriterThread | null = null;
    const here = (buf: Uint8Array, off: number, len: number) => {
      for (let done = 0; done < len;) done += writeSync(fd, buf, off + done, len - done);
    };
    return {
      write: (buf, off, len) => {
        summed(buf, off, len);
        if (handed) handed.write(fd, buf, off, len, path);
        else here(buf, off, len);
      },
      // Memory enough to fill a buffer: worth the thread.
      writeBehind: (buf, off, len) => {
        const thread = this.writer();
        if (!handed && thread.ready) handed = thread;
        if (handed) return shared(handed, fd, buf, off, len, path);
        summed(buf, off, len);
        here(buf, off, len);
      },
      drain,
      // Closed here once the thread has written it: a worker closing an fd it did not open makes Node warn on stderr.
      close: () => {
        try {
          if (handed) this.drainThread();
          record();
        } finally {
          closeSync(fd);
        }
      },
    };
  }

  /** µs the writer thread spent writing pages. */
  get pagesWriteUs(): number {
    return this.thread?.pagesWriteUs ?? 0;
  }

  /** µs spent summing pages for the manifest, here and on the writer thread. */
  get pagesSumUs(): { here: number; thread: number } {
    return { here: Number(this.pagesSumNs / 1000n), thread: this.thread?.sumUs ?? 0 };
  }

  /** A file of crest's own beside the images (criu skips files it does not know). */
  writeFile(name: string, data: string): void {
    const bytes = Buffer.from(data);
    writeFileSync(join(this.staging, name), bytes);
    const sum = new Checksum();
    sum.update(bytes);
    this.sums.record(name, sum.file);
  }

  /** The `parent` link of an image chain (pre-dump), as criu makes it: the path as given, relative to the images directory. */
  linkParent(target: string): void {
    symlinkSync(target, join(this.staging, "parent"));
    this.parentLink = target;
  }

  /**
   * Moves every staged image into the images directory, the inventory
   * then the manifest last: from then on the directory holds a complete
   * dump. Later writes (the statistics) go straight there.
   */
  commit(inventory: EncodeInput<inventory_entry>): void {
    this.handOver(true);
    this.drainThread();
    this.stream?.finish(this.staging);
    writeImage(this.staging, IMG.inventory, undefined, [inventory], (path) => this.sums.output(basename(path), fileOutput(path)));
    const inv = imagePath(this.staging, IMG.inventory).slice(this.staging.length + 1);
    const names = readdirSync(this.staging).filter((n) => n !== inv);
    writeManifest(this.staging, MANIFEST, this.sums.manifest(new Set([...names, inv]), { ...(this.parentLink !== undefined ? { parent: this.parentLink } : {}), pageServer: this.pageServer !== undefined }));
    for (const n of [...names, inv, MANIFEST]) renameSync(join(this.staging, n), join(this.dir, n));
    // An older dump's images in this directory (a tree that had other tasks) go: the directory holds this
    // dump, which its manifest names whole (a page server writing here keeps its own files).
    const mine = new Set([...names, inv]);
    for (const n of readdirSync(this.dir)) {
      if (!covered(n) || mine.has(n) || (this.pageServer !== undefined && isPageServers(n))) continue;
      unlinkSync(join(this.dir, n));
      this.removedStale.push(n);
    }
    // Empty now; rmdir, not rmSync's recursion, whose module loads on first use (~2 ms a command).
    rmdirSync(this.staging);
    this.done = true;
    this.thread?.stop();
  }

  /** Drops everything staged: the directory is left as the dump found it. */
  abort(): void {
    this.thread?.stop();
    if (!this.done) rmSync(this.staging, { recursive: true, force: true });
  }
}
