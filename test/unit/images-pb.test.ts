// The protobuf wire codec (src/images/pb.ts): exact encodings of edge values,
// packed/unpacked repeated fields, unknown fields, and every decode/encode
// error path.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decode, encode, encodedSize, enumOf, ImageFormatError, message, type MessageType } from "../../src/images/pb.js";
import { core_entry, user_desc_t, vma_entry, file_lock_entry, cgroup_dir_entry, pstree_entry } from "../../src/images/gen/index.js";

const Color = { RED: 0, GREEN: 1, NEG: -2 } as const;
type Color = (typeof Color)[keyof typeof Color];

interface Inner { x: number; y?: string }
const Inner: MessageType<Inner> = message<Inner>("inner", [
  { name: "x", number: 1, label: "required", kind: "uint32" },
  { name: "y", number: 2, label: "optional", kind: "string" },
]);

interface All {
  u32?: number; i32?: number; s32?: number; u64?: bigint; i64?: bigint; s64?: bigint;
  f32?: number; sf32?: number; f64?: bigint; sf64?: bigint; b?: boolean; s?: string; by?: Buffer;
  e?: Color; d?: number; fl?: number;
  ru32: number[]; rs64: bigint[]; rf64: bigint[]; rb: boolean[]; re: Color[]; rstr: string[]; rmsg: Inner[];
  pu32: number[]; inner?: Inner;
}
const All: MessageType<All> = message<All>("all_kinds", [
  { name: "u32", number: 1, label: "optional", kind: "uint32" },
  { name: "i32", number: 2, label: "optional", kind: "int32" },
  { name: "s32", number: 3, label: "optional", kind: "sint32" },
  { name: "u64", number: 4, label: "optional", kind: "uint64" },
  { name: "i64", number: 5, label: "optional", kind: "int64" },
  { name: "s64", number: 6, label: "optional", kind: "sint64" },
  { name: "f32", number: 7, label: "optional", kind: "fixed32" },
  { name: "sf32", number: 8, label: "optional", kind: "sfixed32" },
  { name: "f64", number: 9, label: "optional", kind: "fixed64" },
  { name: "sf64", number: 10, label: "optional", kind: "sfixed64" },
  { name: "b", number: 11, label: "optional", kind: "bool" },
  { name: "s", number: 12, label: "optional", kind: "string" },
  { name: "by", number: 13, label: "optional", kind: "bytes" },
  { name: "e", number: 14, label: "optional", kind: "enum", enum: enumOf("color", Color) },
  { name: "d", number: 15, label: "optional", kind: "double" },
  { name: "fl", number: 16, label: "optional", kind: "float" },
  { name: "ru32", number: 20, label: "repeated", kind: "uint32" },
  { name: "rs64", number: 21, label: "repeated", kind: "sint64" },
  { name: "rf64", number: 22, label: "repeated", kind: "fixed64" },
  { name: "rb", number: 23, label: "repeated", kind: "bool" },
  { name: "re", number: 24, label: "repeated", kind: "enum", enum: enumOf("color", Color) },
  { name: "rstr", number: 25, label: "repeated", kind: "string" },
  { name: "rmsg", number: 26, label: "repeated", kind: "message", message: () => Inner },
  { name: "pu32", number: 27, label: "repeated", kind: "uint32", packed: true },
  { name: "inner", number: 30, label: "optional", kind: "message", message: () => Inner },
]);

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const bytes = (h: string) => Buffer.from(h.replace(/\s+/g, ""), "hex");
const empty = (): All => ({ ru32: [], rs64: [], rf64: [], rb: [], re: [], rstr: [], rmsg: [], pu32: [] });

function formatError(re: RegExp, type?: string) {
  return (e: unknown) => {
    assert.ok(e instanceof ImageFormatError, `expected ImageFormatError, got ${String(e)}`);
    assert.match(e.message, re);
    if (type !== undefined) assert.equal(e.type, type);
    return true;
  };
}

