// Decoding of crest's protocol-buffers (proto2) images: one loop for every
// message type (decodeMessage), driven by a plan of the type's fields by
// tag, worked out once per type. V8 compiles that one loop soon, and it
// serves every type, where a decoder of its own per type would run
// uncompiled for its first few hundred calls (most of what a command makes
// of it) and then cost a compilation each. A type that has decoded very
// many messages gets one all the same (pb-decoder-source.ts), being by then
// worth it. The position, buffer and type decoded are in S, shared with
// the readers, so that their calls take few arguments.

import { decoderFactory, decoderSource } from "./pb-decoder-source.js";
import { ImageFormatError, MAX_DEPTH, wireOf, type EnumSpec, type FieldSpec, type MessageType } from "./pb-schema.js";

type Obj = Record<string, unknown>;
const TWO32 = 4294967296;
const U64_MAX = (1n << 64n) - 1n;
const utf8 = new TextDecoder("utf-8", { fatal: true });
const EMPTY: Buffer = Buffer.alloc(0);

// ---------------------------------------------------------------------------
// Plans

/** What the decoding loop does with a field. */
const enum Op {
  U32, I32, S32, BOOL, ENUM, U64, I64, S64, STR, BYTES, FIX, MSG,
  /** A repeated field's element, pushed: elem says what it is. */
  PUSH,
  /** A run of unpacked repeated uint32 / int32 elements. */
  RUN_U32, RUN_I32,
  /** A packed run of a repeated scalar field: elem says what its elements are. */
  PACKED,
}

interface DecodeField {
  readonly name: string;
  readonly op: Op;
  /** Of a PUSH or PACKED field: the op of an element. */
  readonly elem: Op;
  /** This required field's bit in DecodePlan.reqMask; 0 for the others. */
  readonly bit: number;
  /** Of a message field: its type's plan. */
  readonly sub: Slot | undefined;
  readonly values: ReadonlySet<number> | undefined;
  /** The enum's name, or the fixed-size kind. */
  readonly what: string;
}

interface DecodePlan {
  readonly type: MessageType<unknown>;
  readonly name: string;
  /** By tag, for the tags below NEAR. */
  readonly near: readonly (DecodeField | undefined)[];
  /** The others (CRIU numbers some fields from 4001). */
  readonly far: ReadonlyMap<number, DecodeField>;
  /** Names and wire types by field number, for errors about known fields. */
  readonly known: ReadonlyMap<number, readonly [string, number]>;
  /** The repeated fields, which every decoded message has (as arrays). */
  readonly repeated: readonly string[];
  readonly required: readonly string[];
  /** The bits of the required fields; -1 when they are too many to count by bits. */
  readonly reqMask: number;
  /** Each field's entry (unpacked), by name. */
  readonly fields: ReadonlyMap<string, DecodeField>;
  /** Messages decoded so far, until the type has a decoder of its own. */
  uses: number;
  own: DecodeFn | undefined;
}

/** Decodes S.b[S.pos, S.end) into o (a new message when undefined), nested d deep. */
type DecodeFn = (d: number, o: Obj | undefined) => Obj;

const NEAR = 1024;

/** Where a type's plan is, once worked out (a type may contain itself). */
interface Slot {
  readonly type: MessageType<unknown>;
  plan: DecodePlan | undefined;
}

const slots = new WeakMap<MessageType<unknown>, Slot>();

function slotOf(type: MessageType<unknown>): Slot {
  let s = slots.get(type);
  if (!s) slots.set(type, (s = { type, plan: undefined }));
  return s;
}

function opOf(f: FieldSpec): Op {
  switch (f.kind) {
    case "uint32": return Op.U32;
    case "int32": return Op.I32;
    case "sint32": return Op.S32;
    case "bool": return Op.BOOL;
    case "enum": return Op.ENUM;
    case "uint64": return Op.U64;
    case "int64": return Op.I64;
    case "sint64": return Op.S64;
    case "string": return Op.STR;
    case "bytes": return Op.BYTES;
    case "message": return Op.MSG;
    default: return Op.FIX;
  }
}

const enumSets = new WeakMap<EnumSpec, ReadonlySet<number>>();

