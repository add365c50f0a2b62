// Encoding of crest's protocol-buffers (proto2) images: a function per
// message type, built from its descriptor once (pb-encoder-source.ts writes
// its code: a line per field, in number order, each calling the writer of
// its kind with the field's tag and name), which writes the message in one
// pass at W.pos of a scratch buffer, checking each value as it goes.

import { encoderSource, factorySource, type EncoderSource } from "./pb-encoder-source.js";
import { ImageFormatError, MAX_DEPTH, type EncodeInput, type MessageType } from "./pb-schema.js";

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const TWO32 = 4294967296;
const U64_MAX = (1n << 64n) - 1n, I64_MIN = -(1n << 63n), I64_MAX = (1n << 63n) - 1n;
const EMPTY: Buffer = Buffer.alloc(0);

/** Encodes m at W.pos of W.buf, nested d deep. */
type EncodeFn = (m: Record<string, unknown>, d: number) => void;

/** A type's encoder; it stands for the type from the start, so that one that contains another (or itself) calls it through this. */
interface Encoder {
  readonly type: MessageType<unknown>;
  enc: EncodeFn;
}

const encoders = new WeakMap<MessageType<unknown>, Encoder>();

function encoderOf(type: MessageType<unknown>): Encoder {
  let c = encoders.get(type);
  if (!c) encoders.set(type, (c = { type, enc: encodeFirst }));
  return c;
}

// What an encoder does until it is built: build it, then encode.
function encodeFirst(this: Encoder, m: Record<string, unknown>, d: number): void {
  if (this.enc === encodeFirst) [this.enc] = make([encoderSource(this.type)]);
  this.enc(m, d);
}

/** The functions of these encoders' sources, made by one script. */
function make(srcs: readonly EncoderSource[]): EncodeFn[] {
  const f = new Function("R", "HS", "ES", factorySource(srcs)) as (
    r: typeof writers, hs: Encoder[][], es: (readonly ReadonlySet<number>[])[],
  ) => EncodeFn[];
  return f(writers, srcs.map((s) => s.subs.map(encoderOf)), srcs.map((s) => s.enums));
}

/**
 * Builds the encoders of these types (not of the types they contain, built
 * when first used), in one go: crest's startup snapshot holds those of the
 * messages most commands handle, so that no command spends its time
 * writing and compiling them.
 */
export function prepareEncoding(types: Iterable<MessageType<unknown>>): void {
  const todo = [...new Set(types)].map(encoderOf).filter((c) => c.enc === encodeFirst);
  const fns = make(todo.map((c) => encoderSource(c.type)));
  todo.forEach((c, i) => (c.enc = fns[i]!));
}

// ---------------------------------------------------------------------------
// Writers. A message is written in one pass at W.pos of a scratch buffer
// (W.buf) that grows as needed, each value checked as it is written; errors
// name W.t, the type being encoded. Field writers (f...) take the field's
// value, tag, name and whether it is required (an absent optional field
// writes nothing); value writers (v...) write one value at p of b and
// return the position after it.

const SCRATCH = 64 * 1024;
/** A scratch buffer grown beyond this (for a huge message) is not kept for the next one. */
const SCRATCH_KEEP = 1 << 20;
/** The most a scalar field takes: tag and value. */
const SCALAR_ROOM = 16;
const W = { buf: EMPTY, pos: 0, t: "" };
type Mode = 0 | 1;
type ValueWriter = (b: Buffer, p: number, v: unknown, field: string, a1?: unknown, a2?: unknown) => number;

function efail(type: string, detail: string): never {
  throw new ImageFormatError(type, detail);
}

function bad(field: string, want: string, v: unknown): never {
  return efail(W.t, `field ${field}: expected ${want}, got ${describe(v)}`);
}

function missing(field: string): never {
  return efail(W.t, `required field ${field} is missing`);
}

function notArray(field: string, v: unknown): never {
  return efail(W.t, `field ${field}: expected an array, got ${describe(v)}`);
}

function describe(v: unknown): string {
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? v.slice(0, 40) + "..." : v);
  if (v === null || typeof v !== "object") return String(v);
  return Array.isArray(v) ? "array" : v instanceof Uint8Array ? "bytes" : "object";
}

