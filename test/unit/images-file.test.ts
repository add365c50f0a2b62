// Image files (src/images/file.ts, kinds.ts, payloads.ts): headers, entry
// framing, payload layouts and padding, streaming, and every read error.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  IMG, ImageError, ImageReader, ImageWriter, readImage, readSingle, writeImage, imageExists, formatImageName,
  kindByMagic, encode, MAGIC, IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC, core_entry, core_entry_march, pstree_entry, pagemap_entry,
  pipe_data_entry, ipc_msg, pagemapCount, pagemapNrPages, type EncodeInput, type ImageKind,
} from "../../src/images/index.js";

const root = mkdtempSync(join(tmpdir(), "crest-images-file-"));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => {
  const d = join(root, `d${n++}`);
  mkdirSync(d);
  return d;
};

const u32 = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(v >>> 0); return b; };
const u16s = (...v: number[]) => Buffer.concat(v.map((x) => { const b = Buffer.alloc(2); b.writeUInt16LE(x); return b; }));

function imageError(reason: string, re: RegExp, file?: string) {
  return (e: unknown) => {
    assert.ok(e instanceof ImageError, `expected ImageError, got ${String(e)}`);
    assert.equal(e.reason, reason, e.message);
    assert.match(e.message, re);
    if (file !== undefined) assert.equal(e.file, file);
    return true;
  };
}

const desc = (id: number) => ({ key: 0x1234 + id, uid: 1000, gid: 1000, cuid: 1000, cgid: 1000, mode: 0o600, id });

function coreSample(tid: number): EncodeInput<core_entry> {
  return {
    mtype: core_entry_march.X86_64,
    thread_info: {
      clear_tid_addr: 0x7f00_0000_1a10n,
      gpregs: {
        r15: 0n, r14: 1n, r13: 2n, r12: 3n, bp: 0x7ffc_0000_0000n, bx: 5n, r11: 0x246n, r10: 7n, r9: 8n, r8: 9n,
        ax: 0xffff_ffff_ffff_fdfcn, cx: 0x7f00_0000_2000n, dx: 12n, si: 13n, di: 14n, orig_ax: 230n,
        ip: 0x7f00_0000_2000n, cs: 0x33n, flags: 0x246n, sp: 0x7ffc_0000_0100n, ss: 0x2bn, fs_base: 0x7f00_0000_0740n,
        gs_base: 0n, ds: 0n, es: 0n, fs: 0n, gs: 0n, mode: 1,
      },
      fpregs: {
        cwd: 0x37f, swd: 0, twd: 0, fop: 0, rip: 0n, rdp: 0n, mxcsr: 0x1f80, mxcsr_mask: 0xffff,
        st_space: new Array(32).fill(0), xmm_space: Array.from({ length: 64 }, (_, i) => i * 0x01010101),
        padding: new Array(24).fill(0),
      },
    },
    tc: {
      task_state: 1, exit_code: 0, personality: 0, flags: 0x400000, blk_sigset: 0n, comm: "sleepy",
      sigactions: [], child_subreaper: false,
    },
    ids: { vm_id: 1, files_id: 2, fs_id: 3, sighand_id: 4 },
    thread_core: { futex_rla: 0n, futex_rla_len: 24, sched_nice: -5, sched_policy: 0, blk_sigset: 0n, comm: `t${tid}` },
  };
}

