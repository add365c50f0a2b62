// `crest crit` on images made here with crest's image layer: every kind with
// a payload after its entries (pipes data, socket queues, TCP streams, SysV
// IPC, ghost files, pagemaps) and plain ones, in --pretty too. Checked:
// encode(decode(file)) is the file, byte for byte; the JSON (and show
// --nopl's sizes) is what Debian's crit 3.17 prints, seen through its
// schemas (test/unit/crit-reference.ts), and what CRIU 4.2's pycriu prints
// where that checkout is; the command line's errors are messages, not traces.
// The images of real dumps (crest's and CRIU 4.2's) are test/cr/crit.test.ts's.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { projectRoot } from "../../src/sys/native.js";
import {
  IMG, writeImage, imagePath, dumpJson, type ImageKind, type ImageKey, type JsonObject, fd_types, inventory_entry,
} from "../../src/images/index.js";
import { fileOutput } from "../../src/images/file.js";
import { decodeImage, encodeImage, humanReadable, imageInfo, CritError } from "../../src/faces/crit/image-json.js";
import { CREST } from "../cr/harness.js";
import { parseImageJson, projectImage, reference, referenceCrit, referenceDecode, referenceProblem, type Dropped } from "./crit-reference.js";

const dir = mkdtempSync(join(tmpdir(), "crest-crit-unit-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const desc = (id: number) => ({ key: 0x5eed0000 + id, uid: 1000, gid: 1000, cuid: 1000, cgid: 1000, mode: 0o600, id });
/** Python's base64.encodebytes: lines of 76, each ending in a newline. */
const b64 = (b: Buffer) => b.toString("base64").replace(/(.{76})/g, "$1\n").replace(/\n?$/, "\n");
const bytes = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));

interface Case { label: string; kind: ImageKind<unknown, never>; key?: ImageKey; value: unknown }

