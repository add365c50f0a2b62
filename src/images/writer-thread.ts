// A dump's file writing, handed over to a second thread. Creating an image
// file costs the kernel 40 µs to over 1 ms of CPU here (ext4 after many
// deletions), and a 100-task dump creates 700 of them: on a second core, that
// runs beside the main thread's ptrace work instead of adding to it. Pages
// are written there too, while the next buffer fills from the task. The main
// thread, which never yields to its event loop during a dump, waits for the
// writer with Atomics and reads its errors with receiveMessageOnPort.
//
// Everything is done in the order it was handed over. A failure is reported
// at the next drain(), which the store calls before it commits the images.
// It can sum what it writes (the manifest's CRC-32, for the main thread to
// combine): the pages of a large dump are summed half here, half there.
import type { MessagePort, Worker } from "node:worker_threads";
import { native } from "../sys/native.js";
import { ImageError } from "./file.js";

/** The writer thread. Ops: file (create, write, close), files (several), open, write, sendv, close; the first failure is posted on the error port. */
const THREAD = `
const { writeSync, writevSync, openSync, closeSync, unlinkSync, constants: c } = require("node:fs");
const { crc32 } = require("node:zlib");
const { workerData: { state, errors, sums }, parentPort } = require("node:worker_threads");
const done = new Int32Array(state);
// Files this thread opened have negative handles; others are the main thread's fds.
const fds = new Map();
const fdOf = (file) => (file < 0 ? fds.get(file) : file);
let failed = false;
// Sockets a send failed on: later sends to them are dropped (each could wait out a timeout again).
const broken = new Set();
const create = (path) => openSync(path, c.O_WRONLY | c.O_CREAT | c.O_TRUNC, 0o600);
const writeAll = (fd, b) => { for (let at = 0; at < b.length;) at += writeSync(fd, b, at, b.length - at); };
// Pieces in order, in as few calls as the kernel takes (a page server's messages and their pages).
function writevAll(fd, views) {
  for (let i = 0; i < views.length;) {
    let n = writevSync(fd, views.slice(i, i + 1024));
    for (; i < views.length && n >= views[i].length; i++) n -= views[i].length;
    if (n) views[i] = views[i].subarray(n);
  }
}
let doing = "";
function run(m) {
  switch (m.op) {
    case "file": {
      doing = "cannot create";
      const fd = create(m.path);
      doing = "write failed";
      try { writeAll(fd, m.data); } catch (e) { closeSync(fd); unlinkSync(m.path); throw e; }
      closeSync(fd);
      return;
    }
    case "files": for (const f of m.items) run({ op: "file", ...f }); return;
    case "open": doing = "cannot create"; fds.set(m.file, create(m.path)); return;
    case "write": {
      const fd = fdOf(m.file);
      if (fd === undefined) return; // its open failed, which is reported
      doing = "write failed";
      const t0 = process.hrtime.bigint();
      const bytes = new Uint8Array(m.data, m.off, m.len);
      writeAll(fd, bytes);
      const t1 = process.hrtime.bigint();
      Atomics.add(done, 1, Number((t1 - t0) / 1000n));
      if (m.ticket !== undefined) {
        sums.postMessage([m.ticket, crc32(bytes.subarray(m.sumFrom))]);
        Atomics.add(done, 3, Number((process.hrtime.bigint() - t1) / 1000n));
      }
      return;
    }
    case "sendv": {
      if (broken.has(m.file)) return;
      doing = "send failed";
      const t0 = process.hrtime.bigint();
      const heads = new Uint8Array(m.heads), data = m.data ? new Uint8Array(m.data) : null;
      const views = [];
      for (let i = 0; i < m.plan.length; i += 3) views.push((m.plan[i] ? data : heads).subarray(m.plan[i + 1], m.plan[i + 1] + m.plan[i + 2]));
      writevAll(m.file, views);
      Atomics.add(done, 1, Number((process.hrtime.bigint() - t0) / 1000n));
      return;
    }
    case "close": {
      const fd = fdOf(m.file);
      fds.delete(m.file);
      doing = "close failed";
      if (fd !== undefined) closeSync(fd);
      return;
    }
  }
}
parentPort.on("message", (m) => {
  try {
    run(m);
  } catch (e) {
    if (m.op === "sendv") broken.add(m.file);
    if (!failed) errors.postMessage({ path: m.path, detail: doing + ": " + e.message });
    failed = true;
  }
  Atomics.add(done, 0, 1);
  Atomics.notify(done, 0);
});
Atomics.store(done, 2, 1);
`;

