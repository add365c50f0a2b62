// The references `crest crit` is compared with, for test/unit/crit.test.ts
// and test/cr/crit.test.ts (a helper: no tests here):
//
// - Debian's crit 3.17 (/usr/bin/crit, package criu): its schemas predate
//   CRIU 4.2's, so it drops the fields added since and names pagemap_entry's
//   field 2 `nr_pages` (4.2: compat_nr_pages, with nr_pages the 64-bit field 5);
//   its --pretty lacks 4.2's flag names (VMA_AREA_MEMFD, _SHSTK, _UPROBES,
//   MAP_DROPPABLE: printed in the hex remainder).
// - CRIU 4.2's own pycriu (/work/criu-4.2/lib, run by the same python), when
//   that checkout is there: the schemas crest has, so only crest's own fields
//   (numbers 4001 and up, which CRIU skips as unknown) are not in it.
//
// crest's JSON is projected onto a reference's schemas (fields matched by
// number, renamed to the reference's names, the ones it lacks dropped and
// counted), so what is left must be equal; what was dropped is reported.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  IMG, pagemap_head, pagemap_entry, ghost_file_entry, ghost_chunk_entry, ipc_msg, parseJson,
  type Json, type JsonObject, type MessageType, type FieldSpec,
} from "../../src/images/index.js";
import { CRIT, PY } from "../crit.js";

const CRIT_BATCH = fileURLToPath(new URL("../../../test/crit-batch.py", import.meta.url));
export const CRIU42_LIB = "/work/criu-4.2/lib";

export type RefName = "debian" | "criu42";

interface PyField { name: string; number: number; enum?: string[] }

export interface Reference {
  name: RefName;
  env: NodeJS.ProcessEnv;
  schemas: Map<string, PyField[]>;
  /** 3.17's flag tables lack 4.2's newer names. */
  oldFlags: boolean;
}

/** Why a reference cannot run here, or undefined. */
export function referenceProblem(name: RefName): string | undefined {
  if (!existsSync(PY)) return `${PY} not found`;
  if (name === "debian" && !existsSync(CRIT)) return `${CRIT} not found (Debian package criu)`;
  if (name === "criu42" && !existsSync(`${CRIU42_LIB}/pycriu/images/pb2dict.py`)) return `no CRIU 4.2 pycriu at ${CRIU42_LIB}`;
  const r = spawnSync(PY, ["-c", "import pycriu.images, google.protobuf"], { encoding: "utf8", env: envOf(name) });
  return r.status === 0 ? undefined : `pycriu is not importable by ${PY}: ${r.stderr.trim()}`;
}

function envOf(name: RefName): NodeJS.ProcessEnv {
  return name === "criu42" ? { ...process.env, PYTHONPATH: CRIU42_LIB } : { ...process.env, PYTHONPATH: "" };
}

const cache = new Map<RefName, Reference>();

export function reference(name: RefName): Reference {
  let ref = cache.get(name);
  if (ref) return ref;
  const env = envOf(name);
  const script = `
import sys, json, glob, importlib, os, pycriu.images
d = os.path.dirname(pycriu.images.__file__)
sys.path.insert(0, d)
out = {}
def walk(m):
    out[m.full_name] = [dict(name=f.name, number=f.number, **({'enum': [v.name for v in f.enum_type.values]} if f.enum_type else {})) for f in m.fields]
    for n in m.nested_types: walk(n)
for p in sorted(glob.glob(d + '/*_pb2.py')):
    mod = importlib.import_module(os.path.basename(p)[:-3])
    for m in mod.DESCRIPTOR.message_types_by_name.values(): walk(m)
print(json.dumps(out))
`;
  const text = execFileSync(PY, ["-c", script], { encoding: "utf8", env });
  ref = { name, env, schemas: new Map(Object.entries(JSON.parse(text) as Record<string, PyField[]>)), oldFlags: name === "debian" };
  cache.set(name, ref);
  return ref;
}

export interface RefResult { file: string; ok: boolean; text?: string; error?: string }

/** `crit decode [--pretty] -i FILE` of each file by the reference, in one python (test/crit-batch.py). */
export function referenceDecode(ref: Reference, files: string[], pretty: boolean): RefResult[] {
  if (files.length === 0) return [];
  const r = spawnSync(PY, [CRIT_BATCH, "decode", "--text", ...(pretty ? ["--pretty"] : []), ...files], { encoding: "utf8", env: ref.env, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`crit-batch.py (${ref.name}) failed: ${r.stderr}`);
  const out = r.stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l) as RefResult);
  if (out.length !== files.length) throw new Error(`crit-batch.py (${ref.name}) answered ${out.length} of ${files.length} files`);
  return out;
}

// --- projection of crest's JSON onto a reference ------------------------------

const NEW_FLAGS: Record<string, number> = { VMA_AREA_MEMFD: 1 << 14, VMA_AREA_SHSTK: 1 << 15, VMA_AREA_UPROBES: 1 << 17, MAP_DROPPABLE: 0x8 };

