#!/usr/bin/env node
// Generates src/images/gen/*.ts from src/images/proto/*.proto: one TypeScript
// module per schema file with an interface + descriptor const per message and
// a const object + type per enum. Plain Node, no dependencies. The output is
// committed, so it must be deterministic (sorted inputs, no timestamps).
//
//   node scripts/gen-images.mjs              write src/images/gen
//   node scripts/gen-images.mjs --out DIR    write elsewhere (the tests compare)
//   node scripts/gen-images.mjs --proto DIR  read schemas from elsewhere
//
// Handles the proto2 subset our schemas use: syntax, import, message (nested
// messages and enums), enum, required/optional/repeated fields of scalar, enum
// and message types, [default = ...], [packed = true], and CRIU's display
// options [(criu).hex = true ...]. `extend` blocks and google/* imports are
// skipped (they only declare the display options).

import { mkdirSync, readdirSync, readFileSync, writeFileSync, rmSync, existsSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const protoDir = join(root, "src", "images", "proto");

const SCALARS = new Set([
  "double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
  "fixed32", "fixed64", "sfixed32", "sfixed64", "bool", "string", "bytes",
]);
const INT64 = new Set(["int64", "uint64", "sint64", "fixed64", "sfixed64"]);
const INT32 = new Set(["int32", "uint32", "sint32", "fixed32", "sfixed32"]);
const HINTS = { hex: "bool", ipadd: "bool", flags: "string", dev: "bool", odev: "bool", dict: "string", conv: "string" };

class ProtoError extends Error {}

// ---------------------------------------------------------------------------
// Tokenizer: identifiers (with dots), numbers, strings, punctuation; comments
// are kept aside with their line numbers so declarations can carry them.

function tokenize(text, file) {
  const tokens = [];
  const comments = [];
  let i = 0, line = 1;
  const fail = (msg) => { throw new ProtoError(`${file}:${line}: ${msg}`); };
  while (i < text.length) {
    const ch = text[i];
    if (ch === "\n") { line++; i++; continue; }
    if (/\s/.test(ch)) { i++; continue; }
    if (text.startsWith("//", i)) {
      const end = text.indexOf("\n", i);
      const stop = end < 0 ? text.length : end;
      comments.push({ line, endLine: line, text: text.slice(i + 2, stop).trim() });
      i = stop;
      continue;
    }
    if (text.startsWith("/*", i)) {
      const end = text.indexOf("*/", i + 2);
      if (end < 0) fail("unterminated comment");
      const body = text.slice(i + 2, end);
      const startLine = line;
      line += (body.match(/\n/g) || []).length;
      const cleaned = body.split("\n").map((l) => l.replace(/^\s*\*?\s?/, "").trimEnd()).join("\n").trim();
      comments.push({ line: startLine, endLine: line, text: cleaned });
      i = end + 2;
      continue;
    }
    if (ch === '"' || ch === "'") {
      let j = i + 1, s = "";
      while (j < text.length && text[j] !== ch) {
        if (text[j] === "\\") { s += text[j + 1]; j += 2; } else s += text[j++];
      }
      if (j >= text.length) fail("unterminated string");
      tokens.push({ t: "str", v: s, line });
      i = j + 1;
      continue;
    }
    const num = /^-?(0[xX][0-9a-fA-F]+|\d+(\.\d+)?([eE][+-]?\d+)?)/.exec(text.slice(i, i + 64));
    if (num && (ch !== "-" || /[\d]/.test(text[i + 1] ?? ""))) {
      tokens.push({ t: "num", v: num[0], line });
      i += num[0].length;
      continue;
    }
    const id = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*/.exec(text.slice(i, i + 256));
    if (id) {
      tokens.push({ t: "id", v: id[0], line });
      i += id[0].length;
      continue;
    }
    if ("{}[]()=;,.<>".includes(ch)) {
      tokens.push({ t: "p", v: ch, line });
      i++;
      continue;
    }
    fail(`unexpected character ${JSON.stringify(ch)}`);
  }
  return { tokens, comments };
}

// ---------------------------------------------------------------------------
// Parser

function parseFile(file, text) {
  const { tokens, comments } = tokenize(text, file);
  let p = 0;
  let prevLine = 0; // line of the last token consumed before the current declaration
  const peek = () => tokens[p];
  // Inside a block the file must go on.
  const more = () => tokens[p] ?? fail("unexpected end of file");
  const fail = (msg, tok = tokens[p]) => {
    throw new ProtoError(`${file}:${tok ? tok.line : "EOF"}: ${msg}`);
  };
  const next = () => {
    const tok = tokens[p++];
    if (!tok) fail("unexpected end of file");
    return tok;
  };
  const expect = (v) => {
    const tok = next();
    if (tok.v !== v || tok.t === "str") fail(`expected '${v}', found '${tok.v}'`, tok);
    return tok;
  };
  const ident = () => {
    const tok = next();
    if (tok.t !== "id") fail(`expected a name, found '${tok.v}'`, tok);
    return tok.v;
  };
  const accept = (v) => {
    if (peek() && peek().t === "p" && peek().v === v) { p++; return true; }
    return false;
  };

  // Comments that sit between the previous declaration and line `line`, plus
  // a trailing `// ...` on line `endLine`.
  const usedComments = new Set();
  const docFor = (line, endLine) => {
    const parts = [];
    for (const c of comments) {
      if (usedComments.has(c)) continue;
      if ((c.line > prevLine && c.endLine < line) || (c.line === endLine && c.line >= line)) {
        parts.push(c.text);
        usedComments.add(c);
      }
    }
    return parts.join("\n") || undefined;
  };

  const out = { file, imports: [], messages: [], enums: [], doc: undefined };

  function parseOptions() {
    const opts = {};
    if (!accept("[")) return opts;
    do {
      let key;
      if (accept("(")) {
        // A custom option: (criu).hex tokenizes as "(" "criu" ")" "." "hex".
        const ext = ident();
        expect(")");
        expect(".");
        key = `(${ext}).${ident()}`;
      } else {
        key = ident();
      }
      expect("=");
      const val = next();
      if (val.t === "p") fail(`bad option value '${val.v}'`, val);
      opts[key] = val;
    } while (accept(","));
    expect("]");
    return opts;
  }

  function parseEnum(scope) {
    const startTok = tokens[p - 1];
    const name = ident();
    const doc = docFor(startTok.line, startTok.line);
    expect("{");
    const values = [];
    while (!accept("}")) {
      if (accept(";")) continue;
      if (more().v === "option") { next(); while (!accept(";")) next(); continue; }
      const vt = more();
      const vname = ident();
      expect("=");
      const numTok = next();
      if (numTok.t !== "num") fail("expected an enum value number", numTok);
      parseOptions();
      const semi = expect(";");
      const vdoc = docFor(vt.line, semi.line);
      prevLine = semi.line;
      if (values.some((v) => v.name === vname)) fail(`duplicate enum value ${vname}`, vt);
      values.push({ name: vname, number: Number(numTok.v), doc: vdoc });
    }
    accept(";");
    prevLine = tokens[p - 1].line;
    return { kind: "enum", name, fullName: scope ? `${scope}.${name}` : name, values, doc };
  }

  function parseMessage(scope) {
    const startTok = tokens[p - 1];
    const name = ident();
    const fullName = scope ? `${scope}.${name}` : name;
    const doc = docFor(startTok.line, startTok.line);
    expect("{");
    prevLine = tokens[p - 1].line;
    const msg = { kind: "message", name, fullName, fields: [], messages: [], enums: [], doc };
    while (!accept("}")) {
      if (accept(";")) continue;
      const tok = more();
      if (tok.v === "message") { next(); msg.messages.push(parseMessage(fullName)); continue; }
      if (tok.v === "enum") { next(); msg.enums.push(parseEnum(fullName)); continue; }
      if (tok.v === "option" || tok.v === "reserved" || tok.v === "extensions") {
        next(); while (!accept(";")) next(); prevLine = tokens[p - 1].line; continue;
      }
      const label = ident();
      if (!["required", "optional", "repeated"].includes(label)) fail(`expected a field label, found '${label}'`, tok);
      const type = ident();
      const fname = ident();
      expect("=");
      const numTok = next();
      if (numTok.t !== "num" || !/^\d+$/.test(numTok.v)) fail("expected a field number", numTok);
      const number = Number(numTok.v);
      if (number < 1 || number > 536870911 || (number >= 19000 && number <= 19999)) fail(`bad field number ${number}`, numTok);
      const opts = parseOptions();
      const semi = expect(";");
      const fdoc = docFor(tok.line, semi.line);
      prevLine = semi.line;
      if (msg.fields.some((f) => f.name === fname)) fail(`duplicate field name ${fname}`, tok);
      if (msg.fields.some((f) => f.number === number)) fail(`duplicate field number ${number}`, tok);
      msg.fields.push({ label, type, name: fname, number, opts, doc: fdoc, line: tok.line });
    }
    accept(";");
    prevLine = tokens[p - 1].line;
    return msg;
  }

  while (p < tokens.length) {
    const tok = next();
    if (tok.v === "syntax") {
      // Comments above `syntax` describe the whole file.
      out.doc = comments.filter((c) => c.endLine < tok.line).map((c) => c.text).join("\n") || undefined;
      for (const c of comments) if (c.endLine < tok.line) usedComments.add(c);
      expect("=");
      const s = next();
      if (s.v !== "proto2") fail(`only proto2 is supported, found ${s.v}`, s);
      expect(";");
    } else if (tok.v === "import") {
      const s = next();
      if (s.t !== "str") fail("expected an import path", s);
      expect(";");
      if (!s.v.startsWith("google/")) out.imports.push(s.v);
    } else if (tok.v === "message") {
      out.messages.push(parseMessage(""));
    } else if (tok.v === "enum") {
      out.enums.push(parseEnum(""));
    } else if (tok.v === "extend") {
      // Declares custom options only; nothing to generate.
      ident();
      expect("{");
      let depth = 1;
      while (depth > 0) { const t = next(); if (t.v === "{") depth++; else if (t.v === "}") depth--; }
    } else if (tok.v === "package" || tok.v === "option") {
      while (!accept(";")) next();
    } else if (tok.t === "p" && tok.v === ";") {
      // stray semicolon
    } else {
      fail(`unexpected '${tok.v}'`, tok);
    }
    prevLine = tokens[p - 1].line;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Resolution: proto2 without packages has one global namespace; a type name
// is looked up from the innermost enclosing message outwards.

function tsName(fullName) {
  return fullName.replace(/\./g, "_");
}

function collectTypes(parsed) {
  const types = new Map(); // fullName -> { decl, file }
  const add = (decl, file) => {
    if (types.has(decl.fullName)) throw new ProtoError(`${file}: type ${decl.fullName} also defined in ${types.get(decl.fullName).file}`);
    types.set(decl.fullName, { decl, file });
    if (decl.kind === "message") {
      for (const m of decl.messages) add(m, file);
      for (const e of decl.enums) add(e, file);
    }
  };
  for (const f of parsed) {
    for (const m of f.messages) add(m, f.file);
    for (const e of f.enums) add(e, f.file);
  }
  const tsNames = new Map();
  for (const [full, { file }] of types) {
    const n = tsName(full);
    if (tsNames.has(n)) throw new ProtoError(`${file}: TypeScript name ${n} is used twice (${tsNames.get(n)} and ${full})`);
    tsNames.set(n, full);
  }
  return types;
}

function resolveType(types, scope, name, where) {
  const parts = scope ? scope.split(".") : [];
  for (let i = parts.length; i >= 0; i--) {
    const cand = [...parts.slice(0, i), name].join(".");
    if (types.has(cand)) return types.get(cand);
  }
  throw new ProtoError(`${where}: unknown type ${name}`);
}

// Files visible from a file: itself and its direct imports (as protoc rules).
function visibleFiles(parsedByName, file) {
  const f = parsedByName.get(file);
  return new Set([file, ...f.imports]);
}

// ---------------------------------------------------------------------------
// Emission

function q(s) {
  return JSON.stringify(s);
}

function docComment(doc, indent) {
  if (!doc) return "";
  const lines = doc.split("\n");
  if (lines.length === 1) return `${indent}/** ${lines[0].replace(/\*\//g, "* /")} */\n`;
  return `${indent}/**\n${lines.map((l) => `${indent} * ${l.replace(/\*\//g, "* /")}`.trimEnd()).join("\n")}\n${indent} */\n`;
}

function tsScalarType(t) {
  if (INT64.has(t)) return "bigint";
  if (t === "bool") return "boolean";
  if (t === "string") return "string";
  if (t === "bytes") return "Buffer";
  return "number";
}

function defaultLiteral(field, resolved, where) {
  const tok = field.opts.default;
  if (!tok) return undefined;
  if (field.label === "repeated") throw new ProtoError(`${where}: a repeated field cannot have a default`);
  const v = tok.v;
  if (resolved) {
    if (resolved.decl.kind !== "enum") throw new ProtoError(`${where}: a message field cannot have a default`);
    const ev = resolved.decl.values.find((x) => x.name === v);
    if (!ev) throw new ProtoError(`${where}: ${v} is not a value of ${resolved.decl.fullName}`);
    return String(ev.number);
  }
  const t = field.type;
  if (t === "bool") {
    if (v !== "true" && v !== "false") throw new ProtoError(`${where}: bad bool default ${v}`);
    return v;
  }
  if (t === "string" || t === "bytes") {
    if (tok.t !== "str") throw new ProtoError(`${where}: default must be a string`);
    return t === "string" ? q(v) : `Buffer.from(${q(v)}, "latin1")`;
  }
  if (tok.t !== "num") throw new ProtoError(`${where}: default must be a number`);
  if (t === "double" || t === "float") return String(Number(v));
  const big = BigInt(v);
  const unsigned = t.startsWith("uint") || t.startsWith("fixed");
  const bits = INT64.has(t) ? 64n : 32n;
  const min = unsigned ? 0n : -(1n << (bits - 1n));
  const max = unsigned ? (1n << bits) - 1n : (1n << (bits - 1n)) - 1n;
  if (big < min || big > max) throw new ProtoError(`${where}: default ${v} out of range for ${t}`);
  return INT64.has(t) ? `${big}n` : String(big);
}

function hintsLiteral(field, where) {
  const parts = [];
  for (const [key, tok] of Object.entries(field.opts).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const m = /^\(criu\)\.(\w+)$/.exec(key);
    if (!m) {
      if (key !== "default" && key !== "packed") throw new ProtoError(`${where}: unsupported option ${key}`);
      continue;
    }
    const kind = HINTS[m[1]];
    if (!kind) throw new ProtoError(`${where}: unknown display option ${key}`);
    if (kind === "bool") {
      if (tok.v !== "true" && tok.v !== "false") throw new ProtoError(`${where}: ${key} must be true or false`);
      if (tok.v === "true") parts.push(`${m[1]}: true`);
    } else {
      if (tok.t !== "str") throw new ProtoError(`${where}: ${key} must be a string`);
      parts.push(`${m[1]}: ${q(tok.v)}`);
    }
  }
  return parts.length ? `{ ${parts.join(", ")} }` : undefined;
}

function generate(parsed) {
  const types = collectTypes(parsed);
  const parsedByName = new Map(parsed.map((f) => [f.file, f]));
  const outputs = new Map();

  for (const f of parsed) {
    const visible = visibleFiles(parsedByName, f.file);
    for (const imp of f.imports) {
      if (!parsedByName.has(imp)) throw new ProtoError(`${f.file}: imports ${imp}, which is not among the schemas`);
    }
    const imports = new Map(); // module file -> Set of names
    const usesPb = new Set();
    const body = [];

    const useType = (resolved) => {
      const name = tsName(resolved.decl.fullName);
      if (resolved.file !== f.file) {
        if (!imports.has(resolved.file)) imports.set(resolved.file, new Set());
        imports.get(resolved.file).add(name);
      }
      return name;
    };

    const emitEnum = (e) => {
      const name = tsName(e.fullName);
      body.push(docComment(e.doc, "") +
        `export const ${name} = {\n` +
        e.values.map((v) => docComment(v.doc, "  ") + `  ${v.name}: ${v.number},\n`).join("") +
        `} as const;\n` +
        `export type ${name} = (typeof ${name})[keyof typeof ${name}];\n`);
    };

    const emitMessage = (m) => {
      for (const e of m.enums) emitEnum(e);
      for (const n of m.messages) emitMessage(n);
      const name = tsName(m.fullName);
      const props = [];
      const specs = [];
      for (const fld of m.fields) {
        const where = `${f.file}:${fld.line} ${m.fullName}.${fld.name}`;
        let tsType, kind, resolved;
        if (SCALARS.has(fld.type)) {
          tsType = tsScalarType(fld.type);
          kind = fld.type;
        } else {
          resolved = resolveType(types, m.fullName, fld.type, where);
          if (!visible.has(resolved.file)) throw new ProtoError(`${where}: ${fld.type} is defined in ${resolved.file}, which ${f.file} does not import`);
          tsType = useType(resolved);
          kind = resolved.decl.kind;
        }
        const packed = fld.opts.packed?.v === "true";
        if (packed && (fld.label !== "repeated" || kind === "message" || kind === "string" || kind === "bytes")) {
          throw new ProtoError(`${where}: only repeated numeric fields can be packed`);
        }
        const opt = fld.label === "optional" ? "?" : "";
        const arr = fld.label === "repeated" ? "[]" : "";
        props.push(docComment(fld.doc, "  ") + `  ${fld.name}${opt}: ${tsType}${arr};\n`);
        const parts = [`name: ${q(fld.name)}`, `number: ${fld.number}`, `label: ${q(fld.label)}`, `kind: ${q(kind)}`];
        if (kind === "enum") {
          usesPb.add("enumOf");
          parts.push(`enum: enumOf(${q(resolved.decl.fullName)}, ${tsType})`);
        }
        if (kind === "message") parts.push(`message: () => ${tsType}`);
        if (packed) parts.push("packed: true");
        const def = defaultLiteral(fld, resolved, where);
        if (def !== undefined) parts.push(`default: ${def}`);
        const hints = hintsLiteral(fld, where);
        if (hints) parts.push(`hints: ${hints}`);
        specs.push(`  { ${parts.join(", ")} },\n`);
      }
      usesPb.add("message");
      usesPb.add("MessageType");
      body.push(docComment(m.doc, "") +
        `export interface ${name} {\n${props.join("")}}\n` +
        `export const ${name}: MessageType<${name}> = message<${name}>(${q(m.fullName)}, [\n${specs.join("")}]);\n`);
    };

    for (const e of f.enums) emitEnum(e);
    for (const m of f.messages) emitMessage(m);

    const head = [
      `// Generated by scripts/gen-images.mjs from src/images/proto/${f.file}. Do not edit.\n`,
      ...(f.doc ? f.doc.split("\n").map((l) => `// ${l}`.trimEnd() + "\n") : []),
    ];
    const pbNames = [...usesPb].filter((n) => n !== "MessageType").sort();
    const importLines = [];
    if (usesPb.size) {
      const parts = [...pbNames];
      if (usesPb.has("MessageType")) parts.push("type MessageType");
      importLines.push(`import { ${parts.join(", ")} } from "../pb.js";\n`);
    }
    for (const [file, names] of [...imports].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      importLines.push(`import { ${[...names].sort().join(", ")} } from "./${moduleName(file)}.js";\n`);
    }
    const text = head.join("") + (importLines.length ? "\n" + importLines.join("") : "") + "\n" + body.join("\n");
    outputs.set(`${moduleName(f.file)}.ts`, text);
  }

  const names = [...outputs.keys()].sort();
  outputs.set("index.ts",
    `// Generated by scripts/gen-images.mjs. Do not edit.\n` +
    `// Every message and enum of src/images/proto, by its proto name.\n\n` +
    names.map((n) => `export * from "./${n.replace(/\.ts$/, ".js")}";\n`).join(""));
  return outputs;
}

function moduleName(protoFile) {
  return basename(protoFile, ".proto");
}

// ---------------------------------------------------------------------------

export function generateFrom(dir) {
  const files = readdirSync(dir).filter((n) => n.endsWith(".proto")).sort();
  const parsed = files.map((n) => parseFile(n, readFileSync(join(dir, n), "utf8")));
  return generate(parsed);
}

function main() {
  const args = process.argv.slice(2);
  let out = join(root, "src", "images", "gen");
  let from = protoDir;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--out" && args[i + 1]) out = resolve(args[++i]);
    else if (args[i] === "--proto" && args[i + 1]) from = resolve(args[++i]);
    else throw new ProtoError(`unknown argument ${args[i]}`);
  }
  const outputs = generateFrom(from);
  if (existsSync(out)) {
    for (const n of readdirSync(out)) if (n.endsWith(".ts") && !outputs.has(n)) rmSync(join(out, n));
  }
  mkdirSync(out, { recursive: true });
  for (const [name, text] of outputs) writeFileSync(join(out, name), text);
  console.log(`gen-images: ${outputs.size} files in ${out}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main();
  } catch (e) {
    if (e instanceof ProtoError) {
      console.error(`gen-images: ${e.message}`);
      process.exit(1);
    }
    throw e;
  }
}
