// Image files: header (magics), entries framed as u32 length + protobuf
// message, and raw payloads between entries. Synchronous, fd-based I/O.
// What a particular file holds (its name, magic, message and payload
// layout) is described by an ImageKind; the table of kinds is in kinds.ts.

import { closeSync, fstatSync, openSync, readSync, unlinkSync, writeSync, constants as fsc } from "node:fs";
import { join } from "node:path";
import { decodeRange, encodeFramed, ImageFormatError, type EncodeInput, type MessageType } from "./pb.js";
import { describeMagic, IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC } from "./magic.js";

/** Which header a file starts with. */
export type ImageHeader = "inventory" | "common" | "service" | "raw";

/** The key in a file name: a pid, an id, a namespace id, "dump"/"restore" for stats. */
export type ImageKey = number | bigint | string;

/**
 * One kind of image file. V is what reading the whole file gives, W what
 * writing the whole file takes (usually V with optional repeated fields).
 */
export interface ImageKind<V, W = V> {
  /** CRIU's name of the type magic ("CORE"), or the raw file's name stem. */
  readonly name: string;
  /** CRIU's file name pattern, printf style: "core-%u.img", "ghost-file-%x.img", "pstree.img". */
  readonly pattern: string;
  readonly header: ImageHeader;
  /** The type magic after the head magic; 0 for raw files. */
  readonly magic: number;
  /** The message of the file's (first) entries, when it has entries. */
  readonly type?: MessageType<unknown>;
  // Function-typed properties (not methods) so TypeScript checks W strictly.
  readonly read: (r: ImageReader) => V;
  readonly write: (w: ImageWriter, value: W) => void;
}

export type ImageErrorReason = "missing" | "magic" | "truncated" | "corrupt" | "invalid" | "io";

/** Anything wrong with an image file, naming the file and (when known) the byte offset. */
export class ImageError extends Error {
  constructor(
    readonly file: string,
    readonly reason: ImageErrorReason,
    detail: string,
    readonly offset?: number,
    options?: { cause?: unknown },
  ) {
    super(reason === "missing" ? `no such image: ${file}` : `${file}: ${detail}`, options);
    this.name = "ImageError";
  }
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Formats a CRIU printf-style pattern ("%u", "%lu", "%d", "%x", "%s") with a key. */
/** A pattern's one conversion (criu's %u, %lu, %d, %x or %s), found once per pattern. */
interface NamePattern {
  head: string;
  conv: string | undefined;
  tail: string;
}
const namePatterns = new Map<string, NamePattern>();

function namePattern(pattern: string): NamePattern {
  let p = namePatterns.get(pattern);
  if (!p) {
    const m = /%(l?u|d|x|s)/.exec(pattern);
    p = m ? { head: pattern.slice(0, m.index), conv: m[1], tail: pattern.slice(m.index + m[0].length) } : { head: pattern, conv: undefined, tail: "" };
    namePatterns.set(pattern, p);
  }
  return p;
}

export function formatImageName(pattern: string, key?: ImageKey): string {
  const { head, conv, tail } = namePattern(pattern);
  if (!conv) {
    if (key !== undefined) throw new TypeError(`image ${pattern} takes no key, got ${String(key)}`);
    return pattern;
  }
  if (key === undefined) throw new TypeError(`image ${pattern} needs a key`);
  let text: string;
  if (conv === "s") {
    if (typeof key !== "string" || key === "" || key.includes("/")) throw new TypeError(`image ${pattern}: bad key ${String(key)}`);
    text = key;
  } else if (typeof key === "number" && Number.isSafeInteger(key) && key >= 0) {
    // The common case (a PID, an id), without a BigInt on the way.
    text = conv === "x" ? key.toString(16) : String(key);
  } else {
    const n = typeof key === "string" ? (/^\d+$/.test(key) ? BigInt(key) : NaN) : key;
    const ok = typeof n === "bigint" ? n >= 0n || conv === "d" : Number.isSafeInteger(n) && (n >= 0 || conv === "d");
    if (!ok) throw new TypeError(`image ${pattern}: key must be an integer, got ${String(key)}`);
    text = conv === "x" ? BigInt(n).toString(16) : BigInt(n).toString(10);
  }
  return head + text + tail;
}

export function imagePath(dir: string, kind: ImageKind<unknown, never>, key?: ImageKey): string {
  return join(dir, formatImageName(kind.pattern, key));
}

function headMagic(header: ImageHeader): number | undefined {
  return header === "common" ? IMG_COMMON_MAGIC : header === "service" ? IMG_SERVICE_MAGIC : undefined;
}

// ---------------------------------------------------------------------------

const READ_CHUNK = 64 * 1024;

/**
 * One read buffer and one write buffer kept between files: a dump or a
 * restore goes through hundreds of small files one after the other, and a
 * fresh 64 KiB each would be garbage (and external memory, which makes V8
 * collect more often). A second file open at the same time gets its own.
 */
const spare: { read: Buffer | null; write: Buffer | null } = { read: null, write: null };

/** Reads one image file entry by entry, with raw payloads in between. */
export class ImageReader {
  private fd: number;
  private buf: Buffer;
  private start = 0; // unread bytes are buf[start, end)
  private end = 0;
  private filePos = 0; // file offset of buf[end]
  readonly size: number;

