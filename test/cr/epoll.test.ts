// epoll (fds-epoll): interest lists with their events and data, a nested
// epoll, a target added under an fd number since closed (renamed to the fd
// that holds the file now, as CRIU does), a disarmed ONESHOT target, one
// epoll shared by two processes; as files.img EVENTPOLL entries that crit
// decodes. And the case crest refuses: a target only another process holds.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readImage, IMG, fd_types } from "../../src/images/index.js";
import { CRIT, crest, cycle, finish, imagesDir, procState, startWorkload, stop, type Workload } from "./harness.js";

const EPOLLIN = 1, EPOLLOUT = 4, EPOLLET = 0x80000000, EPOLLONESHOT = 0x40000000, EPOLLEXCLUSIVE = 0x10000000;

function checkImages(w: Workload): void {
  const files = readImage(imagesDir(w), IMG.files);
  const eps = files.filter((f) => f.type === fd_types.EVENTPOLL).map((f) => f.epfd!);
  assert.equal(eps.length, 3, "three epoll descriptions (the child's is the parent's)");
  const main = eps.find((e) => e.tfd.length === 8);
  assert.ok(main, "the main epoll has 8 targets");
  assert.ok(main.flags & 0o4000, "the main epoll is O_NONBLOCK");
  const byData = new Map(main.tfd.map((t) => [t.data, t]));
  assert.deepEqual([...byData.keys()].sort(), [0x55n, 0x66n, 0x77n, 0x99n, 0xabcdefn, 0xeen, 0x1111222233334444n, 0x6000000000000060n].sort());
  assert.equal((byData.get(0xabcdefn)!.events & (EPOLLOUT | EPOLLET)) >>> 0, EPOLLOUT + EPOLLET, "the pipe's write end is EPOLLOUT | EPOLLET");
  assert.ok(byData.get(0x77n)!.events & EPOLLONESHOT);
  const moved = byData.get(0x6000000000000060n)!;
  assert.notEqual(moved.tfd, 60, "the target added as fd 60 (closed since) is named by the fd holding it now");
  assert.ok(main.tfd.every((t) => t.id === main.id && t.inode !== undefined), "each target carries its epoll's id and inode");
  const third = eps.find((e) => e.tfd.some((t) => t.data === 0x88n))!;
  assert.equal(third.tfd.find((t) => t.data === 0x88n)!.events & (EPOLLIN | EPOLLONESHOT), EPOLLONESHOT, "the ONESHOT target that fired stays disarmed");
  assert.ok(third.tfd.find((t) => t.data === 0xe1n)!.events & EPOLLEXCLUSIVE);
  // crit reads the targets inside files.img as CRIU 4.x writes them.
  const r = spawnSync("/usr/bin/python3", [CRIT, "decode", "-i", join(imagesDir(w), "files.img")], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const entries = (JSON.parse(r.stdout) as { entries: Array<{ type: string; epfd?: { tfd: Array<{ data: number }> } }> }).entries;
  const critEps = entries.filter((e) => e.type === "EVENTPOLL");
  assert.equal(critEps.length, 3);
  assert.ok(critEps.some((e) => e.epfd?.tfd.length === 8 && e.epfd.tfd.some((t) => t.data === 0x77)));
}

test("fds-epoll: interest lists, ready sets and a shared epoll come back", () => cycle("fds-epoll", [], checkImages));

test("fds-epoll in its own PID namespace", () => cycle("fds-epoll", [], checkImages, { ns: "pid,ipc,uts" }));

test("fds-epoll elsewhere: a target held only by another process is refused, the process untouched", () => {
  const w = startWorkload("fds-epoll", ["elsewhere"]);
  try {
    const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /fd \d+ of process \d+ is an epoll watching a file \(added as fd \d+, inode \d+\) that process \d+ no longer holds; crest does not support/);
    assert.match(readFileSync(join(imagesDir(w), "dump.log"), "utf8"), /Dumping FAILED/);
    assert.equal(procState(w.pid).tracer, 0);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});
