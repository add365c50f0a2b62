// The generic proto2 codec crest had before src/images/pb-*.ts (a decoding
// loop over per-type plans, an encoder per type): one loop over each type's
// field descriptors, looking up each field's kind, and a measuring pass
// before each encoding. Kept as the reference the codec must agree with,
// byte for byte, object for object and error for error
// (test/unit/images-codec.test.ts), and as the baseline of bench/codec.ts.
// Not used by crest itself.
import { ImageFormatError, type EncodeInput, type EnumSpec, type FieldKind, type FieldSpec, type MessageType } from "../src/images/pb.js";

// ---------------------------------------------------------------------------
// Compiled form: fields sorted by number (the order protoc-generated encoders
// use, so our bytes match CRIU's and python's) and indexed for decoding.

const enum Wire { Varint = 0, Fixed64 = 1, Len = 2, StartGroup = 3, EndGroup = 4, Fixed32 = 5 }

interface Compiled {
  readonly type: MessageType<unknown>;
  readonly sorted: readonly FieldSpec[];
  /** Decoding's view of each field, by number: an array where the numbers are small, as in all of CRIU's messages but a few. */
  readonly byNumber: readonly (DecodeField | undefined)[] | ReadonlyMap<number, DecodeField>;
  readonly required: readonly FieldSpec[];
  readonly repeated: readonly FieldSpec[];
}

/** A field as the decoder needs it, worked out once. */
interface DecodeField {
  readonly f: FieldSpec;
  readonly wire: Wire;
  readonly repeated: boolean;
  readonly message: boolean;
  /** The message type's compiled form, once first needed (types may refer to themselves). */
  sub?: Compiled;
}

const DENSE_NUMBERS = 256;

const compiledCache = new WeakMap<MessageType<unknown>, Compiled>();
const enumNumbers = new WeakMap<EnumSpec, ReadonlySet<number>>();

function compile(type: MessageType<unknown>): Compiled {
  let c = compiledCache.get(type);
  if (!c) {
    const sorted = [...type.fields].sort((a, b) => a.number - b.number);
    const dec = sorted.map((f): [number, DecodeField] => [f.number, { f, wire: wireTypeOf(f.kind), repeated: f.label === "repeated", message: f.kind === "message" }]);
    const max = sorted.length ? sorted[sorted.length - 1]!.number : 0;
    let byNumber: Compiled["byNumber"];
    if (max < DENSE_NUMBERS) {
      const dense = new Array<DecodeField | undefined>(max + 1).fill(undefined);
      for (const [n, d] of dec) dense[n] = d;
      byNumber = dense;
    } else {
      byNumber = new Map(dec);
    }
    c = {
      type,
      sorted,
      byNumber,
      required: sorted.filter((f) => f.label === "required"),
      repeated: sorted.filter((f) => f.label === "repeated"),
    };
    compiledCache.set(type, c);
  }
  return c;
}

function enumHas(spec: EnumSpec, n: number): boolean {
  let set = enumNumbers.get(spec);
  if (!set) {
    set = new Set(Object.values(spec.values));
    enumNumbers.set(spec, set);
  }
  return set.has(n);
}

function wireTypeOf(kind: FieldKind): Wire {
  switch (kind) {
    case "double": case "fixed64": case "sfixed64": return Wire.Fixed64;
    case "float": case "fixed32": case "sfixed32": return Wire.Fixed32;
    case "string": case "bytes": case "message": return Wire.Len;
    default: return Wire.Varint;
  }
}

const MAX_DEPTH = 64;
const TWO64 = 1n << 64n;
const utf8 = new TextDecoder("utf-8", { fatal: true });

// ---------------------------------------------------------------------------
// Decoding

class Reader {
  pos: number;
  /** High 32 bits of the last varint read (readVarint returns the low 32). */
  hi = 0;
  /** The message being decoded (nested ones in turn), for errors. */
  constructor(readonly buf: Buffer, public typeName: string, start: number, public end: number) {
    this.pos = start;
  }

  fail(detail: string, at = this.pos): never {
    throw new ImageFormatError(this.typeName, detail, at);
  }