/** state[0]: ops done; state[1]: µs spent writing pages; state[2]: 1 once the thread runs; state[3]: µs spent summing. */
const DONE = 0, PAGES_US = 1, READY = 2, SUM_US = 3;

interface Failure {
  path: string;
  detail: string;
}

export class WriterThread {
  private readonly worker: Worker;
  private readonly state = new Int32Array(new SharedArrayBuffer(16));
  private readonly errors: MessagePort;
  private readonly sums: MessagePort;
  /** CRC-32s the thread reported, by ticket. */
  private readonly summed = new Map<number, number>();
  private nextTicket = 0;
  private readonly threads = process.getBuiltinModule("node:worker_threads");
  private posted = 0;
  private nextFile = -1;
  private readonly paths = new Map<number, string>();
  /** The first failure the thread reported. */
  private failure: Failure | undefined;

  constructor() {
    // Loaded here, not with this module: a worker_threads loaded into crest's
    // startup snapshot cannot start threads (its shared state is not there).
    const { port1, port2 } = new this.threads.MessageChannel();
    const sums = new this.threads.MessageChannel();
    this.errors = port1;
    this.sums = sums.port1;
    this.worker = new this.threads.Worker(THREAD, {
      eval: true,
      workerData: { state: this.state.buffer, errors: port2, sums: sums.port2 },
      transferList: [port2, sums.port2],
    });
    // It never keeps crest alive, and it has nothing to say to the event loop.
    this.worker.unref();
    this.errors.unref();
    this.sums.unref();
  }

  /**
   * Whether the thread has started. It takes tens of milliseconds (a Node
   * environment of its own): a short dump is over before, and writes itself.
   */
  get ready(): boolean {
    return Atomics.load(this.state, READY) === 1;
  }

  private post(m: object, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(m, transfer);
    this.posted++;
  }

  /** Creates the file at path with data in it (data is handed over: it is not usable here afterwards). */
  file(path: string, data: Uint8Array): void {
    this.post({ op: "file", path, data }, [data.buffer as ArrayBuffer]);
  }

  /** Creates each file with its data (handed over), in one message. */
  files(items: Array<{ path: string; data: Uint8Array }>): void {
    if (items.length === 1) return this.file(items[0]!.path, items[0]!.data);
    this.post({ op: "files", items }, [...new Set(items.map((f) => f.data.buffer as ArrayBuffer))]);
  }

  /** Opens (creates) a file to append to, on the thread; returns its handle. */
  open(path: string): number {
    const file = this.nextFile--;
    this.paths.set(file, path);
    this.post({ op: "open", file, path });
    return file;
  }

  /** Appends a copy of buf[off, off + len) to a file: a handle from open(), or an fd of this process (named by path). */
  write(file: number, buf: Uint8Array, off: number, len: number, path = this.paths.get(file)): void {
    const copy = new Uint8Array(buf.subarray(off, off + len));
    this.post({ op: "write", file, path, data: copy.buffer, off: 0, len }, [copy.buffer]);
  }

  /**
   * Appends buf[off, off + len) from the buffer itself (made by sharedAligned), which must not change until drain().
   * With `sumFrom`, the thread also sums those bytes from there on: returns the ticket sumOf() takes.
   */
  writeShared(file: number, buf: Buffer, off: number, len: number, path = this.paths.get(file), sumFrom?: number): number | undefined {
    if (!(buf.buffer instanceof SharedArrayBuffer)) throw new TypeError("buffers written in place must be shared");
    const ticket = sumFrom === undefined ? undefined : this.nextTicket++;
    this.post({ op: "write", file, path, data: buf.buffer, off: buf.byteOffset + off, len, ticket, sumFrom });
    return ticket;
  }