// [field values, expected hex] -- hand-computed wire bytes.
const EXACT: [Partial<All>, string][] = [
  [{ u32: 0 }, "08 00"],
  [{ u32: 127 }, "08 7f"],
  [{ u32: 128 }, "08 80 01"],
  [{ u32: 0xffffffff }, "08 ff ff ff ff 0f"],
  [{ i32: -1 }, "10 ff ff ff ff ff ff ff ff ff 01"],
  [{ i32: -0x80000000 }, "10 80 80 80 80 f8 ff ff ff ff 01"],
  [{ i32: 0x7fffffff }, "10 ff ff ff ff 07"],
  [{ s32: 0 }, "18 00"],
  [{ s32: -1 }, "18 01"],
  [{ s32: 1 }, "18 02"],
  [{ s32: -0x80000000 }, "18 ff ff ff ff 0f"],
  [{ s32: 0x7fffffff }, "18 fe ff ff ff 0f"],
  [{ u64: 0n }, "20 00"],
  [{ u64: 1n << 32n }, "20 80 80 80 80 10"],
  [{ u64: 1n << 63n }, "20 80 80 80 80 80 80 80 80 80 01"],
  [{ u64: (1n << 64n) - 1n }, "20 ff ff ff ff ff ff ff ff ff 01"],
  [{ i64: -1n }, "28 ff ff ff ff ff ff ff ff ff 01"],
  [{ i64: -(1n << 63n) }, "28 80 80 80 80 80 80 80 80 80 01"],
  [{ i64: (1n << 63n) - 1n }, "28 ff ff ff ff ff ff ff ff 7f"],
  [{ s64: -1n }, "30 01"],
  [{ s64: -(1n << 63n) }, "30 ff ff ff ff ff ff ff ff ff 01"],
  [{ s64: (1n << 63n) - 1n }, "30 fe ff ff ff ff ff ff ff ff 01"],
  [{ f32: 0xdeadbeef }, "3d ef be ad de"],
  [{ sf32: -2 }, "45 fe ff ff ff"],
  [{ f64: (1n << 64n) - 1n }, "49 ff ff ff ff ff ff ff ff"],
  [{ sf64: -(1n << 63n) }, "51 00 00 00 00 00 00 00 80"],
  [{ b: false }, "58 00"],
  [{ b: true }, "58 01"],
  [{ s: "" }, "62 00"],
  [{ s: "é€" }, "62 05 c3 a9 e2 82 ac"],
  [{ by: Buffer.from([0, 1, 255]) }, "6a 03 00 01 ff"],
  [{ e: Color.NEG }, "70 fe ff ff ff ff ff ff ff ff 01"],
  [{ d: 1.5 }, "79 00 00 00 00 00 00 f8 3f"],
  [{ fl: -2 }, "85 01 00 00 00 c0"],
  [{ ru32: [1, 300] }, "a0 01 01 a0 01 ac 02"],
  [{ rb: [true, false] }, "b8 01 01 b8 01 00"],
  [{ rstr: ["a", ""] }, "ca 01 01 61 ca 01 00"],
  [{ rmsg: [{ x: 1 }, { x: 2, y: "z" }] }, "d2 01 02 08 01 d2 01 05 08 02 12 01 7a"],
  [{ pu32: [1, 300, 0] }, "da 01 04 01 ac 02 00"],
  [{ inner: { x: 5 } }, "f2 01 02 08 05"],
];

test("edge values encode to the exact wire bytes and decode back", () => {
  for (const [fields, expected] of EXACT) {
    const msg = { ...empty(), ...fields } as All;
    const got = encode(All, msg);
    assert.equal(hex(got), expected.replace(/ /g, ""), JSON.stringify(fields, (_k, v) => (typeof v === "bigint" ? `${v}n` : v)));
    assert.equal(encodedSize(All, msg), got.length);
    assert.deepEqual(decode(All, got), msg);
  }
});

test("fields are written in field-number order, not declaration order", () => {
  // As protoc-generated encoders do, so our bytes equal CRIU's.
  const Rev = message<{ a?: number; b?: number }>("rev", [
    { name: "b", number: 2, label: "optional", kind: "uint32" },
    { name: "a", number: 1, label: "optional", kind: "uint32" },
  ]);
  assert.equal(hex(encode(Rev, { b: 2, a: 1 })), "08011002");
});