/** Makes room for `need` more bytes after pos; returns the (new) scratch buffer. */
function grow(pos: number, need: number): Buffer {
  const old = W.buf;
  const buf = Buffer.allocUnsafe(Math.max(old.length * 2, pos + need + 1024));
  old.copy(buf, 0, 0, pos);
  W.buf = buf;
  return buf;
}

/** The scratch buffer with room for n more bytes at W.pos. */
function room(n: number): Buffer {
  const b = W.buf;
  return W.pos + n > b.length ? grow(W.pos, n) : b;
}

function wv32(buf: Buffer, pos: number, v: number): number {
  while (v > 0x7f) { buf[pos++] = (v & 0x7f) | 0x80; v >>>= 7; }
  buf[pos++] = v;
  return pos;
}

/** A 64-bit varint from its unsigned 32-bit halves. */
function wv64(buf: Buffer, pos: number, lo: number, hi: number): number {
  while (hi) {
    buf[pos++] = (lo & 0x7f) | 0x80;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  return wv32(buf, pos, lo);
}

/** int32 and enums: negative values are sign-extended to 64 bits (10 bytes). */
function wneg(buf: Buffer, pos: number, v: number): number {
  return v >= 0 ? wv32(buf, pos, v) : wv64(buf, pos, v >>> 0, 0xffffffff);
}

function isU32(v: unknown): v is number {
  return typeof v === "number" && v >>> 0 === v;
}

function isI32(v: unknown): v is number {
  return typeof v === "number" && (v | 0) === v;
}

function isU64(v: unknown): v is bigint {
  return typeof v === "bigint" && v >= 0n && v <= U64_MAX;
}

function isI64(v: unknown): v is bigint {
  return typeof v === "bigint" && v >= I64_MIN && v <= I64_MAX;
}

function vu32(b: Buffer, p: number, v: unknown, field: string): number {
  if (!isU32(v)) bad(field, "uint32", v);
  return wv32(b, p, v);
}

function vi32(b: Buffer, p: number, v: unknown, field: string): number {
  if (!isI32(v)) bad(field, "int32", v);
  return wneg(b, p, v);
}

function vs32(b: Buffer, p: number, v: unknown, field: string): number {
  if (!isI32(v)) bad(field, "sint32", v);
  return wv32(b, p, ((v << 1) ^ (v >> 31)) >>> 0);
}

function vbool(b: Buffer, p: number, v: unknown, field: string): number {
  if (typeof v !== "boolean") bad(field, "boolean", v);
  b[p] = v ? 1 : 0;
  return p + 1;
}

function venum(b: Buffer, p: number, v: unknown, field: string, values: ReadonlySet<number>, name: string): number {
  if (typeof v !== "number" || !values.has(v)) bad(field, `a value of enum ${name}`, v);
  return wneg(b, p, v);
}

function vu64(b: Buffer, p: number, v: unknown, field: string): number {
  if (!isU64(v)) bad(field, "uint64 (bigint)", v);
  const n = Number(v);
  if (n < 128) { b[p] = n; return p + 1; }
  if (n <= MAX_SAFE) return wv64(b, p, n >>> 0, Math.floor(n / TWO32));
  // 2^64 - 1 (RLIM_INFINITY) without the BigInt arithmetic.
  if (v === U64_MAX) return wv64(b, p, 0xffffffff, 0xffffffff);
  return wv64(b, p, Number(v & 0xffffffffn), Number(v >> 32n));
}

function vi64(b: Buffer, p: number, v: unknown, field: string): number {
  if (!isI64(v)) bad(field, "int64 (bigint)", v);
  const n = Number(v);
  if (n >= 0 && n < 128) { b[p] = n; return p + 1; }
  // The two's complement halves of a value a double holds exactly.
  if (n <= MAX_SAFE && n >= -MAX_SAFE) return wv64(b, p, n >>> 0, Math.floor(n / TWO32) >>> 0);
  const u = BigInt.asUintN(64, v);
  return wv64(b, p, Number(u & 0xffffffffn), Number(u >> 32n));
}

function vs64(b: Buffer, p: number, v: unknown, field: string): number {
  if (!isI64(v)) bad(field, "sint64 (bigint)", v);
  const n = Number(v);
  if (n < 2 ** 52 && n > -(2 ** 52)) {
    const z = n >= 0 ? 2 * n : -2 * n - 1;
    return wv64(b, p, z >>> 0, Math.floor(z / TWO32));
  }
  const u = BigInt.asUintN(64, (v << 1n) ^ (v >> 63n));
  return wv64(b, p, Number(u & 0xffffffffn), Number(u >> 32n));
}

/** The fixed-size kinds. */
function vfix(b: Buffer, p: number, v: unknown, field: string, kind: string): number {
  switch (kind) {
    case "fixed32": if (!isU32(v)) bad(field, kind, v); return b.writeUInt32LE(v, p);
    case "sfixed32": if (!isI32(v)) bad(field, kind, v); return b.writeInt32LE(v, p);
    case "fixed64": if (!isU64(v)) bad(field, `${kind} (bigint)`, v); return b.writeBigUInt64LE(v, p);
    case "sfixed64": if (!isI64(v)) bad(field, `${kind} (bigint)`, v); return b.writeBigInt64LE(v, p);
    default:
      if (typeof v !== "number") bad(field, "number", v);
      return kind === "float" ? b.writeFloatLE(v, p) : b.writeDoubleLE(v, p);
  }
}

// Field writers of the scalar kinds.
function fu32(v: unknown, tag: number, field: string, req: Mode): void {
  if (v == null) { if (req) missing(field); return; }
  const b = room(SCALAR_ROOM);
  W.pos = vu32(b, wv32(b, W.pos, tag), v, field);
}
function fi32(v: unknown, tag: number, field: string, req: Mode): void {
  if (v == null) { if (req) missing(field); return; }
  const b = room(SCALAR_ROOM);
  W.pos = vi32(b, wv32(b, W.pos, tag), v, field);
}
function fs32(v: unknown, tag: number, field: string, req: Mode): void {
  if (v == null) { if (req) missing(field); return; }
  const b = room(SCALAR_ROOM);
  W.pos = vs32(b, wv32(b, W.pos, tag), v, field);
}
function fbool(v: unknown, tag: number, field: string, req: Mode): void {
  if (v == null) { if (req) missing(field); return; }
  const b = room(SCALAR_ROOM);
  W.pos = vbool(b, wv32(b, W.pos, tag), v, field);
}
function fenum(v: unknown, tag: number, field: string, values: ReadonlySet<number>, name: string, req: Mode): void {
  if (v == null) { if (req) missing(field); return; }
  const b = room(SCALAR_ROOM);
  W.pos = venum(b, wv32(b, W.pos, tag), v, field, values, name);
}
function fu64(v: unknown, tag: number, field: string, req: Mode): void {
  if (v == null) { if (req) missing(field); return; }
  const b = room(SCALAR_ROOM);
  W.pos = vu64(b, wv32(b, W.pos, tag), v, field);
}
function fi64(v: unknown, tag: number, field: string, req: Mode): void {
  if (v == null) { if (req) missing(field); return; }
  const b = room(SCALAR_ROOM);
  W.pos = vi64(b, wv32(b, W.pos, tag), v, field);
}
function fs64(v: unknown, tag: number, field: string, req: Mode): void {
  if (v == null) { if (req) missing(field); return; }
  const b = room(SCALAR_ROOM);
  W.pos = vs64(b, wv32(b, W.pos, tag), v, field);
}
function ffix(v: unknown, tag: number, field: string, kind: string, req: Mode): void {
  if (v == null) { if (req) missing(field); return; }
  const b = room(SCALAR_ROOM);
  W.pos = vfix(b, wv32(b, W.pos, tag), v, field, kind);
}

/** A repeated uint32 (or int32) field, unpacked: the registers of core images. */
function f32s(v: unknown, tag: number, field: string, signed: boolean): void {
  if (v == null) return;
  if (!Array.isArray(v)) notArray(field, v);
  const n = v.length;
  if (n === 0) return;
  const b = room(n * SCALAR_ROOM);
  let p = W.pos;
  for (let i = 0; i < n; i++) {
    const x: unknown = v[i];
    p = wv32(b, p, tag);
    if (typeof x === "number" && (x & 0x7f) === x) b[p++] = x;
    else p = signed ? vi32(b, p, x, field) : vu32(b, p, x, field);
  }
  W.pos = p;
}

function fu32s(v: unknown, tag: number, field: string): void {
  f32s(v, tag, field, false);
}

function fi32s(v: unknown, tag: number, field: string): void {
  f32s(v, tag, field, true);
}

/** A repeated scalar field (an array, or absent; empty ones write nothing), unpacked or packed. */
function freps(v: unknown, tag: number, field: string, write: ValueWriter, packed: Mode, a1?: unknown, a2?: unknown): void {
  if (v == null) return;
  if (!Array.isArray(v)) notArray(field, v);
  const n = v.length;
  if (n === 0) return;
  const b = room(6 + n * SCALAR_ROOM);
  let p = wv32(b, W.pos, tag);
  if (packed) {
    const l = p++;
    for (let i = 0; i < n; i++) p = write(b, p, v[i], field, a1, a2);
    W.pos = p;
    endLen(l);
    return;
  }
  p = write(b, p, v[0], field, a1, a2);
  for (let i = 1; i < n; i++) p = write(b, wv32(b, p, tag), v[i], field, a1, a2);
  W.pos = p;
}

/** A string's tag, length and UTF-8 bytes. */
function wstr(v: unknown, tag: number, field: string): void {
  if (typeof v !== "string") bad(field, "string", v);
  const n = v.length;
  // At most 3 bytes per UTF-16 unit, and 5 each for tag and length.
  const buf = room(10 + 3 * n);
  let pos = wv32(buf, W.pos, tag);
  if (n < 128) {
    // ASCII, the common case, copied here; anything else by Buffer.
    let p = pos + 1, i = 0;
    for (; i < n; i++) {
      const c = v.charCodeAt(i);
      if (c >= 0x80) break;
      buf[p++] = c;
    }
    if (i === n) {
      buf[pos] = n;
      W.pos = p;
      return;
    }
  }
  const len = Buffer.byteLength(v, "utf8");
  pos = wv32(buf, pos, len);
  W.pos = pos + buf.write(v, pos, len, "utf8");
}

function wbytes(v: unknown, tag: number, field: string): void {
  if (!(v instanceof Uint8Array)) bad(field, "Buffer/Uint8Array", v);
  const n = v.length;
  const buf = room(10 + n);
  const pos = wv32(buf, wv32(buf, W.pos, tag), n);
  buf.set(v, pos);
  W.pos = pos + n;
}

/** A nested message: tag, length, bytes. */
function wmsg(v: unknown, tag: number, field: string, codec: Encoder, depth: number): void {
  if (typeof v !== "object" || v === null || Array.isArray(v)) bad(field, `${codec.type.name} object`, v);
  if (depth + 1 > MAX_DEPTH) efail(codec.type.name, "messages nested too deeply (a cycle?)");
  const l = wv32(room(6), W.pos, tag), t = W.t;
  // One byte for the length until it is known.
  W.pos = l + 1;
  codec.enc(v as Record<string, unknown>, depth + 1);
  W.t = t;
  endLen(l);
}

/** Puts at l the length of what follows it up to W.pos, moving that up when the length needs more than its one byte. */
function endLen(l: number): void {
  const pos = W.pos, n = pos - l - 1;
  if (n < 0x80) {
    W.buf[l] = n;
    return;
  }
  const size = n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
  const buf = room(size - 1);
  buf.copyWithin(l + size, l + 1, pos);
  wv32(buf, l, n);
  W.pos = pos + size - 1;
}

function fstr(v: unknown, tag: number, field: string, req: Mode): void {
  if (v != null) wstr(v, tag, field);
  else if (req) missing(field);
}
function fbytes(v: unknown, tag: number, field: string, req: Mode): void {
  if (v != null) wbytes(v, tag, field);
  else if (req) missing(field);
}
function fmsg(v: unknown, tag: number, field: string, req: Mode, codec: Encoder, depth: number): void {
  if (v != null) wmsg(v, tag, field, codec, depth);
  else if (req) missing(field);
}

/** A repeated field's array, or undefined when absent or empty. */
function elements(v: unknown, field: string): readonly unknown[] | undefined {
  if (v == null) return undefined;
  if (!Array.isArray(v)) notArray(field, v);
  return v.length ? v : undefined;
}
function fstrs(v: unknown, tag: number, field: string): void {
  const a = elements(v, field);
  if (a) for (let i = 0; i < a.length; i++) wstr(a[i], tag, field);
}
function fbytess(v: unknown, tag: number, field: string): void {
  const a = elements(v, field);
  if (a) for (let i = 0; i < a.length; i++) wbytes(a[i], tag, field);
}
function fmsgs(v: unknown, tag: number, field: string, codec: Encoder, depth: number): void {
  const a = elements(v, field);
  if (a) for (let i = 0; i < a.length; i++) wmsg(a[i], tag, field, codec, depth);
}

/** What the encoders' code may use (each takes the names it needs). */
const writers = {
  W, vu32, vi32, vs32, vbool, venum, vu64, vi64, vs64, vfix,
  fu32, fi32, fs32, fbool, fenum, fu64, fi64, fs64, ffix, fu32s, fi32s, freps, fstr, fbytes, fmsg, fstrs, fbytess, fmsgs,
};

// ---------------------------------------------------------------------------
// Entry points

let encoding = false;
/** Where the last encodeRaw's message ended in the buffer it returned. */
let encodedEnd = 0;

/** Encodes msg after `prefix` bytes; returns the buffer holding it, up to W.pos. */
function encodeRaw(type: MessageType<unknown>, msg: unknown, prefix: number): Buffer {
  if (typeof msg !== "object" || msg === null) efail(type.name, `expected an object, got ${describe(msg)}`);
  const c = encoderOf(type);
  if (encoding) {
    // An encode while encoding (a getter of a message that encodes): on a scratch buffer of its own.
    const { buf, pos, t } = W;
    W.buf = Buffer.allocUnsafe(SCRATCH);
    W.pos = prefix;
    try {
      c.enc(msg as Record<string, unknown>, 0);
      return W.buf;
    } finally {
      encodedEnd = W.pos;
      W.buf = buf;
      W.pos = pos;
      W.t = t;
    }
  }
  encoding = true;
  try {
    if (W.buf.length < SCRATCH || W.buf.length > SCRATCH_KEEP) W.buf = Buffer.allocUnsafe(SCRATCH);
    W.pos = prefix;
    c.enc(msg as Record<string, unknown>, 0);
    encodedEnd = W.pos;
    return W.buf;
  } finally {
    encoding = false;
  }
}

/**
 * Encodes one message. Repeated scalars are written unpacked (as CRIU does)
 * unless the schema says [packed=true]. Throws ImageFormatError on a missing
 * required field or a value of the wrong type or range.
 */
export function encode<T>(type: MessageType<T>, msg: EncodeInput<T>): Buffer {
  return encodeWithPrefix(type, msg, 0);
}

/**
 * Encodes one message preceded by `prefix` bytes left for the caller (the
 * image layer puts the u32 entry length there), in one allocation.
 */
export function encodeWithPrefix<T>(type: MessageType<T>, msg: EncodeInput<T>, prefix: number): Buffer {
  const buf = encodeRaw(type, msg, prefix);
  const out = Buffer.allocUnsafe(encodedEnd);
  buf.copy(out, prefix, prefix, encodedEnd);
  return out;
}

/**
 * Encodes one message after its length as a u32 (little-endian), as image
 * files frame their entries. The bytes are valid until the next encode.
 */
export function encodeFramed<T>(type: MessageType<T>, msg: EncodeInput<T>): Buffer {
  const buf = encodeRaw(type, msg, 4);
  buf.writeUInt32LE(encodedEnd - 4, 0);
  return buf.subarray(0, encodedEnd);
}

/** The encoded size of msg. */
export function encodedSize<T>(type: MessageType<T>, msg: EncodeInput<T>): number {
  encodeRaw(type, msg, 0);
  return encodedEnd;
}
