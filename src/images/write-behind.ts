// Writes handed over to a second thread, so that a dump reads the next pages
// out of a task while the last ones are still being written (the page cache
// takes fresh pages at about the speed the task's memory is read): on two
// cores, a memory dump costs about what writing it alone would. The buffers
// are SharedArrayBuffer-backed, so nothing is copied between the threads;
// the main thread, which never yields to its event loop during a dump, waits
// for the writer with Atomics.
import type { Worker } from "node:worker_threads";
import { native } from "../sys/native.js";
import { errnoName } from "../sys/errno.js";

/** The writer thread: write each buffer to its fd, count it done (and its time), note the first error (EIO if it has no errno). */
const THREAD = `
const { parentPort, workerData } = require("node:worker_threads");
const { writeSync } = require("node:fs");
const state = new Int32Array(workerData);
parentPort.on("message", ({ fd, sab, off, len }) => {
  const t0 = process.hrtime.bigint();
  try {
    const b = new Uint8Array(sab, off, len);
    for (let done = 0; done < len;) done += writeSync(fd, b, done, len - done);
  } catch (e) {
    if (!Atomics.load(state, 1)) Atomics.store(state, 1, typeof e.errno === "number" ? Math.abs(e.errno) : 5);
  }
  Atomics.add(state, 2, Number((process.hrtime.bigint() - t0) / 1000n));
  Atomics.add(state, 0, 1);
  Atomics.notify(state, 0);
});
`;

/** state[0]: writes done; state[1]: errno of the first failed write; state[2]: µs spent writing. */
const DONE = 0, ERRNO = 1, US = 2;

export class WriteBehind {
  private readonly worker: Worker;
  private readonly state = new Int32Array(new SharedArrayBuffer(12));
  private posted = 0;

  constructor() {
    // Loaded here, not with this module: a worker_threads loaded into crest's
    // startup snapshot cannot start threads (its shared state is not there).
    const threads = process.getBuiltinModule("node:worker_threads");
    this.worker = new threads.Worker(THREAD, { eval: true, workerData: this.state.buffer });
    // It never keeps crest alive, and it has nothing to say to the event loop.
    this.worker.unref();
  }

  /** Hands buf[off, off + len) over to be written to fd; buf must not change until drain(). */
  write(fd: number, buf: Buffer, off: number, len: number): void {
    if (!(buf.buffer instanceof SharedArrayBuffer)) throw new TypeError("write-behind buffers must be shared");
    this.worker.postMessage({ fd, sab: buf.buffer, off: buf.byteOffset + off, len });
    this.posted++;
  }

  /** Waits until every write handed over is done; throws (errno) if one failed. */
  drain(what: string): void {
    for (let done = Atomics.load(this.state, DONE); done < this.posted; done = Atomics.load(this.state, DONE)) {
      Atomics.wait(this.state, DONE, done);
    }
    const errno = Atomics.load(this.state, ERRNO);
    if (errno) throw new Error(`cannot write ${what}: ${errnoName(errno)}`);
  }

  /** µs the writer thread spent writing. */
  get writeUs(): number {
    return Atomics.load(this.state, US);
  }

  close(): void {
    void this.worker.terminate();
  }
}

/** A page-aligned buffer the writer thread can write from (a SharedArrayBuffer). */
export function sharedAligned(size: number, page = 4096): Buffer {
  const whole = Buffer.from(new SharedArrayBuffer(size + page));
  const skip = (page - (native.address(whole) % page)) % page;
  return whole.subarray(skip, skip + size);
}