  need(n: number, what: string): void {
    if (this.end - this.pos < n) this.fail(`truncated ${what}: need ${n} bytes, ${this.end - this.pos} left`);
  }

  /** Reads a varint of up to 10 bytes; returns the low 32 bits, leaves the high 32 in `hi`. */
  readVarint(): number {
    const buf = this.buf, end = this.end, start = this.pos;
    let pos = this.pos, lo = 0, hi = 0, b: number;
    for (let shift = 0; shift < 28; shift += 7) {
      if (pos >= end) this.fail("truncated varint", start);
      b = buf[pos++]!;
      lo |= (b & 0x7f) << shift;
      if (b < 0x80) { this.pos = pos; this.hi = 0; return lo >>> 0; }
    }
    if (pos >= end) this.fail("truncated varint", start);
    b = buf[pos++]!;
    lo |= (b & 0x7f) << 28;
    hi = (b & 0x7f) >>> 4;
    if (b < 0x80) { this.pos = pos; this.hi = hi; return lo >>> 0; }
    for (let shift = 3; shift < 32; shift += 7) {
      if (pos >= end) this.fail("truncated varint", start);
      b = buf[pos++]!;
      hi |= (b & 0x7f) << shift;
      if (b < 0x80) { this.pos = pos; this.hi = hi >>> 0; return lo >>> 0; }
    }
    return this.fail("varint longer than 10 bytes", start);
  }

  readU64(): bigint {
    const lo = this.readVarint();
    return this.hi === 0 ? BigInt(lo) : (BigInt(this.hi) << 32n) | BigInt(lo);
  }

  readLength(): number {
    const start = this.pos;
    const n = this.readVarint();
    if (this.hi !== 0 || n > this.end - this.pos) {
      this.fail(`length ${this.hi === 0 ? n : "> 2^32"} runs past the end (${this.end - this.pos} bytes left)`, start);
    }
    return n;
  }

  skip(wire: number, fieldNumber: number, depth: number): void {
    switch (wire) {
      case Wire.Varint: this.readVarint(); return;
      case Wire.Fixed64: this.need(8, "fixed64"); this.pos += 8; return;
      case Wire.Fixed32: this.need(4, "fixed32"); this.pos += 4; return;
      case Wire.Len: { const n = this.readLength(); this.pos += n; return; }
      case Wire.StartGroup: {
        if (depth > MAX_DEPTH) this.fail("groups nested too deeply");
        for (;;) {
          const at = this.pos;
          if (at >= this.end) this.fail(`unterminated group ${fieldNumber}`);
          const tag = this.readVarint();
          if (this.hi !== 0) this.fail("field tag out of range", at);
          const w = tag & 7, n = tag >>> 3;
          if (w === Wire.EndGroup) {
            if (n !== fieldNumber) this.fail(`group ${fieldNumber} closed as ${n}`, at);
            return;
          }
          this.skip(w, n, depth + 1);
        }
      }
      default:
        this.fail(`invalid wire type ${wire} for field ${fieldNumber}`);
    }
  }
}

function readScalar(r: Reader, f: FieldSpec): unknown {
  const buf = r.buf;
  switch (f.kind) {
    case "uint32": return r.readVarint();
    case "int32": return r.readVarint() | 0;
    case "sint32": { const v = r.readVarint(); return ((v >>> 1) ^ -(v & 1)) | 0; }
    case "enum": {
      const at = r.pos;
      const v = r.readVarint() | 0;
      if (!enumHas(f.enum!, v)) r.fail(`field ${f.name}: ${v} is not a value of enum ${f.enum!.name}`, at);
      return v;
    }
    case "bool": { const v = r.readVarint(); return v !== 0 || r.hi !== 0; }
    case "uint64": return r.readU64();
    case "int64": return BigInt.asIntN(64, r.readU64());
    case "sint64": { const u = r.readU64(); return (u >> 1n) ^ -(u & 1n); }
    case "fixed32": r.need(4, "fixed32"); r.pos += 4; return buf.readUInt32LE(r.pos - 4);
    case "sfixed32": r.need(4, "sfixed32"); r.pos += 4; return buf.readInt32LE(r.pos - 4);
    case "float": r.need(4, "float"); r.pos += 4; return buf.readFloatLE(r.pos - 4);
    case "fixed64": r.need(8, "fixed64"); r.pos += 8; return buf.readBigUInt64LE(r.pos - 8);
    case "sfixed64": r.need(8, "sfixed64"); r.pos += 8; return buf.readBigInt64LE(r.pos - 8);
    case "double": r.need(8, "double"); r.pos += 8; return buf.readDoubleLE(r.pos - 8);
    case "string": {
      const at = r.pos;
      const n = r.readLength();
      const s = r.pos;
      r.pos += n;
      return decodeUtf8(r, buf, s, s + n, f, at);
    }
    case "bytes": {
      const n = r.readLength();
      r.pos += n;
      // A copy: callers may keep it while the source buffer is reused.
      return Buffer.from(buf.subarray(r.pos - n, r.pos));
    }
    default:
      return r.fail(`field ${f.name}: unexpected kind ${f.kind}`);
  }
}

