// crest inspect (issue 14): the summary of a real checkpoint says what the
// tree was: its tasks with their commands, their pipes and sockets and
// which tasks they tie together, memory, namespaces, the dump's statistics;
// as text, JSON, Graphviz and SVG.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { crest, dumpWorkload, imagesDir, startWorkload, stop, type Workload } from "./harness.js";
import type { CheckpointSummary } from "../../src/faces/inspect.js";

/** The tree's PIDs, root first, from /proc (before the dump). */
function treeOf(w: Workload): number[] {
  const pids = [w.pid];
  for (let i = 0; i < pids.length; i++) {
    for (const tid of readFileSync(`/proc/${pids[i]}/task/${pids[i]}/children`, "utf8").trim().split(/\s+/).filter(Boolean)) pids.push(Number(tid));
  }
  return pids;
}

function inspect(w: Workload, format: string): string {
  const r = crest(["inspect", "--format", format, imagesDir(w)]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

test("inspect: a tree tied by pipes, each task with its command, fds, memory; the pipes between tasks; text, JSON, DOT and SVG agree", () => {
  const w = startWorkload("pipes");
  try {
    const pids = treeOf(w);
    assert.equal(pids.length, 3, "pipes runs a root and two children");
    dumpWorkload(w);
    const c = JSON.parse(inspect(w, "json")) as CheckpointSummary;
    assert.deepEqual(c.tasks.map((t) => t.pid).sort(), [...pids].sort(), "every task of the tree, by its PID");
    for (const t of c.tasks) {
      assert.equal(t.comm, "pipes");
      assert.match(t.exe ?? "", /\/pipes$/);
      assert.ok(t.memory.pages > 0 && t.memory.anonPrivate > 0, `task ${t.pid} has its memory summed`);
      assert.ok(t.fds.some((f) => f.kind === "PIPE" && /^pipe:\[\d+\]$/.test(f.what)), `task ${t.pid} holds a pipe`);
    }
    assert.equal(c.tasks.find((t) => t.pid === w.pid)!.ppid, 0);
    assert.ok(c.stats && c.stats.pagesWritten > 0, "the dump's statistics");
    // Pipe A ties the root to child 1, pipe B child 1 to child 2.
    const text = inspect(w, "text");
    const between = text.slice(text.indexOf("Between tasks:"));
    const child1 = c.tasks.find((t) => t.ppid === w.pid && c.tasks.some((g) => g.ppid === t.pid))?.pid ?? c.tasks.filter((t) => t.ppid === w.pid)[0]!.pid;
    assert.match(between, new RegExp(`(${w.pid} <-> ${child1}|${child1} <-> ${w.pid}): pipe:\\[\\d+\\]`), text);
    for (const pid of pids) assert.match(text, new RegExp(`${pid} pipes \\(`), "each task in the tree");
    const dot = inspect(w, "dot");
    assert.match(dot, /^digraph checkpoint \{/);
    assert.equal((dot.match(/style=dashed/g) ?? []).length, (between.match(/<->/g) ?? []).length, "a dashed edge for each tie");
    const svg = inspect(w, "svg");
    assert.match(svg, /^<svg [^>]*>[\s\S]*<\/svg>\n$/);
    assert.equal((svg.match(/<rect /g) ?? []).length, 3, "a box a task");
  } finally {
    stop(w);
  }
});

test("inspect: a unix socket pair between a parent and its child is a tie; a directory without a checkpoint is said so", () => {
  const w = startWorkload("sk-unix");
  try {
    const pids = treeOf(w);
    dumpWorkload(w);
    const c = JSON.parse(inspect(w, "json")) as CheckpointSummary;
    assert.deepEqual(c.tasks.map((t) => t.pid).sort(), [...pids].sort());
    const unix = c.tasks.flatMap((t) => t.fds).filter((f) => f.kind === "UNIXSK");
    assert.ok(unix.length > 0 && unix.every((f) => /^unix (stream|dgram|seqpacket) /.test(f.what)), JSON.stringify(unix));
    if (pids.length > 1) assert.match(inspect(w, "text"), /Between tasks:\n(.*\n)*.*unix /);
    const r = crest(["inspect", w.dir]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /holds no checkpoint \(no inventory\.img\)/);
  } finally {
    stop(w);
  }
});
