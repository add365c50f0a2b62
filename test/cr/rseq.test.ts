// Restartable sequences (rseq-cs workload, zdtm transition/rseq01): threads
// stopped inside an rseq critical section. The kernel clears (struct
// rseq).rseq_cs once crest runs code in a thread, so crest must read it
// before, then send the thread to the section's abort handler; a thread
// let go on inside the section, unknown to the kernel, finds the field
// cleared at the section's end and says so. (The image need not name a
// section: a thread the kernel had just aborted is seized at the handler.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { readImage, IMG } from "../../src/images/index.js";
import { join } from "node:path";
import { crest, cycle, dumpWorkload, finish, imagesDir, startWorkload, stop } from "./harness.js";

test("rseq-cs: threads inside a critical section are sent to its abort handler, then restored", () => {
  cycle("rseq-cs", [], (w) => {
    const dir = imagesDir(w);
    const tids = readImage(dir, IMG.pstree)[0]!.threads;
    assert.equal(tids.length, 4);
    for (const tid of tids) {
      const rseq = readImage(dir, IMG.core, tid)[0]!.thread_core!.rseq_entry;
      assert.ok(rseq?.rseq_abi_pointer, `thread ${tid} has its rseq area in the image`);
    }
  });
});

test("rseq-cs: left running after a dump (-R), the threads carry on protected", () => {
  const w = startWorkload("rseq-cs");
  try {
    dumpWorkload(w, ["-R"]);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

// The tree runs on after a pre-dump, and crest ran code in every thread: each must be put back at its
// section's abort handler, as the kernel would have sent it there after the stop (Remote.restore).
// zdtm's transition/rseq01 with --pre 2 failed so, with a section that ended with rseq_cs cleared.
test("rseq-cs: after pre-dumps, the threads carry on protected", () => {
  const w = startWorkload("rseq-cs");
  try {
    for (const n of [1, 2, 3]) {
      const r = crest(["pre-dump", "-t", String(w.pid), "-D", join(w.dir, `pre${n}`), ...(n > 1 ? ["--prev-images-dir", `../pre${n - 1}`, "--track-mem"] : [])]);
      assert.equal(r.code, 0, r.stderr);
    }
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});