function planOf(c: Slot): DecodePlan {
  if (c.plan) return c.plan;
  const sorted = [...c.type.fields].sort((a, b) => a.number - b.number);
  const near: (DecodeField | undefined)[] = [];
  const far = new Map<number, DecodeField>();
  const known = new Map<number, readonly [string, number]>();
  const required = sorted.filter((f) => f.label === "required").map((f) => f.name);
  const fields = new Map<string, DecodeField>();
  const put = (tag: number, d: DecodeField) => {
    if (tag < NEAR) near[tag] = d;
    else far.set(tag, d);
  };
  for (const f of sorted) {
    const wire = wireOf(f.kind);
    known.set(f.number, [f.name, wire]);
    const tag = ((f.number << 3) | wire) >>> 0;
    let values: ReadonlySet<number> | undefined;
    if (f.enum) {
      values = enumSets.get(f.enum);
      if (!values) enumSets.set(f.enum, (values = new Set(Object.values(f.enum.values))));
    }
    const r = required.indexOf(f.name);
    // One shape for all of them (the loop reads them all alike).
    const field = (op: Op): DecodeField => ({
      name: f.name, op, elem: opOf(f), bit: r >= 0 && r < 30 ? 1 << r : 0, sub: f.message ? slotOf(f.message()) : undefined,
      values, what: f.enum ? f.enum.name : f.kind,
    });
    const main = field(f.label !== "repeated" ? opOf(f) : f.kind === "uint32" ? Op.RUN_U32 : f.kind === "int32" ? Op.RUN_I32 : Op.PUSH);
    put(tag, main);
    fields.set(f.name, main);
    // Packed encoding: accepted even when the schema says unpacked.
    if (f.label === "repeated" && wire !== 2) put(((f.number << 3) | 2) >>> 0, field(Op.PACKED));
  }
  near.length = Math.min(NEAR, near.length);
  for (let i = 0; i < near.length; i++) near[i] ??= undefined; // no holes
  c.plan = {
    type: c.type, name: c.type.name, near, far, known, required, fields, uses: 0, own: undefined,
    repeated: sorted.filter((f) => f.label === "repeated").map((f) => f.name),
    reqMask: required.length > 30 ? -1 : required.reduce((m, _, i) => m | (1 << i), 0),
  };
  return c.plan;
}

/**
 * After how many messages of a type it gets a decoder of its own
 * (pb-decoder-source.ts): quicker than the shared loop once V8 has compiled
 * it, but making and compiling it takes a millisecond or more, which some
 * ten thousand messages pay back (a long-running service, a huge tree),
 * and a hundred-task restore's few thousand do not.
 */
let specialiseAfter = 10_000;

/** The plans that have a decoder of their own. */
const specialised: DecodePlan[] = [];

/**
 * For the tests: from how many messages of a type on it gets a decoder of
 * its own (0: from the first; Infinity: never). The types that have one
 * already go back to the shared loop.
 */
export function specialiseDecodersAfter(n: number): void {
  specialiseAfter = n;
  for (const p of specialised.splice(0)) {
    p.own = undefined;
    p.uses = 0;
  }
}

function ownDecoder(plan: DecodePlan): DecodeFn {
  specialised.push(plan);
  const src = decoderSource(plan.type);
  const make = new Function("R", "P", "X", decoderFactory(src)) as (r: typeof readers, p: DecodePlan, x: DecodeField[]) => DecodeFn;
  return make(readers, plan, src.messages.map((name) => plan.fields.get(name)!));
}

/** Works out the plans of these types beforehand (crest's startup snapshot holds those of the messages most commands handle). */
export function prepareDecoding(types: Iterable<MessageType<unknown>>): void {
  for (const t of types) planOf(slotOf(t));
}

// ---------------------------------------------------------------------------
// The loop

