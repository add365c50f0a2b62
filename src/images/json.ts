// Messages <-> the JSON that crit prints and reads (pycriu's pb2dict.py and
// dict2pb), so crest speaks crit's JSON (for a crit of its own, to come) and
// tests can compare our bytes with what crit decodes. Integers beyond 2^53 travel as bigint, so
// JSON text goes through parseJson / dumpJson below, not JSON.parse/stringify.
//
// crit's rules, as implemented by pb2dict.py:
// - only fields present on the wire appear; empty repeated fields do not;
// - enums print as value names, bytes as base64 in 76-column lines each
//   ending in "\n" (Python's base64.encodebytes), unix socket names as
//   quoted-printable;
// - with --pretty: (criu).hex fields print as "0x..", and the flag is
//   inherited by every field of a nested message (gpregs are all hex);
//   dev fields as "major:minor"; flags fields as "A | B | 0x.."; dict fields
//   as names; repeated ipadd fields as one IPv4/IPv6 address string.

import type { FieldSpec, MessageType } from "./pb.js";

export type Json = null | boolean | number | bigint | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

const FLAG_TABLES: Record<string, readonly (readonly [string, number])[]> = {
  "mmap.prot": [["PROT_READ", 0x1], ["PROT_WRITE", 0x2], ["PROT_EXEC", 0x4]],
  "mmap.flags": [["MAP_SHARED", 0x1], ["MAP_PRIVATE", 0x2], ["MAP_DROPPABLE", 0x8], ["MAP_ANON", 0x20], ["MAP_GROWSDOWN", 0x100]],
  "mmap.status": [
    ["VMA_AREA_NONE", 0], ["VMA_AREA_REGULAR", 1 << 0], ["VMA_AREA_STACK", 1 << 1], ["VMA_AREA_VSYSCALL", 1 << 2],
    ["VMA_AREA_VDSO", 1 << 3], ["VMA_AREA_HEAP", 1 << 5], ["VMA_FILE_PRIVATE", 1 << 6], ["VMA_FILE_SHARED", 1 << 7],
    ["VMA_ANON_SHARED", 1 << 8], ["VMA_ANON_PRIVATE", 1 << 9], ["VMA_AREA_SYSVIPC", 1 << 10],
    ["VMA_AREA_SOCKET", 1 << 11], ["VMA_AREA_VVAR", 1 << 12], ["VMA_AREA_AIORING", 1 << 13],
    // CRIU 4.2's crit names these too (3.17 prints them as the hex remainder).
    ["VMA_AREA_MEMFD", 1 << 14], ["VMA_AREA_SHSTK", 1 << 15], ["VMA_AREA_UPROBES", 1 << 17],
    ["VMA_UNSUPP", 2 ** 31],
  ],
  "rfile.flags": [
    ["O_WRONLY", 0o1], ["O_RDWR", 0o2], ["O_CREAT", 0o100], ["O_EXCL", 0o200], ["O_NOCTTY", 0o400],
    ["O_TRUNC", 0o1000], ["O_APPEND", 0o2000], ["O_NONBLOCK", 0o4000], ["O_DSYNC", 0o10000], ["FASYNC", 0o20000],
    ["O_DIRECT", 0o40000], ["O_LARGEFILE", 0o100000], ["O_DIRECTORY", 0o200000], ["O_NOFOLLOW", 0o400000],
    ["O_NOATIME", 0o1000000], ["O_CLOEXEC", 0o2000000],
  ],
  "pmap.flags": [["PE_PARENT", 1], ["PE_LAZY", 2], ["PE_PRESENT", 4]],
  "seals.flags": [
    ["F_SEAL_SEAL", 0x1], ["F_SEAL_SHRINK", 0x2], ["F_SEAL_GROW", 0x4], ["F_SEAL_WRITE", 0x8],
    ["F_SEAL_FUTURE_WRITE", 0x10],
  ],
};

const DICT_TABLES: Record<string, Record<string, Record<number, string>>> = {
  gen: { task_state: { 1: "Alive", 3: "Zombie", 6: "Stopped" } },
  sk: {
    family: { 1: "UNIX", 2: "INET", 10: "INET6", 16: "NETLINK", 17: "PACKET" },
    type: { 1: "STREAM", 2: "DGRAM", 3: "RAW", 5: "SEQPACKET", 10: "PACKET" },
    state: {
      1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT", 7: "CLOSE",
      8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
    },
    proto: { 0: "IP", 6: "TCP", 17: "UDP", 136: "UDPLITE" },
  },
};

const INT_KINDS = new Set([
  "int32", "uint32", "sint32", "fixed32", "sfixed32", "int64", "uint64", "sint64", "fixed64", "sfixed64",
]);

const sortedCache = new WeakMap<MessageType<unknown>, FieldSpec[]>();

