// `crest crit` on the images of real dumps: workloads of every area (files,
// pipes, unix and TCP sockets with --tcp-established, ttys, SysV IPC,
// threads, ghost files, namespaces through crest run) are dumped, and for
// EVERY image file of each dump:
//
// - `crest crit decode` and `decode --pretty` give the JSON Debian's
//   `crit decode` gives (parsed, deep-equal), once crest's JSON is seen
//   through crit 3.17's schemas (test/unit/crit-reference.ts): the fields
//   3.17 does not know are dropped, and the test reports which (CRIU 4.2's
//   newer fields, crest's own fields 4001 and up) instead of hiding them;
// - the same against CRIU 4.2's pycriu (/work/criu-4.2/lib), where only
//   crest's own fields differ, and the JSON text is the same to the byte;
// - `crest crit encode` of `decode`'s JSON, plain and pretty, gives back the
//   file byte for byte;
// - `crest crit x DIR ps|fds|mems|rss` prints what Debian's `crit x` prints.
//
// Then the tree is restored and must PASS its own checks (the images read by
// restore are the ones crit read).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { dumpJson, IMG, readImage, type Json, type JsonObject } from "../../src/images/index.js";
import { CREST, dumpLog, dumpWorkload, finish, imagesDir, restoreWorkload, startWorkload, stop, waitFor, waitGone, type Workload } from "./harness.js";
import {
  parseImageJson, projectImage, reference, referenceCrit, referenceDecode, referenceInfo, referenceProblem, type Dropped, type Reference,
} from "../unit/crit-reference.js";
import { imageInfo } from "../../src/faces/crit/image-json.js";

const debianProblem = referenceProblem("debian");
const criu42Problem = referenceProblem("criu42");
if (criu42Problem) console.log(`# CRIU 4.2's pycriu not compared: ${criu42Problem}`);

const scratch = mkdtempSync(join(tmpdir(), "crest-crit-cr-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** Image files crit decodes: not logs, pages, other tools' raw output, the parent link or crest's own files. */
const NOT_CRIT = /\.log$|^pages-|^(ifaddr|route6?|rule|ip6?tables|nftables)-\d+\.img$|\.tar\.gz(\.img)?$|^parent$|^crest-.*\.json$/;

function imageFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => !NOT_CRIT.test(f)).sort();
}

/** Runs `crest crit ARGS` on each file in one shell (a crest start per file, no node start per spawn). */
function crestCritEach(script: string, files: string[]): void {
  const r = spawnSync("/bin/sh", ["-c", `for f; do ${script} || echo "FAILED: $f" >&2; done`, "sh", ...files], { encoding: "utf8", env: { ...process.env, CREST: CREST } });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, "", `crest crit failed:\n${r.stderr}`);
}

/** What differs from a reference, for the report. */
const differences = new Map<string, Set<string>>();
function note(ref: string, what: string): void {
  if (!differences.has(ref)) differences.set(ref, new Set());
  differences.get(ref)!.add(what);
}
after(() => {
  for (const [ref, whats] of differences) for (const w of [...whats].sort()) console.log(`# ${ref}: ${w}`);
});

/** Compares crest's decodings (out/<file>.json, .pretty.json) of dir's images with a reference's. */
function compareWith(ref: Reference, dir: string, out: string, files: string[], pretty: boolean): void {
  const theirs = referenceDecode(ref, files.map((f) => join(dir, f)), pretty);
  files.forEach((f, i) => {
    const r = theirs[i]!;
    const ours = parseImageJson(readFileSync(join(out, `${f}${pretty ? ".pretty" : ""}.json`), "utf8"));
    if (!r.ok) {
      // Said, not hidden: a file the reference cannot decode at all.
      note(ref.name, `cannot decode ${f.replace(/\d+/g, "N")} (${ours.magic}): ${r.error}`);
      return;
    }
    const dropped: Dropped = new Map();
    const projected = projectImage(ref, ours, dropped);
    for (const k of dropped.keys()) note(ref.name, `lacks ${k}`);
    const expected = parseImageJson(r.text!);
    if (ours.magic === "IPCNS_SHM" && (ours.entries as JsonObject[]).some((e) => e.in_pagemaps) && !isDeepStrictEqual(projected, expected)) {
      // crit reads `size` bytes after every segment, even one whose contents are in pagemap-shmem
      // (in_pagemaps, as CRIU 4.x writes them): the entries after it become its "extra".
      assert.ok((expected.entries as Json[]).length < (ours.entries as Json[]).length, `${f}: ${ref.name}'s crit reads entries as contents`);
      note(ref.name, `crit decode takes the entries after an in_pagemaps shm segment for its contents (${f.replace(/\d+/g, "N")})`);
      return;
    }
    assert.deepEqual(projected, expected, `${basename(dir)}/${f}${pretty ? " --pretty" : ""}: crest crit and ${ref.name}'s crit differ`);
    // Beyond equal values: the same keys in the same order, printed the same way.
    assert.equal(dumpJson(projected, pretty ? 4 : undefined) + "\n", r.text, `${f}: the same JSON text as ${ref.name}'s crit`);
  });
}

