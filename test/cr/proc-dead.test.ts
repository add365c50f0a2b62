// /proc files of a process that has exited (proc-dead; zdtm remap_dead_pid,
// unhashed_proc): kept as criu keeps them, with a PROCFS remap naming the
// PID, and reopened at restore while a stand-in with that PID lives. (In a
// PID namespace of the tree's own, with its own /proc, zdtm's remap_dead_pid
// and unhashed_proc in the ns flavour: `crest run` mounts no /proc.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { IMG, readImage, remap_type } from "../../src/images/index.js";
import { cycle, finish, imagesDir, startWorkload, stop, type Workload } from "./harness.js";

function checkImages(w: Workload): void {
  const remaps = readImage(imagesDir(w), IMG.remapFpath);
  assert.equal(remaps.length, 1, "one remap for the PID, as criu writes it");
  const [r] = remaps;
  assert.equal(r!.remap_type, remap_type.PROCFS);
  const names = readImage(imagesDir(w), IMG.files).map((f) => f.reg?.name);
  assert.ok(names.includes(`/proc/${r!.remap_id}/status`) && names.includes(`/proc/${r!.remap_id}`), `files.img names /proc/${r!.remap_id} and its status: ${names.join(", ")}`);
  assert.ok(!readImage(imagesDir(w), IMG.pstree).some((e) => e.pid === r!.remap_id), "the PID is none of the tree's");
}

test("proc-dead: fds and the cwd in /proc/PID of a reaped child come back", () => cycle("proc-dead", [], checkImages));

test("proc-dead: the workload sees a read that should fail (sabotage 1)", () => {
  const w = startWorkload("proc-dead", [], { env: ["CREST_WL_SABOTAGE=1"] });
  try {
    assert.match(finish(w), /^FAIL: reading the status gives errno \d+, before \d+/);
  } finally {
    stop(w);
  }
});