test("32-bit fields read from over-long varints keep the low 32 bits", () => {
  // A uint32 field holding a sign-extended -1 (10 bytes), as some writers do.
  assert.equal(decode(All, bytes("08 ff ff ff ff ff ff ff ff ff 01")).u32, 0xffffffff);
  assert.equal(decode(All, bytes("10 ff ff ff ff 0f")).i32, -1);
  assert.equal(decode(All, bytes("58 80 80 80 80 10")).b, true); // bool: any non-zero
});

test("repeated scalars decode from both packed and unpacked encodings, even mixed", () => {
  const unpacked = bytes("a0 01 01 a0 01 ac 02");
  const packed = bytes("a2 01 03 01 ac 02");
  assert.deepEqual(decode(All, unpacked).ru32, [1, 300]);
  assert.deepEqual(decode(All, packed).ru32, [1, 300]);
  assert.deepEqual(decode(All, Buffer.concat([packed, unpacked])).ru32, [1, 300, 1, 300]);
  // sint64, fixed64, bool, enum packed
  assert.deepEqual(decode(All, bytes("aa 01 02 01 02")).rs64, [-1n, 1n]);
  assert.deepEqual(decode(All, bytes("b2 01 10 01 00 00 00 00 00 00 00 ff ff ff ff ff ff ff ff")).rf64, [1n, (1n << 64n) - 1n]);
  assert.deepEqual(decode(All, bytes("ba 01 02 01 00")).rb, [true, false]);
  assert.deepEqual(decode(All, bytes("c2 01 0b 01 fe ff ff ff ff ff ff ff ff 01")).re, [Color.GREEN, Color.NEG]);
  // a field declared packed still accepts unpacked input
  assert.deepEqual(decode(All, bytes("d8 01 07 d8 01 08")).pu32, [7, 8]);
  // empty packed run
  assert.deepEqual(decode(All, bytes("a2 01 00")).ru32, []);
});

test("repeated fields are arrays after decode even when absent", () => {
  const m = decode(All, Buffer.alloc(0));
  assert.deepEqual(m, empty());
  const p = decode(pstree_entry, encode(pstree_entry, { pid: 1, ppid: 0, pgid: 1, sid: 1 }));
  assert.deepEqual(p.threads, []);
});

test("unknown fields of every wire type are skipped", () => {
  const known = encode(All, { ...empty(), u32: 7, s: "ok" });
  const unknown = bytes(
    "f8 07 96 01" + // field 127 varint
      "f9 07 01 02 03 04 05 06 07 08" + // field 127 fixed64
      "fa 07 03 61 62 63" + // field 127 length-delimited
      "fd 07 01 02 03 04" + // field 127 fixed32
      "fb 07 f8 07 01 fb 07 fc 07 fc 07", // field 127 group containing a varint and a nested group
  );
  const m = decode(All, Buffer.concat([unknown, known, unknown]));
  assert.equal(m.u32, 7);
  assert.equal(m.s, "ok");
});

test("a singular message that occurs twice is merged", () => {
  const m = decode(All, bytes("f2 01 02 08 05 f2 01 03 12 01 71"));
  assert.deepEqual(m.inner, { x: 5, y: "q" });
});

test("missing required fields are errors, naming the message and field", () => {
  assert.throws(() => decode(Inner, bytes("12 01 61")), formatError(/inner at byte 0: required field x is missing/, "inner"));
  // nested: the offset points at the nested message's start
  assert.throws(() => decode(All, bytes("08 01 f2 01 00")), formatError(/inner at byte 5: required field x is missing/, "inner"));
  assert.throws(() => encode(Inner, { y: "a" } as unknown as Inner), formatError(/inner: required field x is missing/));
  assert.throws(
    () => encode(All, { inner: {} } as unknown as All),
    formatError(/inner: required field x is missing/),
  );
  assert.throws(
    () => encode(core_entry, { mtype: 1, tc: { exit_code: 0 } } as never),
    formatError(/task_core_entry: required field task_state is missing/),
  );
});

