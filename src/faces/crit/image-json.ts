// One image file <-> the JSON crit prints and reads: {"magic": NAME,
// "entries": [...]}, an entry being its message as crit's dict (json.ts) and,
// where the file carries raw data after it, an "extra" key holding that data
// as crit's images.py lays it out:
//
//   PIPES_DATA, FIFO_DATA, SK_QUEUES  base64 of the entry's bytes
//   TCP_STREAM                        {"inq": base64, "outq": base64}
//   IPCNS_SHM                         base64 of the segment ("" when in_pagemaps:
//                                     the contents are in pagemap-shmem, see below)
//   IPCNS_SEM                         the semaphore values, a list of numbers
//   IPCNS_MSG                         [message dict, base64 of its text, ...]
//   GHOST_FILE                        the ghost_file_entry with the contents as
//                                     extra; or, with chunks, the entry alone and
//                                     then one ghost_chunk_entry per chunk, each
//                                     with its data as extra
//   PAGEMAP                           no extra: the first entry is the
//                                     pagemap_head, the others pagemap_entry
//
// Files are read and written by crest's image layer (the kinds of kinds.ts and
// their payload readers and writers), so what crit decodes is what restore
// reads and what it encodes is what dump would write. The schemas are CRIU
// 4.2's, as crest has them: field names and fields are those of CRIU 4.2's crit.

import { closeSync, openSync, readSync } from "node:fs";
import {
  IMG, ImageReader, ImageWriter, ImageError, kindByMagic, describeMagic, toCritJson, fromCritJson, base64Lines,
  encode as encodeMessage, IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC, MAGIC, pagemap_head, pagemap_entry, ghost_file_entry,
  ghost_chunk_entry, ipc_msg, type ImageKind, type Json, type JsonObject, type MessageType,
} from "../../images/index.js";
import type { ImageOutput } from "../../images/file.js";
import type {
  GhostFile, GhostFileInput, IpcMsgQueue, IpcMsgQueueInput, IpcSemSet, IpcShmSegment, IpcShmSegmentInput, Pagemap,
  PipeData, PipeDataInput, SkQueuePacket, TcpStream, TcpStreamInput,
} from "../../images/payloads.js";

/** A file crest crit cannot take, or JSON it cannot encode: the message says which and why. */
export class CritError extends Error {
  constructor(message: string, readonly code = 1) {
    super(message);
    this.name = "CritError";
  }
}

export interface DecodeOptions {
  /** --pretty: hex, flags, dev, dict and address renderings (crit's (criu).xxx options). */
  pretty?: boolean;
  /** show --nopl: payloads replaced by their size ("... <12KB>"). */
  nopl?: boolean;
}

type AnyKind = ImageKind<unknown, never>;

/** Magic names CRIU knows that crest has no image kind for (crit 4.2 decodes some of them). */
const FOREIGN_MAGICS: Record<number, string> = {
  [MAGIC.AUTOFS]: "AUTOFS", [MAGIC.APPARMOR]: "APPARMOR", [MAGIC.BPFMAP_FILE]: "BPFMAP_FILE",
  [MAGIC.BPFMAP_DATA]: "BPFMAP_DATA", [MAGIC.BINFMT_MISC]: "BINFMT_MISC", [MAGIC.PIDFD]: "PIDFD",
  [MAGIC.SIGNAL]: "SIGNAL", [0x57023458]: "KDAT",
};

/**
 * The kind a file's first bytes announce, as crit finds it: the first u32,
 * or the second when the first is the common or service head magic.
 */