function decodeUtf8(r: Reader, buf: Buffer, s: number, e: number, f: FieldSpec, at: number): string {
  let ascii = true;
  for (let i = s; i < e; i++) if (buf[i]! >= 0x80) { ascii = false; break; }
  if (ascii) return buf.toString("latin1", s, e);
  try {
    return utf8.decode(buf.subarray(s, e));
  } catch {
    // Refuse rather than silently replace bytes (paths must round-trip exactly).
    return r.fail(`field ${f.name}: string is not valid UTF-8`, at);
  }
}

function decodeInto(c: Compiled, r: Reader, obj: Record<string, unknown>, depth: number): void {
  if (depth > MAX_DEPTH) r.fail("messages nested too deeply");
  const start = r.pos;
  const byNumber = c.byNumber;
  const buf = r.buf;
  while (r.pos < r.end) {
    const tagAt = r.pos;
    const tag = r.readVarint();
    const tagLen = r.pos - tagAt;
    if (r.hi !== 0) r.fail("field tag out of range", tagAt);
    const wire = tag & 7, num = tag >>> 3;
    if (num === 0) r.fail("field number 0", tagAt);
    const d = Array.isArray(byNumber) ? byNumber[num] : (byNumber as ReadonlyMap<number, DecodeField>).get(num);
    if (!d) { r.skip(wire, num, depth); continue; }
    const f = d.f;
    if (d.repeated) {
      const arr = obj[f.name] as unknown[];
      if (wire === d.wire) {
        if (d.message) {
          arr.push(decodeNested(d, r, depth));
          continue;
        }
        arr.push(readScalar(r, f));
        // Unpacked elements come one after the other, each with the same
        // tag (as CRIU's registers do): read on without looking them up again.
        const u32 = f.kind === "uint32";
        while (r.end - r.pos > tagLen && sameBytes(buf, tagAt, r.pos, tagLen)) {
          r.pos += tagLen;
          arr.push(u32 ? r.readVarint() : readScalar(r, f));
        }
      } else if (wire === Wire.Len && d.wire !== Wire.Len) {
        // Packed encoding: accepted even when the schema says unpacked.
        const n = r.readLength();
        const outerEnd = r.end;
        r.end = r.pos + n;
        while (r.pos < r.end) arr.push(readScalar(r, f));
        r.end = outerEnd;
      } else {
        r.fail(`field ${f.name}: wire type ${wire}, expected ${d.wire}`, tagAt);
      }
      continue;
    }
    if (wire !== d.wire) r.fail(`field ${f.name}: wire type ${wire}, expected ${d.wire}`, tagAt);
    if (d.message) {
      // A repeated occurrence of a singular message merges into the first one.
      const prev = obj[f.name] as Record<string, unknown> | undefined;
      obj[f.name] = decodeNested(d, r, depth, prev);
    } else {
      obj[f.name] = readScalar(r, f);
    }
  }
  for (const f of c.required) {
    if (obj[f.name] === undefined) r.fail(`required field ${f.name} is missing`, start);
  }
}

function sameBytes(buf: Buffer, a: number, b: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (buf[a + i] !== buf[b + i]) return false;
  return true;
}