test("file names follow CRIU's patterns", () => {
  assert.equal(formatImageName(IMG.core.pattern, 42), "core-42.img");
  assert.equal(formatImageName(IMG.pagemap.pattern, 7n), "pagemap-7.img");
  assert.equal(formatImageName(IMG.ghostFile.pattern, 255), "ghost-file-ff.img");
  assert.equal(formatImageName(IMG.tcpStream.pattern, 0x1234abcd), "tcp-stream-1234abcd.img");
  assert.equal(formatImageName(IMG.stats.pattern, "dump"), "stats-dump");
  assert.equal(formatImageName(IMG.ipcShm.pattern, 9), "ipcns-shm-9.img");
  assert.equal(formatImageName(IMG.pstree.pattern), "pstree.img");
  assert.equal(formatImageName(IMG.tmpfsImg.pattern, 3), "tmpfs-3.tar.gz.img");
  assert.throws(() => formatImageName(IMG.pstree.pattern, 1), /takes no key/);
  assert.throws(() => formatImageName(IMG.core.pattern), /needs a key/);
  assert.throws(() => formatImageName(IMG.core.pattern, -1), /must be an integer/);
  assert.throws(() => formatImageName(IMG.core.pattern, 1.5), /must be an integer/);
  assert.throws(() => formatImageName(IMG.stats.pattern, "../x"), /bad key/);
});

test("headers: inventory has one magic, images two, service files the service magic, raw none", () => {
  const dir = freshDir();
  writeImage(dir, IMG.inventory, undefined, [{ img_version: 2, fdinfo_per_id: true }]);
  writeImage(dir, IMG.core, 42, [coreSample(42)]);
  writeImage(dir, IMG.stats, "dump", [{ dump: { freezing_time: 1, frozen_time: 2, memdump_time: 3, memwrite_time: 4, pages_scanned: 5n, pages_skipped_parent: 0n, pages_written: 5n, pages_lazy: 0n } }]);
  writeImage(dir, IMG.pages, 1, Buffer.from("raw page bytes"));
  const inv = readFileSync(join(dir, "inventory.img"));
  assert.equal(inv.readUInt32LE(0), MAGIC.INVENTORY);
  assert.equal(inv.readUInt32LE(4), inv.length - 8); // straight to the first entry
  const core = readFileSync(join(dir, "core-42.img"));
  assert.deepEqual([core.readUInt32LE(0), core.readUInt32LE(4)], [IMG_COMMON_MAGIC, MAGIC.CORE]);
  assert.equal(core.readUInt32LE(8), core.length - 12);
  assert.deepEqual(core.subarray(12), encode(core_entry, coreSample(42)));
  const stats = readFileSync(join(dir, "stats-dump"));
  assert.deepEqual([stats.readUInt32LE(0), stats.readUInt32LE(4)], [IMG_SERVICE_MAGIC, MAGIC.STATS]);
  assert.equal(readFileSync(join(dir, "pages-1.img")).toString(), "raw page bytes");
  assert.equal(statSync(join(dir, "core-42.img")).mode & 0o777, 0o600);

  assert.equal(readSingle(dir, IMG.inventory).img_version, 2);
  assert.equal(readSingle(dir, IMG.core, 42).thread_info!.gpregs.ax, 0xffff_ffff_ffff_fdfcn);
  assert.equal(readSingle(dir, IMG.stats, "dump").dump!.pages_written, 5n);
  assert.equal(readImage(dir, IMG.pages, 1).toString(), "raw page bytes");
});

test("entries round-trip through plain images", () => {
  const dir = freshDir();
  const tree = [
    { pid: 100, ppid: 1, pgid: 100, sid: 100, threads: [100, 101, 102] },
    { pid: 103, ppid: 100, pgid: 100, sid: 100, threads: [103] },
  ];
  writeImage(dir, IMG.pstree, undefined, tree);
  assert.deepEqual(readImage(dir, IMG.pstree), tree);
  writeImage(dir, IMG.fdinfo, 2, [
    { id: 1, flags: 0, type: 1, fd: 0 },
    { id: 2, flags: 1, type: 2, fd: 1, xattr_security_selinux: "ctx" },
  ]);
  assert.deepEqual(readImage(dir, IMG.fdinfo, 2).map((e) => e.fd), [0, 1]);
  writeImage(dir, IMG.files, undefined, []);
  assert.deepEqual(readImage(dir, IMG.files), []);
  assert.ok(imageExists(dir, IMG.files));
  assert.ok(!imageExists(dir, IMG.fdinfo, 3));
});