function checkImages(w: Workload, label: string): void {
  const dir = imagesDir(w);
  const out = join(scratch, label);
  spawnSync("mkdir", ["-p", out]);
  const files = imageFiles(dir);
  assert.ok(files.includes("inventory.img") && files.includes("pstree.img"), `${label}: a dump's images`);
  const o = (suffix: string) => `"${out}/$(basename "$f")${suffix}"`;
  // decode, decode --pretty, and each encoded back (stdout and -o both used).
  crestCritEach(
    `"$CREST" crit decode -i "$f" -o ${o(".json")} && "$CREST" crit decode --pretty < "$f" > ${o(".pretty.json")} && ` +
      `"$CREST" crit encode -i ${o(".json")} -o ${o(".img")} && "$CREST" crit encode < ${o(".pretty.json")} > ${o(".pretty.img")}`,
    files.map((f) => join(dir, f)),
  );
  for (const f of files) {
    const original = readFileSync(join(dir, f));
    assert.ok(original.equals(readFileSync(join(out, `${f}.img`))), `${label}/${f}: encode of decode gives the same bytes`);
    assert.ok(original.equals(readFileSync(join(out, `${f}.pretty.img`))), `${label}/${f}: encode of decode --pretty gives the same bytes`);
  }
  for (const [name, problem] of [["debian", debianProblem], ["criu42", criu42Problem]] as const) {
    if (problem) {
      if (name === "debian" && process.env.CI) assert.fail(`Debian's crit unavailable: ${problem}`);
      continue;
    }
    const ref = reference(name);
    compareWith(ref, dir, out, files, false);
    compareWith(ref, dir, out, files, true);
    for (const what of ["ps", "fds", "mems", "rss"]) {
      const ours = spawnSync(CREST, ["crit", "x", dir, what], { encoding: "utf8" });
      assert.equal(ours.status, 0, `crest crit x ${what}: ${ours.stderr}`);
      const theirs = referenceCrit(ref, ["x", dir, what]);
      if (theirs.status !== 0) {
        note(name, `crit x ${what} fails on ${label}: ${theirs.stderr.trim().split("\n").pop()}`);
        continue;
      }
      if (name === "debian" && what === "rss" && compatCountsDiffer(dir)) {
        // crit 3.17 reads pagemap_entry field 2, which CRIU 4.2 leaves 0 (the count is in field 5).
        assert.notEqual(ours.stdout, theirs.stdout);
        note(name, `crit x rss shows the 32-bit page counts (field 2), 0 in ${label}'s images`);
        continue;
      }
      assert.equal(ours.stdout, theirs.stdout, `${label}: crest crit x ${what} prints what ${name}'s crit x ${what} prints`);
    }
    // crit info: Debian's fails on every file (it compares bytes with ''); 4.2's counts entries by
    // their length words only, so files with payloads after their entries give it other numbers.
    const infos = referenceInfo(ref, files.map((f) => join(dir, f)));
    files.forEach((f, i) => {
      const ours = imageInfo(join(dir, f));
      const theirs = infos[i]!;
      if ("error" in theirs) note(name, `crit info fails: ${theirs.error}`);
      else if (theirs.count !== ours.count && WITH_PAYLOADS.has(ours.magic as string)) note(name, `crit info counts ${theirs.count} entries in ${f.replace(/\d+/g, "N")} (${ours.magic}), crest ${ours.count}`);
      else assert.deepEqual(ours, theirs, `${label}/${f}: crest crit info`);
    });
  }
}

/** Whether a pagemap of dir has entries whose field 2 (compat_nr_pages) is not their count. */
function compatCountsDiffer(dir: string): boolean {
  return readdirSync(dir).filter((f) => /^pagemap-\d+\.img$/.test(f)).some((f) =>
    readImage(dir, IMG.pagemap, Number(/\d+/.exec(f)![0])).entries.some((e) => e.nr_pages !== undefined && BigInt(e.compat_nr_pages) !== e.nr_pages));
}

/** Kinds whose entries are followed by raw data (crit 4.2's info reads those as entries too). */
const WITH_PAYLOADS = new Set(["PIPES_DATA", "FIFO_DATA", "SK_QUEUES", "TCP_STREAM", "IPCNS_SHM", "IPCNS_SEM", "IPCNS_MSG", "GHOST_FILE"]);

