// The image codec (src/images/pb-*.ts: a decoding loop over per-type plans,
// an encoder per type) against the generic codec it replaced, kept as
// test/pb-reference.ts: the same bytes, the same objects (keys in the same
// order) and the same errors (message, type, offset), on the real images of
// test/fixtures/images and on random and broken messages of every schema.
// Decoding both ways: by the loop all types share, and by the decoders a
// type gets of its own once it has decoded many messages.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as gen from "../../src/images/gen/index.js";
import {
  decode, decodeRange, encode, encodeFramed, encodedSize, encodeWithPrefix, ImageFormatError, message,
  type FieldSpec, type MessageType,
} from "../../src/images/pb.js";
import { IMG, ImageReader, ImageWriter, kindByMagic, type ImageKind } from "../../src/images/index.js";
import { specialiseDecodersAfter } from "../../src/images/pb-decode.js";
import { referenceDecode, referenceEncode, referenceEncodedSize } from "../pb-reference.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const fixtures = join(root, "test", "fixtures", "images");

type Obj = Record<string, unknown>;

/** A test run twice: decoding by the shared loop, then by the types' own decoders. */
function both(name: string, fn: () => void): void {
  for (const [way, after] of [["the shared loop", Infinity], ["own decoders", 0]] as const) {
    test(`${name} (decoding by ${way})`, () => {
      specialiseDecodersAfter(after);
      try {
        fn();
      } finally {
        specialiseDecodersAfter(10_000);
      }
    });
  }
}
const TYPES: MessageType<unknown>[] = (Object.values(gen) as unknown[]).filter(
  (v): v is MessageType<unknown> => typeof v === "object" && v !== null && "fields" in v,
);

/** A value with its keys in order, bigints and bytes spelled out: what "the same object" means here. */
function shape(v: unknown): string {
  if (typeof v === "bigint") return `${v}n`;
  if (Buffer.isBuffer(v)) return `<${v.toString("hex")}>`;
  if (Array.isArray(v)) return `[${v.map(shape).join(",")}]`;
  if (typeof v === "object" && v !== null) return `{${Object.entries(v).map(([k, x]) => `${k}:${shape(x)}`).join(",")}}`;
  return Object.is(v, -0) ? "-0" : JSON.stringify(v) ?? String(v);
}

/** What a call did: its result's shape, or its error. */
function outcome(f: () => unknown): string {
  try {
    const v = f();
    return `ok ${Buffer.isBuffer(v) ? `<${v.toString("hex")}>` : shape(v)}`;
  } catch (e) {
    if (!(e instanceof ImageFormatError)) return `THREW ${String(e)}`;
    return `error ${e.type} @${e.offset} ${e.message}`;
  }
}

function sameDecode(type: MessageType<unknown>, bytes: Buffer, what: string): void {
  assert.equal(outcome(() => decode(type, bytes)), outcome(() => referenceDecode(type, bytes)), what);
}

// ---------------------------------------------------------------------------
// Random messages of every schema

let seed = 20260101;
const rnd = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0);
const pick = <T>(xs: readonly T[]): T => xs[rnd() % xs.length]!;
const u32s = [0, 1, 127, 128, 255, 300, 16383, 16384, 0x7fffffff, 0x80000000, 0xffffffff];
const i32s = [0, 1, -1, 127, -128, 0x7fffffff, -0x80000000, -300];
const u64s = [0n, 1n, 127n, 128n, 1n << 32n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, 1n << 63n, (1n << 64n) - 1n];
const i64s = [0n, 1n, -1n, -128n, (1n << 53n) + 1n, -(1n << 53n), -(1n << 53n) - 1n, (1n << 63n) - 1n, -(1n << 63n)];
const r64 = () => (BigInt(rnd()) << 32n) | BigInt(rnd());

function randomValue(f: FieldSpec, depth: number): unknown {
  const any = rnd() & 1;
  switch (f.kind) {
    case "uint32": case "fixed32": return any ? rnd() : pick(u32s);
    case "int32": case "sint32": case "sfixed32": return any ? rnd() | 0 : pick(i32s);
    case "uint64": case "fixed64": return any ? r64() : pick(u64s);
    case "int64": case "sint64": case "sfixed64": return any ? BigInt.asIntN(64, r64()) : pick(i64s);
    case "bool": return any === 1;
    case "double": return pick([0, -1.5, 1e300, Number.MIN_VALUE, rnd() / 7]);
    case "float": return Math.fround(pick([0, -2, 3.25, rnd() / 9]));
    case "enum": return pick(Object.values(f.enum!.values));
    case "string": return pick(["", "a", "/proc/self/fd", "é€😀", "x".repeat(200), String.fromCharCode(0, 127, 128, 0x7ff)]);
    case "bytes": return Buffer.from(Array.from({ length: pick([0, 1, 5, 130]) }, () => rnd() & 0xff));
    case "message": return randomMessage(f.message!(), depth + 1);
  }
}