test("pipes-data and fifo-data: entry then exactly `bytes` bytes", () => {
  const dir = freshDir();
  const data = [
    { entry: { pipe_id: 5, bytes: 11, size: 65536 }, data: Buffer.from("hello world") },
    { entry: { pipe_id: 6, bytes: 0, size: 4096 }, data: Buffer.alloc(0) },
    { entry: { pipe_id: 7, bytes: 3 }, data: Buffer.from([0, 1, 2]) },
  ];
  writeImage(dir, IMG.pipesData, undefined, data);
  const file = readFileSync(join(dir, "pipes-data.img"));
  const first = encode(pipe_data_entry, data[0]!.entry);
  assert.deepEqual(file.subarray(8, 12 + first.length + 11), Buffer.concat([u32(first.length), first, Buffer.from("hello world")]));
  assert.deepEqual(readImage(dir, IMG.pipesData), data);
  writeImage(dir, IMG.fifoData, undefined, data);
  assert.deepEqual(readImage(dir, IMG.fifoData), data);
});

test("sk-queues and tcp-stream payloads", () => {
  const dir = freshDir();
  const pkts = [
    { entry: { id_for: 0x10, length: 4, scm: [{ type: 1, rights: [3, 4] }] }, data: Buffer.from("ping") },
    { entry: { id_for: 0x11, length: 0, scm: [] }, data: Buffer.alloc(0) },
  ];
  writeImage(dir, IMG.skQueues, undefined, pkts);
  assert.deepEqual(readImage(dir, IMG.skQueues), pkts);
  const stream = {
    entry: { inq_len: 3, inq_seq: 1000, outq_len: 5, outq_seq: 2000, opt_mask: 7, snd_wscale: 7, mss_clamp: 1460, rcv_wscale: 7, timestamp: 123, unsq_len: 2 },
    inq: Buffer.from("abc"), outq: Buffer.from("12345"),
  };
  writeImage(dir, IMG.tcpStream, 0xabc, [stream]);
  const raw = readFileSync(join(dir, "tcp-stream-abc.img"));
  assert.equal(raw.subarray(raw.length - 8).toString(), "abc12345"); // inq then outq
  assert.deepEqual(readImage(dir, IMG.tcpStream, 0xabc), [stream]);
});

test("ipcns-shm: contents padded to 4, absent when in_pagemaps", () => {
  const dir = freshDir();
  for (const size of [0, 1, 4, 5, 4099]) {
    const seg = { entry: { desc: desc(size), size: BigInt(size) }, data: Buffer.alloc(size, 0x5a) };
    writeImage(dir, IMG.ipcShm, 1, [seg, seg]);
    const file = readFileSync(join(dir, "ipcns-shm-1.img"));
    const msgLen = file.readUInt32LE(8);
    const padded = Math.ceil(size / 4) * 4;
    assert.equal(file.length, 8 + 2 * (4 + msgLen + padded), `size ${size}`);
    assert.ok(file.subarray(12 + msgLen + size, 12 + msgLen + padded).every((b) => b === 0), "zero padding");
    assert.deepEqual(readImage(dir, IMG.ipcShm, 1), [seg, seg]);
  }
  const inPagemaps = { entry: { desc: desc(1), size: 8192n, in_pagemaps: true } };
  writeImage(dir, IMG.ipcShm, 2, [inPagemaps, inPagemaps]);
  assert.deepEqual(readImage(dir, IMG.ipcShm, 2), [inPagemaps, inPagemaps]);
  assert.throws(() => writeImage(dir, IMG.ipcShm, 3, [{ entry: { desc: desc(1), size: 4n } }]), imageError("invalid", /no contents and in_pagemaps not set/));
  assert.throws(
    () => writeImage(dir, IMG.ipcShm, 3, [{ entry: { desc: desc(1), size: 4n, in_pagemaps: true }, data: Buffer.alloc(4) }]),
    imageError("invalid", /contents belong in pagemap-shmem/),
  );
  assert.ok(!existsSync(join(dir, "ipcns-shm-3.img")), "failed write leaves no file");
});

