// Snapshots (issue 13): dump --leave-running keeps the tree frozen only to
// take its state and fork a copy-on-write snapshot of each task's memory,
// then copies the pages from the snapshot while the tree runs on.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { alive, crest, finish, restoreWorkload, startWorkload, stop, waitFor, waitTreeGone, type Workload } from "./harness.js";
import { readImage } from "../../src/images/file.js";
import { IMG } from "../../src/images/index.js";

function dump(w: Workload, dir: string, extra: string[]): string {
  const r = crest(["dump", "-t", String(w.pid), "-D", dir, "-o", "dump.log", "-v4", ...extra]);
  assert.equal(r.code, 0, r.stderr);
  return readFileSync(join(dir, "dump.log"), "utf8");
}

/** The children of a process, zombies included. */
const childrenOf = (pid: number): string => readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();

// bigmem: 64 MiB of data; maps-objects: mappings of every sort, among them MADV_DONTFORK and MADV_WIPEONFORK
// ones (copied while frozen, between mappings found in the snapshot), shared memory, memfds, PROT_NONE.
for (const [name, args] of [["bigmem", ["64"]], ["maps-objects", []]] as const) test(`a --leave-running dump copies memory from a snapshot while the task runs on: the images are a frozen dump's, byte for byte (${name})`, () => {
  const w = startWorkload(name, [...args]);
  try {
    waitFor(`${name} to be ready`, () => (readFileSync(w.status, "utf8").startsWith("ready") ? true : null), 60_000);
    // Every process stopped, and on one CPU (the kernel writes the CPU number into a task's rseq area when it
    // runs): nothing may change between the two dumps but how they copy memory.
    const kids = childrenOf(w.pid);
    const tree = [w.pid, ...kids.split(/\s+/).filter(Boolean).map(Number)];
    for (const pid of tree) {
      execFileSync("taskset", ["-p", "-c", "0", String(pid)]);
      process.kill(pid, "SIGSTOP");
    }
    const snap = join(w.dir, "snap"), frozen = join(w.dir, "frozen");
    assert.match(dump(w, snap, ["-R"]), /its memory is kept in a snapshot, process \d+/);
    assert.doesNotMatch(dump(w, frozen, ["-s"]), /snapshot/);
    // Not compared: logs, statistics, and timens-0.img (the clocks as each dump read them); the manifests, but for timens-0.img's entry.
    const files = readdirSync(snap).filter((f) => !f.endsWith(".log") && !f.startsWith("stats-") && !f.startsWith("timens-") && f !== "crest-manifest.json");
    assert.ok(files.some((f) => f.startsWith("pages-")));
    for (const f of files) assert.ok(readFileSync(join(snap, f)).equals(readFileSync(join(frozen, f))), `${f} differs`);
    const sums = (dir: string) => Object.entries(JSON.parse(readFileSync(join(dir, "crest-manifest.json"), "utf8")).files as Record<string, unknown>).filter(([f]) => !f.startsWith("timens-"));
    assert.deepEqual(sums(snap), sums(frozen));
    assert.equal(childrenOf(w.pid), kids, "the snapshot process is reaped");
    for (const pid of tree) process.kill(pid, "SIGCONT");
    assert.ok(alive(w.pid));
    // The snapshot's images restore the tree, stopped as it was dumped (maps-objects checks its mappings as it found them at ready).
    for (const pid of tree) process.kill(pid, "SIGKILL");
    waitTreeGone(w, snap);
    restoreWorkload(w, [], snap);
    for (const pid of tree) process.kill(pid, "SIGCONT");
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("memory that keeps changing: the snapshot holds every page as it was at the freeze, and the restore checks out", () => {
  const w = startWorkload("memwrite", ["32", "2000"]);
  try {
    const dir = join(w.dir, "imgs");
    const log = dump(w, dir, ["-R", "--display-stats"]);
    assert.match(log, /its memory is kept in a snapshot/);
    assert.ok(alive(w.pid));
    assert.equal(childrenOf(w.pid), "", "the snapshot process is reaped");
    const stats = readImage(dir, IMG.stats, "dump")[0]!.dump!;
    assert.ok(stats.pages_written > 4096n, `pages written: ${stats.pages_written}`);
    process.kill(w.pid, "SIGKILL");
    waitTreeGone(w, dir);
    restoreWorkload(w, [], dir);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});