/** Decodes a length-delimited message in place: the same reader, bounded to it for the while. */
function decodeNested(d: DecodeField, r: Reader, depth: number, into?: Record<string, unknown>): unknown {
  const n = r.readLength();
  const c = (d.sub ??= compile(d.f.message!()));
  const outerEnd = r.end, outerName = r.typeName;
  r.end = r.pos + n;
  r.typeName = c.type.name;
  const obj = into ?? newMessage(c);
  decodeInto(c, r, obj, depth + 1);
  r.end = outerEnd;
  r.typeName = outerName;
  return obj;
}

function newMessage(c: Compiled): Record<string, unknown> {
  const obj: Record<string, unknown> = {};
  for (const f of c.repeated) obj[f.name] = [];
  return obj;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Decodes one message. Throws ImageFormatError (with the byte offset) on
 * truncated data, bad wire types, unknown enum values, invalid UTF-8 or a
 * missing required field. Unknown fields are skipped.
 */
export function referenceDecode<T>(type: MessageType<T>, bytes: Uint8Array): T {
  const c = compile(type);
  const buf = asBuffer(bytes);
  const r = new Reader(buf, type.name, 0, buf.length);
  const obj = newMessage(c);
  decodeInto(c, r, obj, 0);
  return obj as T;
}

// ---------------------------------------------------------------------------
// Encoding: a measuring pass records every length prefix (nested messages,
// strings, packed runs) in visiting order, then one exact-size buffer is
// filled in the same order. No intermediate buffers, no copies.

function encodeFail(type: string, detail: string): never {
  throw new ImageFormatError(type, detail);
}

function varintSize32(v: number): number {
  // v is an unsigned 32-bit value here.
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

function varintSize64(v: bigint): number {
  if (v < 0x100000000n) return varintSize32(Number(v));
  let n = 5;
  v >>= 35n;
  while (v > 0n) { n++; v >>= 7n; }
  return n;
}

const I32_MIN = -0x80000000, I32_MAX = 0x7fffffff, U32_MAX = 0xffffffff;
const I64_MIN = -(1n << 63n), I64_MAX = (1n << 63n) - 1n, U64_MAX = TWO64 - 1n;

function checkScalar(typeName: string, f: FieldSpec, v: unknown): void {
  const bad = (want: string): never =>
    encodeFail(typeName, `field ${f.name}: expected ${want}, got ${describe(v)}`);
  switch (f.kind) {
    case "int32": case "sint32": case "sfixed32":
      if (typeof v !== "number" || !Number.isInteger(v) || v < I32_MIN || v > I32_MAX) bad(f.kind);
      return;
    case "uint32": case "fixed32":
      if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > U32_MAX) bad(f.kind);
      return;
    case "enum":
      if (typeof v !== "number" || !enumHas(f.enum!, v)) bad(`a value of enum ${f.enum!.name}`);
      return;
    case "uint64": case "fixed64":
      if (typeof v !== "bigint" || v < 0n || v > U64_MAX) bad(`${f.kind} (bigint)`);
      return;
    case "int64": case "sint64": case "sfixed64":
      if (typeof v !== "bigint" || v < I64_MIN || v > I64_MAX) bad(`${f.kind} (bigint)`);
      return;
    case "bool": if (typeof v !== "boolean") bad("boolean"); return;
    case "string": if (typeof v !== "string") bad("string"); return;
    case "bytes": if (!(v instanceof Uint8Array)) bad("Buffer/Uint8Array"); return;
    case "double": case "float": if (typeof v !== "number") bad("number"); return;
    case "message": if (typeof v !== "object" || v === null || Array.isArray(v)) bad(`${f.message!().name} object`); return;
  }
}

function describe(v: unknown): string {
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? v.slice(0, 40) + "..." : v);
  if (v === null || typeof v !== "object") return String(v);
  return Array.isArray(v) ? "array" : v instanceof Uint8Array ? "bytes" : "object";
}

