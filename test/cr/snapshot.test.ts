// Snapshots (issue 13): dump --leave-running keeps the tree frozen only to
// take its state and fork a copy-on-write snapshot of each task's memory,
// then copies the pages from the snapshot while the tree runs on.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { alive, CREST, crest, finish, procState, restoreWorkload, startWorkload, stop, waitFor, waitTreeGone, type Workload } from "./harness.js";
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

// A snapshot dump reads smaps before the freeze and checks those flags against its snapshot's (snapshot.ts):
// here crest is stopped right after that read, the task marks its memory MADV_WIPEONFORK (the snapshot
// child would get it wiped), and crest goes on. Taken unchecked, the dump would write zeros for it.
test("mapping flags that change between crest's early read of smaps and the freeze fail a snapshot dump, and the tree runs on untouched", async () => {
  const w = startWorkload("bigmem", ["16"]);
  try {
    waitFor("bigmem to be ready", () => (readFileSync(w.status, "utf8").startsWith("ready") ? true : null), 60_000);
    const dir = join(w.dir, "imgs");
    const p = spawn(CREST, ["dump", "-t", String(w.pid), "-D", dir, "-o", "dump.log", "-R"], {
      stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, CREST_FAULT: "dump:early-smaps:stop" },
    });
    let stderr = "";
    p.stderr!.on("data", (d) => (stderr += d));
    const exited = once(p, "exit");
    waitFor("crest to stop after its early read", () => procState(p.pid!).state === "T");
    process.kill(w.pid, "SIGUSR1");
    waitFor("bigmem's memory to be MADV_WIPEONFORK", () => /VmFlags:.* wf/.test(readFileSync(`/proc/${w.pid}/smaps`, "utf8")));
    process.kill(p.pid!, "SIGCONT");
    const [code] = await exited;
    assert.equal(code, 1, stderr);
    assert.match(stderr, new RegExp(`process ${w.pid} changed its mappings as the dump began \\(0x[0-9a-f]+-0x[0-9a-f]+ has VmFlags .*wf.*\\): dump it again`));
    assert.ok(alive(w.pid));
    assert.equal(procState(w.pid).tracer, 0);
    assert.equal(childrenOf(w.pid), "", "the snapshot process is reaped");
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});