/** One file of every payload layout (and a few plain ones), as crest writes them. */
const CASES: Case[] = [
  { label: "pipes-data", kind: IMG.pipesData, value: [
    { entry: { pipe_id: 7, bytes: 100, size: 65536 }, data: bytes(100, 1) },
    { entry: { pipe_id: 8, bytes: 0, size: 4096 }, data: Buffer.alloc(0) },
    { entry: { pipe_id: 9, bytes: 3000, size: 65536 }, data: bytes(3000, 2) },
  ] },
  { label: "fifo-data", kind: IMG.fifoData, value: [{ entry: { pipe_id: 3, bytes: 5 }, data: Buffer.from("hello") }] },
  { label: "sk-queues", kind: IMG.skQueues, value: [
    { entry: { id_for: 0x1234, length: 17, scm: [{ type: 1, rights: [4, 5] }] }, data: bytes(17, 3) },
    { entry: { id_for: 0x1235, length: 0 }, data: Buffer.alloc(0) },
  ] },
  { label: "tcp-stream", kind: IMG.tcpStream, key: 0xabcd, value: [{
    entry: { inq_len: 10, inq_seq: 0xfffffff0, outq_len: 200, outq_seq: 77, opt_mask: 7, snd_wscale: 7, mss_clamp: 65495, rcv_wscale: 7, timestamp: 123456, unsq_len: 50 },
    inq: bytes(10, 4), outq: bytes(200, 5),
  }] },
  { label: "ipcns-shm", kind: IMG.ipcShm, key: 11, value: [
    { entry: { desc: desc(1), size: 4099n }, data: bytes(4099, 6) },
    { entry: { desc: desc(2), size: 8n }, data: bytes(8, 7) },
  ] },
  // CRIU 4.x's layout: the contents in pagemap-shmem. crit takes what follows such a segment for
  // its contents, so only a file ending with one decodes the same in crit.
  { label: "ipcns-shm-in-pagemaps", kind: IMG.ipcShm, key: 12, value: [
    { entry: { desc: desc(3), size: 4n }, data: bytes(4, 8) },
    { entry: { desc: desc(4), size: 65536n, in_pagemaps: true } },
  ] },
  { label: "ipcns-sem", kind: IMG.ipcSem, key: 13, value: [
    { entry: { desc: desc(5), nsems: 3 }, values: [0, 1, 65535] },
    { entry: { desc: desc(6), nsems: 4 }, values: [9, 8, 7, 6] },
  ] },
  { label: "ipcns-msg", kind: IMG.ipcMsg, key: 14, value: [
    { entry: { desc: desc(7), qbytes: 16384, qnum: 2 }, messages: [
      { msg: { mtype: 1n, msize: 5 }, data: Buffer.from("first") },
      { msg: { mtype: 0x7fffffffffffffffn, msize: 13 }, data: bytes(13, 9) },
    ] },
    { entry: { desc: desc(8), qbytes: 16384, qnum: 0 }, messages: [] },
  ] },
  { label: "ghost-file", kind: IMG.ghostFile, key: 0x1f, value: {
    entry: { uid: 0, gid: 0, mode: 0o100644, dev: 0x803, ino: 42n, atim: { tv_sec: 1n, tv_usec: 2n }, mtim: { tv_sec: 3n, tv_usec: 4n } }, data: bytes(5000, 10),
  } },
  { label: "ghost-file-chunks", kind: IMG.ghostFile, key: 0x20, value: {
    entry: { uid: 0, gid: 0, mode: 0o100600, chunks: true, size: 1n << 20n },
    chunks: [{ chunk: { off: 0n, len: 10n }, data: bytes(10, 11) }, { chunk: { off: 65536n, len: 4096n }, data: bytes(4096, 12) }],
  } },
  { label: "pagemap", kind: IMG.pagemap, key: 1, value: {
    head: { pages_id: 3 },
    entries: [
      { vaddr: 0x5566_7700_0000n, compat_nr_pages: 2, flags: 4, nr_pages: 2n },
      { vaddr: 0x7ffd_8c3e_1000n, compat_nr_pages: 0, flags: 1, nr_pages: 1n << 33n },
      { vaddr: 0x7ffd_9000_0000n, compat_nr_pages: 5, in_parent: true },
      { vaddr: 0xffff_ffff_ff60_0000n, compat_nr_pages: 1, flags: 4, nr_pages: 1n },
    ],
  } },
  { label: "pagemap-shmem", kind: IMG.shmemPagemap, key: 99, value: { head: { pages_id: 4 }, entries: [{ vaddr: 0n, compat_nr_pages: 16, flags: 4, nr_pages: 16n }] } },
  { label: "inventory", kind: IMG.inventory, value: [{ img_version: 2, fdinfo_per_id: true, ns_per_id: true, root_cg_set: 1, lsmtype: 0, dump_criu_run_id: "x" } satisfies Partial<inventory_entry>] },
  { label: "fdinfo", kind: IMG.fdinfo, key: 2, value: [{ id: 1, flags: 0, type: fd_types.REG, fd: 0 }, { id: 2, flags: 1, type: fd_types.PIPE, fd: 5, xattr_security_selinux: "" }] },
  { label: "mm", kind: IMG.mm, key: 77, value: [{
    mm_start_code: 0x400000n, mm_end_code: 0x401000n, mm_start_data: 0n, mm_end_data: 0n, mm_start_stack: 0x7ffd0000n, mm_start_brk: 0n, mm_brk: 0n,
    mm_arg_start: 0n, mm_arg_end: 0n, mm_env_start: 0n, mm_env_end: 0n, exe_file_id: 3, mm_saved_auxv: [33n, 0n],
    vmas: [
      // memfd mapping (VMA_AREA_MEMFD, 4.2's flag name) and MAP_DROPPABLE: 3.17 shows their bits in hex
      { start: 0x10000n, end: 0x20000n, pgoff: 0x3000n, shmid: 5n, prot: 3, flags: 0x1, status: 0x4041, fd: -1n, madv: 0n, fdflags: 2 },
      { start: 0x30000n, end: 0x31000n, pgoff: 0n, shmid: 0n, prot: 7, flags: 0x28, status: 0x201, fd: -1n },
    ],
  }] },
];