test("ipcns-sem: nsems u16 values padded to 8 bytes", () => {
  const dir = freshDir();
  for (const values of [[], [1], [1, 2, 3], [1, 2, 3, 4], [65535, 0, 7, 8, 9]]) {
    const set = { entry: { desc: desc(3), nsems: values.length }, values };
    writeImage(dir, IMG.ipcSem, 1, [set, set]);
    const file = readFileSync(join(dir, "ipcns-sem-1.img"));
    const msgLen = file.readUInt32LE(8);
    const padded = Math.ceil((2 * values.length) / 8) * 8;
    assert.equal(file.length, 8 + 2 * (4 + msgLen + padded), `nsems ${values.length}`);
    assert.deepEqual(file.subarray(12 + msgLen, 12 + msgLen + 2 * values.length), u16s(...values));
    assert.deepEqual(readImage(dir, IMG.ipcSem, 1), [set, set]);
  }
  assert.throws(() => writeImage(dir, IMG.ipcSem, 2, [{ entry: { desc: desc(1), nsems: 2 }, values: [1] }]), imageError("invalid", /1 values for nsems=2/));
  assert.throws(() => writeImage(dir, IMG.ipcSem, 2, [{ entry: { desc: desc(1), nsems: 1 }, values: [70000] }]), imageError("invalid", /not a u16/));
});

test("ipcns-msg: queue entry, then qnum (ipc_msg + text padded to 8)", () => {
  const dir = freshDir();
  const texts = ["", "a", "12345678", "123456789"];
  const queues = [
    { entry: { desc: desc(1), qbytes: 16384, qnum: texts.length }, messages: texts.map((t, i) => ({ msg: { mtype: BigInt(i + 1), msize: t.length }, data: Buffer.from(t) })) },
    { entry: { desc: desc(2), qbytes: 16384, qnum: 0 }, messages: [] },
  ];
  writeImage(dir, IMG.ipcMsg, 1, queues);
  const file = readFileSync(join(dir, "ipcns-msg-1.img"));
  // walk the layout by hand
  let off = 8;
  off += 4 + file.readUInt32LE(off); // ipc_msg_entry
  for (const t of texts) {
    const len = file.readUInt32LE(off);
    assert.deepEqual(file.subarray(off + 4, off + 4 + len), encode(ipc_msg, { mtype: BigInt(texts.indexOf(t) + 1), msize: t.length }));
    off += 4 + len;
    assert.equal(file.subarray(off, off + t.length).toString(), t);
    off += Math.ceil(t.length / 8) * 8;
  }
  off += 4 + file.readUInt32LE(off); // second queue
  assert.equal(off, file.length);
  assert.deepEqual(readImage(dir, IMG.ipcMsg, 1), queues);
  assert.throws(
    () => writeImage(dir, IMG.ipcMsg, 2, [{ entry: { desc: desc(1), qbytes: 1, qnum: 2 }, messages: [] }]),
    imageError("invalid", /0 messages for qnum=2/),
  );
});

