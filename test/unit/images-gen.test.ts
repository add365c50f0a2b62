// scripts/gen-images.mjs: the committed src/images/gen must be exactly what
// the generator makes from src/images/proto, and bad schemas must be refused.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import * as gen from "../../src/images/gen/index.js";
import { decode, encode } from "../../src/images/pb.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const script = join(root, "scripts", "gen-images.mjs");
const genDir = join(root, "src", "images", "gen");
const tmp = mkdtempSync(join(tmpdir(), "crest-images-gen-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

type Generate = (dir: string) => Map<string, string>;
async function generator(): Promise<Generate> {
  const mod = (await import(pathToFileURL(script).href)) as { generateFrom: Generate };
  return mod.generateFrom;
}

test("the committed src/images/gen is what the generator writes, byte for byte", () => {
  const out = join(tmp, "gen");
  execFileSync(process.execPath, [script, "--out", out], { stdio: "pipe" });
  const committed = readdirSync(genDir).filter((n) => n.endsWith(".ts")).sort();
  const fresh = readdirSync(out).sort();
  assert.deepEqual(fresh, committed, "same set of files");
  for (const name of fresh) {
    assert.equal(readFileSync(join(out, name), "utf8"), readFileSync(join(genDir, name), "utf8"), `${name} differs: run npm run gen`);
  }
  // one module per schema, plus the index
  const protos = readdirSync(join(root, "src", "images", "proto")).filter((n) => n.endsWith(".proto"));
  assert.equal(fresh.length, protos.length + 1);
});

test("the generator is deterministic", async () => {
  const generateFrom = await generator();
  const a = generateFrom(join(root, "src", "images", "proto"));
  const b = generateFrom(join(root, "src", "images", "proto"));
  assert.deepEqual([...a.keys()], [...b.keys()]);
  for (const [k, v] of a) assert.equal(b.get(k), v);
});

function protoDir(files: Record<string, string>): string {
  const d = mkdtempSync(join(tmp, "p-"));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(d, name), text);
  return d;
}

test("bad schemas are refused with the file and line", async () => {
  const generateFrom = await generator();
  const bad: [Record<string, string>, RegExp][] = [
    [{ "a.proto": 'syntax = "proto2";\nmessage m {\n  required nope x = 1;\n}\n' }, /a\.proto:3 m\.x: unknown type nope/],
    [{ "a.proto": 'syntax = "proto2";\nmessage m {\n  required uint32 x = 1;\n  optional uint32 y = 1;\n}\n' }, /a\.proto:4: duplicate field number 1/],
    [{ "a.proto": 'syntax = "proto2";\nmessage m {\n  required uint32 x = 1;\n  optional uint32 x = 2;\n}\n' }, /duplicate field name x/],
    [{ "a.proto": 'syntax = "proto3";\n' }, /only proto2 is supported/],
    [{ "a.proto": 'syntax = "proto2";\nmessage m { uint32 x = 1; }\n' }, /a\.proto:2: expected a field label, found 'uint32'/],
    [{ "a.proto": 'syntax = "proto2";\nmessage m { required uint32 x = 0; }\n' }, /bad field number 0/],
    [{ "a.proto": 'syntax = "proto2";\nmessage m { optional uint32 x = 1 [default = -1]; }\n' }, /default -1 out of range for uint32/],
    [{ "a.proto": 'syntax = "proto2";\nmessage m { repeated string x = 1 [packed = true]; }\n' }, /only repeated numeric fields can be packed/],
    [{ "a.proto": 'syntax = "proto2";\nmessage m { optional uint32 x = 1 [(criu).bogus = true]; }\n' }, /unknown display option \(criu\)\.bogus/],
    [{ "a.proto": 'syntax = "proto2";\nmessage m { required b x = 1; }\n', "b.proto": 'syntax = "proto2";\nmessage b { }\n' }, /b is defined in b\.proto, which a\.proto does not import/],
    [{ "a.proto": 'syntax = "proto2";\nimport "c.proto";\n' }, /imports c\.proto, which is not among the schemas/],
    [{ "a.proto": 'syntax = "proto2";\nmessage m { required uint32 x = 1;\n' }, /unexpected end of file/],
    [{ "a.proto": 'syntax = "proto2";\nmessage m {}\n', "b.proto": 'syntax = "proto2";\nmessage m {}\n' }, /type m also defined in a\.proto/],
  ];
  for (const [files, re] of bad) {
    assert.throws(() => generateFrom(protoDir(files)), re, re.source);
  }
  // the command line reports them in one line, no stack trace, exit code 1
  const d = protoDir({ "a.proto": 'syntax = "proto2";\nmessage m { required nope x = 1; }\n' });
  const r = spawnSync(process.execPath, [script, "--proto", d, "--out", join(d, "out")], { encoding: "utf8" });
  assert.equal(r.status, 1);
  assert.equal(r.stderr, "gen-images: a.proto:2 m.x: unknown type nope\n");
  const bad2 = spawnSync(process.execPath, [script, "--bogus"], { encoding: "utf8" });
  assert.equal(bad2.status, 1);
  assert.equal(bad2.stderr, "gen-images: unknown argument --bogus\n");
});

test("a generated module has interfaces, descriptors, enums, defaults and hints", async () => {
  const generateFrom = await generator();
  const out = generateFrom(protoDir({
    "x.proto": [
      "// Top comment.",
      'syntax = "proto2";',
      'import "y.proto";',
      "// An enum.",
      "enum color { RED = 0; BLUE = 2; }",
      "message outer {",
      "  enum kind { A = 1; B = 2; }",
      "  required kind k = 1 [default = B];",
      "  optional sint64 s = 2 [default = -1]; // trailing note",
      "  repeated uint32 p = 3 [packed = true];",
      "  optional other o = 4;",
      "  repeated outer self = 5;",
      "  optional uint32 h = 6 [(criu).hex = true, (criu).flags = \"mmap.prot\"];",
      "  optional color c = 7;",
      "  optional bytes b = 8;",
      "}",
    ].join("\n"),
    "y.proto": 'syntax = "proto2";\nmessage other { required string name = 1; }\n',
  }));
  const x = out.get("x.ts")!;
  assert.match(x, /^\/\/ Generated by scripts\/gen-images\.mjs from src\/images\/proto\/x\.proto\. Do not edit\.\n\/\/ Top comment\.\n/);
  assert.match(x, /import \{ enumOf, message, type MessageType \} from "\.\.\/pb\.js";/);
  assert.match(x, /import \{ other \} from "\.\/y\.js";/);
  assert.match(x, /\/\*\* An enum\. \*\/\nexport const color = \{\n  RED: 0,\n  BLUE: 2,\n\} as const;\nexport type color = \(typeof color\)\[keyof typeof color\];/);
  assert.match(x, /export const outer_kind = \{/);
  assert.match(x, /export interface outer \{\n  k: outer_kind;\n  \/\*\* trailing note \*\/\n  s\?: bigint;\n  p: number\[\];\n  o\?: other;\n  self: outer\[\];\n  h\?: number;\n  c\?: color;\n  b\?: Buffer;\n\}/);
  assert.match(x, /\{ name: "k", number: 1, label: "required", kind: "enum", enum: enumOf\("outer\.kind", outer_kind\), default: 2 \}/);
  assert.match(x, /\{ name: "s", number: 2, label: "optional", kind: "sint64", default: -1n \}/);
  assert.match(x, /\{ name: "p", number: 3, label: "repeated", kind: "uint32", packed: true \}/);
  assert.match(x, /\{ name: "self", number: 5, label: "repeated", kind: "message", message: \(\) => outer \}/);
  assert.match(x, /\{ name: "h", number: 6, label: "optional", kind: "uint32", hints: \{ flags: "mmap\.prot", hex: true \} \}/);
  assert.equal(out.get("index.ts"), '// Generated by scripts/gen-images.mjs. Do not edit.\n// Every message and enum of src/images/proto, by its proto name.\n\nexport * from "./x.js";\nexport * from "./y.js";\n');
});

test("the committed schemas carry CRIU's numbers where crest depends on them", () => {
  // A few anchors (the crit test checks every field against crit's own schemas).
  assert.equal(gen.fd_types.PIDFD, 20);
  assert.equal(gen.fd_types.AUTOFS_PIPE, 65535);
  assert.equal(gen.core_entry_march.X86_64, 1);
  assert.equal(gen.criu_req_type.SINGLE_PRE_DUMP, 13);
  assert.equal(gen.fstype.CGROUP2, 23);
  const opts = gen.criu_opts.fields;
  const byName = (n: string) => opts.find((f) => f.name === n)!;
  assert.deepEqual([byName("images_dir_fd").number, byName("images_dir_fd").label, byName("images_dir_fd").default], [1, "required", -1]);
  assert.equal(byName("log_to_stderr").number, 71);
  assert.equal(byName("cpu_cap").default, 0xffffffff);
  assert.equal(byName("pre_dump_mode").default, gen.criu_pre_dump_mode.SPLICE);
  // a criu_req as go-criu/runc send it round-trips
  const req = { type: gen.criu_req_type.DUMP, opts: { images_dir_fd: 3, log_level: 4, log_file: "dump.log", leave_running: true, external: ["mnt[/dev]:ZDTM_DEV"] } };
  const back = decode(gen.criu_req, encode(gen.criu_req, req));
  assert.equal(back.opts!.log_file, "dump.log");
  assert.deepEqual(back.opts!.external, ["mnt[/dev]:ZDTM_DEV"]);
  assert.deepEqual(back.opts!.exec_cmd, []);
});