const files = CASES.map((c) => {
  writeImage(dir, c.kind, c.key, c.value as never);
  return imagePath(dir, c.kind, c.key);
});

test("encode of decode gives the file back, byte for byte, plain and --pretty", () => {
  files.forEach((file, i) => {
    for (const pretty of [false, true]) {
      const json = parseImageJson(dumpJson(decodeImage(file, { pretty })));
      const back = join(dir, `${CASES[i]!.label}.${pretty}.back`);
      encodeImage(json, back, fileOutput(back));
      assert.ok(readFileSync(back).equals(readFileSync(file)), `${CASES[i]!.label} pretty=${pretty}`);
    }
  });
});

test("the payloads as crit lays them out", () => {
  const d = (label: string) => decodeImage(files[CASES.findIndex((c) => c.label === label)]!) as { magic: string; entries: JsonObject[] };
  assert.equal(d("pipes-data").entries[0]!.extra, b64(bytes(100, 1)));
  assert.equal(d("pipes-data").entries[1]!.extra, "");
  assert.deepEqual(d("tcp-stream").entries[0]!.extra, { inq: b64(bytes(10, 4)), outq: b64(bytes(200, 5)) });
  assert.deepEqual(d("ipcns-sem").entries[0]!.extra, [0, 1, 65535]);
  const msg = d("ipcns-msg").entries[0]!.extra as unknown[];
  assert.deepEqual(msg[0], { mtype: 1, msize: 5 });
  assert.equal(msg[1], "Zmlyc3Q=\n");
  assert.equal(typeof (msg[2] as JsonObject).mtype, "bigint", "2^63-1 stays exact");
  assert.deepEqual(d("ipcns-shm-in-pagemaps").entries[1]!.extra, "", "an in_pagemaps segment has no contents here");
  const pm = d("pagemap");
  assert.equal(pm.magic, "PAGEMAP");
  assert.deepEqual(pm.entries[0], { pages_id: 3 }, "the head first");
  assert.equal(pm.entries[2]!.nr_pages, 2 ** 33);
  assert.equal(pm.entries[4]!.vaddr, 0xffff_ffff_ff60_0000n, "beyond 2^53: exact, as a bigint");
  assert.equal(d("pagemap-shmem").magic, "PAGEMAP", "crit names the shmem pagemap's magic PAGEMAP");
  const g = d("ghost-file-chunks");
  assert.equal(g.entries.length, 3);
  assert.equal(g.entries[0]!.extra, undefined);
  assert.equal(g.entries[2]!.extra, b64(bytes(4096, 12)));
  assert.equal(Object.keys(d("ghost-file").entries[0]!).at(-1), "extra", "extra comes last, as crit adds it");
  const mm = decodeImage(files[CASES.findIndex((c) => c.label === "mm")]!, { pretty: true }).entries as JsonObject[];
  const vmas = mm[0]!.vmas as JsonObject[];
  assert.equal(vmas[0]!.status, "VMA_AREA_REGULAR | VMA_FILE_PRIVATE | VMA_AREA_MEMFD");
  assert.equal(vmas[1]!.flags, "MAP_DROPPABLE | MAP_ANON");
  assert.equal(vmas[0]!.start, "0x10000");
});

test("crit info: magic and entries (a pagemap's head not counted)", () => {
  const info = (label: string) => imageInfo(files[CASES.findIndex((c) => c.label === label)]!);
  assert.deepEqual(info("pipes-data"), { magic: "PIPES_DATA", count: 3 });
  assert.deepEqual(info("pagemap"), { magic: "PAGEMAP", count: 4 });
  assert.deepEqual(info("ipcns-msg"), { magic: "IPCNS_MSG", count: 2 });
});

test("show --nopl's sizes, as Python's human_readable prints them", () => {
  const cases: [number, string][] = [
    [0, "0B"], [1, "1B"], [1023, "1023B"], [1024, "1KB"], [1280, "1.2KB"], [1536, "1.5KB"], [1331, "1.3KB"], [1075, "1.0KB"],
    [2099, "2.0KB"], [65536, "64KB"], [1101005, "1.1MB"], [3221225472, "3GB"], [1126, "1.1KB"],
  ];
  for (const [n, s] of cases) assert.equal(humanReadable(n), s, String(n));
  const shown = decodeImage(files[0]!, { pretty: true, nopl: true }).entries as JsonObject[];
  assert.deepEqual(shown.map((e) => e.extra), ["... <100B>", "... <0B>", "... <2.9KB>"]);
});

