// A UTS namespace a task of the tree unshared (uts-nested): dumped as
// utsns-ID.img by the id in its ids image, made again by its first task as
// it is born (its descendants inherit it), each task's names as they were.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readlinkSync } from "node:fs";
import { IMG, readImage } from "../../src/images/index.js";
import { critDecodeAll, dumpWorkload, finish, imagesDir, restoreWorkload, startWorkload, stop } from "./harness.js";

const children = (pid: number): number[] => readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").split(" ").filter(Boolean).map(Number);
const uts = (pid: number) => readlinkSync(`/proc/${pid}/ns/uts`);

for (const ns of [undefined, "pid,uts"]) {
  test(`uts-nested${ns ? ` in its own ${ns} namespaces` : ""}: the inner namespace and its names come back, shared by its task's child`, () => {
    const w = startWorkload("uts-nested", [], ns ? { ns } : {});
    try {
      dumpWorkload(w);
      assert.deepEqual(critDecodeAll(imagesDir(w)), []);
      const ids = readImage(imagesDir(w), IMG.pstree).map((e) => readImage(imagesDir(w), IMG.ids, e.pid)[0]!.uts_ns_id);
      const inner = [...new Set(ids)].filter((id) => id !== ids[0]);
      assert.equal(inner.length, 1, "one UTS namespace besides the root's");
      assert.deepEqual(readImage(imagesDir(w), IMG.utsns, inner[0]!)[0], { nodename: "wl-inner", domainname: "wl-domain" });
      restoreWorkload(w);
      const kids = children(w.pid);
      const apart = kids.filter((k) => uts(k) !== uts(w.pid));
      assert.equal(apart.length, 1, "one child is in a UTS namespace of its own");
      assert.deepEqual(children(apart[0]!).map(uts), [uts(apart[0]!)], "its child shares it");
      assert.equal(finish(w), "PASS");
    } finally {
      stop(w);
    }
  });
}

test("uts-nested: the workload sees a name that is not what it was (sabotage 1)", () => {
  const w = startWorkload("uts-nested", [], { env: ["CREST_WL_SABOTAGE=1"] });
  try {
    assert.match(finish(w), /^FAIL: a member's names are not what they were/);
  } finally {
    stop(w);
  }
});
