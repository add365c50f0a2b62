// Writes the JavaScript source of a message type's encoder, from its
// descriptor: a statement per field, in number order, calling the writer of
// the field's kind (pb-encode.ts) with the field's value, tag and name as
// constants, in place of a loop that looks up every field's kind at run
// time. The code is terse on purpose: crest's startup snapshot holds its
// text and bytecode, which every command pays for when it starts; the work
// is in the writers, which all encoders share and V8 soon compiles.

import { wireOf, type EnumSpec, type FieldSpec, type MessageType } from "./pb-schema.js";

/** One encoder: its code, and what the code refers to besides its own locals. */
export interface EncoderSource {
  readonly type: MessageType<unknown>;
  /** A function expression: (message, nesting depth) => void. */
  readonly fn: string;
  /** The writers (pb-encode.ts) it calls, by name. */
  readonly writers: readonly string[];
  /** The message types whose encoders it calls (H0, H1, ...). */
  readonly subs: readonly MessageType<unknown>[];
  /** The value sets of the enums it checks (E0, E1, ...). */
  readonly enums: readonly ReadonlySet<number>[];
}

/**
 * The source of a function of the writers (R) and, per encoder, the
 * encoders (HS[i]) and enum sets (ES[i]) it refers to, that returns the
 * encoders: one script for many, so that they share its set-up. Each
 * function is in parentheses, so that V8 compiles it at once (into the
 * snapshot), not at its first call.
 */
export function factorySource(encoders: readonly EncoderSource[]): string {
  const writers = new Set(encoders.flatMap((e) => e.writers));
  const blocks = encoders.map((e, i) => {
    const refs = [`T=${q(e.type.name)}`, ...e.subs.map((_, j) => `H${j}=HS[${i}][${j}]`), ...e.enums.map((_, j) => `E${j}=ES[${i}][${j}]`)];
    return `{const ${refs.join(",")};F.push((${e.fn}))}`;
  });
  // var, not const: the code that reads them needs no check of a temporal dead zone.
  return `"use strict";var{${[...writers].sort().join(",")}}=R,F=[];\n${blocks.join("\n")}\nreturn F`;
}

const q = JSON.stringify;
const enumSets = new WeakMap<EnumSpec, ReadonlySet<number>>();

/** The writers' name for each scalar kind (fu32, vu32, ...). */
const KIND: Readonly<Record<string, string>> = {
  uint32: "u32", int32: "i32", sint32: "s32", bool: "bool", enum: "enum", uint64: "u64", int64: "i64", sint64: "s64",
  fixed32: "fix", sfixed32: "fix", float: "fix", fixed64: "fix", sfixed64: "fix", double: "fix",
};

/**
 * The encoder of a message type: it writes the message at W.pos of W.buf
 * (W.t names the type for errors), a statement per field. Field writers
 * take the value, tag, name and whether the field is required (an absent
 * optional field writes nothing).
 */
export function encoderSource(type: MessageType<unknown>): EncoderSource {
  const writers = new Set<string>(["W"]);
  const subs: MessageType<unknown>[] = [];
  const enums: ReadonlySet<number>[] = [];
  const w = (name: string) => (writers.add(name), name);
  const sub = (f: FieldSpec) => {
    const t = f.message!();
    const i = subs.indexOf(t);
    return `H${i < 0 ? subs.push(t) - 1 : i}`;
  };
  /** What the writers of f's kind take after the field's name: an enum's value set and name, a fixed kind's name. */
  const extra = (f: FieldSpec) => {
    if (f.kind !== "enum") return KIND[f.kind] === "fix" ? `,${q(f.kind)}` : "";
    let set = enumSets.get(f.enum!);
    if (!set) enumSets.set(f.enum!, (set = new Set(Object.values(f.enum!.values))));
    const i = enums.indexOf(set);
    return `,E${i < 0 ? enums.push(set) - 1 : i},${q(f.enum!.name)}`;
  };

  const lines = [...type.fields].sort((a, b) => a.number - b.number).map((f) => {
    const v = /^[A-Za-z_$][\w$]*$/.test(f.name) ? `m.${f.name}` : `m[${q(f.name)}]`;
    const tag = ((f.number << 3) | wireOf(f.kind)) >>> 0;
    const N = q(f.name);
    const req = f.label === "required" ? 1 : 0;
    const repeated = f.label === "repeated";
    if (f.kind === "message") return repeated ? `${w("fmsgs")}(${v},${tag},${N},${sub(f)},d);` : `${w("fmsg")}(${v},${tag},${N},${req},${sub(f)},d);`;
    if (f.kind === "string" || f.kind === "bytes") {
      return repeated ? `${w(`f${f.kind === "string" ? "strs" : "bytess"}`)}(${v},${tag},${N});` : `${w(`f${f.kind === "string" ? "str" : "bytes"}`)}(${v},${tag},${N},${req});`;
    }
    const k = KIND[f.kind];
    if (k === undefined) throw new Error(`${type.name}.${f.name}: unexpected kind ${f.kind}`);
    if (!repeated) return `${w(`f${k}`)}(${v},${tag},${N}${extra(f)},${req});`;
    // Unpacked 32-bit integers (the registers of core images) by a writer of their own; other repeated scalars by one loop.
    if (!f.packed && (k === "u32" || k === "i32")) return `${w(`f${k}s`)}(${v},${tag},${N});`;
    const runTag = f.packed ? ((f.number << 3) | 2) >>> 0 : tag;
    return `${w("freps")}(${v},${runTag},${N},${w(`v${k}`)},${f.packed ? 1 : 0}${extra(f)});`;
  });

  const fn = `function encode_${type.name.replace(/[^\w$]/g, "_")}(m,d){\nW.t=T;\n${lines.join("\n")}}`;
  return { type, fn, writers: [...writers], subs, enums };
}