test("every proper prefix of a message ending in a required field fails to decode", () => {
  const full = encode(user_desc_t, {
    entry_number: 12, base_addr: 0x7fff0000, limit: 0xfffff, seg_32bit: true, contents_h: false,
    contents_l: false, read_exec_only: true, limit_in_pages: true, seg_not_present: true, usable: true,
  });
  for (let n = 0; n < full.length; n++) {
    assert.throws(() => decode(user_desc_t, full.subarray(0, n)), ImageFormatError, `prefix of ${n} bytes`);
  }
  assert.equal(decode(user_desc_t, full).base_addr, 0x7fff0000);
});

test("truncated and garbage input give ImageFormatError with offsets", () => {
  assert.throws(() => decode(All, bytes("08")), formatError(/all_kinds at byte 1: truncated varint/));
  assert.throws(() => decode(All, bytes("08 80 80")), formatError(/truncated varint/));
  assert.throws(() => decode(All, bytes("3d 01 02")), formatError(/truncated fixed32/));
  assert.throws(() => decode(All, bytes("49 01 02 03")), formatError(/truncated fixed64/));
  assert.throws(() => decode(All, bytes("62 05 61 62")), formatError(/all_kinds at byte 1: length 5 runs past the end \(2 bytes left\)/));
  assert.throws(() => decode(All, bytes("62 ff ff ff ff ff ff ff ff ff 01")), formatError(/length > 2\^32 runs past the end/));
  assert.throws(() => decode(All, bytes("08 ff ff ff ff ff ff ff ff ff ff 01")), formatError(/varint longer than 10 bytes/));
  assert.throws(() => decode(All, bytes("a6 06 00")), formatError(/invalid wire type 6 for field 100/));
  assert.throws(() => decode(All, bytes("a7 06 00")), formatError(/invalid wire type 7 for field 100/));
  assert.throws(() => decode(All, bytes("0e 00")), formatError(/field u32: wire type 6, expected 0/));
  assert.throws(() => decode(All, bytes("00 00")), formatError(/field number 0/));
  assert.throws(() => decode(All, bytes("fc 07")), formatError(/invalid wire type 4/)); // stray end-group
  assert.throws(() => decode(All, bytes("fb 07 08 01")), formatError(/unterminated group 127/));
  assert.throws(() => decode(All, bytes("fb 07 84 08")), formatError(/group 127 closed as 128/));
  // known field, wrong wire type
  assert.throws(() => decode(All, bytes("0d 00 00 00 00")), formatError(/all_kinds at byte 0: field u32: wire type 5, expected 0/));
  assert.throws(() => decode(All, bytes("f0 01 05")), formatError(/field inner: wire type 0, expected 2/));
  assert.throws(() => decode(All, bytes("d0 01 05")), formatError(/field rmsg: wire type 0, expected 2/));
  // unknown enum value
  assert.throws(() => decode(All, bytes("70 07")), formatError(/field e: 7 is not a value of enum color/));
  // invalid UTF-8 in a string is refused, not replaced
  assert.throws(() => decode(All, bytes("62 02 c3 28")), formatError(/field s: string is not valid UTF-8/));
  // a packed run whose last element is cut
  assert.throws(() => decode(All, bytes("a2 01 02 01 ac")), formatError(/truncated varint/));
  // random garbage never escapes as anything but ImageFormatError
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
  for (let i = 0; i < 2000; i++) {
    const junk = Buffer.from(Array.from({ length: 1 + (i % 40) }, rnd));
    try {
      decode(All, junk);
      decode(core_entry, junk);
    } catch (e) {
      assert.ok(e instanceof ImageFormatError, `garbage ${hex(junk)} threw ${String(e)}`);
    }
  }
});

