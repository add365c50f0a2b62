// The session shapes crest can build again (pipelines/sessions.ts): every
// process in its parent's session, leading its own, or in a session its
// ancestors left after forking it (their setsid then waits: criu's
// born_sid); every session's leader in the tree, a shell job's session left
// to crest. And the order planTree creates such a tree in.
import { test } from "node:test";
import assert from "node:assert/strict";
import { planSessions, sessionProblem } from "../../src/pipelines/sessions.js";
import { addStandIns, planTree } from "../../src/pipelines/restore/tree.js";
import type { pstree_entry } from "../../src/images/index.js";

test("sessions: a tree whose processes are in their parents' sessions or lead their own", () => {
  assert.deepEqual(planSessions([{ pid: 10, ppid: 1, sid: 10 }, { pid: 11, ppid: 10, sid: 10 }, { pid: 12, ppid: 11, sid: 12 }, { pid: 13, ppid: 12, sid: 12 }]), { bornIn: new Map(), helpers: [] });
});

test("sessions: a process left in its parent's former session (zdtm session03): the parent is born in it and starts its own after", () => {
  assert.deepEqual(planSessions([{ pid: 74, ppid: 1, sid: 74 }, { pid: 79, ppid: 74, sid: 79 }, { pid: 89, ppid: 79, sid: 74 }]), { bornIn: new Map([[79, 74]]), helpers: [] });
  // Two leaders down: both born in the root's session; a sibling in the middle leader's own session is not.
  assert.deepEqual(planSessions([
    { pid: 1, ppid: 0, sid: 1 }, { pid: 2, ppid: 1, sid: 2 }, { pid: 3, ppid: 2, sid: 3 }, { pid: 4, ppid: 3, sid: 1 }, { pid: 5, ppid: 2, sid: 2 },
  ]), { bornIn: new Map([[3, 1], [2, 1]]), helpers: [] });
});

test("sessions: the root's children in sessions whose leaders are not their ancestors (reparented: zdtm session00, session02) get helpers", () => {
  assert.deepEqual(planSessions([
    { pid: 1, ppid: 0, sid: 1 }, { pid: 5, ppid: 1, sid: 5 }, { pid: 7, ppid: 1, sid: 5 }, { pid: 8, ppid: 1, sid: 5 }, { pid: 9, ppid: 1, sid: 6 }, { pid: 10, ppid: 9, sid: 6 },
  ]), { bornIn: new Map(), helpers: [{ sid: 5, leaderInTree: true, children: [7, 8] }, { sid: 6, leaderInTree: false, children: [9] }] });
});

test("sessions: shapes no order of forks and setsid makes are refused by name", () => {
  assert.match(sessionProblem([{ pid: 10, ppid: 1, sid: 10 }, { pid: 11, ppid: 10, sid: 10 }, { pid: 12, ppid: 11, sid: 5 }]) ?? "", /^process 12 is in session 5, whose leader is not in the tree/);
  assert.equal(sessionProblem([{ pid: 10, ppid: 1, sid: 3 }, { pid: 11, ppid: 10, sid: 3 }], 3), null);
  // 13's session leader 11 is its parent's sibling, not an ancestor (13 was reparented to 12, a subreaper but not the root).
  assert.match(sessionProblem([{ pid: 10, ppid: 0, sid: 10 }, { pid: 11, ppid: 10, sid: 11 }, { pid: 12, ppid: 10, sid: 10 }, { pid: 13, ppid: 12, sid: 11 }]) ?? "",
    /^process 13 is in session 11 while its ancestor 12 is in session 10, which it does not lead/);
  assert.match(sessionProblem([{ pid: 10, ppid: 0, sid: 10 }, { pid: 11, ppid: 10, sid: 11 }, { pid: 12, ppid: 10, sid: 12 }, { pid: 13, ppid: 12, sid: 11 }]) ?? "",
    /^process 13 is in session 11, whose leader is not among its ancestors/);
  // 21 left two sessions its children are in: it cannot have been born in both.
  assert.match(sessionProblem([
    { pid: 1, ppid: 0, sid: 1 }, { pid: 20, ppid: 1, sid: 20 }, { pid: 21, ppid: 20, sid: 21 }, { pid: 22, ppid: 21, sid: 1 }, { pid: 23, ppid: 21, sid: 20 },
  ]) ?? "", /^process 21 has descendants in sessions 1 and 20/);
});

