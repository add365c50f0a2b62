// /proc/sysvipc/{shm,sem,msg} read inside the capture program's IPC namespace.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { parseSysvipc, parseSysvShm, parseSysvSem, parseSysvMsg, ProcParseError } from "../../src/proc/index.js";

const fixture = (name: string): string => readFileSync(new URL(`../../../test/fixtures/proc/${name}`, import.meta.url), "utf8");

test("sysvipc/shm: typed rows, key signed decimal, perms octal, sizes bigint", () => {
  const shm = parseSysvShm(fixture("sysvipc/shm"));
  assert.deepEqual(shm, [
    {
      key: 0x1234, shmid: 0, perms: 0o640, size: 8192n, cpid: 9561, lpid: 9565, nattch: 2, uid: 0, gid: 0, cuid: 0, cgid: 0,
      atime: 1795354589, dtime: 1795354589, ctime: 1795354589, rss: 4096n, swap: 0n,
    },
    {
      key: 0, shmid: 1, perms: 0o600, size: 1048576n, cpid: 9561, lpid: 0, nattch: 0, uid: 0, gid: 0, cuid: 0, cgid: 0,
      atime: 0, dtime: 0, ctime: 1795354589, rss: 0n, swap: 0n,
    },
  ]);
});

test("sysvipc/sem and sysvipc/msg", () => {
  assert.deepEqual(parseSysvSem(fixture("sysvipc/sem")), [
    { key: 0x5678, semid: 0, perms: 0o600, nsems: 3, uid: 0, gid: 0, cuid: 0, cgid: 0, otime: 1795354589, ctime: 1795354589 },
  ]);
  assert.deepEqual(parseSysvMsg(fixture("sysvipc/msg")), [
    {
      key: 0x9abc, msqid: 0, perms: 0o604, cbytes: 26, qnum: 2, lspid: 9561, lrpid: 0, uid: 0, gid: 0, cuid: 0, cgid: 0,
      stime: 1795354589, rtime: 0, ctime: 1795354589,
    },
  ]);
});

test("sysvipc: the generic table, and negative keys", () => {
  const rows = parseSysvipc(fixture("sysvipc/shm"), "sysvipc/shm");
  assert.deepEqual([rows[0]!.key, rows[0]!.perms, rows[0]!.size, rows[1]!.shmid], [4660n, 0o640n, 8192n, 1n]);
  const neg = fixture("sysvipc/sem").replace("     22136", "-559038737");
  assert.equal(parseSysvSem(neg)[0]!.key, -559038737, "keys above 2^31 print as negative ints");
  assert.deepEqual(parseSysvMsg(fixture("sysvipc/msg").split("\n")[0]! + "\n"), [], "header only: no objects");
});

test("sysvipc: malformed tables throw ProcParseError", () => {
  assert.throws(() => parseSysvShm(""), /no header/);
  assert.throws(() => parseSysvShm(fixture("sysvipc/sem")), /no column shmid/);
  assert.throws(() => parseSysvSem(fixture("sysvipc/sem").replace(" 600 ", " 900 ")), /octal perms/);
  assert.throws(() => parseSysvSem(fixture("sysvipc/sem").replace(" 1795354589\n", "\n")), /columns, expected 10/);
  assert.throws(() => parseSysvipc(fixture("sysvipc/msg").replace(" 26 ", " 2x "), "sysvipc/msg"), ProcParseError);
});
