// User namespaces (issue 12): a tree in a user namespace of its own (crest
// run --ns pid,user) is dumped with its uid and gid maps (userns-N.img) and
// credentials as the namespace sees them, and restored in a new user
// namespace with the same maps, each task with the same ids there.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readlinkSync } from "node:fs";
import { critDecodeAll, dumpWorkload, finish, imagesDir, restoreWorkload, startWorkload, stop } from "./harness.js";
import { readImage, IMG } from "../../src/images/index.js";

test("userns: maps and credentials inside a user namespace of its own", () => {
  const w = startWorkload("userns", [], { ns: "pid,user" });
  try {
    const maps = (pid: number) => [readFileSync(`/proc/${pid}/uid_map`, "utf8"), readFileSync(`/proc/${pid}/gid_map`, "utf8")];
    const before = maps(w.pid);
    assert.match(before[0]!, /^\s*0\s+100000\s+65536\n$/);
    dumpWorkload(w);
    assert.deepEqual(critDecodeAll(imagesDir(w)), []);
    const root = readImage(imagesDir(w), IMG.pstree)[0]!.pid;
    const ids = readImage(imagesDir(w), IMG.ids, root)[0]!;
    const [ns] = readImage(imagesDir(w), IMG.userns, ids.user_ns_id!);
    assert.deepEqual(ns?.uid_map, [{ first: 0, lower_first: 100000, count: 65536 }]);
    const creds = readImage(imagesDir(w), IMG.core, root)[0]!.thread_core!.creds!;
    assert.deepEqual([creds.uid, creds.euid, creds.suid, creds.gid, creds.groups], [3000, 3001, 0, 0, []], "the root's ids as its namespace sees them");
    restoreWorkload(w);
    assert.notEqual(readlinkSync(`/proc/${w.pid}/ns/user`), readlinkSync("/proc/self/ns/user"));
    assert.deepEqual(maps(w.pid), before);
    assert.match(readFileSync(`/proc/${w.pid}/status`, "utf8"), /\nUid:\t103000\t103001\t100000\t103001\n/, "its ids out here");
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

for (const [n, what] of [[1, /the child found its ids changed/], [2, /parent: 1 supplementary groups/]] as const) {
  test(`userns sabotage ${n} is caught`, () => {
    const w = startWorkload("userns", [], { ns: "pid,user", env: [`CREST_WL_SABOTAGE=${n}`] });
    try {
      dumpWorkload(w);
      restoreWorkload(w);
      assert.match(finish(w), what);
    } finally {
      stop(w);
    }
  });
}
