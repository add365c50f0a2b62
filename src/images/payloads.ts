// Files whose entries are followed by raw data, and files whose entries are
// not all of one message type. Each layout below was checked against CRIU
// v4.2's writer and reader and against pycriu's images.py (crit):
//
// pipes-data, fifo-data   pipe_data_entry, then `bytes` bytes of queued data
//                         (criu/pipes.c dump_one_pipe_data splices exactly
//                         `bytes`; pipe_data_read reads them back). No padding.
// sk-queues               sk_packet_entry, then `length` bytes of the datagram
//                         (criu/sk-queue.c write_img_buf(data, pe.length)).
// tcp-stream-<ino>        one tcp_stream_entry, then inq_len bytes of the
//                         receive queue, then outq_len bytes of the send queue
//                         (criu/sk-tcp.c; outq includes the unsent unsq_len).
// ipcns-shm-<id>          ipc_shm_entry, then the segment's `size` bytes padded
//                         to a multiple of 4 -- but only when in_pagemaps is not
//                         set. CRIU 4.x always sets in_pagemaps and stores the
//                         contents in pagemap-shmem-<shmid>.img + pages instead
//                         (criu/ipc_ns.c prepare_ipc_shm_pages). crit (3.17 and
//                         4.2) ignores in_pagemaps and always reads `size` bytes.
// ipcns-sem-<id>          ipc_sem_entry, then nsems u16 semaphore values (host
//                         order), padded to a multiple of 8 bytes.
// ipcns-msg-<id>          ipc_msg_entry per queue, then `qnum` messages, each an
//                         ipc_msg entry (u32 length + message, like any entry)
//                         followed by `msize` bytes of text padded to 8.
// ghost-file-<id>         one ghost_file_entry; if `chunks` is set, then pairs of
//                         ghost_chunk_entry + `len` bytes (file data at `off`;
//                         holes are simply not stored) until EOF; otherwise the
//                         rest of the file is the contents (criu/files-reg.c).
// pagemap-<id>            one pagemap_head, then pagemap_entry until EOF.

import type { EncodeInput, MessageType } from "./pb.js";
import { ImageError, safeCount, type ImageReader, type ImageWriter } from "./file.js";
import { ghost_chunk_entry, ghost_file_entry } from "./gen/ghost-file.js";
import { ipc_msg, ipc_msg_entry } from "./gen/ipc-msg.js";
import { ipc_sem_entry } from "./gen/ipc-sem.js";
import { ipc_shm_entry } from "./gen/ipc-shm.js";
import { pagemap_entry, pagemap_head } from "./gen/pagemap.js";
import { PagemapRuns } from "./pagemap-runs.js";
import { pipe_data_entry } from "./gen/pipe-data.js";
import { sk_packet_entry } from "./gen/sk-packet.js";
import { tcp_stream_entry } from "./gen/tcp-stream.js";

function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

function invalid(w: ImageWriter, detail: string): never {
  throw new ImageError(w.path, "invalid", detail, w.offset);
}

function checkLength(w: ImageWriter, what: string, data: Uint8Array, expected: number): void {
  if (data.length !== expected) invalid(w, `${what}: ${data.length} bytes of data, but the entry says ${expected}`);
}

// --- entries with one payload each ------------------------------------------------

export interface PipeData { entry: pipe_data_entry; data: Buffer }
export interface PipeDataInput { entry: EncodeInput<pipe_data_entry>; data: Uint8Array }

export function readPipeData(r: ImageReader): PipeData[] {
  const out: PipeData[] = [];
  for (let entry = r.next(pipe_data_entry); entry; entry = r.next(pipe_data_entry)) {
    out.push({ entry, data: r.payload(entry.bytes, `data of pipe ${entry.pipe_id}`) });
  }
  return out;
}

export function writePipeData(w: ImageWriter, items: readonly PipeDataInput[]): void {
  for (const { entry, data } of items) {
    checkLength(w, `pipe ${entry.pipe_id}`, data, entry.bytes);
    w.write(pipe_data_entry, entry);
    w.payload(data);
  }
}