  /**
   * Sends pieces to the socket `fd` (named `peer` in errors), in one writev
   * where it can: `plan` holds triples (0: from heads, 1: from data; offset;
   * length). heads (an array of its own, from offset 0) is handed over; data
   * is copied, or, `inPlace`, sent from where it is (a buffer made by
   * sharedAligned, which must not change until drain()).
   */
  sendv(fd: number, peer: string, heads: Uint8Array, data: Buffer | null, plan: number[], inPlace: boolean): void {
    const transfer = [heads.buffer as ArrayBuffer];
    let from: ArrayBufferLike | null = null;
    if (data && inPlace) {
      if (!(data.buffer instanceof SharedArrayBuffer)) throw new TypeError("buffers sent in place must be shared");
      from = data.buffer;
      for (let i = 0; i < plan.length; i += 3) if (plan[i]) plan[i + 1]! += data.byteOffset;
    } else if (data) {
      // Only the bytes the plan takes, copied.
      let lo = Infinity, hi = 0;
      for (let i = 0; i < plan.length; i += 3) if (plan[i]) (lo = Math.min(lo, plan[i + 1]!), hi = Math.max(hi, plan[i + 1]! + plan[i + 2]!));
      if (hi > lo) {
        const copy = new Uint8Array(data.subarray(lo, hi));
        for (let i = 0; i < plan.length; i += 3) if (plan[i]) plan[i + 1]! -= lo;
        from = copy.buffer;
        transfer.push(copy.buffer);
      }
    }
    this.post({ op: "sendv", file: fd, path: peer, heads: heads.buffer, data: from, plan }, transfer);
  }

  /** The CRC-32 of a write handed over with a sum (waits for it). */
  sumOf(ticket: number): number {
    if (!this.summed.has(ticket)) {
      this.drain();
      for (let m; (m = this.threads.receiveMessageOnPort(this.sums));) this.summed.set(...(m.message as [number, number]));
    }
    const crc = this.summed.get(ticket);
    // Its write failed: drain() threw that already.
    if (crc === undefined) throw new Error(`the writer thread did not sum write ${ticket}`);
    this.summed.delete(ticket);
    return crc;
  }

  /** Closes a file once what was handed over for it is written. */
  close(file: number, path = this.paths.get(file)): void {
    this.post({ op: "close", file, path });
    this.paths.delete(file);
  }

  /** Whether the thread has work handed over still to do. */
  get busy(): boolean {
    return Atomics.load(this.state, DONE) < this.posted;
  }

  /** Waits until everything handed over is done; throws the first failure (naming its file). */
  drain(): void {
    for (let done = Atomics.load(this.state, DONE); done < this.posted; done = Atomics.load(this.state, DONE)) {
      Atomics.wait(this.state, DONE, done);
    }
    this.failure ??= this.threads.receiveMessageOnPort(this.errors)?.message as Failure | undefined;
    if (this.failure) throw new ImageError(this.failure.path, "io", this.failure.detail);
  }

  /** µs the thread spent writing pages. */
  get pagesWriteUs(): number {
    return Atomics.load(this.state, PAGES_US);
  }

  /** µs the thread spent summing. */
  get sumUs(): number {
    return Atomics.load(this.state, SUM_US);
  }

  /** Stops the thread once it has done what it was handed (failed or not). */
  stop(): void {
    try {
      this.drain();
    } catch {
      // reported by the drain that mattered, or moot: the dump failed
    }
    void this.worker.terminate();
    this.errors.close();
    this.sums.close();
  }
}

/** A page-aligned buffer the writer thread can write from in place (a SharedArrayBuffer). */
export function sharedAligned(size: number, page = 4096): Buffer {
  const whole = Buffer.from(new SharedArrayBuffer(size + page));
  const skip = (page - (native.address(whole) % page)) % page;
  return whole.subarray(skip, skip + size);
}