test("ghost files: raw rest of file, or chunks", () => {
  const dir = freshDir();
  const plain = { entry: { uid: 0, gid: 0, mode: 0o100644, size: 5n }, data: Buffer.from("ghost") };
  writeImage(dir, IMG.ghostFile, 0x1f, plain);
  assert.ok(existsSync(join(dir, "ghost-file-1f.img")));
  assert.deepEqual(readImage(dir, IMG.ghostFile, 0x1f), plain);
  const chunked = {
    entry: { uid: 0, gid: 0, mode: 0o100644, size: 1n << 20n, chunks: true, atim: { tv_sec: 1n, tv_usec: 2n } },
    chunks: [
      { chunk: { len: 3n, off: 0n }, data: Buffer.from("abc") },
      { chunk: { len: 2n, off: 1n << 19n }, data: Buffer.from("yz") },
    ],
  };
  writeImage(dir, IMG.ghostFile, 0x20, chunked);
  assert.deepEqual(readImage(dir, IMG.ghostFile, 0x20), chunked);
  assert.throws(() => writeImage(dir, IMG.ghostFile, 0x21, { entry: { uid: 0, gid: 0, mode: 0, chunks: true } }), imageError("invalid", /needs `size`/));
});

test("streaming: many entries and payloads larger than the buffers", () => {
  const dir = freshDir();
  const entries: EncodeInput<pagemap_entry>[] = [];
  for (let i = 0; i < 20000; i++) {
    entries.push({ vaddr: 0x7f00_0000_0000n + BigInt(i) * 0x2000n, compat_nr_pages: 1, nr_pages: 1n, flags: 4 });
  }
  writeImage(dir, IMG.pagemap, 77, { head: { pages_id: 3 }, entries });
  const pm = readImage(dir, IMG.pagemap, 77);
  assert.equal(pm.head.pages_id, 3);
  assert.equal(pm.entries.length, 20000);
  assert.equal(pm.entries[19999]!.vaddr, 0x7f00_0000_0000n + 19999n * 0x2000n);

  const big = Buffer.alloc(3 * 1024 * 1024 + 17);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
  const w = ImageWriter.create(dir, IMG.pipesData);
  w.write(pipe_data_entry, { pipe_id: 1, bytes: 10 });
  w.payload(big.subarray(0, 10));
  w.write(pipe_data_entry, { pipe_id: 2, bytes: big.length });
  w.payload(big);
  assert.equal(w.offset, 8 + 4 + 4 + 10 + 4 + encode(pipe_data_entry, { pipe_id: 2, bytes: big.length }).length + big.length);
  w.close();
  const r = ImageReader.open(dir, IMG.pipesData);
  try {
    assert.equal(r.next(pipe_data_entry)!.pipe_id, 1);
    r.skip(10);
    const e = r.expect(pipe_data_entry);
    assert.equal(e.bytes, big.length);
    assert.ok(r.payload(e.bytes).equals(big));
    assert.ok(r.atEnd());
    assert.equal(r.next(pipe_data_entry), undefined);
  } finally {
    r.close();
  }
});

test("files open at the same time keep buffers of their own; one closed and reopened reads right; a closed writer refuses entries", () => {
  const dir = freshDir();
  // Files bigger than one buffer, written two at a time, interleaved.
  const many = (base: number) => Array.from({ length: 5000 }, (_, i) => ({ pid: base + i, ppid: base, pgid: base, sid: base }));
  const a = ImageWriter.create(dir, IMG.pstree), b = ImageWriter.create(dir, IMG.core, 1);
  for (const [i, e] of many(100000).entries()) {
    a.write(pstree_entry, e);
    if (i < 3) b.write(core_entry, coreSample(i));
  }
  a.close();
  // Another file while b is still open gets the buffer a left.
  writeImage(dir, IMG.pstree, undefined, many(300000).slice(0, 10));
  b.close();
  assert.throws(() => a.write(pstree_entry, many(1)[0]!), imageError("invalid", /closed already/));
  assert.throws(() => b.payload(Buffer.alloc(3)), imageError("invalid", /closed already/));
  assert.deepEqual(readImage(dir, IMG.pstree).map((e) => e.pid), many(300000).slice(0, 10).map((e) => e.pid));
  assert.deepEqual(readImage(dir, IMG.core, 1).map((c) => c.thread_core!.comm), ["t0", "t1", "t2"]);

  writeImage(dir, IMG.pstree, undefined, many(100000));
  const r1 = ImageReader.open(dir, IMG.pstree), r2 = ImageReader.open(dir, IMG.core, 1);
  try {
    assert.equal(r1.next(pstree_entry)!.pid, 100000);
    assert.equal(r2.next(core_entry)!.thread_core!.comm, "t0");
    r2.close();
    const r3 = ImageReader.open(dir, IMG.core, 1); // gets the buffer r2 left
    assert.deepEqual(r3.all(core_entry).map((c) => c.thread_core!.comm), ["t0", "t1", "t2"]);
    r3.close();
    const rest = r1.all(pstree_entry);
    assert.equal(rest.length, 4999);
    assert.equal(rest[4998]!.pid, 104999);
  } finally {
    r1.close();
    r2.close();
  }
});