/** Fields in number order (crit's), worked out once per type: a pagemap has hundreds of thousands of entries. */
function sortedFields(type: MessageType<unknown>): FieldSpec[] {
  let sorted = sortedCache.get(type);
  if (!sorted) sortedCache.set(type, (sorted = [...type.fields].sort((a, b) => a.number - b.number)));
  return sorted;
}

/** A bigint as a JSON number: number when exact, bigint otherwise. */
function jsonInt(v: number | bigint): number | bigint {
  if (typeof v === "number") return v;
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

// --- bytes conversions --------------------------------------------------------------

/** Python's base64.encodebytes: 76-character lines, each ending in "\n". */
export function base64Lines(b: Uint8Array): string {
  const s = Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64");
  let out = "";
  for (let i = 0; i < s.length; i += 76) out += s.slice(i, i + 76) + "\n";
  return out;
}

/** Python's quopri.encodestring (binascii.b2a_qp, text mode): what crit uses for unix socket names. */
export function quotedPrintable(b: Uint8Array): string {
  const HEX = "0123456789ABCDEF";
  let out = "";
  let line = "";
  const flush = (soft: boolean) => { out += line + (soft ? "=\n" : ""); line = ""; };
  const put = (piece: string) => {
    if (line.length + piece.length > 75) flush(true);
    line += piece;
  };
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c === 0x0a) { flush(false); out += "\n"; continue; }
    const atLineEnd = i + 1 === b.length || b[i + 1] === 0x0a;
    const plain = (c >= 33 && c <= 126 && c !== 0x3d) || ((c === 0x20 || c === 0x09) && !atLineEnd);
    put(plain ? String.fromCharCode(c) : "=" + HEX[c >> 4] + HEX[c & 15]);
  }
  flush(false);
  return out;
}

/** Python's quopri.decodestring. */
export function fromQuotedPrintable(s: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === "=") {
      if (s[i + 1] === "\n") { i += 1; continue; }
      if (s[i + 1] === "\r" && s[i + 2] === "\n") { i += 2; continue; }
      const h = s.slice(i + 1, i + 3);
      if (/^[0-9A-Fa-f]{2}$/.test(h)) { out.push(parseInt(h, 16)); i += 2; continue; }
    }
    out.push(c.charCodeAt(0) & 0xff);
  }
  return Buffer.from(out);
}

// --- message -> crit dict -------------------------------------------------------------

export interface CritJsonOptions {
  /** crit --pretty: hex, dev, flags, dict and ipadd renderings. */
  pretty?: boolean;
}

function mapFlags(value: number, table: readonly (readonly [string, number])[]): string {
  const names = table.filter(([, bit]) => (value & bit) >>> 0 !== 0).map(([n]) => n);
  let rest = value >>> 0;
  for (const [, bit] of table) rest = (rest & ~bit) >>> 0;
  if (rest) names.push(`0x${rest.toString(16)}`);
  return names.join(" | ");
}

function decodeDev(v: number, odev: boolean): string {
  if (odev) {
    // glibc major()/minor() of a 32-bit dev_t
    const major = (v >>> 8) & 0xfff;
    const minor = (v & 0xff) | ((v >>> 12) & 0xfff00);
    return `${major}:${minor}`;
  }
  return `${v >>> 20}:${v & 0xfffff}`;
}

function ipString(words: readonly number[]): string {
  // Words hold the address in network byte order in host (LE) words.
  const b = Buffer.alloc(words.length * 4);
  words.forEach((w, i) => b.writeUInt32LE(w >>> 0, 4 * i));
  if (words.length === 1) return [...b].join(".");
  return compressIPv6(b);
}

function compressIPv6(b: Buffer): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i));
  // Python's ipaddress: longest run of >= 2 zero groups becomes "::".
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hexs = groups.map((g) => g.toString(16));
  if (bestLen < 2) return hexs.join(":");
  return hexs.slice(0, best).join(":") + "::" + hexs.slice(best + bestLen).join(":");
}

/** Python's "0x%x" % n (a negative number gives "-0x.."). */
function hexOf(n: number | bigint): string {
  return n < 0 ? `-0x${(-n).toString(16)}` : `0x${n.toString(16)}`;
}

function scalarToJson(f: FieldSpec, v: unknown, pretty: boolean, hex: boolean): Json {
  switch (f.kind) {
    case "bytes": return f.hints?.conv === "unix_name" ? quotedPrintable(v as Uint8Array) : base64Lines(v as Uint8Array);
    case "enum": {
      const e = Object.entries(f.enum!.values).find(([, n]) => n === v);
      return e ? e[0] : null;
    }
    case "bool": return v as boolean;
    case "string": return v as string;
    case "float": case "double": return v as number;
  }
  const n = v as number | bigint;
  if (pretty && INT_KINDS.has(f.kind)) {
    if (hex) return hexOf(n);
    const h = f.hints;
    if (h?.dev) return decodeDev(Number(n), !!h.odev);
    if (h?.flags) {
      const table = FLAG_TABLES[h.flags];
      return table ? mapFlags(Number(n), table) : hexOf(n);
    }
    if (h?.dict) {
      const name = DICT_TABLES[h.dict]?.[f.name]?.[Number(n)];
      if (name !== undefined) return name;
    }
  }
  return jsonInt(n);
}

