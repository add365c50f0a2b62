// Remote control: calls queued with later() run as one batch in one stop,
// and a call may take an earlier queued call's result as an argument (the
// injected code passes it on): the chain open, move the fd up, close the
// first one costs no stop of its own; a failed call hands -errno on, and the
// error names the call that failed first.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readlinkSync } from "node:fs";
import { Stub, RESTORE_SEIZE_OPTIONS } from "../../src/remote/stub.js";
import { RemoteError } from "../../src/remote/remote.js";
import { remoteCounters } from "../../src/remote/counters.js";
import { AT_FDCWD, F, O, SYS } from "../../src/sys/constants.js";

function withStub(fn: (s: Stub) => void): void {
  const s = Stub.start({ trace: RESTORE_SEIZE_OPTIONS, scratch: 64 << 10, spawnError: (e) => new Error(`cannot start a stub: errno ${e}`) });
  try {
    fn(s);
  } finally {
    s.kill();
  }
}

test("later(): a chain of calls taking each other's results runs in the stop of the next call", () => withStub((s) => {
  const r = s.remote();
  r.resetScratch();
  const path = r.putString("/dev/null");
  const opened = r.later({ what: "open /dev/null", nr: SYS.openat, args: [AT_FDCWD, path, O.RDONLY, 0] });
  const moved = r.later({ what: "move it to 200 and up", nr: SYS.fcntl, args: [opened, F.DUPFD_CLOEXEC, 200] });
  r.later({ what: "close the first fd", nr: SYS.close, args: [opened] });
  const again = r.later({ what: "dup it to 300 (an argument twice removed)", nr: SYS.dup3, args: [moved, 300, 0] });
  assert.equal(opened.value, undefined, "queued, not run");
  const stops = remoteCounters.stops;
  const pid = r.call("getpid", SYS.getpid);
  assert.equal(remoteCounters.stops - stops, 1, "the chain and getpid: one stop");
  assert.equal(pid, s.pid);
  assert.ok(opened.value! >= 0 && opened.value! < 200);
  assert.ok(moved.value! >= 200, `moved to ${moved.value}`);
  assert.equal(again.value, 300);
  assert.equal(readlinkSync(`/proc/${s.pid}/fd/${moved.value}`), "/dev/null");
  assert.equal(readlinkSync(`/proc/${s.pid}/fd/300`), "/dev/null");
  assert.throws(() => readlinkSync(`/proc/${s.pid}/fd/${opened.value}`), /ENOENT/, "the first fd was closed by the chain");
}));

test("later(): a failed call passes -errno on, and the error names it, not the calls after it", () => withStub((s) => {
  const r = s.remote();
  r.resetScratch();
  const opened = r.later({ what: "open a file that is not there", nr: SYS.openat, args: [AT_FDCWD, r.putString("/nonexistent/crest"), O.RDONLY, 0] });
  r.later({ what: "move it up", nr: SYS.fcntl, args: [opened, F.DUPFD_CLOEXEC, 200] });
  assert.throws(() => r.flush(), (e: unknown) => e instanceof RemoteError && /^open a file that is not there: ENOENT/.test(e.message));
  assert.equal(opened.value, -2, "its value is -ENOENT");
}));