function randomMessage(type: MessageType<unknown>, depth = 0): Obj {
  const m: Obj = {};
  for (const f of type.fields) {
    if (f.label === "repeated") {
      const n = f.kind === "message" ? (depth > 2 ? 0 : rnd() % 3) : pick([0, 1, 3, 40]);
      m[f.name] = Array.from({ length: n }, () => randomValue(f, depth));
    } else if (f.label === "required" || (rnd() & 1 && !(f.kind === "message" && depth > 2))) {
      m[f.name] = randomValue(f, depth);
    }
  }
  return m;
}

both("random messages of every schema: the same bytes as the generic codec, and back the same objects", () => {
  assert.ok(TYPES.length > 100, `${TYPES.length} schemas`);
  for (const type of TYPES) {
    for (let i = 0; i < 25; i++) {
      const m = randomMessage(type);
      const bytes = encode(type, m);
      const ref = referenceEncode(type, m);
      assert.ok(bytes.equals(ref), `${type.name}: ${bytes.toString("hex")} != ${ref.toString("hex")}`);
      assert.equal(encodedSize(type, m), referenceEncodedSize(type, m), type.name);
      const back = decode(type, bytes);
      assert.equal(shape(back), shape(referenceDecode(type, bytes)), type.name);
      assert.deepEqual(back, m, type.name);
    }
  }
});

both("packed runs of every repeated scalar field: encoded as the generic codec does, and read back from both encodings", () => {
  let fields = 0;
  for (const type of TYPES) {
    for (const f of type.fields) {
      if (f.label !== "repeated" || f.kind === "message" || f.kind === "string" || f.kind === "bytes") continue;
      fields++;
      // The same schema with this field packed (or unpacked, where it is packed).
      const flipped = message<unknown>(`${type.name}.flipped`, type.fields.map((g) => (g === f ? { ...g, packed: !g.packed } : g)));
      for (let i = 0; i < 5; i++) {
        const m = randomMessage(type);
        m[f.name] = Array.from({ length: pick([1, 2, 200]) }, () => randomValue(f, 0));
        const asIs = encode(type, m as never), other = encode(flipped, m as never);
        assert.ok(other.equals(referenceEncode(flipped, m as never)), `${type.name}.${f.name}`);
        assert.ok(!asIs.equals(other));
        for (const b of [asIs, other, Buffer.concat([asIs, other])]) sameDecode(type, b, `${type.name}.${f.name}`);
        assert.equal(shape(decode(type, other)), shape(decode(type, asIs)), `${type.name}.${f.name}`);
      }
    }
  }
  assert.ok(fields > 30, `${fields} repeated scalar fields`);
});

both("broken input to every schema: the same objects or the same errors, at the same offsets", () => {
  const unknown = Buffer.from("f8ff019601" + "f9ff010102030405060708" + "faff0103616263" + "fdff0101020304", "hex");
  for (const type of TYPES) {
    for (let i = 0; i < 3; i++) {
      const full = encode(type, randomMessage(type));
      // truncations (every one of the first 64 bytes, then a sample)
      for (let n = 0; n < full.length; n += n < 64 ? 1 : 1 + (rnd() % 61)) sameDecode(type, full.subarray(0, n), `${type.name} cut at ${n}`);
      // random bytes changed
      for (let k = 0; k < 20 && full.length; k++) {
        const b = Buffer.from(full);
        b[rnd() % b.length] = pick([0, 0x80, 0xff, 0x07, 0x0a, 0x12, rnd() & 0xff]);
        sameDecode(type, b, `${type.name} ${b.toString("hex")}`);
      }
      // unknown fields of every wire type, before, between and after
      const mid = full.length >> 1;
      sameDecode(type, Buffer.concat([unknown, full.subarray(0, mid), unknown]), type.name);
      sameDecode(type, Buffer.concat([unknown, full, unknown]), type.name);
      assert.equal(shape(decode(type, Buffer.concat([unknown, full, unknown]))), shape(decode(type, full)), type.name);
    }
    // garbage
    for (let k = 0; k < 40; k++) sameDecode(type, Buffer.from(Array.from({ length: 1 + (k % 24) }, () => rnd() & 0xff)), type.name);
  }
});