/** Decodes S.b[S.pos, S.end) as the plan's type into o (a new object when undefined), nested d deep. */
function decodeMessage(plan: DecodePlan, d: number, o: Obj | undefined): Obj {
  if (plan.own !== undefined) return plan.own(d, o);
  if (++plan.uses >= specialiseAfter) return (plan.own = ownDecoder(plan))(d, o);
  const b = S.b, e = S.end, s = S.pos, near = plan.near, n = near.length;
  S.t = plan.name;
  if (o === undefined) {
    o = {};
    const rep = plan.repeated;
    for (let i = 0; i < rep.length; i++) o[rep[i]!] = [];
  }
  // The position is kept here, and handed over in S.pos to what is called.
  let seen = 0, p = s, v = 0;
  while (p < e) {
    const t = p;
    let g = b[p++]!;
    if (g >= 0x80) {
      S.pos = t;
      g = rtag();
      p = S.pos;
    }
    const f = g < n ? near[g] : plan.far.get(g);
    if (f === undefined) {
      S.pos = p;
      other(g, t, d, plan.known);
      p = S.pos;
      continue;
    }
    seen |= f.bit;
    // The commonest kinds, when their value takes one byte, here.
    switch (f.op) {
      case Op.U32:
      case Op.I32:
        if (p < e && (v = b[p]!) < 0x80) {
          o[f.name] = v;
          p++;
          continue;
        }
        break;
      case Op.U64:
      case Op.I64:
        if (p < e && (v = b[p]!) < 0x80) {
          o[f.name] = SMALL[v];
          p++;
          continue;
        }
        break;
      case Op.BOOL:
        if (p < e && (v = b[p]!) < 0x80) {
          o[f.name] = v !== 0;
          p++;
          continue;
        }
        break;
      case Op.ENUM:
        if (p < e && (v = b[p]!) < 0x80 && f.values!.has(v)) {
          o[f.name] = v;
          p++;
          continue;
        }
        break;
    }
    S.pos = p;
    switch (f.op) {
      // A repeated occurrence of a singular message merges into the first one.
      case Op.MSG: o[f.name] = rmsg(d, f.sub!, o[f.name] as Obj | undefined); break;
      case Op.RUN_U32: run32(o[f.name] as number[], g, false); break;
      case Op.RUN_I32: run32(o[f.name] as number[], g, true); break;
      case Op.PUSH: (o[f.name] as unknown[]).push(f.elem === Op.MSG ? rmsg(d, f.sub!, undefined) : read(f.elem, f)); break;
      case Op.PACKED: {
        const r = o[f.name] as unknown[];
        S.end = rlen() + S.pos;
        while (S.pos < S.end) r.push(read(f.elem, f));
        S.end = e;
        break;
      }
      default: o[f.name] = read(f.op, f);
    }
    p = S.pos;
  }
  if (seen !== plan.reqMask) {
    for (const name of plan.required) if (o[name] === undefined) fail(`required field ${name} is missing`, s);
  }
  return o;
}

/** A scalar value of the field's kind (op) at S.pos. */
function read(op: Op, f: DecodeField): unknown {
  switch (op) {
    case Op.U32: return ru32();
    case Op.I32: return ri32();
    case Op.S32: return rs32();
    case Op.BOOL: return rbool();
    case Op.ENUM: return renum(f.name, f.values!, f.what);
    case Op.U64: return ru64();
    case Op.I64: return ri64();
    case Op.S64: return rs64();
    case Op.STR: return rstr(f.name);
    case Op.BYTES: return rbytes();
    default: return rfix(f.what);
  }
}

// ---------------------------------------------------------------------------
// Readers: they read at S.pos of S.b, up to S.end, and leave S.pos after
// what they read (and a varint's high 32 bits in S.hi). Errors name S.t, the
// type being decoded, and give offsets from S.base, where the outermost
// message began.

const S = { b: EMPTY, pos: 0, end: 0, hi: 0, base: 0, t: "" };

/** The uint64 (and int64) values 0-127: no allocation for small values. */
const SMALL: readonly bigint[] = Array.from({ length: 128 }, (_, i) => BigInt(i));

function fail(detail: string, at: number): never {
  throw new ImageFormatError(S.t, detail, at - S.base);
}

/** A varint of up to 10 bytes; returns the low 32 bits. */
function rv(): number {
  const buf = S.b, end = S.end, start = S.pos;
  let pos = start, lo = 0, hi = 0, b: number;
  for (let shift = 0; shift < 28; shift += 7) {
    if (pos >= end) fail("truncated varint", start);
    b = buf[pos++]!;
    lo |= (b & 0x7f) << shift;
    if (b < 0x80) { S.pos = pos; S.hi = 0; return lo >>> 0; }
  }
  if (pos >= end) fail("truncated varint", start);
  b = buf[pos++]!;
  lo |= (b & 0x7f) << 28;
  hi = (b & 0x7f) >>> 4;
  if (b < 0x80) { S.pos = pos; S.hi = hi; return lo >>> 0; }
  for (let shift = 3; shift < 32; shift += 7) {
    if (pos >= end) fail("truncated varint", start);
    b = buf[pos++]!;
    hi |= (b & 0x7f) << shift;
    if (b < 0x80) { S.pos = pos; S.hi = hi >>> 0; return lo >>> 0; }
  }
  return fail("varint longer than 10 bytes", start);
}

/** A field's tag of more than one byte. */
function rtag(): number {
  const at = S.pos;
  const tag = rv();
  if (S.hi !== 0) fail("field tag out of range", at);
  return tag;
}

