// POSIX message queues of a tree with its own IPC (and PID, mount)
// namespace: the queues with their attributes, owners and messages in
// crest-mqueue-ID.json, the fds that hold them reopened at restore, checked
// by the workload itself (mqueue.c) and from outside; a queue with a
// notification registered is refused by name and left as it was.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { readImage, IMG } from "../../src/images/index.js";
import { assertDumpRefused, crest, critDecodeAll, dumpLog, dumpWorkload, finish, imagesDir, procState, restoreWorkload, startWorkload, stop, type Workload } from "./harness.js";

const NS = "pid,ipc,mnt";

function start(args: string[] = [], env: string[] = []): Workload {
  return startWorkload("mqueue", args, { ns: NS, ...(env.length ? { env } : {}) });
}

/** Each queue's file text ("QSIZE:... NOTIFY_PID:...") in the tree's mount at D/mq, seen from outside. */
function queuesSeen(w: Workload): Record<string, string> {
  const dir = `/proc/${w.pid}/root${w.dir}/mq`;
  return Object.fromEntries(readdirSync(dir).sort().map((n) => [n, readFileSync(join(dir, n), "utf8").replace(/NOTIFY_PID:\s*\d+/, "NOTIFY_PID")]));
}

test("mqueue: four queues with messages of several priorities and sizes, fds O_NONBLOCK, write-only, read-only through the mount, a sender blocked on a full queue; kept and reopened", () => {
  const w = start();
  try {
    const before = queuesSeen(w);
    assert.deepEqual(Object.keys(before), ["crest-a", "crest-b", "crest-c", "crest-d"]);
    dumpWorkload(w);
    assert.deepEqual(critDecodeAll(imagesDir(w)), []);
    const ids = readImage(imagesDir(w), IMG.ids, readImage(imagesDir(w), IMG.pstree)[0]!.pid)[0]!;
    const file = join(imagesDir(w), `crest-mqueue-${ids.ipc_ns_id}.json`);
    assert.ok(existsSync(file), "crest's own mqueue file beside the images");
    const kept = JSON.parse(readFileSync(file, "utf8")) as { queues: Array<{ name: string; maxmsg: number; msgsize: number; messages: Array<{ prio: number }> }> };
    assert.deepEqual(kept.queues.map((q) => [q.name, q.maxmsg, q.msgsize, q.messages.map((m) => m.prio)]), [
      ["crest-a", 16, 300, [9, 9, 3, 3, 0, 0]], ["crest-b", 4, 64, [5, 1, 1]], ["crest-c", 7, 8192, []], ["crest-d", 1, 16, [0]],
    ]);
    const manifest = JSON.parse(readFileSync(join(imagesDir(w), "crest-manifest.json"), "utf8")) as { files: Record<string, unknown> };
    assert.ok(JSON.stringify(manifest.files).includes(`crest-mqueue-${ids.ipc_ns_id}.json`), "the manifest covers it");
    const files = readImage(imagesDir(w), IMG.files).filter((f) => f.reg?.mqueue);
    assert.deepEqual(files.map((f) => f.reg!.name).sort(), ["/crest-a", "/crest-a", "/crest-b", "/crest-d"], "four fds of queues (the blocked sender's of d), marked as such");

    restoreWorkload(w, ["--root", "/"]);
    assert.deepEqual(queuesSeen(w), before, "QSIZE and notification of each queue, seen from outside");
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

for (const [n, what] of [[1, /\/crest-b: message 2 .* missing/], [2, /mq\/crest-c: mode 666/], [3, /the child's fd of \/crest-a: status flags 0x2;/], [4, /\/crest-d: the first message is 4 bytes, priority 1;/]] as const) {
  test(`mqueue: sabotage ${n} is caught`, () => {
    const w = start([], [`CREST_WL_SABOTAGE=${n}`]);
    try {
      dumpWorkload(w);
      restoreWorkload(w, ["--root", "/"]);
      const verdict = finish(w);
      assert.match(verdict, /^FAIL/);
      assert.match(verdict, what);
    } finally {
      stop(w);
    }
  });
}

test("mqueue: a queue with an mq_notify registration is refused by name; queues, messages and the registration are left as they were", () => {
  const w = start(["notify"]);
  try {
    const dir = `/proc/${w.pid}/root${w.dir}/mq`;
    const text = () => readdirSync(dir).sort().map((n) => `${n} ${readFileSync(join(dir, n), "utf8")}`);
    const before = text();
    assert.match(before.join("\n"), /crest-c QSIZE:0\s+NOTIFY:1\s+SIGNO:0\s+NOTIFY_PID:[1-9]/);
    const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /POSIX message queue \/crest-c of the IPC namespace of process \d+ has a notification registered by process \d+ \(mq_notify/);
    assert.match(dumpLog(w), /Dumping FAILED/);
    assert.equal(procState(w.pid).tracer, 0);
    assert.deepEqual(text(), before);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("mqueue: an fd of a queue of crest's own IPC namespace (a tree without its own) is refused by name", () => {
  assertDumpRefused("mqueue", ["host"], /fd \d+ of process \d+ is the POSIX message queue \/crest-host-\d+ \(inode \d+\) of an IPC namespace that is not the tree's own/);
});