/** The dict crit prints for one message (`crit decode`, or with pretty `crit decode --pretty`). */
export function toCritJson<T>(type: MessageType<T>, msg: T, opts: CritJsonOptions = {}): JsonObject {
  return messageToJson(type as MessageType<unknown>, msg as Record<string, unknown>, !!opts.pretty, false);
}

function messageToJson(type: MessageType<unknown>, msg: Record<string, unknown>, pretty: boolean, inheritedHex: boolean): JsonObject {
  const out: JsonObject = {};
  for (const f of sortedFields(type)) {
    const v = msg[f.name];
    if (v === undefined || v === null) continue;
    const hex = inheritedHex || !!f.hints?.hex;
    const one = (e: unknown): Json =>
      f.kind === "message"
        ? messageToJson(f.message!(), e as Record<string, unknown>, pretty, pretty && hex)
        : scalarToJson(f, e, pretty, hex);
    if (f.label === "repeated") {
      const arr = v as unknown[];
      if (arr.length === 0) continue;
      out[f.name] = pretty && f.hints?.ipadd ? [ipString(arr as number[])] : arr.map(one);
    } else {
      out[f.name] = one(v);
    }
  }
  return out;
}

// --- crit dict -> message ---------------------------------------------------------------

function unmapFlags(s: string, table: readonly (readonly [string, number])[]): number {
  if (s === "") return 0;
  const byName = new Map(table);
  let v = 0;
  for (const part of s.split("|").map((x) => x.trim())) v = (v | (byName.get(part) ?? parseIntAuto(part))) >>> 0;
  return v;
}

/** Python's int(s, 0). */
function parseIntAuto(s: string): number {
  const t = s.trim().replace(/_/g, "");
  const m = /^([+-]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0|[1-9][0-9]*)$/.exec(t);
  if (!m) throw new TypeError(`not an integer: ${JSON.stringify(s)}`);
  const n = Number(BigInt(m[2]!));
  return m[1] === "-" ? -n : n;
}

function parseBigAuto(s: string): bigint {
  const t = s.trim().replace(/_/g, "");
  const neg = t.startsWith("-");
  const body = t.replace(/^[+-]/, "");
  if (!/^(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0|[1-9][0-9]*)$/.test(body)) throw new TypeError(`not an integer: ${JSON.stringify(s)}`);
  const n = BigInt(body);
  return neg ? -n : n;
}

function encodeDev(s: string, odev: boolean): number {
  const [maj, min] = s.split(":").map((x) => parseInt(x, 10)) as [number, number];
  if (odev) return (((maj & 0xfff) << 8) | (min & 0xff) | ((min & ~0xff) << 12)) >>> 0;
  return ((maj << 20) | min) >>> 0;
}

function parseIp(s: string): number[] {
  if (s.includes(":")) {
    const [head, tail] = s.split("::") as [string, string | undefined];
    const h = head ? head.split(":") : [];
    const t = tail ? tail.split(":") : [];
    const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
    const b = Buffer.alloc(16);
    groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), 2 * i));
    return [0, 4, 8, 12].map((i) => b.readUInt32LE(i));
  }
  const b = Buffer.from(s.split(".").map((x) => parseInt(x, 10)));
  return [b.readUInt32LE(0)];
}

function scalarFromJson(f: FieldSpec, v: Json): unknown {
  const bad = (): never => { throw new TypeError(`field ${f.name}: cannot convert ${JSON.stringify(String(v))} to ${f.kind}`); };
  switch (f.kind) {
    case "bytes":
      if (typeof v !== "string") bad();
      return f.hints?.conv === "unix_name" ? fromQuotedPrintable(v as string) : Buffer.from(v as string, "base64");
    case "enum": {
      const n = f.enum!.values[v as string];
      return n === undefined ? bad() : n;
    }
    case "bool": return typeof v === "boolean" ? v : bad();
    case "string": return typeof v === "string" ? v : bad();
    case "float": case "double": return typeof v === "number" ? v : bad();
  }
  const big = f.kind.endsWith("64");
  let n: number | bigint;
  if (typeof v === "string") {
    const h = f.hints;
    if (h?.dev) n = encodeDev(v, !!h.odev);
    else if (h?.flags && FLAG_TABLES[h.flags]) n = unmapFlags(v, FLAG_TABLES[h.flags]!);
    else if (h?.dict) {
      const hit = Object.entries(DICT_TABLES[h.dict]?.[f.name] ?? {}).find(([, name]) => name === v);
      n = hit ? Number(hit[0]) : big ? parseBigAuto(v) : parseIntAuto(v);
    } else n = big ? parseBigAuto(v) : parseIntAuto(v);
  } else if (typeof v === "number" || typeof v === "bigint") {
    n = v;
  } else {
    return bad();
  }
  return big ? BigInt(n) : Number(n);
}