export interface SkQueuePacket { entry: sk_packet_entry; data: Buffer }
export interface SkQueuePacketInput { entry: EncodeInput<sk_packet_entry>; data: Uint8Array }

export function readSkQueues(r: ImageReader): SkQueuePacket[] {
  const out: SkQueuePacket[] = [];
  for (let entry = r.next(sk_packet_entry); entry; entry = r.next(sk_packet_entry)) {
    out.push({ entry, data: r.payload(entry.length, `packet for socket ${entry.id_for}`) });
  }
  return out;
}

export function writeSkQueues(w: ImageWriter, items: readonly SkQueuePacketInput[]): void {
  for (const { entry, data } of items) {
    checkLength(w, `packet for socket ${entry.id_for}`, data, entry.length);
    w.write(sk_packet_entry, entry);
    w.payload(data);
  }
}

export interface TcpStream { entry: tcp_stream_entry; inq: Buffer; outq: Buffer }
export interface TcpStreamInput { entry: EncodeInput<tcp_stream_entry>; inq: Uint8Array; outq: Uint8Array }

export function readTcpStreams(r: ImageReader): TcpStream[] {
  const out: TcpStream[] = [];
  for (let entry = r.next(tcp_stream_entry); entry; entry = r.next(tcp_stream_entry)) {
    const inq = r.payload(entry.inq_len, "receive queue");
    out.push({ entry, inq, outq: r.payload(entry.outq_len, "send queue") });
  }
  return out;
}

export function writeTcpStreams(w: ImageWriter, items: readonly TcpStreamInput[]): void {
  for (const { entry, inq, outq } of items) {
    checkLength(w, "receive queue", inq, entry.inq_len);
    checkLength(w, "send queue", outq, entry.outq_len);
    w.write(tcp_stream_entry, entry);
    w.payload(inq);
    w.payload(outq);
  }
}

// --- SysV IPC ------------------------------------------------------------------

export interface IpcShmSegment {
  entry: ipc_shm_entry;
  /** The contents, present only when entry.in_pagemaps is not set. */
  data?: Buffer;
}
export interface IpcShmSegmentInput { entry: EncodeInput<ipc_shm_entry>; data?: Uint8Array }

export function readIpcShm(r: ImageReader): IpcShmSegment[] {
  const out: IpcShmSegment[] = [];
  for (let entry = r.next(ipc_shm_entry); entry; entry = r.next(ipc_shm_entry)) {
    if (entry.in_pagemaps) {
      out.push({ entry });
      continue;
    }
    const size = safeCount(r, entry.size, "shm segment size");
    const data = r.payload(size, `contents of shm ${entry.desc.id}`);
    r.skip(roundUp(size, 4) - size, "shm padding");
    out.push({ entry, data });
  }
  return out;
}

export function writeIpcShm(w: ImageWriter, items: readonly IpcShmSegmentInput[]): void {
  for (const { entry, data } of items) {
    if (entry.in_pagemaps) {
      if (data !== undefined) invalid(w, `shm ${entry.desc.id}: in_pagemaps is set, contents belong in pagemap-shmem`);
      w.write(ipc_shm_entry, entry);
      continue;
    }
    if (data === undefined) invalid(w, `shm ${entry.desc.id}: no contents and in_pagemaps not set`);
    checkLength(w, `shm ${entry.desc.id}`, data, Number(entry.size));
    w.write(ipc_shm_entry, entry);
    w.payload(data);
    w.zeros(roundUp(data.length, 4) - data.length);
  }
}

export interface IpcSemSet {
  entry: ipc_sem_entry;
  /** semval of each semaphore. */
  values: number[];
}
export interface IpcSemSetInput { entry: EncodeInput<ipc_sem_entry>; values: readonly number[] }

export function readIpcSem(r: ImageReader): IpcSemSet[] {
  const out: IpcSemSet[] = [];
  for (let entry = r.next(ipc_sem_entry); entry; entry = r.next(ipc_sem_entry)) {
    const size = 2 * entry.nsems;
    const raw = r.payload(size, `values of semaphore set ${entry.desc.id}`);
    r.skip(roundUp(size, 8) - size, "semaphore padding");
    const values: number[] = [];
    for (let i = 0; i < entry.nsems; i++) values.push(raw.readUInt16LE(2 * i));
    out.push({ entry, values });
  }
  return out;
}