/** Size of a scalar's value (without tag); validates it on the way. */
function scalarSize(typeName: string, f: FieldSpec, v: unknown, lengths: number[]): number {
  checkScalar(typeName, f, v);
  switch (f.kind) {
    case "uint32": return varintSize32(v as number);
    case "int32": case "enum": return (v as number) < 0 ? 10 : varintSize32(v as number);
    case "sint32": { const n = v as number; return varintSize32(((n << 1) ^ (n >> 31)) >>> 0); }
    case "bool": return 1;
    case "uint64": return varintSize64(v as bigint);
    case "int64": return varintSize64(BigInt.asUintN(64, v as bigint));
    case "sint64": { const n = v as bigint; return varintSize64(BigInt.asUintN(64, (n << 1n) ^ (n >> 63n))); }
    case "fixed32": case "sfixed32": case "float": return 4;
    case "fixed64": case "sfixed64": case "double": return 8;
    case "string": {
      const n = Buffer.byteLength(v as string, "utf8");
      lengths.push(n);
      return varintSize32(n) + n;
    }
    case "bytes": { const n = (v as Uint8Array).length; return varintSize32(n) + n; }
    default: return encodeFail(typeName, `field ${f.name}: unexpected kind ${f.kind}`);
  }
}

function tagSize(f: FieldSpec): number {
  return varintSize32((f.number << 3) >>> 0);
}

function measure(c: Compiled, msg: Record<string, unknown>, lengths: number[], depth: number): number {
  const typeName = c.type.name;
  if (depth > MAX_DEPTH) encodeFail(typeName, "messages nested too deeply (a cycle?)");
  let size = 0;
  for (const f of c.sorted) {
    const v = msg[f.name];
    if (v === undefined || v === null) {
      if (f.label === "required") encodeFail(typeName, `required field ${f.name} is missing`);
      continue;
    }
    if (f.label === "repeated") {
      if (!Array.isArray(v)) encodeFail(typeName, `field ${f.name}: expected an array, got ${describe(v)}`);
      if (v.length === 0) continue;
      if (f.kind === "message") {
        const sub = compile(f.message!());
        for (const e of v) {
          checkScalar(typeName, f, e);
          const slot = lengths.push(0) - 1;
          const n = measure(sub, e as Record<string, unknown>, lengths, depth + 1);
          lengths[slot] = n;
          size += tagSize(f) + varintSize32(n) + n;
        }
      } else if (f.packed) {
        const slot = lengths.push(0) - 1;
        let n = 0;
        for (const e of v) n += scalarSize(typeName, f, e, lengths);
        lengths[slot] = n;
        size += tagSize(f) + varintSize32(n) + n;
      } else {
        for (const e of v) size += tagSize(f) + scalarSize(typeName, f, e, lengths);
      }
      continue;
    }
    if (f.kind === "message") {
      checkScalar(typeName, f, v);
      const slot = lengths.push(0) - 1;
      const n = measure(compile(f.message!()), v as Record<string, unknown>, lengths, depth + 1);
      lengths[slot] = n;
      size += tagSize(f) + varintSize32(n) + n;
    } else {
      size += tagSize(f) + scalarSize(typeName, f, v, lengths);
    }
  }
  return size;
}

class Writer {
  pos = 0;
  next = 0; // index into lengths
  constructor(readonly buf: Buffer, readonly lengths: readonly number[]) {}

  varint32(v: number): void {
    const buf = this.buf;
    while (v > 0x7f) { buf[this.pos++] = (v & 0x7f) | 0x80; v >>>= 7; }
    buf[this.pos++] = v;
  }