export function kindOfHeader(path: string, head: Buffer): AnyKind {
  if (head.length < 4) throw new CritError(`${path}: not an image: ${head.length} bytes, no magic`);
  const first = head.readUInt32LE(0);
  const headed = first === IMG_COMMON_MAGIC || first === IMG_SERVICE_MAGIC;
  if (headed && head.length < 8) throw new CritError(`${path}: truncated header: ${describeMagic(first)} and no type magic`);
  const type = headed ? head.readUInt32LE(4) : first;
  const kind = kindByMagic(first, headed ? type : undefined);
  if (kind) return kind;
  const foreign = FOREIGN_MAGICS[type];
  if (foreign) throw new CritError(`${path}: ${foreign} images (0x${type.toString(16)}) are not decoded by crest crit: crest has no schema for them`);
  if (headed && kindByMagic(first === IMG_COMMON_MAGIC ? IMG_SERVICE_MAGIC : IMG_COMMON_MAGIC, type)) {
    throw new CritError(`${path}: ${describeMagic(type)} under the wrong head magic ${describeMagic(first)}`);
  }
  throw new CritError(`${path}: Unknown magic 0x${type.toString(16)}.\nMaybe you are feeding me an image with raw data(i.e. pages.img)?`);
}

/** Reads the first 8 bytes of a file. */
function readHead(path: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw new CritError(`${path}: cannot open: ${(e as Error).message}`);
  }
  try {
    const head = Buffer.alloc(8);
    const n = readSync(fd, head, 0, 8, 0);
    return head.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** Opens an image file as crit would: the kind its magic names. */
export function openImage(path: string): ImageReader {
  const kind = kindOfHeader(path, readHead(path));
  try {
    return new ImageReader(path, kind);
  } catch (e) {
    throw asCritError(e);
  }
}

function asCritError(e: unknown): unknown {
  return e instanceof ImageError ? new CritError(e.message) : e;
}

// --- decode -------------------------------------------------------------------

/** Python's human_readable of crit's --nopl: "512B", "1.5KB", "12KB". */
export function humanReadable(n: number): string {
  let num = n;
  for (const unit of ["", "K", "M", "G", "T", "P", "E", "Z"]) {
    if (num < 1024) return Number.isInteger(num) ? `${Math.trunc(num)}${unit}B` : `${fixed1(num)}${unit}B`;
    num /= 1024;
  }
  return `${fixed1(num)}YB`;
}

/** Python's "%.1f": the exact binary value rounded, ties to even (toFixed rounds ties up). */
function fixed1(x: number): string {
  const s = x.toFixed(1);
  const tenths = x * 10;
  if (Number.isInteger(tenths * 2) && !Number.isInteger(tenths)) {
    // An exact tie (x*10 ends in .5, exactly representable): round half to even.
    const down = Math.floor(tenths);
    const even = down % 2 === 0 ? down : down + 1;
    return (even / 10).toFixed(1);
  }
  return s;
}

const nopl = (size: number | bigint): string => `... <${humanReadable(Number(size))}>`;

function dict<T>(type: MessageType<T>, msg: T, o: DecodeOptions): JsonObject {
  return toCritJson(type, msg, { pretty: !!o.pretty });
}

function withExtra(entry: JsonObject, extra: Json): JsonObject {
  entry.extra = extra;
  return entry;
}

/** The "entries" of one file, read through its kind. */
function decodeEntries(r: ImageReader, o: DecodeOptions): Json[] {
  const kind = r.kind;
  const type = kind.type!;
  switch (kind.name) {
    case "PAGEMAP":
    case "SHMEM_PAGEMAP": {
      if (r.atEnd()) return [];
      const p = kind.read(r) as Pagemap;
      return [dict(pagemap_head, p.head, o), ...p.entries.map((e) => dict(pagemap_entry, e, o))];
    }
    case "PIPES_DATA":
    case "FIFO_DATA":
      return (kind.read(r) as PipeData[]).map(({ entry, data }) =>
        withExtra(dict(type, entry, o), o.nopl ? nopl(entry.bytes) : base64Lines(data)));
    case "SK_QUEUES":
      return (kind.read(r) as SkQueuePacket[]).map(({ entry, data }) =>
        withExtra(dict(type, entry, o), o.nopl ? nopl(entry.length) : base64Lines(data)));
    case "TCP_STREAM":
      return (kind.read(r) as TcpStream[]).map(({ entry, inq, outq }) =>
        withExtra(dict(type, entry, o), o.nopl ? nopl(entry.inq_len + entry.outq_len) : { inq: base64Lines(inq), outq: base64Lines(outq) }));
    case "IPCNS_SHM":
      // crit sizes the payload by `size` alone; an in_pagemaps segment has none here.
      return (kind.read(r) as IpcShmSegment[]).map(({ entry, data }) =>
        withExtra(dict(type, entry, o), o.nopl ? nopl(entry.size) : base64Lines(data ?? Buffer.alloc(0))));
    case "IPCNS_SEM":
      return (kind.read(r) as IpcSemSet[]).map(({ entry, values }) =>
        withExtra(dict(type, entry, o), o.nopl ? nopl(2 * entry.nsems) : values));
    case "IPCNS_MSG":
      return (kind.read(r) as IpcMsgQueue[]).map(({ entry, messages }) => {
        // Messages print plain (not pretty), as crit's handler does.
        const extra = o.nopl
          ? nopl(messages.reduce((n, m) => n + encodeMessage(ipc_msg, m.msg).length + m.msg.msize, 0))
          : messages.flatMap((m) => [dict(ipc_msg, m.msg, {}), base64Lines(m.data)]);
        return withExtra(dict(type, entry, o), extra);
      });
    case "GHOST_FILE": {
      const g = kind.read(r) as GhostFile;
      const head = dict(ghost_file_entry, g.entry, o);
      if (!g.chunks) return [o.nopl ? head : withExtra(head, base64Lines(g.data!))];
      return [head, ...g.chunks.map(({ chunk, data }) => {
        const c = dict(ghost_chunk_entry, chunk, o);
        return o.nopl ? c : withExtra(c, base64Lines(data));
      })];
    }
    default:
      return (kind.read(r) as unknown[]).map((e) => dict(type, e, o));
  }
}

/** `crit decode -i FILE [--pretty]`: the file as crit's JSON object. */
export function decodeImage(path: string, o: DecodeOptions = {}): JsonObject {
  const r = openImage(path);
  try {
    return { magic: r.kind.name === "SHMEM_PAGEMAP" ? "PAGEMAP" : r.kind.name, entries: decodeEntries(r, o) };
  } catch (e) {
    throw asCritError(e);
  } finally {
    r.close();
  }
}

/**
 * `crit info FILE`: its magic and how many entries it holds, counted as
 * `decode` lists them (a pagemap's head not counted, as crit does not).
 */
export function imageInfo(path: string): JsonObject {
  const img = decodeImage(path, { nopl: true });
  const entries = img.entries as Json[];
  return { magic: img.magic!, count: img.magic === "PAGEMAP" ? Math.max(entries.length - 1, 0) : entries.length };
}

// --- encode -------------------------------------------------------------------

const KINDS_BY_NAME = new Map<string, AnyKind>();
for (const kind of Object.values(IMG) as AnyKind[]) {
  if (kind.header !== "raw" && !KINDS_BY_NAME.has(kind.name)) KINDS_BY_NAME.set(kind.name, kind);
}

function isObject(v: Json | undefined): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v) && typeof v !== "bigint";
}

