// One checkpoint and restore of the counter container through a runtime,
// checked as a user would: the count it serves over TCP before, the container
// stopped by the checkpoint, the same count or more after the restore (a
// restarted container would count from 1 again), and counting on.
// CREST_CT_SABOTAGE=1 starts the container afresh instead of restoring it,
// to show the checks fail on a container that lost its state.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { errorLines, rpcRequests, criuCalls, type CriuDir } from "./criu-dir.js";
import { waitFor, type Runtime } from "./runtimes.js";

/** The count reached before the checkpoint: far enough from 1 that a restart shows. */
const BEFORE = 5;

export interface Counts {
  before: number;
  after: number;
  later: number;
}

/** What the runtime asked of criu, for a failure's message. */
function asked(criu: CriuDir): string {
  return [...criuCalls(criu).map((c) => `criu ${c}`), ...rpcRequests(criu).map((r) => `RPC ${r}`)].join("\n");
}

export function checkpointRestore(rt: Runtime, criu: CriuDir, work: string, name: string): Counts {
  const images = join(work, "images");
  mkdirSync(images, { recursive: true });
  let ct = rt.start(work, name);
  try {
    const before = waitFor(`${name}'s count to reach ${BEFORE}`, () => { const c = ct.count(); return c !== null && c >= BEFORE && c; });
    const dump = rt.checkpoint(ct, criu, images);
    assert.equal(dump.code, 0, `${rt.name} checkpoint failed:\n${dump.output}\n${errorLines(rt.criuLog(ct, images, "dump")).join("\n")}\nasked:\n${asked(criu)}`);
    assert.equal(ct.running(), false, `${name} still runs after its checkpoint`);
    if (process.env.CREST_CT_SABOTAGE === "1") {
      rt.remove(ct);
      ct = rt.start(work, name);
    } else {
      const restore = rt.restore(ct, criu, images);
      assert.equal(restore.code, 0, `${rt.name} restore failed:\n${restore.output}\n${errorLines(rt.criuLog(ct, images, "restore")).join("\n")}\nasked:\n${asked(criu)}`);
    }
    assert.equal(ct.running(), true, `${name} does not run after its restore`);
    const after = waitFor(`${name}'s count after the restore`, () => ct.count());
    assert.ok(after >= before, `${name} counts from ${after} after its restore, it had counted to ${before}: its state was lost`);
    const later = waitFor(`${name} to count on`, () => { const c = ct.count(); return c !== null && c > after && c; });
    return { before, after, later };
  } finally {
    rt.remove(ct);
  }
}