export function writeIpcSem(w: ImageWriter, items: readonly IpcSemSetInput[]): void {
  for (const { entry, values } of items) {
    if (values.length !== entry.nsems) invalid(w, `semaphore set ${entry.desc.id}: ${values.length} values for nsems=${entry.nsems}`);
    const raw = Buffer.alloc(roundUp(2 * values.length, 8));
    values.forEach((v, i) => {
      if (!Number.isInteger(v) || v < 0 || v > 0xffff) invalid(w, `semaphore set ${entry.desc.id}: value ${v} is not a u16`);
      raw.writeUInt16LE(v, 2 * i);
    });
    w.write(ipc_sem_entry, entry);
    w.payload(raw);
  }
}

export interface IpcMessage { msg: ipc_msg; data: Buffer }
export interface IpcMsgQueue { entry: ipc_msg_entry; messages: IpcMessage[] }
export interface IpcMsgQueueInput {
  entry: EncodeInput<ipc_msg_entry>;
  messages: readonly { msg: EncodeInput<ipc_msg>; data: Uint8Array }[];
}

export function readIpcMsg(r: ImageReader): IpcMsgQueue[] {
  const out: IpcMsgQueue[] = [];
  for (let entry = r.next(ipc_msg_entry); entry; entry = r.next(ipc_msg_entry)) {
    const messages: IpcMessage[] = [];
    for (let i = 0; i < entry.qnum; i++) {
      const msg = r.expect(ipc_msg, `message ${i} of ${entry.qnum} of queue ${entry.desc.id}`);
      const data = r.payload(msg.msize, `text of message ${i} of queue ${entry.desc.id}`);
      r.skip(roundUp(msg.msize, 8) - msg.msize, "message padding");
      messages.push({ msg, data });
    }
    out.push({ entry, messages });
  }
  return out;
}

export function writeIpcMsg(w: ImageWriter, items: readonly IpcMsgQueueInput[]): void {
  for (const { entry, messages } of items) {
    if (messages.length !== entry.qnum) invalid(w, `queue ${entry.desc.id}: ${messages.length} messages for qnum=${entry.qnum}`);
    w.write(ipc_msg_entry, entry);
    for (const { msg, data } of messages) {
      checkLength(w, `message of queue ${entry.desc.id}`, data, msg.msize);
      w.write(ipc_msg, msg);
      w.payload(data);
      w.zeros(roundUp(data.length, 8) - data.length);
    }
  }
}

// --- mixed-type files -------------------------------------------------------------

export interface GhostFile {
  entry: ghost_file_entry;
  /** Whole contents, when entry.chunks is not set. */
  data?: Buffer;
  /** Data extents, when entry.chunks is set. */
  chunks?: { chunk: ghost_chunk_entry; data: Buffer }[];
}
export interface GhostFileInput {
  entry: EncodeInput<ghost_file_entry>;
  data?: Uint8Array;
  chunks?: readonly { chunk: EncodeInput<ghost_chunk_entry>; data: Uint8Array }[];
}

export function readGhostFile(r: ImageReader): GhostFile {
  const entry = r.expect(ghost_file_entry);
  if (!entry.chunks) return { entry, data: r.rest() };
  const chunks: { chunk: ghost_chunk_entry; data: Buffer }[] = [];
  for (let chunk = r.next(ghost_chunk_entry); chunk; chunk = r.next(ghost_chunk_entry)) {
    chunks.push({ chunk, data: r.payload(safeCount(r, chunk.len, "ghost chunk length"), `ghost chunk at ${chunk.off}`) });
  }
  return { entry, chunks };
}