test("bad values for every field of every schema: the same encode errors", () => {
  const bad: Record<string, unknown[]> = {
    number: ["1", 1n, 1.5, NaN, -1, 2 ** 32, true, {}],
    bigint: [1, "1", -1n, 1n << 64n, -(1n << 63n) - 1n],
    bool: [1, "true", null],
    string: [1, Buffer.from("a")],
    bytes: ["abc", [1, 2]],
    message: [1, "x", [], null],
  };
  const kindOf = (f: FieldSpec) =>
    f.kind === "bool" || f.kind === "string" || f.kind === "bytes" || f.kind === "message" ? f.kind
      : /64/.test(f.kind) ? "bigint" : "number";
  for (const type of TYPES) {
    const good = randomMessage(type);
    for (const f of type.fields) {
      const values = [...bad[kindOf(f)]!, undefined, null];
      for (const v of values) {
        const m = { ...good, [f.name]: f.label === "repeated" ? [randomValue(f, 0), v] : v };
        assert.equal(outcome(() => encode(type, m as never)), outcome(() => referenceEncode(type, m as never)), `${type.name}.${f.name} = ${String(v)}`);
      }
      if (f.label === "repeated") {
        const m = { ...good, [f.name]: 5 };
        assert.equal(outcome(() => encode(type, m as never)), outcome(() => referenceEncode(type, m as never)), `${type.name}.${f.name}`);
      }
    }
  }
});

// ---------------------------------------------------------------------------
// Real images

/** The entries of an image file made only of entries (pagemaps: a head, then entries), as raw messages. */
function entries(bytes: Buffer, kind: ImageKind<unknown, never>): Array<[MessageType<unknown>, Buffer]> {
  const out: Array<[MessageType<unknown>, Buffer]> = [];
  let pos = kind.header === "inventory" ? 4 : 8;
  while (pos < bytes.length) {
    const len = bytes.readUInt32LE(pos);
    const type = kind.name.endsWith("PAGEMAP") && out.length > 0 ? gen.pagemap_entry : kind.type!;
    out.push([type as MessageType<unknown>, bytes.subarray(pos + 4, pos + 4 + len)]);
    pos += 4 + len;
  }
  return out;
}

const WITH_PAYLOADS = new Set(["GHOST_FILE", "PIPES_DATA", "FIFO_DATA", "SK_QUEUES", "TCP_STREAM", "IPCNS_SHM", "IPCNS_SEM", "IPCNS_MSG"]);

both("real images: every entry decodes as with the generic codec and encodes back to the same bytes; every file reads and writes back byte for byte", () => {
  const seen = new Set<string>();
  let files = 0;
  for (const dir of readdirSync(fixtures, { withFileTypes: true }).filter((d) => d.isDirectory())) {
    for (const name of readdirSync(join(fixtures, dir.name))) {
      const path = join(fixtures, dir.name, name);
      const bytes = readFileSync(path);
      let kind = kindByMagic(bytes.readUInt32LE(0), bytes.readUInt32LE(4));
      assert.ok(kind, `${path}: unknown image`);
      if (name.startsWith("pagemap-shmem")) kind = IMG.shmemPagemap as ImageKind<unknown, never>;
      files++;
      if (!WITH_PAYLOADS.has(kind.name)) {
        for (const [type, msg] of entries(bytes, kind)) {
          const obj = decode(type, msg);
          assert.equal(shape(obj), shape(referenceDecode(type, msg)), path);
          assert.ok(encode(type, obj as never).equals(msg), `${path}: ${type.name} re-encodes differently`);
          assert.ok(referenceEncode(type, obj as never).equals(msg), path);
          for (const t of typesIn(type, obj)) seen.add(t);
        }
      }
      // The whole file, payloads and all, through the image layer.
      const r = new ImageReader(path, kind);
      let value: unknown;
      try {
        value = kind.read(r);
      } finally {
        r.close();
      }
      const chunks: Buffer[] = [];
      const w = new ImageWriter(path, kind as ImageKind<unknown, unknown>, {
        write: (d) => void chunks.push(Buffer.from(d)), close: () => {}, discard: () => {},
      });
      (kind as ImageKind<unknown, unknown>).write(w, value);
      w.close();
      assert.ok(Buffer.concat(chunks).equals(bytes), `${path} writes back differently`);
    }
  }
  assert.ok(files > 250, `${files} files`);
  for (const t of ["core_entry", "user_x86_xsave_entry", "task_core_entry", "sa_entry", "mm_entry", "vma_entry", "pagemap_entry",
    "fdinfo_entry", "file_entry", "reg_file_entry", "unix_sk_entry", "pstree_entry", "task_kobj_ids_entry", "fs_entry",
    "inventory_entry", "tty_info_entry", "posix_timer_entry", "netlink_sk_entry", "eventpoll_tfd_entry"]) {
    assert.ok(seen.has(t), `the fixtures hold no ${t}`);
  }
});