  varint64(v: bigint): void {
    if (v < 0x100000000n) { this.varint32(Number(v)); return; }
    let lo = Number(v & 0xffffffffn), hi = Number(v >> 32n);
    const buf = this.buf;
    while (hi) {
      buf[this.pos++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    this.varint32(lo);
  }

  scalar(f: FieldSpec, v: unknown): void {
    const buf = this.buf;
    switch (f.kind) {
      case "uint32": this.varint32(v as number); return;
      case "int32": case "enum": {
        const n = v as number;
        // Negative values are sign-extended to 64 bits: always 10 bytes.
        if (n < 0) this.varint64(BigInt.asUintN(64, BigInt(n))); else this.varint32(n);
        return;
      }
      case "sint32": { const n = v as number; this.varint32(((n << 1) ^ (n >> 31)) >>> 0); return; }
      case "bool": buf[this.pos++] = v ? 1 : 0; return;
      case "uint64": this.varint64(v as bigint); return;
      case "int64": this.varint64(BigInt.asUintN(64, v as bigint)); return;
      case "sint64": { const n = v as bigint; this.varint64(BigInt.asUintN(64, (n << 1n) ^ (n >> 63n))); return; }
      case "fixed32": this.pos = buf.writeUInt32LE(v as number, this.pos); return;
      case "sfixed32": this.pos = buf.writeInt32LE(v as number, this.pos); return;
      case "float": this.pos = buf.writeFloatLE(v as number, this.pos); return;
      case "fixed64": this.pos = buf.writeBigUInt64LE(v as bigint, this.pos); return;
      case "sfixed64": this.pos = buf.writeBigInt64LE(v as bigint, this.pos); return;
      case "double": this.pos = buf.writeDoubleLE(v as number, this.pos); return;
      case "string": {
        const n = this.lengths[this.next++]!;
        this.varint32(n);
        this.pos += buf.write(v as string, this.pos, n, "utf8");
        return;
      }
      case "bytes": {
        const b = v as Uint8Array;
        this.varint32(b.length);
        buf.set(b, this.pos);
        this.pos += b.length;
        return;
      }
    }
  }

  message(c: Compiled, msg: Record<string, unknown>): void {
    for (const f of c.sorted) {
      const v = msg[f.name];
      if (v === undefined || v === null) continue;
      const tag = (f.number << 3) >>> 0;
      if (f.label === "repeated") {
        const arr = v as readonly unknown[];
        if (arr.length === 0) continue;
        if (f.kind === "message") {
          const sub = compile(f.message!());
          for (const e of arr) {
            this.varint32(tag | Wire.Len);
            this.varint32(this.lengths[this.next++]!);
            this.message(sub, e as Record<string, unknown>);
          }
        } else if (f.packed) {
          this.varint32(tag | Wire.Len);
          this.varint32(this.lengths[this.next++]!);
          for (const e of arr) this.scalar(f, e);
        } else {
          const wire = wireTypeOf(f.kind);
          for (const e of arr) { this.varint32(tag | wire); this.scalar(f, e); }
        }
      } else if (f.kind === "message") {
        this.varint32(tag | Wire.Len);
        this.varint32(this.lengths[this.next++]!);
        this.message(compile(f.message!()), v as Record<string, unknown>);
      } else {
        this.varint32(tag | wireTypeOf(f.kind));
        this.scalar(f, v);
      }
    }
  }
}

/** Exact encoded size of msg, and the lengths the write pass needs. */
function plan(type: MessageType<unknown>, msg: unknown): { size: number; lengths: number[]; c: Compiled } {
  const c = compile(type);
  if (typeof msg !== "object" || msg === null) encodeFail(type.name, `expected an object, got ${describe(msg)}`);
  const lengths: number[] = [];
  const size = measure(c, msg as Record<string, unknown>, lengths, 0);
  return { size, lengths, c };
}

/**
 * Encodes one message. Repeated scalars are written unpacked (as CRIU does)
 * unless the schema says [packed=true]. Throws ImageFormatError on a missing
 * required field or a value of the wrong type or range.
 */
export function referenceEncode<T>(type: MessageType<T>, msg: EncodeInput<T>): Buffer {
  const p = plan(type, msg);
  const w = new Writer(Buffer.allocUnsafe(p.size), p.lengths);
  w.message(p.c, msg as Record<string, unknown>);
  return w.buf;
}

/**
 * Encodes one message preceded by `prefix` bytes left for the caller (the
 * image layer puts the u32 entry length there), in one allocation.
 */
export function referenceEncodeWithPrefix<T>(type: MessageType<T>, msg: EncodeInput<T>, prefix: number): Buffer {
  const p = plan(type, msg);
  const w = new Writer(Buffer.allocUnsafe(prefix + p.size), p.lengths);
  w.pos = prefix;
  w.message(p.c, msg as Record<string, unknown>);
  return w.buf;
}

/** The encoded size of msg, without encoding it. */
export function referenceEncodedSize<T>(type: MessageType<T>, msg: EncodeInput<T>): number {
  return plan(type, msg).size;
}