/** A length prefix, which must fit in what is left. */
function rlen(): number {
  const at = S.pos;
  const n = rv();
  const left = S.end - S.pos;
  if (S.hi !== 0 || n > left) fail(`length ${S.hi === 0 ? n : "> 2^32"} runs past the end (${left} bytes left)`, at);
  return n;
}

function ru32(): number {
  const p = S.pos;
  if (p < S.end && S.b[p]! < 0x80) { S.pos = p + 1; return S.b[p]!; }
  return rv();
}

function ri32(): number {
  const p = S.pos;
  if (p < S.end && S.b[p]! < 0x80) { S.pos = p + 1; return S.b[p]!; }
  return rv() | 0;
}

function rs32(): number {
  const v = rv();
  return ((v >>> 1) ^ -(v & 1)) | 0;
}

function rbool(): boolean {
  const p = S.pos;
  if (p < S.end && S.b[p]! < 0x80) { S.pos = p + 1; return S.b[p] !== 0; }
  return rv() !== 0 || S.hi !== 0;
}

/**
 * A run of unpacked uint32 (or int32) elements of one field: they come one
 * after the other, each with the same tag (as CRIU writes registers), so
 * this reads on while the next bytes are that tag (of one or two bytes).
 */
function run32(r: number[], tag: number, signed: boolean): void {
  const b = S.b, e = S.end, t0 = tag < 0x80 ? tag : (tag & 0x7f) | 0x80, t1 = tag >>> 7, n = tag < 0x80 ? 1 : tag < 0x4000 ? 2 : 0;
  let p = S.pos, x: number;
  for (;;) {
    if (p < e && (x = b[p]!) < 0x80) p++;
    else {
      S.pos = p;
      x = signed ? rv() | 0 : rv();
      p = S.pos;
    }
    r.push(x);
    if (e - p > n && b[p] === t0 && (n === 1 || (n === 2 && b[p + 1] === t1))) p += n;
    else break;
  }
  S.pos = p;
}

function renum(field: string, values: ReadonlySet<number>, name: string): number {
  const at = S.pos;
  const v = ri32();
  if (!values.has(v)) fail(`field ${field}: ${v} is not a value of enum ${name}`, at);
  return v;
}

function ru64(): bigint {
  const p = S.pos;
  if (p < S.end && S.b[p]! < 0x80) { S.pos = p + 1; return SMALL[S.b[p]!]!; }
  const lo = rv(), hi = S.hi;
  if (hi === 0) return BigInt(lo);
  // Below 2^53 a double holds it exactly: one BigInt made instead of three.
  if (hi < 0x200000) return BigInt(hi * TWO32 + lo);
  // 2^64 - 1 (RLIM_INFINITY, -1 in unsigned fields), made once.
  return hi === 0xffffffff && lo === 0xffffffff ? U64_MAX : (BigInt(hi) << 32n) | BigInt(lo);
}

function ri64(): bigint {
  const p = S.pos;
  if (p < S.end && S.b[p]! < 0x80) { S.pos = p + 1; return SMALL[S.b[p]!]!; }
  const lo = rv(), hi = S.hi;
  if (hi < 0x80000000) return hi === 0 ? BigInt(lo) : hi < 0x200000 ? BigInt(hi * TWO32 + lo) : (BigInt(hi) << 32n) | BigInt(lo);
  // Negative: its magnitude, 2^64 - value, is exact in a double down to -2^53.
  const nhi = ~hi >>> 0, nlo = ~lo >>> 0;
  if (nhi < 0x200000) return BigInt(-(nhi * TWO32 + nlo + 1));
  return BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo));
}

function rs64(): bigint {
  const lo = rv(), hi = S.hi;
  if (hi < 0x200000) {
    const u = hi * TWO32 + lo;
    return BigInt(lo & 1 ? -(u + 1) / 2 : u / 2);
  }
  const u = (BigInt(hi) << 32n) | BigInt(lo);
  return (u >> 1n) ^ -(u & 1n);
}

function need(n: number, what: string): void {
  if (S.end - S.pos < n) fail(`truncated ${what}: need ${n} bytes, ${S.end - S.pos} left`, S.pos);
}

