// Files beyond the plain ones of areas.test.ts: O_PATH fds (a symlink itself
// among them), one pipe behind many descriptions (dups and /proc reopens, in
// two processes), and file locks, which crest refuses to dump, leaving the
// process as it was.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readImage, IMG, fd_types } from "../../src/images/index.js";
import { O } from "../../src/sys/constants.js";
import { crest, cycle, finish, imagesDir, procState, startWorkload, stop } from "./harness.js";

const maps = (pid: number): string => readFileSync(`/proc/${pid}/maps`, "utf8");

test("files-opath: O_PATH fds (file, directory, symlink itself, FIFO, socket file, device) come back O_PATH", () => cycle("files-opath", [], (w) => {
  const regs = readImage(imagesDir(w), IMG.files).filter((f) => f.type === fd_types.REG && f.reg!.flags & O.PATH);
  const link = regs.find((f) => f.reg!.name.endsWith("/link") && f.reg!.flags & O.NOFOLLOW);
  assert.ok(link, "the symlink's fd is a reg-file with O_PATH|O_NOFOLLOW");
  assert.equal(link.reg!.mode! & 0o170000, 0o120000, "its mode is a symlink's");
}));

test("files-pipes: dups and /proc reopens of both ends of a pipe, shared with a child", () => cycle("files-pipes"));

for (const [kind, what] of [["posix", /holds a file lock \(POSIX READ on bytes 10-29\)/], ["ofd", /holds a file lock \(OFDLCK WRITE on bytes 100-EOF\)/], ["flock", /holds a file lock \(FLOCK WRITE on the whole file\)/], ["lease", /holds a file lock \(LEASE READ on the whole file\)/]] as const) {
  test(`files-locks ${kind}: a held lock is refused by name, the process untouched`, () => {
    const w = startWorkload("files-locks", [kind]);
    try {
      const before = maps(w.pid);
      const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log"]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, new RegExp(`fd 3 of process ${w.pid} \\(${w.dir}/locked\\) `));
      assert.match(r.stderr, what);
      assert.match(r.stderr, /--file-locks is not supported by crest yet/);
      assert.match(readFileSync(join(imagesDir(w), "dump.log"), "utf8"), /Dumping FAILED/);
      assert.equal(maps(w.pid), before, "no mapping left behind");
      assert.equal(procState(w.pid).tracer, 0);
      assert.equal(finish(w), "PASS");
    } finally {
      stop(w);
    }
  });
}
