// The page server sender's stream (images/page-server.ts, PageStream): the
// runs a pages writer records and the buffers it hands over become criu's
// messages in criu's order (OPEN2, then per run an ADD_F with its flags and,
// for a PE_PRESENT one, its pages, cut where the buffers end), from the main
// thread or from the writer thread alike; an image whose pages come while
// another is on the wire is staged; the end reads the answers, sends CLOSE.
import { test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, mkdtempSync, readSync, writeSync } from "node:fs";
import { decodeIov, dstId, PageStream, PS } from "../../src/images/page-server.js";
import type { PageSink } from "../../src/images/store.js";
import { plainLink } from "../../src/images/tls.js";
import { sharedAligned, WriterThread } from "../../src/images/writer-thread.js";
import { native } from "../../src/sys/native.js";
import { SYS } from "../../src/sys/constants.js";

const PAGE = 4096;
const PE = { PARENT: 1, LAZY: 2, PRESENT: 4 };

function socketpair(): [number, number] {
  const pair = new Int32Array(2);
  assert.equal(native.syscall(SYS.socketpair, 1, 1 | 0o2000000, 0, pair), 0);
  return [pair[0]!, pair[1]!];
}

/** Reads what the sender sent: each message, with the first byte of each of its pages. */
function readMessages(fd: number, bytes: number): Array<{ cmd: number; flags: number; nr: number; vaddr: number; dst: bigint; pages?: number[] }> {
  const all = Buffer.alloc(bytes);
  for (let got = 0; got < bytes;) got += readSync(fd, all, got, bytes - got, null);
  const out = [];
  for (let at = 0; at < bytes;) {
    const iov = decodeIov(all.subarray(at, at + 32));
    at += 32;
    const m: { cmd: number; flags: number; nr: number; vaddr: number; dst: bigint; pages?: number[] } = { cmd: iov.cmd, flags: iov.flags, nr: iov.nrPages, vaddr: Number(iov.vaddr), dst: iov.dstId };
    if (iov.cmd === PS.ADD_F && iov.flags & PE.PRESENT) {
      m.pages = Array.from({ length: iov.nrPages }, (_, i) => all[at + i * PAGE]!);
      at += iov.nrPages * PAGE;
    }
    out.push(m);
  }
  return out;
}

/** Pages numbered by their first byte: 1, 2, ... */
function numbered(buf: Buffer, from: number, n: number): void {
  for (let i = 0; i < n; i++) buf.fill(from + i, i * PAGE, (i + 1) * PAGE);
}

async function scenario(thread: WriterThread | null): Promise<void> {
  const [mine, theirs] = socketpair();
  const stream = new PageStream(plainLink(mine, "page server at test"), {
    running: () => (thread?.ready ? thread : null),
    start: () => {},
    drain: () => thread?.drain(),
  });
  const staged: string[] = [];
  const local = (name: string): PageSink => ({
    write: () => void staged.push(`${name} write`),
    writeBehind: () => void staged.push(`${name} writeBehind`),
    drain: () => {},
    close: () => void staged.push(`${name} close`),
  });
  try {
    const task = stream.image(false, 7, "pagemap-7.img", () => local("task"));
    // Runs as a pages writer records them: 3 present pages, 1 in the parent, 2 present, 1 left lazy.
    task.run!(0x10000, 2 * PAGE, PE.PRESENT);
    task.run!(0x12000, PAGE, PE.PRESENT); // merged with the last
    task.run!(0x13000, PAGE, PE.PARENT);
    task.run!(0x20000, 2 * PAGE, PE.PRESENT);
    task.run!(0x30000, PAGE, PE.LAZY);
    // A buffer of 2 pages written behind (cut inside the first run), then the last 3 as a copy.
    const a = sharedAligned(2 * PAGE);
    numbered(a, 1, 2);
    task.writeBehind(a, 0, 2 * PAGE);
    // A second image whose pages come while the task's are on the wire: staged.
    const shm = stream.image(true, 99, "pagemap-shmem-99.img", () => local("shm"));
    shm.run!(0, PAGE, PE.PRESENT);
    shm.write(Buffer.alloc(PAGE), 0, PAGE);
    shm.close();
    task.drain();
    const b = Buffer.alloc(3 * PAGE);
    numbered(b, 3, 3);
    task.write(b, 0, 3 * PAGE);
    b.fill(0); // the copy was taken
    task.close();
    // An image with no pages at all is still opened, as criu opens it.
    const empty = stream.image(false, 8, "pagemap-8.img", () => local("empty"));
    empty.close();
    thread?.drain();
    const dst = dstId(false, 7);
    const got = readMessages(theirs, 7 * 32 + 5 * PAGE);
    assert.deepEqual(got, [
      { cmd: PS.OPEN2, flags: 0, nr: 0, vaddr: 0, dst },
      { cmd: PS.ADD_F, flags: PE.PRESENT, nr: 2, vaddr: 0x10000, dst, pages: [1, 2] },
      { cmd: PS.ADD_F, flags: PE.PRESENT, nr: 1, vaddr: 0x12000, dst, pages: [3] },
      { cmd: PS.ADD_F, flags: PE.PARENT, nr: 1, vaddr: 0x13000, dst },
      { cmd: PS.ADD_F, flags: PE.PRESENT, nr: 2, vaddr: 0x20000, dst, pages: [4, 5] },
      { cmd: PS.ADD_F, flags: PE.LAZY, nr: 1, vaddr: 0x30000, dst },
      { cmd: PS.OPEN2, flags: 0, nr: 0, vaddr: 0, dst: dstId(false, 8) },
    ]);
    assert.deepEqual(staged, ["shm write", "shm close"]);
    assert.deepEqual([...stream.streamed], ["pagemap-7.img", "pagemap-8.img"]);
    // The end: the server's two OPEN2 answers, then its status for CLOSE.
    writeSync(theirs, Buffer.from([0, 0, 0, 0, 0, 0]));
    stream.finish(mkdtempSync("/tmp/crest-ps-"));
    const close = readMessages(theirs, 32);
    assert.equal(close[0]!.cmd, PS.CLOSE);
  } finally {
    closeSync(mine);
    closeSync(theirs);
  }
}

test("runs and buffers become OPEN2 and ADD_F messages with their pages, in order, sent on this thread", () => scenario(null));

test("the same, sent by the writer thread", async () => {
  const w = new WriterThread();
  try {
    for (let i = 0; i < 500 && !w.ready; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(w.ready, "the writer thread runs");
    await scenario(w);
  } finally {
    w.stop();
  }
});

test("a send that fails names the page server; the writer thread's failure too", async () => {
  for (const useThread of [false, true]) {
    const w = useThread ? new WriterThread() : null;
    try {
      for (let i = 0; i < 500 && w && !w.ready; i++) await new Promise((r) => setTimeout(r, 10));
      const [mine, theirs] = socketpair();
      closeSync(theirs);
      const stream = new PageStream(plainLink(mine, "page server at 10.0.0.9:1234"), { running: () => w, start: () => {}, drain: () => w?.drain() });
      const img = stream.image(false, 1, "pagemap-1.img", () => assert.fail("not staged"));
      img.run!(0x1000, PAGE, PE.PRESENT);
      const a = sharedAligned(PAGE);
      assert.throws(() => {
        img.writeBehind(a, 0, PAGE);
        img.drain();
      }, /the page server at 10\.0\.0\.9:1234: sending pages failed: .*EPIPE/);
      closeSync(mine);
    } finally {
      w?.stop();
    }
  }
});