test("deeply recursive input is refused, not a stack overflow", () => {
  // cgroup_dir_entry.children nests itself: build 200 levels.
  let b: Buffer = encode(cgroup_dir_entry, { dir_name: "x" });
  for (let i = 0; i < 200; i++) b = Buffer.concat([bytes("0a 01 78 12"), lengthPrefix(b)]);
  assert.throws(() => decode(cgroup_dir_entry, b), formatError(/nested too deeply/));
});

function lengthPrefix(b: Buffer): Buffer {
  const len: number[] = [];
  let n = b.length;
  while (n > 0x7f) { len.push((n & 0x7f) | 0x80); n >>>= 7; }
  len.push(n);
  return Buffer.concat([Buffer.from(len), b]);
}

test("encode validates types and ranges, naming the field", () => {
  const bad: [Partial<Record<keyof All, unknown>>, RegExp][] = [
    [{ u32: -1 }, /field u32: expected uint32, got -1/],
    [{ u32: 2 ** 32 }, /field u32: expected uint32/],
    [{ u32: 1.5 }, /field u32: expected uint32/],
    [{ i32: 2 ** 31 }, /field i32: expected int32/],
    [{ u64: 5 }, /field u64: expected uint64 \(bigint\), got 5/],
    [{ u64: -1n }, /field u64: expected uint64 \(bigint\), got -1n/],
    [{ u64: 1n << 64n }, /field u64/],
    [{ i64: 1n << 63n }, /field i64/],
    [{ b: 1 }, /field b: expected boolean/],
    [{ s: 5 }, /field s: expected string/],
    [{ by: "abc" }, /field by: expected Buffer\/Uint8Array/],
    [{ e: 9 }, /field e: expected a value of enum color, got 9/],
    [{ ru32: 5 }, /field ru32: expected an array/],
    [{ ru32: [1, -1] }, /field ru32: expected uint32, got -1/],
    [{ inner: 5 }, /field inner: expected inner object/],
    [{ rmsg: [null] }, /field rmsg: expected inner object/],
  ];
  for (const [fields, re] of bad) {
    assert.throws(() => encode(All, { ...empty(), ...fields } as unknown as All), formatError(re, "all_kinds"), re.source);
  }
});

test("generated schemas: CRIU's negative and signed fields round-trip", () => {
  const lock = { flag: 1, type: 0, pid: -1, fd: -7, start: -(1n << 63n), len: (1n << 63n) - 1n };
  assert.deepEqual(decode(file_lock_entry, encode(file_lock_entry, lock)), lock);
  const vma = {
    start: 0x7ffd_0000_0000n, end: 0x7ffd_0002_1000n, pgoff: 0n, shmid: 0n, prot: 3, flags: 0x122, status: 0x203,
    fd: -1n, madv: 1n << 63n, fdflags: 0,
  };
  assert.deepEqual(decode(vma_entry, encode(vma_entry, vma)), vma);
});

test("random messages round-trip", () => {
  let seed = 99;
  const r32 = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0);
  const r64 = () => (BigInt(r32()) << 32n) | BigInt(r32());
  for (let i = 0; i < 300; i++) {
    const m: All = {
      ...empty(),
      u32: r32(), i32: r32() | 0, s32: r32() | 0, u64: r64(), i64: BigInt.asIntN(64, r64()), s64: BigInt.asIntN(64, r64()),
      f32: r32(), sf32: r32() | 0, f64: r64(), sf64: BigInt.asIntN(64, r64()), b: (r32() & 1) === 1,
      s: String.fromCodePoint(...Array.from({ length: r32() % 6 }, () => 0x20 + (r32() % 0x2000))),
      by: Buffer.from(Array.from({ length: r32() % 9 }, () => r32() & 0xff)),
      e: [Color.RED, Color.GREEN, Color.NEG][r32() % 3]!,
      ru32: Array.from({ length: r32() % 4 }, r32),
      rs64: Array.from({ length: r32() % 4 }, () => BigInt.asIntN(64, r64())),
      pu32: Array.from({ length: r32() % 4 }, r32),
      rmsg: Array.from({ length: r32() % 3 }, () => ({ x: r32() })),
    };
    assert.deepEqual(decode(All, encode(All, m)), m);
  }
});
