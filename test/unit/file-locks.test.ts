// /proc/locks lines (blocked requests, leases being broken, no inode) and what
// each lock becomes in filelocks.img, or why crest refuses it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseFileLock, parseProcLocks, ProcParseError } from "../../src/proc/index.js";
import { lockEntry, FL } from "../../src/kinds/files/file-locks.js";
import { UnsupportedError } from "../../src/kinds/context.js";

const LOCKS = `1: POSIX  ADVISORY  WRITE 5479 fe:00:2171739 0 99
1: -> POSIX  ADVISORY  WRITE 5480 fe:00:2171739 0 9
2: OFDLCK ADVISORY  READ  -1 fe:00:2171740 200 EOF
3: FLOCK  ADVISORY  WRITE 5479 fe:00:2171741 0 EOF
4: LEASE  BREAKING  UNLCK 5479 fe:00:2171742 0 EOF
5: DELEG  ACTIVE    READ  5479 00:2a:33 0 EOF
`;

test("/proc/locks: blocked requests follow the lock they wait for", () => {
  const l = parseProcLocks(LOCKS);
  assert.equal(l.length, 6);
  assert.deepEqual(l.map((x) => [x.id, x.blocked, x.kind]), [
    [1, false, "POSIX"], [1, true, "POSIX"], [2, false, "OFDLCK"], [3, false, "FLOCK"], [4, false, "LEASE"], [5, false, "DELEG"],
  ]);
  assert.deepEqual([l[1]!.pid, l[1]!.end], [5480, 9n]);
  assert.deepEqual([l[4]!.mode, l[4]!.type], ["BREAKING", "UNLCK"]);
  assert.deepEqual([l[5]!.major, l[5]!.minor, l[5]!.inode], [0, 0x2a, 33n]);
});

test("file lock lines: no inode, malformed lines", () => {
  const none = parseFileLock("7: FLOCK  ADVISORY  READ 12 <none> 0 EOF");
  assert.deepEqual([none.major, none.minor, none.inode], [null, null, null]);
  assert.throws(() => parseFileLock("x: POSIX ADVISORY WRITE 1 fe:00:1 0 1"), ProcParseError);
  assert.throws(() => parseFileLock("1: WEIRD ADVISORY WRITE 1 fe:00:1 0 1"), ProcParseError);
  assert.throws(() => parseFileLock("1: POSIX ADVISORY WRITE 1 fe:00:1 0"), ProcParseError);
  assert.throws(() => parseFileLock("1: POSIX ADVISORY WRITE 1 nodev 0 1"), ProcParseError);
  assert.throws(() => parseFileLock("1: POSIX ADVISORY WRITE 1 fe:00:1 0 x"), ProcParseError);
});

test("filelocks.img entries: flag, type, owner, fd, start, len as CRIU writes them", () => {
  const l = parseProcLocks(LOCKS);
  assert.deepEqual(lockEntry(l[0]!, 7, 3, "fd 3"), { flag: FL.POSIX, type: 1, pid: 7, fd: 3, start: 0n, len: 100n });
  assert.deepEqual(lockEntry(l[2]!, 7, 4, "fd 4"), { flag: FL.OFD, type: 0, pid: 7, fd: 4, start: 200n, len: 0n });
  assert.deepEqual(lockEntry(l[3]!, 7, 5, "fd 5"), { flag: FL.FLOCK, type: 1, pid: 7, fd: 5, start: 0n, len: 0n });
  const lease = parseFileLock("9: LEASE  ACTIVE    READ 5479 fe:00:2171742 0 EOF");
  assert.deepEqual(lockEntry(lease, 7, 6, "fd 6"), { flag: FL.LEASE, type: 0, pid: 7, fd: 6, start: 0n, len: 0n });
  // Being broken: its target type (what /proc/locks shows) with LEASE_BREAKING, as criu keeps it.
  assert.deepEqual(lockEntry(l[4]!, 7, 6, "fd 6"), { flag: FL.LEASE, type: 2 | 4, pid: 7, fd: 6, start: 0n, len: 0n });
  const downgrading = parseFileLock("9: LEASE  BREAKING  READ 5479 fe:00:2171742 0 EOF");
  assert.equal(lockEntry(downgrading, 7, 6, "fd 6").type, 0 | 4);
  const breaker = parseFileLock("9: LEASE  BREAKER   UNLCK 5479 fe:00:2171742 0 EOF");
  assert.throws(() => lockEntry(breaker, 7, 6, "fd 6 of process 7"), (e: Error) => e instanceof UnsupportedError && /fd 6 of process 7 .*does not support BREAKER leases yet/.test(e.message));
  assert.throws(() => lockEntry(l[5]!, 7, 6, "fd 6"), /does not support DELEG locks yet/);
  const mand = parseFileLock("1: POSIX  MANDATORY WRITE 5479 fe:00:2171739 0 99");
  assert.throws(() => lockEntry(mand, 7, 3, "fd 3"), /mandatory locks/);
});