  /** Opens DIR/<name of kind and key> and checks its header. */
  static open(dir: string, kind: ImageKind<unknown, never>, key?: ImageKey): ImageReader {
    return new ImageReader(imagePath(dir, kind, key), kind);
  }

  constructor(readonly path: string, readonly kind: ImageKind<unknown, never>) {
    try {
      this.fd = openSync(path, fsc.O_RDONLY);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT") throw new ImageError(path, "missing", "no such file", undefined, { cause: e });
      throw new ImageError(path, "io", `cannot open: ${(e as Error).message}`, undefined, { cause: e });
    }
    this.buf = takeSpare("read", READ_CHUNK);
    try {
      this.size = fstatSync(this.fd).size;
      this.checkHeader();
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** File offset of the next unread byte. */
  get offset(): number {
    return this.filePos - (this.end - this.start);
  }

  /** Bytes left until the end of the file. */
  get remaining(): number {
    return this.size - this.offset;
  }

  private fail(reason: ImageErrorReason, detail: string, offset = this.offset, cause?: unknown): never {
    throw new ImageError(this.path, reason, detail, offset, cause === undefined ? undefined : { cause });
  }

  /** Makes up to n bytes available in buf[start...]; returns how many are. */
  private fill(n: number): number {
    if (this.end - this.start >= n) return n;
    if (this.start > 0) {
      this.buf.copy(this.buf, 0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
    }
    if (n > this.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(n, this.buf.length * 2));
      this.buf.copy(bigger, 0, 0, this.end);
      this.buf = bigger;
    }
    while (this.end < n) {
      const got = this.readAt(this.buf, this.end, this.buf.length - this.end, this.filePos);
      if (got === 0) break;
      this.end += got;
      this.filePos += got;
    }
    return Math.min(n, this.end);
  }

  private readAt(into: Buffer, at: number, len: number, pos: number): number {
    try {
      return readSync(this.fd, into, at, len, pos);
    } catch (e) {
      return this.fail("io", `read failed: ${(e as Error).message}`, pos, e);
    }
  }

  private u32(): number {
    const v = this.buf.readUInt32LE(this.start);
    this.start += 4;
    return v;
  }

  private checkHeader(): void {
    const { header, magic } = this.kind;
    if (header === "raw") return;
    const head = headMagic(header);
    const need = head === undefined ? 4 : 8;
    const have = this.fill(need);
    if (have < need) this.fail("truncated", `truncated header: ${have} of ${need} bytes`, 0);
    if (head !== undefined) {
      const found = this.u32();
      if (found !== head) {
        this.fail("magic", `bad head magic: expected ${describeMagic(head)}, found ${describeMagic(found)}`, 0);
      }
    }
    const found = this.u32();
    if (found !== magic) {
      this.fail("magic", `wrong image type: expected ${describeMagic(magic)}, found ${describeMagic(found)}`, need - 4);
    }
  }

  /** True when nothing is left to read. */
  atEnd(): boolean {
    return this.fill(1) === 0;
  }

  /** Reads the next entry as `type`; undefined at the end of the file. */
  next<T>(type: MessageType<T>): T | undefined {
    const at = this.offset;
    const have = this.fill(4);
    if (have === 0) return undefined;
    if (have < 4) this.fail("truncated", `truncated entry at offset ${at}: ${have} of 4 length bytes`, at);
    const len = this.u32();
    if (len > this.size - this.offset) {
      this.fail("truncated", `truncated ${type.name} entry at offset ${at}: ${len} bytes announced, ${this.size - this.offset} left`, at);
    }
    if (this.fill(len) < len) {
      this.fail("truncated", `truncated ${type.name} entry at offset ${at}: file shrank while reading`, at);
    }
    const body = this.offset;
    try {
      return decodeRange(type, this.buf, this.start, this.start + len);
    } catch (e) {
      if (!(e instanceof ImageFormatError)) throw e;
      const where = body + (e.offset ?? 0);
      return this.fail("corrupt", `corrupted ${type.name} entry at offset ${at}: ${e.detail} (byte ${where})`, where, e);
    } finally {
      this.start += len;
    }
  }

  /** Reads the next entry, which must be there. */
  expect<T>(type: MessageType<T>, what: string = type.name): T {
    const at = this.offset;
    const v = this.next(type);
    if (v === undefined) this.fail("truncated", `truncated: missing ${what} at offset ${at}`, at);
    return v;
  }

  /** Reads exactly n raw bytes (a payload), as a fresh Buffer. */
  payload(n: number, what = "payload"): Buffer {
    const at = this.offset;
    if (!Number.isSafeInteger(n) || n < 0) this.fail("corrupt", `bad ${what} size ${n} at offset ${at}`, at);
    if (n > this.size - at) {
      this.fail("truncated", `truncated ${what} at offset ${at}: need ${n} bytes, ${this.size - at} left`, at);
    }
    const out = Buffer.allocUnsafe(n);
    const buffered = Math.min(n, this.end - this.start);
    this.buf.copy(out, 0, this.start, this.start + buffered);
    this.start += buffered;
    let done = buffered;
    // Large payloads go straight from the file into `out`.
    while (done < n) {
      const got = this.readAt(out, done, n - done, this.filePos);
      if (got === 0) this.fail("truncated", `truncated ${what} at offset ${at}: file shrank while reading`, at);
      done += got;
      this.filePos += got;
    }
    return out;
  }

  /** Skips n raw bytes. */
  skip(n: number, what = "payload"): void {
    const at = this.offset;
    if (n > this.size - at) {
      this.fail("truncated", `truncated ${what} at offset ${at}: need ${n} bytes, ${this.size - at} left`, at);
    }
    const buffered = Math.min(n, this.end - this.start);
    this.start += buffered;
    this.filePos += n - buffered;
  }

  /** Everything up to the end of the file. */
  rest(): Buffer {
    return this.payload(this.size - this.offset, "data");
  }

  /** Reads every remaining entry as `type`. */
  all<T>(type: MessageType<T>): T[] {
    const out: T[] = [];
    for (let e = this.next(type); e !== undefined; e = this.next(type)) out.push(e);
    return out;
  }

  close(): void {
    if (this.fd >= 0) {
      closeSync(this.fd);
      this.fd = -1;
      // Nothing read keeps a view of it: decoded bytes and payloads are copies.
      giveSpare("read", this.buf, READ_CHUNK);
    }
  }
}

function takeSpare(which: "read" | "write", size: number): Buffer {
  const buf = spare[which];
  if (buf) {
    spare[which] = null;
    return buf;
  }
  return Buffer.allocUnsafe(size);
}

function giveSpare(which: "read" | "write", buf: Buffer, size: number): void {
  if (buf.length === size) spare[which] = buf;
}

// ---------------------------------------------------------------------------

const WRITE_CHUNK = 64 * 1024;
/** Payloads at least this big are written straight from the caller's buffer. */
const DIRECT_WRITE = 16 * 1024;

/** Where an image writer's bytes go: a file written as they come, or collected for the dump's writer thread. */
export interface ImageOutput {
  /** Takes the bytes; data may change once it returns. */
  write(data: Uint8Array): void;
  close(): void;
  /** Closes and drops the file: for a write that failed half-way. */
  discard(): void;
}

/** Creates (or truncates) the file at path, written as the writer hands bytes over. */
export function fileOutput(path: string): ImageOutput {
  let fd: number;
  try {
    // 0600 like CRIU: images hold memory and credentials. (libuv adds O_CLOEXEC itself.)
    fd = openSync(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC, 0o600);
  } catch (e) {
    throw new ImageError(path, "io", `cannot create: ${(e as Error).message}`, undefined, { cause: e });
  }
  return {
    write(data) {
      for (let done = 0; done < data.length;) done += writeSync(fd, data, done, data.length - done);
    },
    close: () => closeSync(fd),
    discard() {
      closeSync(fd);
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
    },
  };
}

/** Writes one image file: header, then entries and payloads in order. */
export class ImageWriter {
  private out: ImageOutput | null;
  private buf = takeSpare("write", WRITE_CHUNK);
  private used = 0;
  private written = 0; // bytes already handed to the output

  /** Creates (or truncates) DIR/<name of kind and key> and writes its header. */
  static create(dir: string, kind: ImageKind<unknown, never>, key?: ImageKey): ImageWriter {
    const path = imagePath(dir, kind, key);
    return new ImageWriter(path, kind, fileOutput(path));
  }

  constructor(readonly path: string, readonly kind: ImageKind<unknown, never>, out: ImageOutput) {
    this.out = out;
    const head = headMagic(kind.header);
    if (head !== undefined) this.u32(head);
    if (kind.header !== "raw") this.u32(kind.magic);
  }

  /** File offset the next byte will land at. */
  get offset(): number {
    return this.written + this.used;
  }

  private u32(v: number): void {
    if (this.buf.length - this.used < 4) this.flush();
    this.used = this.buf.writeUInt32LE(v, this.used);
  }

  private fail(reason: ImageErrorReason, detail: string, cause?: unknown): never {
    throw new ImageError(this.path, reason, detail, this.offset, cause === undefined ? undefined : { cause });
  }

  private writeAll(data: Uint8Array): void {
    if (!this.out) this.fail("invalid", "the image is closed already");
    try {
      this.out.write(data);
    } catch (e) {
      this.fail("io", `write failed: ${(e as Error).message}`, e);
    }
    this.written += data.length;
  }

  /** Hands buffered bytes to the kernel. */
  flush(): void {
    if (this.used === 0) return;
    const n = this.used;
    this.used = 0;
    this.writeAll(this.buf.subarray(0, n));
  }

  /** Appends one entry: u32 length, then the encoded message. */
  write<T>(type: MessageType<T>, msg: EncodeInput<T>): void {
    if (this.kind.header === "raw") this.fail("invalid", "raw images hold no entries");
    let framed: Buffer;
    try {
      framed = encodeFramed(type, msg);
    } catch (e) {
      if (!(e instanceof ImageFormatError)) throw e;
      return this.fail("invalid", `cannot encode ${type.name}: ${e.detail}`, e);
    }
    // The codec's scratch bytes: copied (or written) before the next encode.
    this.bytes(framed, DIRECT_WRITE);
  }

  /** Appends raw bytes after the last entry. */
  payload(data: Uint8Array): void {
    this.bytes(data, DIRECT_WRITE);
  }

  /** Appends `n` zero bytes (payload padding). */
  zeros(n: number): void {
    if (n > 0) this.bytes(Buffer.alloc(n), DIRECT_WRITE);
  }

  private bytes(data: Uint8Array, direct: number): void {
    // Once closed, the buffer may be another writer's.
    if (!this.out) this.fail("invalid", "the image is closed already");
    if (data.length >= direct || data.length > this.buf.length - this.used) {
      this.flush();
      if (data.length >= direct || data.length > this.buf.length) {
        this.writeAll(data);
        return;
      }
    }
    this.buf.set(data, this.used);
    this.used += data.length;
  }

  /** Flushes and closes; the writer cannot be used afterwards. */
  close(): void {
    if (!this.out) return;
    this.flush();
    const out = this.out;
    this.out = null;
    giveSpare("write", this.buf, WRITE_CHUNK);
    out.close();
  }

  /** Closes and deletes the file: for a write that failed half-way. */
  discard(): void {
    if (!this.out) return;
    this.out.discard();
    this.out = null;
    giveSpare("write", this.buf, WRITE_CHUNK);
  }
}

// ---------------------------------------------------------------------------
// Whole-file helpers.

/** Reads a whole image file into the kind's value (entries, or the payload structure). */
export function readImage<V>(dir: string, kind: ImageKind<V, never>, key?: ImageKey): V {
  const r = ImageReader.open(dir, kind, key);
  try {
    return kind.read(r);
  } finally {
    r.close();
  }
}

/**
 * Writes a whole image file. On failure the partial file is removed, so a
 * directory never holds a half-written image.
 */
export function writeImage<W>(
  dir: string, kind: ImageKind<unknown, W>, key: ImageKey | undefined, value: NoInfer<W>, output: (path: string) => ImageOutput = fileOutput,
): void {
  const path = imagePath(dir, kind, key);
  const w = new ImageWriter(path, kind, output(path));
  try {
    kind.write(w, value);
    w.close();
  } catch (e) {
    w.discard();
    throw e;
  }
}

/** Reads a file that must hold exactly one entry (core, mm, ids, fs, inventory, ...). */
export function readSingle<T>(dir: string, kind: ImageKind<T[], never>, key?: ImageKey): T {
  const entries = readImage(dir, kind, key);
  if (entries.length !== 1) {
    throw new ImageError(imagePath(dir, kind, key), "invalid", `expected exactly one entry, found ${entries.length}`);
  }
  return entries[0]!;
}

/** Whether the image file exists (CRIU treats many missing images as empty). */
export function imageExists(dir: string, kind: ImageKind<unknown, never>, key?: ImageKey): boolean {
  try {
    closeSync(openSync(imagePath(dir, kind, key), fsc.O_RDONLY));
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw new ImageError(imagePath(dir, kind, key), "io", (e as Error).message, undefined, { cause: e });
  }
}

/** Converts a 64-bit count from an entry into a number, or fails naming the file. */
export function safeCount(r: ImageReader, v: bigint, what: string): number {
  if (v < 0n || v > MAX_SAFE) throw new ImageError(r.path, "corrupt", `${what} ${v} is out of range`, r.offset);
  return Number(v);
}