/** The types of a decoded message and of the messages in it. */
function typesIn(type: MessageType<unknown>, obj: unknown, out = new Set<string>()): Set<string> {
  out.add(type.name);
  for (const f of type.fields) {
    if (f.kind !== "message") continue;
    const v = (obj as Obj)[f.name];
    for (const x of f.label === "repeated" ? (v as unknown[]) : v === undefined ? [] : [v]) typesIn(f.message!(), x, out);
  }
  return out;
}

both("every kind at the edges of its values, singular, repeated and packed: read as the generic codec reads them", () => {
  const Small = { A: 0, B: 1, C: 127, D: 128, N: -1 } as const;
  const kinds = ["uint32", "int32", "sint32", "bool", "enum", "uint64", "int64", "sint64", "fixed32", "sfixed32", "float", "fixed64", "sfixed64", "double"] as const;
  // Varints of every length and value class, fixed-size values, and cut ones.
  const varints = ["00", "01", "02", "05", "7f", "8001", "ff7f", "808001", "ffffffff07", "ffffffff0f", "8080808010", "ffffffffffffffff7f",
    "ffffffffffffffffff01", "80808080808080808001", "ffffffffffffffffffff01", "80", "ff", ""];
  const fixed = ["", "01", "0102", "01020304", "0000803f", "ffffffff", "0102030405060708", "000000000000f03f", "ffffffffffffffff"];
  for (const kind of kinds) {
    const spec = (name: string, number: number, label: "optional" | "repeated", packed?: boolean): FieldSpec => ({
      name, number, label, kind: kind === "enum" ? "enum" : kind, ...(kind === "enum" ? { enum: { name: "small", values: Small } } : {}),
      ...(packed ? { packed } : {}),
    });
    const T = message<unknown>(`edge_${kind}`, [spec("one", 1, "optional"), spec("many", 2, "repeated"), spec("packed", 3, "repeated", true)]);
    const wire = /fixed64|double/.test(kind) ? 1 : /fixed32|float/.test(kind) ? 5 : 0;
    for (const v of wire === 0 ? varints : fixed) {
      for (const field of [1, 2, 3]) {
        const tag = ((field << 3) | wire).toString(16).padStart(2, "0");
        const packed = ((field << 3) | 2).toString(16).padStart(2, "0");
        const len = (v.length / 2).toString(16).padStart(2, "0");
        for (const hex of [tag + v, tag + v + tag + v, tag + v + "0801", packed + len + v, packed + len + v + v, packed + "01" + v]) {
          sameDecode(T, Buffer.from(hex, "hex"), `${kind}: ${hex}`);
        }
      }
    }
  }
});

// ---------------------------------------------------------------------------
// What the new codec does that the old one did not have to

interface Blob { data?: Buffer; kids: Blob[]; n?: number }
const Blob: MessageType<Blob> = message<Blob>("blob", [
  { name: "data", number: 1, label: "optional", kind: "bytes" },
  { name: "kids", number: 2, label: "repeated", kind: "message", message: () => Blob },
  { name: "n", number: 3, label: "optional", kind: "uint32" },
]);

both("nested messages whose length takes 2, 3 and 4 bytes, and messages larger than the scratch buffer", () => {
  for (const size of [127, 128, 16383, 16384, 70_000, 1_500_000, 2_097_140, 2_100_000, 3 << 20]) {
    const m: Blob = { kids: [{ data: Buffer.alloc(size, 7), kids: [{ kids: [], n: 1 }], n: 5 }, { kids: [], n: 2 }], n: 9 };
    const bytes = encode(Blob, m);
    assert.ok(bytes.equals(referenceEncode(Blob, m)), String(size));
    assert.deepEqual(decode(Blob, bytes), m);
    // after a huge one, small ones still come out right
    assert.ok(encode(Blob, { kids: [], n: 3 }).equals(Buffer.from("1803", "hex")));
  }
});