const debian = referenceProblem("debian");
const criu42 = referenceProblem("criu42");

for (const [name, problem] of [["debian", debian], ["criu42", criu42]] as const) {
  test(`the JSON is what ${name === "debian" ? "Debian's crit 3.17" : "CRIU 4.2's crit"} prints, plain and --pretty`, { skip: problem && !(name === "debian" && process.env.CI) ? problem : false }, () => {
    const ref = reference(name);
    const compared = files;
    for (const pretty of [false, true]) {
      const theirs = referenceDecode(ref, compared, pretty);
      compared.forEach((file, i) => {
        assert.ok(theirs[i]!.ok, `${name} decodes ${CASES[i]!.label}: ${theirs[i]!.error}`);
        const dropped: Dropped = new Map();
        const ours = projectImage(ref, parseImageJson(dumpJson(decodeImage(file, { pretty }))), dropped);
        assert.deepEqual(ours, parseImageJson(theirs[i]!.text!), `${CASES[i]!.label} pretty=${pretty}`);
        assert.equal(dumpJson(ours, pretty ? 4 : undefined) + "\n", theirs[i]!.text, `${CASES[i]!.label}: the same text`);
      });
    }
    // show --nopl: crit's own command (one start per file).
    for (const [i, file] of files.entries()) {
      if (!/pipes|fifo|sk-queues|tcp|ipcns|ghost/.test(CASES[i]!.label)) continue;
      const r = referenceCrit(ref, ["show", "--nopl", file]);
      assert.equal(r.status, 0, r.stderr);
      const ours = projectImage(ref, decodeImage(file, { pretty: true, nopl: true }), new Map());
      assert.deepEqual(ours, parseImageJson(r.stdout), `show --nopl ${CASES[i]!.label}`);
    }
  });
}

// --- captured images ----------------------------------------------------------------

const FIXTURES = join(projectRoot(), "test", "fixtures", "images");
const NOT_IMAGES = /\.(mjs|log)$|^pages-|^(ifaddr|route6?|rule|ip6?tables|nftables)-\d+\.img$|\.tar\.gz(\.img)?$/;

test("the captured dumps of test/fixtures/images: encode gives every file back, the JSON is Debian's crit's", {
  skip: existsSync(FIXTURES) ? false : "no test/fixtures/images here (they came with the codec branch)",
}, () => {
  const sets = readdirSync(FIXTURES).filter((d) => statSync(join(FIXTURES, d)).isDirectory());
  let n = 0;
  for (const set of sets) {
    const files = readdirSync(join(FIXTURES, set)).filter((f) => !NOT_IMAGES.test(f)).map((f) => join(FIXTURES, set, f));
    for (const file of files) {
      for (const pretty of [false, true]) {
        const back = join(dir, "fixture.back");
        encodeImage(parseImageJson(dumpJson(decodeImage(file, { pretty }))), back, fileOutput(back));
        assert.ok(readFileSync(back).equals(readFileSync(file)), `${set}/${basename(file)} pretty=${pretty}: the same bytes`);
      }
      n++;
    }
    if (debian) continue;
    const ref = reference("debian");
    for (const pretty of [false, true]) {
      const theirs = referenceDecode(ref, files, pretty);
      files.forEach((file, i) => {
        assert.ok(theirs[i]!.ok, `crit decodes ${set}/${basename(file)}: ${theirs[i]!.error}`);
        const ours = projectImage(ref, parseImageJson(dumpJson(decodeImage(file, { pretty }))), new Map());
        assert.deepEqual(ours, parseImageJson(theirs[i]!.text!), `${set}/${basename(file)} pretty=${pretty}`);
      });
    }
  }
  assert.ok(n > 100, `${n} captured image files`);
});

