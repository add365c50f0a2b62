// The session shapes crest can build again (pipelines/sessions.ts): every
// process in its parent's session or leading its own, every session's leader
// in the tree, a shell job's session left to crest.
import { test } from "node:test";
import assert from "node:assert/strict";
import { sessionProblem } from "../../src/pipelines/sessions.js";

test("sessions: a tree whose processes are in their parents' sessions or lead their own", () => {
  assert.equal(sessionProblem([{ pid: 10, ppid: 1, sid: 10 }, { pid: 11, ppid: 10, sid: 10 }, { pid: 12, ppid: 11, sid: 12 }, { pid: 13, ppid: 12, sid: 12 }]), null);
});

test("sessions: a process left in its parent's former session (zdtm session03) is refused by name", () => {
  assert.match(sessionProblem([{ pid: 74, ppid: 1, sid: 74 }, { pid: 79, ppid: 74, sid: 79 }, { pid: 89, ppid: 79, sid: 74 }]) ?? "",
    /^process 89 is in session 74 while its parent 79 leads session 79/);
});

test("sessions: a session whose leader has exited (zdtm session02) is refused; a shell job's session is crest's", () => {
  assert.match(sessionProblem([{ pid: 10, ppid: 1, sid: 10 }, { pid: 11, ppid: 10, sid: 5 }]) ?? "", /^process 11 is in session 5, whose leader is not in the tree/);
  assert.equal(sessionProblem([{ pid: 10, ppid: 1, sid: 3 }, { pid: 11, ppid: 10, sid: 3 }], 3), null);
});