test("planTree: a leader born in its parent's session has its children born there created first, and the order stays parents first", () => {
  const e = (pid: number, ppid: number, sid: number, pgid = sid): pstree_entry => ({ pid, ppid, sid, pgid, threads: [pid] });
  // 79 forks 80 (its own session later), then 89 and 90 stay in 74's session; 91 is in 79's group, in a group helper's.
  const nodes = planTree([e(74, 0, 74), e(79, 74, 79), e(80, 79, 79, 79), e(89, 79, 74), e(90, 89, 74), e(91, 79, 79, 95)],
    () => "task", () => 0, () => ({ files: false, fs: false }));
  assert.deepEqual(nodes.map((n) => `${n.vpid}${n.role === "helper" ? "h" : ""}`), ["74", "79", "89", "90", "95h", "80", "91"]);
  const at = new Map(nodes.map((n) => [n.vpid, n]));
  assert.equal(at.get(79)!.bornSid, 74);
  assert.equal(at.get(79)!.bornPgid, 74);
  assert.equal(at.get(89)!.bornSid, undefined);
  for (const n of nodes.slice(1)) assert.ok(nodes.indexOf(n.parent!) < nodes.indexOf(n), `${n.vpid} after its parent`);
});

test("planTree: session helpers fork the root's reparented children: a child of the living leader with a free PID, or the exited leader's stand-in", () => {
  const e = (pid: number, ppid: number, sid: number, pgid = sid): pstree_entry => ({ pid, ppid, sid, pgid, threads: [pid] });
  const nodes = planTree([e(1, 0, 1), e(7, 1, 5), e(5, 1, 5), e(9, 1, 6), e(10, 9, 6), e(12, 1, 1)], () => "task", () => 0, () => ({ files: false, fs: false }));
  const name = (n: (typeof nodes)[number]) => `${n.vpid}${n.role === "helper" ? "h" : ""}`;
  assert.deepEqual(nodes.map(name), ["1", "6h", "9", "10", "5", "13h", "7", "12"]);
  const at = new Map(nodes.map((n) => [name(n), n]));
  assert.equal(at.get("13h")!.parent, at.get("5"));
  assert.ok(at.get("13h")!.forks?.freePid?.has(12), "the free PID avoids every id of the images");
  assert.equal(at.get("7")!.parent, at.get("13h"));
  assert.deepEqual(at.get("6h")!.forks, {});
  assert.equal(at.get("6h")!.parent, nodes[0]);
  assert.equal(at.get("9")!.parent, at.get("6h"));
});

test("stand-ins for processes that had exited (PROCFS remaps): children of the root in its session and group, last, once a PID; a PID of the tree refused", () => {
  const e = (pid: number, ppid: number, sid: number): pstree_entry => ({ pid, ppid, sid, pgid: sid, threads: [pid] });
  const nodes = planTree([e(1, 0, 1), e(4, 1, 1)], () => "task", () => 0, () => ({ files: false, fs: false }));
  addStandIns(nodes, [6, 9, 6]);
  assert.deepEqual(nodes.map((n) => [n.vpid, n.role, n.parent?.vpid ?? 0, n.sid, n.pgid]), [[1, "task", 0, 1, 1], [4, "task", 1, 1, 1], [6, "dead", 1, 1, 1], [9, "dead", 1, 1, 1]]);
  assert.throws(() => addStandIns(nodes, [4]), /a process that had exited \(PID 4, whose \/proc files the tree holds\) has the PID of one the restore makes/);
});