/** The fixed-size kinds. */
function rfix(kind: string): number | bigint {
  const n = kind === "fixed64" || kind === "sfixed64" || kind === "double" ? 8 : 4;
  need(n, kind);
  const p = S.pos, b = S.b;
  S.pos = p + n;
  switch (kind) {
    case "fixed32": return b.readUInt32LE(p);
    case "sfixed32": return b.readInt32LE(p);
    case "float": return b.readFloatLE(p);
    case "fixed64": return b.readBigUInt64LE(p);
    case "sfixed64": return b.readBigInt64LE(p);
    default: return b.readDoubleLE(p);
  }
}

function rstr(field: string): string {
  const at = S.pos;
  const n = rlen();
  const s = S.pos, e = s + n, buf = S.b;
  S.pos = e;
  for (let i = s; i < e; i++) {
    if (buf[i]! >= 0x80) {
      try {
        return utf8.decode(buf.subarray(s, e));
      } catch {
        // Refuse rather than silently replace bytes (paths must round-trip exactly).
        return fail(`field ${field}: string is not valid UTF-8`, at);
      }
    }
  }
  return buf.toString("latin1", s, e);
}

function rbytes(): Buffer {
  const n = rlen();
  const s = S.pos;
  S.pos = s + n;
  // A copy: callers may keep it while the source buffer is reused.
  return Buffer.from(S.b.subarray(s, s + n));
}

/** A nested message (into `into`, for a singular one met again), decoded in place. */
function rmsg(depth: number, sub: Slot, into: Obj | undefined): Obj {
  const n = rlen();
  const s = S.pos, end = S.end, t = S.t;
  S.end = s + n;
  if (depth + 1 > MAX_DEPTH) {
    S.t = sub.type.name;
    fail("messages nested too deeply", s);
  }
  const msg = decodeMessage(sub.plan ?? planOf(sub), depth + 1, into);
  S.pos = s + n;
  S.end = end;
  S.t = t;
  return msg;
}

/** A tag of no field (S.pos after it): a known field with the wrong wire type (an error), or an unknown field (skipped). */
function other(tag: number, at: number, depth: number, known: ReadonlyMap<number, readonly [string, number]>): void {
  const num = tag >>> 3, wire = tag & 7;
  if (num === 0) fail("field number 0", at);
  const k = known.get(num);
  if (k !== undefined) fail(`field ${k[0]}: wire type ${wire}, expected ${k[1]}`, at);
  skip(wire, num, depth);
}

function skip(wire: number, num: number, depth: number): void {
  switch (wire) {
    case 0: rv(); return;
    case 1: need(8, "fixed64"); S.pos += 8; return;
    case 5: need(4, "fixed32"); S.pos += 4; return;
    case 2: { const n = rlen(); S.pos += n; return; }
    case 3: {
      if (depth > MAX_DEPTH) fail("groups nested too deeply", S.pos);
      for (;;) {
        const at = S.pos;
        if (at >= S.end) fail(`unterminated group ${num}`, at);
        const tag = rv();
        if (S.hi !== 0) fail("field tag out of range", at);
        const w = tag & 7, n = tag >>> 3;
        if (w === 4) {
          if (n !== num) fail(`group ${num} closed as ${n}`, at);
          return;
        }
        skip(w, n, depth + 1);
      }
    }
    default:
      fail(`invalid wire type ${wire} for field ${num}`, S.pos);
  }
}

/** Fails naming the first of the required fields msg lacks. */
function miss(msg: Obj, start: number, required: readonly string[]): never {
  return fail(`required field ${required.find((f) => msg[f] === undefined)} is missing`, start);
}

/** What the types' own decoders may use (each takes the names it needs). */
const readers = { S, rtag, rlen, ru32, ri32, rs32, rbool, renum, ru64, ri64, rs64, rfix, rstr, rbytes, rmsg, run32, miss, other };

// ---------------------------------------------------------------------------
// Entry points

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Decodes one message. Throws ImageFormatError (with the byte offset) on
 * truncated data, bad wire types, unknown enum values, invalid UTF-8 or a
 * missing required field. Unknown fields are skipped.
 */
export function decode<T>(type: MessageType<T>, bytes: Uint8Array): T {
  const buf = asBuffer(bytes);
  return decodeRange(type, buf, 0, buf.length);
}

/** decode() of buf[start, end) without a view of it; error offsets count from start. */
export function decodeRange<T>(type: MessageType<T>, buf: Buffer, start: number, end: number): T {
  S.b = buf;
  S.pos = S.base = start;
  S.end = end;
  S.t = type.name;
  try {
    const c = slotOf(type);
    return decodeMessage(c.plan ?? planOf(c), 0, undefined) as T;
  } finally {
    S.b = EMPTY; // not kept alive
  }
}