/** crit's base64.decodebytes of an extra; a missing extra is no data. */
function bytesOf(v: Json | undefined, what: string): Buffer {
  if (v === undefined || v === null || v === "") return Buffer.alloc(0);
  if (typeof v !== "string") throw new CritError(`${what}: "extra" must be a base64 string`);
  return Buffer.from(v, "base64");
}

function message<T>(type: MessageType<T>, v: Json | undefined, what: string): T {
  if (!isObject(v)) throw new CritError(`${what}: expected a ${type.name} object`);
  try {
    return fromCritJson(type, v);
  } catch (e) {
    throw new CritError(`${what} (${type.name}): ${(e as Error).message}`);
  }
}

/** The value kind.write takes, from crit's entries. */
function writeInput(kind: AnyKind, entries: Json[]): unknown {
  const type = kind.type!;
  const at = (i: number) => `entry ${i}`;
  const objects = entries.map((e, i) => {
    if (!isObject(e)) throw new CritError(`${at(i)}: expected an object`);
    return e;
  });
  switch (kind.name) {
    case "PAGEMAP":
      if (objects.length === 0) throw new CritError("a PAGEMAP image starts with its pagemap_head: no entries given");
      return { head: message(pagemap_head, objects[0], at(0)), entries: objects.slice(1).map((e, i) => message(pagemap_entry, e, at(i + 1))) };
    case "PIPES_DATA":
    case "FIFO_DATA":
    case "SK_QUEUES":
      return objects.map((e, i): PipeDataInput => ({ entry: message(type, e, at(i)) as PipeDataInput["entry"], data: bytesOf(e.extra, at(i)) }));
    case "TCP_STREAM":
      return objects.map((e, i): TcpStreamInput => {
        const extra = e.extra ?? {};
        if (!isObject(extra)) throw new CritError(`${at(i)}: "extra" must be {"inq": ..., "outq": ...}`);
        return { entry: message(type, e, at(i)) as TcpStreamInput["entry"], inq: bytesOf(extra.inq, at(i)), outq: bytesOf(extra.outq, at(i)) };
      });
    case "IPCNS_SHM":
      return objects.map((e, i): IpcShmSegmentInput => {
        const entry = message(type, e, at(i)) as IpcShmSegmentInput["entry"];
        return entry.in_pagemaps ? { entry } : { entry, data: bytesOf(e.extra, at(i)) };
      });
    case "IPCNS_SEM":
      return objects.map((e, i) => {
        const values = e.extra ?? [];
        if (!Array.isArray(values) || values.some((v) => typeof v !== "number")) throw new CritError(`${at(i)}: "extra" must be the list of semaphore values`);
        return { entry: message(type, e, at(i)), values };
      });
    case "IPCNS_MSG":
      return objects.map((e, i): IpcMsgQueueInput => {
        const extra = e.extra ?? [];
        if (!Array.isArray(extra) || extra.length % 2 !== 0) throw new CritError(`${at(i)}: "extra" must list each message and its text`);
        const messages = [];
        for (let m = 0; m < extra.length; m += 2) {
          messages.push({ msg: message(ipc_msg, extra[m], `${at(i)} message ${m / 2}`), data: bytesOf(extra[m + 1], `${at(i)} message ${m / 2}`) });
        }
        return { entry: message(type, e, at(i)) as IpcMsgQueueInput["entry"], messages };
      });
    case "GHOST_FILE": {
      if (objects.length === 0) throw new CritError("a GHOST_FILE image holds a ghost_file_entry: no entries given");
      const entry = message(ghost_file_entry, objects[0], at(0));
      if (!entry.chunks) {
        if (objects.length > 1) throw new CritError(`a GHOST_FILE image without chunks holds one entry, ${objects.length} given`);
        return { entry, data: bytesOf(objects[0]!.extra, at(0)) } satisfies GhostFileInput;
      }
      const chunks = objects.slice(1).map((e, i) => ({ chunk: message(ghost_chunk_entry, e, at(i + 1)), data: bytesOf(e.extra, at(i + 1)) }));
      return { entry, chunks } satisfies GhostFileInput;
    }
    default:
      return objects.map((e, i) => message(type, e, at(i)));
  }
}

/** `crit encode`: writes the image crit's JSON describes to `out` (its path names it in errors). */
export function encodeImage(img: Json, path: string, out: ImageOutput): void {
  if (!isObject(img)) throw new CritError("the JSON is not an image: expected {\"magic\": ..., \"entries\": [...]}");
  const name = img.magic;
  if (typeof name !== "string") throw new CritError("the JSON has no \"magic\" name");
  const kind = KINDS_BY_NAME.get(name === "SHMEM_PAGEMAP" ? "PAGEMAP" : name);
  if (!kind) throw new CritError(`no image kind named ${JSON.stringify(name)} in crest${FOREIGN_NAMES.has(name) ? " (crest has no schema for it)" : ""}`);
  const entries = img.entries ?? [];
  if (!Array.isArray(entries)) throw new CritError("\"entries\" must be a list");
  const value = writeInput(kind, entries);
  const w = new ImageWriter(path, kind, out);
  try {
    (kind.write as (w: ImageWriter, v: unknown) => void)(w, value);
    w.close();
  } catch (e) {
    w.discard();
    throw asCritError(e);
  }
}

const FOREIGN_NAMES = new Set(Object.values(FOREIGN_MAGICS));
