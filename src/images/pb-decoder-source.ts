// Writes the JavaScript source of a message type's own decoder, from its
// descriptor: a loop over the tags with a switch case per field, its tag and
// property name as constants, calling the reader of its kind (pb-decode.ts).
// pb-decode.ts makes one for a type once it has decoded many messages of it
// (the loop all types share is quicker to get going; this one is quicker
// once going). The objects it makes are those of the shared loop, key for
// key.

import { wireOf, type FieldSpec, type MessageType } from "./pb-schema.js";

/** One decoder: its code, and what the code refers to besides its own locals and its type's plan. */
export interface DecoderSource {
  /** A function expression: (nesting depth, message to decode into or undefined) => message. */
  readonly fn: string;
  /** The readers (pb-decode.ts) it calls, by name. */
  readonly readers: readonly string[];
  /** Of each message field, in number order: its name, which the code uses as X0, X1, ... to reach its plan's field. */
  readonly messages: readonly string[];
}

const q = JSON.stringify;

/**
 * The source of a function of the readers (R), the type's plan (P) and its
 * message fields' plan entries (X) that returns the decoder, in
 * parentheses so that V8 compiles it at once.
 */
export function decoderFactory(src: DecoderSource): string {
  // var, not const: the code that reads them needs no check of a temporal dead zone.
  return `"use strict";var{${src.readers.join(",")}}=R,T=P.name,N=P.known,Q=P.required` +
    `${src.messages.map((_, i) => `,X${i}=X[${i}]`).join("")};\nreturn(${src.fn})`;
}

export function decoderSource(type: MessageType<unknown>): DecoderSource {
  const readers = new Set<string>(["S", "rtag", "other"]);
  const messages: string[] = [];
  const r = (name: string) => (readers.add(name), name);
  const fields = [...type.fields].sort((a, b) => a.number - b.number);
  const prop = (name: string) => (/^[A-Za-z_$][\w$]*$/.test(name) ? `o.${name}` : `o[${q(name)}]`);

  /** A call reading a value of f's kind at S.pos. */
  const read = (f: FieldSpec): string => {
    switch (f.kind) {
      case "uint32": return `${r("ru32")}()`;
      case "int32": return `${r("ri32")}()`;
      case "sint32": return `${r("rs32")}()`;
      case "bool": return `${r("rbool")}()`;
      case "enum": return `${r("renum")}(${q(f.name)},X${messages.push(f.name) - 1}.values,${q(f.enum!.name)})`;
      case "uint64": return `${r("ru64")}()`;
      case "int64": return `${r("ri64")}()`;
      case "sint64": return `${r("rs64")}()`;
      case "string": return `${r("rstr")}(${q(f.name)})`;
      case "bytes": return `${r("rbytes")}()`;
      case "message": throw new Error("not here");
      default: return `${r("rfix")}(${q(f.kind)})`;
    }
  };

  const cases: string[] = [];
  for (const f of fields) {
    const wire = wireOf(f.kind);
    const tag = ((f.number << 3) | wire) >>> 0;
    const o = prop(f.name);
    if (f.kind === "message") {
      const x = `X${messages.push(f.name) - 1}`;
      // A repeated occurrence of a singular message merges into the first one.
      cases.push(f.label === "repeated"
        ? `case ${tag}:${o}.push(${r("rmsg")}(d,${x}.sub,undefined));continue;`
        : `case ${tag}:${o}=${r("rmsg")}(d,${x}.sub,${o});continue;`);
    } else if (f.label !== "repeated") {
      cases.push(`case ${tag}:${o}=${read(f)};continue;`);
    } else if (f.kind === "uint32" || f.kind === "int32") {
      cases.push(`case ${tag}:${r("run32")}(${o},${tag},${f.kind === "int32"});continue;`);
    } else {
      cases.push(`case ${tag}:${o}.push(${read(f)});continue;`);
    }
    if (f.label === "repeated" && wire !== 2) {
      // Packed encoding: accepted even when the schema says unpacked.
      cases.push(`case ${((f.number << 3) | 2) >>> 0}:a=${o};S.end=${r("rlen")}()+S.pos;while(S.pos<S.end)a.push(${read(f)});S.end=e;continue;`);
    }
  }
  const req = fields.filter((f) => f.label === "required");
  const required = req.length ? `if(${req.map((f) => `${prop(f.name)}===undefined`).join("||")})${r("miss")}(o,s,Q);` : "";

  const fn = `function decode_${type.name.replace(/[^\w$]/g, "_")}(d,o){
const b=S.b,e=S.end,s=S.pos;let t=0,g=0,a;S.t=T;if(o===undefined)o={${fields.filter((f) => f.label === "repeated").map((f) => `${q(f.name)}:[]`).join(",")}};
while((t=S.pos)<e){if((g=b[t])<128)S.pos=t+1;else g=rtag();
switch(g){
${cases.join("\n")}
default:other(g,t,d,N)}}
${required}return o}`;
  return { fn, readers: [...readers].sort(), messages };
}