test("pagemap run length: field 5 wins, field 2 for old images", () => {
  assert.deepEqual(pagemapCount(3n), { compat_nr_pages: 3, nr_pages: 3n });
  assert.deepEqual(pagemapCount(1n << 33n), { compat_nr_pages: 0, nr_pages: 1n << 33n });
  assert.equal(pagemapNrPages({ vaddr: 0n, compat_nr_pages: 0, nr_pages: 7n }), 7n); // as CRIU 4.2 writes it
  assert.equal(pagemapNrPages({ vaddr: 0n, compat_nr_pages: 5 }), 5n); // as CRIU 3.x wrote it
});

test("missing, mistyped and truncated files are ImageErrors naming the file", () => {
  const dir = freshDir();
  const core = join(dir, "core-42.img");
  assert.throws(() => readImage(dir, IMG.core, 42), (e: unknown) => {
    assert.ok(e instanceof ImageError);
    assert.equal(e.message, `no such image: ${core}`);
    assert.equal(e.reason, "missing");
    assert.equal(e.file, core);
    return true;
  });

  writeImage(dir, IMG.pstree, undefined, [{ pid: 1, ppid: 0, pgid: 1, sid: 1 }]);
  renameSync(join(dir, "pstree.img"), core);
  assert.throws(() => readImage(dir, IMG.core, 42),
    imageError("magic", /core-42\.img: wrong image type: expected CORE \(0x55053847\), found PSTREE \(0x50273030\)/, core));

  writeFileSync(core, Buffer.concat([u32(0x12345678), u32(MAGIC.CORE)]));
  assert.throws(() => readImage(dir, IMG.core, 42), imageError("magic", /bad head magic: expected IMG_COMMON \(0x54564319\), found 0x12345678/));

  writeImage(dir, IMG.core, 1, [coreSample(1)]);
  renameSync(join(dir, "core-1.img"), join(dir, "stats-dump"));
  assert.throws(() => readImage(dir, IMG.stats, "dump"), imageError("magic", /expected IMG_SERVICE \(0x55105940\), found IMG_COMMON \(0x54564319\)/));

  writeFileSync(join(dir, "inventory.img"), Buffer.concat([u32(IMG_COMMON_MAGIC), u32(MAGIC.INVENTORY)]));
  assert.throws(() => readImage(dir, IMG.inventory), imageError("magic", /expected INVENTORY \(0x58313116\), found IMG_COMMON/));

  for (const len of [0, 3, 7]) {
    writeFileSync(core, Buffer.concat([u32(IMG_COMMON_MAGIC), u32(MAGIC.CORE)]).subarray(0, len));
    assert.throws(() => readImage(dir, IMG.core, 42), imageError("truncated", new RegExp(`truncated header: ${len} of 8 bytes`)));
  }
  const head = Buffer.concat([u32(IMG_COMMON_MAGIC), u32(MAGIC.CORE)]);
  writeFileSync(core, Buffer.concat([head, Buffer.from([5, 0])]));
  assert.throws(() => readImage(dir, IMG.core, 42), imageError("truncated", /truncated entry at offset 8: 2 of 4 length bytes/));
  writeFileSync(core, Buffer.concat([head, u32(100), Buffer.alloc(10)]));
  assert.throws(() => readImage(dir, IMG.core, 42), imageError("truncated", /truncated core_entry entry at offset 8: 100 bytes announced, 10 left/));
  writeFileSync(core, Buffer.concat([head, u32(0xffffffff)]));
  assert.throws(() => readImage(dir, IMG.core, 42), imageError("truncated", /4294967295 bytes announced, 0 left/));
});