/** A 4.2 flags string as crit 3.17 prints it: the names it lacks go into the hex remainder. */
function oldFlagString(s: string): string {
  if (s === "") return s;
  let rest = 0;
  const names: string[] = [];
  for (const part of s.split(" | ")) {
    if (part in NEW_FLAGS) rest |= NEW_FLAGS[part]!;
    else if (/^0x[0-9a-f]+$/.test(part)) rest |= parseInt(part, 16);
    else names.push(part);
  }
  if (rest) names.push(`0x${(rest >>> 0).toString(16)}`);
  return names.join(" | ");
}

/** What the projection left out: "message.field (number)" -> how many times. */
export type Dropped = Map<string, number>;

function project(ref: Reference, type: MessageType<unknown>, d: JsonObject, dropped: Dropped): JsonObject {
  const theirs = ref.schemas.get(type.name);
  if (!theirs) throw new Error(`the ${ref.name} crit has no message ${type.name}`);
  const out: JsonObject = {};
  const byName = new Map(type.fields.map((f) => [f.name, f] as [string, FieldSpec]));
  for (const [key, value] of Object.entries(d)) {
    const f = byName.get(key);
    if (!f) {
      out[key] = value; // "extra" and the like: not a field
      continue;
    }
    const t = theirs.find((x) => x.number === f.number);
    if (!t) {
      const k = `${type.name}.${f.name} (${f.number})`;
      dropped.set(k, (dropped.get(k) ?? 0) + 1);
      continue;
    }
    let v: Json = value;
    if (t.enum && typeof v === "string" && !t.enum.includes(v)) {
      // Python's protobuf keeps an enum value its schema lacks as an unknown field: the field is not shown.
      const k = `${type.name}.${f.name} = ${v} (enum value ${f.enum!.values[v]})`;
      dropped.set(k, (dropped.get(k) ?? 0) + 1);
      continue;
    }
    if (f.kind === "message") {
      const sub = f.message!();
      v = Array.isArray(v) ? v.map((e) => project(ref, sub, e as JsonObject, dropped)) : project(ref, sub, v as JsonObject, dropped);
    } else if (ref.oldFlags && (f.hints?.flags === "mmap.status" || f.hints?.flags === "mmap.flags") && typeof v === "string") {
      v = oldFlagString(v);
    }
    out[t.name] = v;
  }
  return out;
}

/** The message type of entry i of an image (pagemap's head, ghost's chunks, ...). */
function entryType(magic: string, i: number): MessageType<unknown> {
  if (magic === "PAGEMAP") return (i === 0 ? pagemap_head : pagemap_entry) as MessageType<unknown>;
  if (magic === "GHOST_FILE") return (i === 0 ? ghost_file_entry : ghost_chunk_entry) as MessageType<unknown>;
  const kind = Object.values(IMG).find((k) => k.name === magic && k.header !== "raw");
  if (!kind?.type) throw new Error(`no kind for magic ${magic}`);
  return kind.type;
}

/** crest's image JSON as the reference would show it; fields it lacks are counted in `dropped`. */
export function projectImage(ref: Reference, img: JsonObject, dropped: Dropped): JsonObject {
  const magic = img.magic as string;
  const entries = (img.entries as JsonObject[]).map((e, i) => {
    const p = project(ref, entryType(magic, i), e, dropped);
    if (magic === "IPCNS_MSG" && Array.isArray(p.extra)) {
      p.extra = p.extra.map((x, j) => (j % 2 === 0 ? project(ref, ipc_msg as MessageType<unknown>, x as JsonObject, dropped) : x));
    }
    return p;
  });
  return { magic, entries };
}

/** JSON text (crit's or crest's) with big integers kept exact. */
export function parseImageJson(text: string): JsonObject {
  return parseJson(text) as JsonObject;
}

/** The reference's crit command line (CRIU 4.2's crit run from its checkout, its version module stood in for). */
export function referenceCrit(ref: Reference, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const argv = ref.name === "debian"
    ? [CRIT, ...args]
    : [PY, "-c", `
import types, sys
sys.path.insert(0, ${JSON.stringify(CRIU42_CRIT)})
m = types.ModuleType('crit.version'); m.__version__ = '4.2'; sys.modules['crit.version'] = m
from crit import __main__ as c
sys.argv = ['crit'] + sys.argv[1:]
c.main()`, ...args];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", env: ref.env });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
const CRIU42_CRIT = "/work/criu-4.2/crit";

/** `crit info FILE` of each file by the reference, in one python: {magic, count} or the error. */
export function referenceInfo(ref: Reference, files: string[]): ({ magic: string; count: number } | { error: string })[] {
  const script = `
import sys, json, traceback, pycriu.images
for p in sys.argv[1:]:
    try:
        with open(p, 'rb') as f: print(json.dumps(pycriu.images.info(f)))
    except Exception as e:
        print(json.dumps({'error': traceback.format_exception_only(type(e), e)[-1].strip()}))
`;
  const r = spawnSync(PY, ["-c", script, ...files], { encoding: "utf8", env: ref.env });
  if (r.status !== 0) throw new Error(`crit info (${ref.name}) failed: ${r.stderr}`);
  return r.stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l) as { magic: string; count: number } | { error: string });
}