export function writeGhostFile(w: ImageWriter, g: GhostFileInput): void {
  if (g.entry.chunks) {
    if (g.data !== undefined) invalid(w, "ghost file with chunks=true takes `chunks`, not `data`");
    if (g.entry.size === undefined) invalid(w, "ghost file with chunks=true needs `size` (CRIU refuses it otherwise)");
    w.write(ghost_file_entry, g.entry);
    for (const { chunk, data } of g.chunks ?? []) {
      checkLength(w, `ghost chunk at ${chunk.off}`, data, Number(chunk.len));
      w.write(ghost_chunk_entry, chunk);
      w.payload(data);
    }
    return;
  }
  if (g.chunks !== undefined) invalid(w, "ghost file chunks given but entry.chunks is not set");
  w.write(ghost_file_entry, g.entry);
  if (g.data) w.payload(g.data);
}

export interface Pagemap { head: pagemap_head; entries: pagemap_entry[] }
/** A dump writes its entries as PagemapRuns. */
export interface PagemapInput { head: EncodeInput<pagemap_head>; entries: readonly EncodeInput<pagemap_entry>[] | PagemapRuns }

/**
 * Pages in a pagemap run: nr_pages (field 5, CRIU 4.x) when present, else the
 * 32-bit field 2 that older CRIU wrote. CRIU 4.2 itself writes 0 in field 2.
 */
export function pagemapNrPages(e: pagemap_entry): bigint {
  return e.nr_pages ?? BigInt(e.compat_nr_pages);
}

export function readPagemap(r: ImageReader): Pagemap {
  const head = r.expect(pagemap_head);
  return { head, entries: r.all(pagemap_entry) };
}

export function writePagemap(w: ImageWriter, p: PagemapInput): void {
  w.write(pagemap_head, p.head);
  if (!(p.entries instanceof PagemapRuns)) {
    for (const e of p.entries) w.write(pagemap_entry, e);
    return;
  }
  // A dump's entries, framed in one buffer from their numbers.
  const runs = p.entries;
  // At most 4 (length) + 11 (vaddr) + 6 (compat) + 6 (flags) + 9 (nr_pages) bytes an entry.
  const out = Buffer.allocUnsafe(runs.length * 36);
  let at = 0;
  for (let i = 0; i < runs.length; i++) {
    const lenAt = at;
    const pages = runs.pages(i);
    out[at + 4] = 0x08;
    at = putVarint(out, at + 5, runs.vaddr(i));
    out[at] = 0x10;
    at = putVarint(out, at + 1, pages <= 0xffffffff ? pages : 0);
    out[at] = 0x20;
    at = putVarint(out, at + 1, runs.flags(i));
    out[at] = 0x28;
    at = putVarint(out, at + 1, pages);
    // The entry's length (under 36) as a 32-bit LE word, by bytes: writeUInt32LE's checks cost more than the entry.
    out[lenAt] = at - lenAt - 4;
    out[lenAt + 1] = out[lenAt + 2] = out[lenAt + 3] = 0;
  }
  w.payload(out.subarray(0, at));
}

/**
 * Writes v (an integer below 2^53) as a varint at `at`; returns where it
 * ends. The low 28 bits in 32-bit arithmetic, unrolled (a vaddr has 47):
 * this runs for every entry of a pagemap, most often while the tree is frozen.
 */
function putVarint(out: Buffer, at: number, v: number): number {
  if (v >= 0x10000000) {
    out[at] = (v & 0x7f) | 0x80;
    out[at + 1] = ((v >>> 7) & 0x7f) | 0x80;
    out[at + 2] = ((v >>> 14) & 0x7f) | 0x80;
    out[at + 3] = ((v >>> 21) & 0x7f) | 0x80;
    at += 4;
    v = Math.floor(v / 0x10000000);
  }
  while (v >= 0x80) {
    out[at++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[at] = v;
  return at + 1;
}

// --- plain files ------------------------------------------------------------------

export function readEntries<T>(type: MessageType<T>): (r: ImageReader) => T[] {
  return (r) => r.all(type);
}

export function writeEntries<T>(type: MessageType<T>): (w: ImageWriter, entries: readonly EncodeInput<T>[]) => void {
  return (w, entries) => {
    for (const e of entries) w.write(type, e);
  };
}

export function readRaw(r: ImageReader): Buffer {
  return r.rest();
}

export function writeRaw(w: ImageWriter, data: Uint8Array): void {
  w.payload(data);
}