test("corrupted entries are ImageErrors with the file offset of the bad byte", () => {
  const dir = freshDir();
  const file = join(dir, "core-42.img");
  const head = Buffer.concat([u32(IMG_COMMON_MAGIC), u32(MAGIC.CORE)]);
  writeFileSync(file, Buffer.concat([head, u32(3), Buffer.from([0x08, 0xff, 0xff])]));
  assert.throws(() => readImage(dir, IMG.core, 42), (e: unknown) => {
    assert.ok(e instanceof ImageError);
    assert.equal(e.reason, "corrupt");
    assert.match(e.message, /core-42\.img: corrupted core_entry entry at offset 8: truncated varint \(byte 13\)/);
    assert.equal(e.offset, 13);
    return true;
  });
  // second entry broken: a missing required field inside a nested message
  const good = encode(core_entry, coreSample(42));
  const bad = Buffer.from([0x08, 0x01, 0x22, 0x00]); // mtype=1, ids={} (ids needs vm_id...)
  writeFileSync(file, Buffer.concat([head, u32(good.length), good, u32(bad.length), bad]));
  const at = 8 + 4 + good.length;
  assert.throws(() => readImage(dir, IMG.core, 42),
    imageError("corrupt", new RegExp(`corrupted core_entry entry at offset ${at}: required field vm_id is missing \\(byte ${at + 8}\\)`)));
  // unknown enum value
  writeFileSync(file, Buffer.concat([head, u32(2), Buffer.from([0x08, 0x63])]));
  assert.throws(() => readImage(dir, IMG.core, 42), imageError("corrupt", /field mtype: 99 is not a value of enum core_entry.march/));
});

test("truncated payloads name what was cut", () => {
  const dir = freshDir();
  const file = join(dir, "pipes-data.img");
  writeImage(dir, IMG.pipesData, undefined, [{ entry: { pipe_id: 5, bytes: 100 }, data: Buffer.alloc(100) }]);
  const whole = readFileSync(file);
  writeFileSync(file, whole.subarray(0, whole.length - 50));
  assert.throws(() => readImage(dir, IMG.pipesData), imageError("truncated", /truncated data of pipe 5 at offset \d+: need 100 bytes, 50 left/, file));

  writeImage(dir, IMG.ipcMsg, 1, [{ entry: { desc: desc(1), qbytes: 1, qnum: 1 }, messages: [{ msg: { mtype: 1n, msize: 3 }, data: Buffer.from("abc") }] }]);
  const msgFile = join(dir, "ipcns-msg-1.img");
  const m = readFileSync(msgFile);
  writeFileSync(msgFile, m.subarray(0, m.length - 8 - 4 - encode(ipc_msg, { mtype: 1n, msize: 3 }).length));
  assert.throws(() => readImage(dir, IMG.ipcMsg, 1), imageError("truncated", /missing message 0 of 1 of queue 1/));

  writeImage(dir, IMG.ipcSem, 1, [{ entry: { desc: desc(4), nsems: 3 }, values: [1, 2, 3] }]);
  const semFile = join(dir, "ipcns-sem-1.img");
  writeFileSync(semFile, readFileSync(semFile).subarray(0, -1));
  assert.throws(() => readImage(dir, IMG.ipcSem, 1), imageError("truncated", /semaphore padding/));

  writeImage(dir, IMG.tcpStream, 1, [{ entry: { inq_len: 4, inq_seq: 0, outq_len: 4, outq_seq: 0, opt_mask: 0, snd_wscale: 0, mss_clamp: 0 }, inq: Buffer.alloc(4), outq: Buffer.alloc(4) }]);
  const tcpFile = join(dir, "tcp-stream-1.img");
  writeFileSync(tcpFile, readFileSync(tcpFile).subarray(0, -2));
  assert.throws(() => readImage(dir, IMG.tcpStream, 1), imageError("truncated", /truncated send queue/));

  writeImage(dir, IMG.pagemap, 1, { head: { pages_id: 1 }, entries: [] });
  writeFileSync(join(dir, "pagemap-1.img"), readFileSync(join(dir, "pagemap-1.img")).subarray(0, 8));
  assert.throws(() => readImage(dir, IMG.pagemap, 1), imageError("truncated", /missing pagemap_head at offset 8/));
});