interface Scenario {
  label: string;
  name: string;
  args?: string[];
  ns?: string;
  loUp?: boolean;
  dump?: string[];
  restore?: string[];
  /** Started beside the tree (a peer outside it); stopped at the end. */
  peer?: () => { peer: Workload; args: string[] };
}

const SCENARIOS: Scenario[] = [
  { label: "files", name: "files" },
  { label: "files-pipes", name: "files-pipes" },
  { label: "pipes", name: "pipes" },
  { label: "files-ghost", name: "files-ghost" },
  { label: "fifo-ghost", name: "fifo-ghost" },
  { label: "fds-anon", name: "fds-anon" },
  { label: "fds-epoll", name: "fds-epoll" },
  { label: "fds-inotify", name: "fds-inotify" },
  { label: "sk-unix", name: "sk-unix" },
  { label: "sk-unix-scm", name: "sk-unix-scm" },
  { label: "sk-inet", name: "sk-inet", args: ["all"], dump: ["--tcp-established"], restore: ["--tcp-established"] },
  {
    label: "sk-tcp-stream", name: "sk-tcp-stream", dump: ["--tcp-established"], restore: ["--tcp-established"],
    peer: () => {
      const peer = startWorkload("sk-tcp-stream", ["server"]);
      const port = waitFor("the server's port", () => { try { return readFileSync(join(peer.dir, "port"), "utf8").trim(); } catch { return ""; } }, 5000);
      return { peer, args: ["client", port] };
    },
  },
  { label: "sk-packet", name: "sk-packet" },
  { label: "sk-netlink", name: "sk-netlink" },
  { label: "tty-pty", name: "tty-pty" },
  { label: "sysv", name: "sysv", ns: "pid,ipc,uts" },
  { label: "shm", name: "shm" },
  { label: "threads", name: "threads" },
  { label: "signals", name: "signals" },
  { label: "timers", name: "timers" },
  { label: "mem", name: "mem" },
  { label: "forest", name: "forest", args: ["3"] },
  { label: "netns", name: "loop", ns: "pid,ipc,uts,net", loUp: true },
  { label: "mntns", name: "mntns", ns: "mnt,ipc", restore: ["--root", "/"] },
  { label: "userns", name: "userns", ns: "pid,user" },
];

for (const s of SCENARIOS) {
  test(`crest crit on the images of ${s.label}: Debian's crit's JSON and x, encode gives the bytes back`, () => {
    let peer: Workload | undefined;
    let w: Workload | undefined;
    try {
      let args = s.args ?? [];
      if (s.peer) ({ peer, args } = s.peer());
      w = startWorkload(s.name, args, { ...(s.ns ? { ns: s.ns } : {}), ...(s.loUp ? { loUp: true } : {}) });
      dumpWorkload(w, s.dump ?? []);
      checkImages(w, s.label);
      restoreWorkload(w, s.restore ?? []);
      assert.equal(finish(w), "PASS");
      if (peer) assert.equal(finish(peer), "PASS", "the peer outside the tree");
    } finally {
      if (w) stop(w);
      if (peer) stop(peer);
    }
  });
}

// Images written by CRIU 4.2 itself (CREST_CRIU: the criu binary, e.g. /work/criu-bin/criu):
// the same checks, on what criu writes rather than what crest writes.
const CRIU = process.env.CREST_CRIU;
const CRIU_SCENARIOS: Scenario[] = [
  { label: "loop", name: "loop" },
  { label: "files", name: "files" },
  { label: "files-pipes", name: "files-pipes" },
  { label: "sk-unix", name: "sk-unix" },
  { label: "fds-epoll", name: "fds-epoll" },
  { label: "threads", name: "threads" },
  { label: "mem", name: "mem" },
  { label: "sysv", name: "sysv", ns: "pid,ipc,uts" },
];
for (const s of CRIU_SCENARIOS) {
  test(`crest crit on the images CRIU 4.2 writes for ${s.label}`, { skip: CRIU ? false : "CREST_CRIU (a criu 4.2 binary) not set" }, () => {
    const w = startWorkload(s.name, s.args ?? [], s.ns ? { ns: s.ns } : {});
    try {
      mkdirSync(imagesDir(w)); // criu does not make it
      const r = spawnSync(CRIU!, ["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log", "-v4"], { encoding: "utf8" });
      assert.equal(r.status, 0, `criu dump of ${s.name}: ${r.stderr}\n${dumpLog(w).split("\n").filter((l) => /Error/.test(l)).join("\n")}`);
      waitGone(w.pid);
      checkImages(w, `criu-${s.label}`);
    } finally {
      stop(w);
    }
  });
}