/** The message for a crit dict (what `crit encode` does), accepting pretty forms too. */
export function fromCritJson<T>(type: MessageType<T>, dict: JsonObject): T {
  return messageFromJson(type as MessageType<unknown>, dict) as T;
}

function messageFromJson(type: MessageType<unknown>, dict: JsonObject): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of sortedFields(type)) {
    const v = dict[f.name];
    if (f.label === "repeated") out[f.name] = [];
    if (v === undefined || v === null) continue;
    const one = (e: Json): unknown =>
      f.kind === "message" ? messageFromJson(f.message!(), e as JsonObject) : scalarFromJson(f, e);
    if (f.label === "repeated") {
      if (!Array.isArray(v)) throw new TypeError(`field ${f.name}: expected a list`);
      out[f.name] = f.hints?.ipadd && typeof v[0] === "string" ? parseIp(v[0]) : v.map(one);
    } else {
      out[f.name] = one(v);
    }
  }
  return out;
}

// --- JSON text with big integers ----------------------------------------------------------

/** JSON.parse, except integers outside the safe range become bigint. */
export function parseJson(text: string): Json {
  let i = 0;
  const fail = (what: string): never => { throw new SyntaxError(`JSON: ${what} at position ${i}`); };
  const ws = () => { while (i < text.length && " \t\n\r".includes(text[i]!)) i++; };
  const value = (): Json => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj: JsonObject = {};
      ws();
      if (text[i] === "}") { i++; return obj; }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a key");
        const k = str();
        ws();
        if (text[i++] !== ":") fail("expected ':'");
        obj[k] = value();
        ws();
        if (text[i] === ",") { i++; continue; }
        if (text[i] === "}") { i++; return obj; }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const arr: Json[] = [];
      ws();
      if (text[i] === "]") { i++; return arr; }
      for (;;) {
        arr.push(value());
        ws();
        if (text[i] === ",") { i++; continue; }
        if (text[i] === "]") { i++; return arr; }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    for (const [lit, v] of [["true", true], ["false", false], ["null", null]] as const) {
      if (text.startsWith(lit, i)) { i += lit.length; return v; }
    }
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (!m) return fail("unexpected character");
    i += m[0].length;
    if (m[2] || m[3]) return Number(m[0]);
    const n = Number(m[0]);
    return Number.isSafeInteger(n) ? n : BigInt(m[0]);
  };
  const str = (): string => {
    i++;
    let s = "";
    for (;;) {
      const c = text[i++];
      if (c === undefined) fail("unterminated string");
      if (c === '"') return s;
      if (c !== "\\") { s += c; continue; }
      const e = text[i++];
      const simple: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
      if (e !== undefined && e in simple) s += simple[e];
      else if (e === "u") { s += String.fromCharCode(parseInt(text.slice(i, i + 4), 16)); i += 4; }
      else fail("bad escape");
    }
  };
  const v = value();
  ws();
  if (i !== text.length) fail("trailing characters");
  return v;
}

/** Printable ASCII without quote or backslash: printed as it is. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** Python's json.dumps (ensure_ascii, default separators; indent like crit --pretty). */
export function dumpJson(v: Json, indent?: number): string {
  const pad = (d: number) => (indent === undefined ? "" : "\n" + " ".repeat(indent * d));
  const sep = indent === undefined ? ", " : ",";
  const go = (x: Json, d: number): string => {
    if (x === null) return "null";
    if (typeof x === "boolean") return x ? "true" : "false";
    if (typeof x === "number" || typeof x === "bigint") return String(x);
    if (typeof x === "string") return pyString(x);
    if (Array.isArray(x)) {
      if (x.length === 0) return "[]";
      return "[" + x.map((e) => pad(d + 1) + go(e, d + 1)).join(sep) + pad(d) + "]";
    }
    const keys = Object.keys(x);
    if (keys.length === 0) return "{}";
    return "{" + keys.map((k) => pad(d + 1) + pyString(k) + ": " + go(x[k]!, d + 1)).join(sep) + pad(d) + "}";
  };
  return go(v, 0);
}

function pyString(s: string): string {
  if (PLAIN.test(s)) return `"${s}"`;
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ch = s[i]!;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (c < 0x20 || c > 0x7e) out += "\\u" + c.toString(16).padStart(4, "0");
    else out += ch;
  }
  return out + '"';
}
