// Restore's wait for a PID held by the dumped process's own zombie: which
// holders count as that corpse (from /proc/PID/stat and the images), and the
// wait itself on a real zombie and a real live process.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseStat } from "../../src/proc/index.js";
import { corpseOf, isCorpse, takenPid } from "../../src/pipelines/restore/pid-wait.js";
import type { TreeNode } from "../../src/pipelines/restore/tree.js";
import { Logger } from "../../src/log.js";
import { native } from "../../src/sys/native.js";
import { sleepMs, wait4 } from "../../src/sys/syscalls.js";

// Real lines: a `sleep` killed by SIGKILL and not reaped yet (exit_code 9), a
// python child that exited 3 (768), and the same sleep alive.
const killed = parseStat("29535 (sleep) Z 29534 29532 18217 0 -1 4228108 155 0 0 0 0 0 0 0 20 0 1 0 253065 0 0 18446744073709551615 0 0 0 0 0 0 0 16781312 0 1 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 9\n");
const exited3 = parseStat("29540 (python3) Z 29534 29532 18217 0 -1 4227148 65 0 0 0 0 0 0 0 20 0 1 0 253086 0 0 18446744073709551615 0 0 0 0 0 0 0 16781312 2 1 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 768\n");
const alive = { ...killed, state: "S", exitCode: 0 };

const node = (vpid: number, role: TreeNode["role"], exitStatus = 0): TreeNode =>
  ({ vpid, pgid: vpid, sid: vpid, role, parent: null, sharesFiles: false, sharesFs: false, bornPgid: vpid, exitStatus, pid: 0 });

test("a dumped live task's corpse is a zombie killed by SIGKILL with the images' comm", () => {
  const corpse = corpseOf(node(29535, "task"), "sleep")!;
  assert.deepEqual(corpse, { comm: "sleep", status: 9 });
  assert.equal(isCorpse(killed, corpse), true);
  assert.equal(isCorpse(alive, corpse), false, "alive: not a corpse");
  assert.equal(isCorpse(killed, { ...corpse, comm: "sleeper" }), false, "another comm");
  assert.equal(isCorpse(exited3, { comm: "python3", status: 9 }), false, "a zombie that exited on its own");
  assert.equal(isCorpse({ ...killed, state: "X" }, corpse), false, "not a zombie");
});

test("a zombie in the images stays the zombie it was: its own exit status; a helper's PID has no corpse", () => {
  const corpse = corpseOf(node(29540, "zombie", 768), "python3")!;
  assert.deepEqual(corpse, { comm: "python3", status: 768 });
  assert.equal(isCorpse(exited3, corpse), true);
  assert.equal(isCorpse(killed, { comm: "sleep", status: 768 }), false);
  assert.equal(corpseOf(node(7, "helper"), "sh"), undefined);
  assert.equal(corpseOf(node(7, "task"), undefined), undefined, "no comm in the images");
});

test("takenPid waits for the corpse, gives up after its time, and refuses a live holder at once", () => {
  const logFile = join(mkdtempSync(join(tmpdir(), "crest-pid-wait-")), "log");
  const log = new Logger(3, logFile);
  // A real zombie: a child of this process that exited 0, not reaped yet.
  const pid = native.spawn({ path: "/bin/true", argv: ["true"], env: [], fds: [] });
  assert.ok(pid > 0);
  for (let i = 0; i < 500 && parseStat(readFileSync(`/proc/${pid}/stat`, "utf8")).state !== "Z"; i++) sleepMs(10);
  try {
    const t0 = Date.now();
    const held = takenPid([node(pid, "zombie", 0)], () => "true", log, 300);
    assert.ok(Date.now() - t0 >= 300, "waited its time");
    assert.equal(held?.pid, pid);
    assert.match(held!.holder, new RegExp(`^process ${pid} \\(true\\), the dumped process's zombie, which its parent ${process.pid} did not reap within 0.3 s$`));
    assert.match(readFileSync(logFile, "utf8"), new RegExp(`PID ${pid} is held by the zombie of the dumped process; waiting for its parent ${process.pid} to reap it`));

    const t1 = Date.now();
    const other = takenPid([node(pid, "zombie", 9)], () => "true", log, 3000);
    assert.ok(Date.now() - t1 < 200, "another exit status: refused at once");
    assert.deepEqual(other, { pid, holder: `process ${pid} (true)` });
  } finally {
    wait4(pid, 0);
  }
  assert.equal(takenPid([node(pid, "zombie", 0)], () => "true", log, 300), null, "reaped: free");

  const t2 = Date.now();
  const me = takenPid([node(process.pid, "task")], () => readFileSync("/proc/self/comm", "utf8").trim(), log, 3000);
  assert.ok(Date.now() - t2 < 200, "a live holder: refused at once");
  assert.equal(me?.pid, process.pid);
  log.close();
});