test("writes refuse inconsistent entries and leave no partial file", () => {
  const dir = freshDir();
  assert.throws(
    () => writeImage(dir, IMG.pipesData, undefined, [{ entry: { pipe_id: 9, bytes: 4 }, data: Buffer.from("abc") }]),
    imageError("invalid", /pipe 9: 3 bytes of data, but the entry says 4/),
  );
  assert.ok(!existsSync(join(dir, "pipes-data.img")));
  assert.throws(
    () => writeImage(dir, IMG.pstree, undefined, [{ pid: 1, ppid: 0, pgid: 1, sid: 1 }, { ppid: 0 } as unknown as EncodeInput<pstree_entry>]),
    imageError("invalid", /pstree\.img: cannot encode pstree_entry: required field pid is missing/),
  );
  assert.ok(!existsSync(join(dir, "pstree.img")));
  const w = ImageWriter.create(dir, IMG.pages, 1);
  assert.throws(() => w.write(pstree_entry, { pid: 1, ppid: 0, pgid: 1, sid: 1 }), imageError("invalid", /raw images hold no entries/));
  w.discard();
  assert.throws(() => writeImage(join(dir, "nope"), IMG.pstree, undefined, []), imageError("io", /cannot create/));
});

test("readSingle insists on exactly one entry", () => {
  const dir = freshDir();
  writeImage(dir, IMG.core, 5, [coreSample(5), coreSample(6)]);
  assert.throws(() => readSingle(dir, IMG.core, 5), imageError("invalid", /core-5\.img: expected exactly one entry, found 2/));
  writeImage(dir, IMG.core, 5, []);
  assert.throws(() => readSingle(dir, IMG.core, 5), imageError("invalid", /found 0/));
});

test("kindByMagic finds the kind a header announces", () => {
  assert.equal(kindByMagic(MAGIC.INVENTORY), IMG.inventory);
  assert.equal(kindByMagic(IMG_COMMON_MAGIC, MAGIC.CORE), IMG.core);
  assert.equal(kindByMagic(IMG_COMMON_MAGIC, MAGIC.PAGEMAP), IMG.pagemap);
  assert.equal(kindByMagic(IMG_SERVICE_MAGIC, MAGIC.STATS), IMG.stats);
  assert.equal(kindByMagic(IMG_COMMON_MAGIC, MAGIC.STATS), undefined);
  assert.equal(kindByMagic(IMG_COMMON_MAGIC, 0x11111111), undefined);
  assert.equal(kindByMagic(0, 0), undefined);
  // every kind with a header is found by its own magic (aliases aside)
  for (const kind of Object.values(IMG) as ImageKind<unknown, never>[]) {
    if (kind.header === "raw" || kind === IMG.shmemPagemap) continue;
    const head = kind.header === "inventory" ? MAGIC.INVENTORY : kind.header === "common" ? IMG_COMMON_MAGIC : IMG_SERVICE_MAGIC;
    assert.equal(kindByMagic(head, kind.magic), kind, kind.name);
  }
});