// --- the command line -------------------------------------------------------------

function crit(args: string[], input?: string | Buffer): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(CREST, ["crit", ...args], { input, encoding: "utf8" });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("crest crit decode/encode through stdin and stdout, as crit: a newline after JSON on stdout only", () => {
  const file = files[0]!;
  const viaStdin = spawnSync(CREST, ["crit", "decode"], { input: readFileSync(file), encoding: "utf8" });
  assert.equal(viaStdin.status, 0, viaStdin.stderr);
  assert.equal(viaStdin.stdout, dumpJson(decodeImage(file)) + "\n");
  const out = join(dir, "decoded.json");
  assert.equal(crit(["decode", "-i", file, "-o", out, "--pretty"]).code, 0);
  assert.equal(readFileSync(out, "utf8"), dumpJson(decodeImage(file, { pretty: true }), 4), "no newline in a file");
  const enc = spawnSync(CREST, ["crit", "encode"], { input: viaStdin.stdout });
  assert.equal(enc.status, 0);
  assert.ok(enc.stdout.equals(readFileSync(file)), "encode to stdout");
  assert.equal(crit(["show", file]).stdout, dumpJson(decodeImage(file, { pretty: true }), 4) + "\n", "show is decode --pretty");
  assert.equal(crit(["info", file]).stdout, '{\n    "magic": "PIPES_DATA",\n    "count": 3\n}\n');
  assert.equal(crit(["--in=" + file, "decode"]).code, 2, "options after the command");
  assert.equal(crit(["decode", `--in=${file}`]).stdout, viaStdin.stdout);
});

test("crest crit refuses with a message: usage, raw data, unknown magic, truncation, bad JSON, kinds crest lacks", () => {
  const usage = crit([]);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /usage: crest crit .*\ncrest crit: error: too few arguments/);
  assert.match(crit(["x", dir, "tree"]).stderr, /invalid choice: 'tree' \(choose from 'ps', 'fds', 'mems', 'rss'\)/);
  assert.match(crit(["decode", "--bogus"]).stderr, /unrecognized arguments: --bogus/);
  assert.equal(crit(["--help"]).code, 0);

  const raw = join(dir, "pages-1.img");
  writeFileSync(raw, bytes(8192, 1));
  const r = crit(["decode", "-i", raw]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^crest crit: .*pages-1\.img: Unknown magic 0x[0-9a-f]+\.\nMaybe you are feeding me an image with raw data/);

  const autofs = join(dir, "autofs.img");
  writeFileSync(autofs, Buffer.from([0x19, 0x43, 0x56, 0x54, 0x43, 0x39, 0x35, 0x49, 0, 0, 0, 0]));
  assert.match(crit(["decode", "-i", autofs]).stderr, /AUTOFS images \(0x49353943\) are not decoded by crest crit: crest has no schema for them/);

  const cut = join(dir, "cut.img");
  writeFileSync(cut, readFileSync(files[0]!).subarray(0, 40));
  const t = crit(["decode", "-i", cut]);
  assert.equal(t.code, 1);
  assert.match(t.stderr, /cut\.img: truncated data of pipe 7 at offset \d+: need 100 bytes/);
  assert.doesNotMatch(t.stderr, /\n\s+at /, "no stack trace");

  const bad = crit(["encode"], "{\"magic\": \"PIPES_DATA\", \"entries\": [");
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /Cannot read JSON/);
  assert.match(crit(["encode"], '{"magic": "NOPE", "entries": []}').stderr, /no image kind named "NOPE"/);
  assert.match(crit(["encode"], '{"magic": "PIPES_DATA", "entries": [{"pipe_id": 1, "bytes": 3, "extra": "YQ==\\n"}]}').stderr,
    /pipe 1: 1 bytes of data, but the entry says 3/);
  assert.match(crit(["encode"], '{"magic": "CORE", "entries": [{"mtype": "Z80"}]}').stderr, /entry 0 \(core_entry\): field mtype/);
  assert.throws(() => encodeImage([] as never, "x", fileOutput(join(dir, "x"))), CritError);
});