both("encodeFramed and encodeWithPrefix frame the same bytes; decodeRange counts offsets from where the message starts", () => {
  const m = { kids: [{ kids: [], n: 300 }], n: 1, data: Buffer.from("hi") };
  const plain = encode(Blob, m);
  const framed = Buffer.from(encodeFramed(Blob, m));
  assert.equal(framed.readUInt32LE(0), plain.length);
  assert.ok(framed.subarray(4).equals(plain));
  assert.ok(encodeWithPrefix(Blob, m, 3).subarray(3).equals(plain));
  const buf = Buffer.concat([Buffer.from("ffff", "hex"), plain, Buffer.from("ff", "hex")]);
  assert.deepEqual(decodeRange(Blob, buf, 2, 2 + plain.length), decode(Blob, plain));
  const cut = Buffer.concat([Buffer.from("ffff", "hex"), plain.subarray(0, 5)]);
  assert.equal(outcome(() => decodeRange(Blob, cut, 2, cut.length)), outcome(() => referenceDecode(Blob, plain.subarray(0, 5))));
});

test("decoded bytes are copies, not views of the input", () => {
  const input = encode(Blob, { kids: [], data: Buffer.from("abc") });
  const out = decode(Blob, input);
  input.fill(0);
  assert.equal(out.data!.toString(), "abc");
});

test("an encode from a getter of a message being encoded gets a buffer of its own", () => {
  const inner = { kids: [], n: 7 };
  let nested: Buffer | undefined;
  const m = {
    kids: [inner],
    get n() {
      nested = encode(Blob, { kids: [{ kids: [], data: Buffer.alloc(200, 1) }], n: 1 });
      return 42;
    },
  };
  const bytes = encode(Blob, m as unknown as Blob);
  assert.ok(bytes.equals(referenceEncode(Blob, { kids: [inner], n: 42 })));
  assert.ok(nested!.equals(referenceEncode(Blob, { kids: [{ kids: [], data: Buffer.alloc(200, 1) }], n: 1 })));
});

both("negative int32 and enum values take 10 bytes both ways; over-long varints read as the generic codec reads them", () => {
  const lock = { flag: 1, type: 2, pid: -2147483648, fd: -7, start: -1n, len: 0n };
  const neg = encode(gen.file_lock_entry, lock);
  assert.ok(neg.equals(referenceEncode(gen.file_lock_entry, lock)));
  assert.equal(neg.length, 2 + 2 + 11 + 11 + 11 + 2);
  assert.deepEqual(decode(gen.file_lock_entry, neg), lock);
  const Sign = { NEG: -2, ZERO: 0, BIG: 0x7fffffff } as const;
  const E = message<{ e?: number; r: number[] }>("signed_enum", [
    { name: "e", number: 1, label: "optional", kind: "enum", enum: { name: "sign", values: Sign } },
    { name: "r", number: 2, label: "repeated", kind: "enum", enum: { name: "sign", values: Sign } },
  ]);
  for (const m of [{ e: -2, r: [-2, 0, 0x7fffffff] }, { r: [] }, { e: 0x7fffffff, r: [0] }]) {
    const b = encode(E, m);
    assert.ok(b.equals(referenceEncode(E, m)));
    assert.deepEqual(decode(E, b), m);
  }
  assert.equal(encode(E, { e: -2, r: [] }).toString("hex"), "08feffffffffffffffff01");
  // uint32 fields holding sign-extended values, an enum of 2^32 (0 in its low bits), a bool over five bytes
  const t = gen.fdinfo_entry as MessageType<unknown>;
  for (const hex of ["08ffffffffffffffffff01" + "1002" + "188080808010" + "2003", "0801" + "1002" + "18ffffffffffffffffff01" + "2003", "08011002180120032a00"]) {
    sameDecode(t, Buffer.from(hex, "hex"), hex);
  }
  sameDecode(gen.pagemap_entry as MessageType<unknown>, Buffer.from("0801" + "1002" + "18" + "8080808010", "hex"), "bool");
});

test("a type gets its own decoder after many messages; the messages before and after are the same objects", () => {
  specialiseDecodersAfter(1000);
  const m = { kids: [{ kids: [], n: 1, data: Buffer.from("x") }], n: 5 };
  const bytes = encode(Blob, m);
  const first = shape(decode(Blob, bytes));
  // Which decoder ran shows in the stack of an error.
  const stack = () => {
    try {
      decode(Blob, bytes.subarray(0, 3));
    } catch (e) {
      return (e as Error).stack!;
    }
    return assert.fail("no error");
  };
  assert.doesNotMatch(stack(), /decode_blob/);
  for (let i = 0; i < 2000; i++) assert.equal(shape(decode(Blob, bytes)), first);
  assert.match(stack(), /decode_blob/);
  assert.equal(first, shape(referenceDecode(Blob, bytes)));
  specialiseDecodersAfter(10_000);
});
