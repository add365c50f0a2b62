// --join-ns (criu's -J): a tree dumped in crest's namespaces is restored into
// existing network, UTS and IPC namespaces (given by a PID or by a namespace
// file), every task of it; a tree with a network namespace of its own goes
// into the one named, filled from its images, as criu does; kinds crest
// cannot join, and a UTS or IPC namespace of the tree's own, are refused by
// name with nothing left alive.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readFileSync, readlinkSync, statSync } from "node:fs";
import { IMG, readImage } from "../../src/images/index.js";
import { alive, crest, dumpWorkload, finish, imagesDir, restoreWorkload, startWorkload, stop, waitFor } from "./harness.js";

const ns = (pid: number, kind: string) => readlinkSync(`/proc/${pid}/ns/${kind}`);

/** A process in new network, UTS and IPC namespaces (its hostname "joined"), to join. */
function holder(): ChildProcess {
  const p = spawn("unshare", ["--net", "--uts", "--ipc", "sh", "-c", "hostname joined && exec sleep 300"], { stdio: "ignore" });
  const hostname = () => spawnSync("nsenter", ["-t", String(p.pid), "-u", "hostname"], { encoding: "utf8" }).stdout.trim();
  waitFor("the namespaces to join", () => (ns(p.pid!, "net") !== ns(process.pid, "net") && hostname() === "joined" ? true : null));
  return p;
}

test("--join-ns net:PID, uts:PID, ipc:FILE: every restored task is in the joined namespaces", () => {
  const h = holder();
  const w = startWorkload("forest", ["4"]);
  try {
    dumpWorkload(w);
    const pids = readImage(imagesDir(w), IMG.pstree).map((e) => e.pid);
    restoreWorkload(w, ["--join-ns", `net:${h.pid}`, "-J", `uts:${h.pid}`, "--join-ns", `ipc:/proc/${h.pid}/ns/ipc`]);
    for (const pid of pids) {
      for (const kind of ["net", "uts", "ipc"]) assert.equal(ns(pid, kind), ns(h.pid!, kind), `process ${pid}'s ${kind} namespace is the joined one`);
      assert.equal(ns(pid, "mnt"), ns(process.pid, "mnt"), `process ${pid} keeps crest's mount namespace`);
    }
    assert.equal(spawnSync("nsenter", ["-t", String(w.pid), "-u", "hostname"], { encoding: "utf8" }).stdout.trim(), "joined");
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
    h.kill("SIGKILL");
  }
});

/** The process and its descendants, as crest sees them (through /proc's children lists). */
function family(pid: number): number[] {
  const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").split(" ").filter((x) => x).map(Number);
  return [pid, ...kids.flatMap(family)];
}

test("--join-ns net of a tree with a network namespace of its own: the named one, filled from the images", () => {
  const name = `crest-join-${process.pid}`;
  assert.equal(spawnSync("ip", ["netns", "add", name]).status, 0);
  const lo = () => spawnSync("ip", ["netns", "exec", name, "ip", "-o", "link", "show", "lo"], { encoding: "utf8" }).stdout;
  const w = startWorkload("forest", ["3"], { ns: "net", loUp: true });
  try {
    dumpWorkload(w);
    assert.match(lo(), /state DOWN/, "a new namespace's loopback is down");
    restoreWorkload(w, ["--join-ns", `net:/run/netns/${name}`]);
    const tasks = family(w.pid);
    assert.equal(tasks.length, 3);
    for (const pid of tasks) assert.equal(ns(pid, "net"), `net:[${statSync(`/run/netns/${name}`).ino}]`, `process ${pid} is in the named namespace`);
    assert.match(lo(), /LOOPBACK,UP/, "its loopback is up, as the images have it");
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
    spawnSync("ip", ["netns", "del", name]);
  }
});

test("--join-ns refusals: pid (criu's too), a kind the tree has of its own, a file that is not there; nothing left alive", () => {
  const w = startWorkload("forest", ["3"], { ns: "pid,uts" });
  try {
    dumpWorkload(w);
    const restore = (...extra: string[]) => crest(["restore", "-D", imagesDir(w), "-o", "restore.log", "-v4", "-d", ...extra]);
    let r = restore("--join-ns", "pid:1");
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--join-ns pid:1: crest joins net, uts, ipc namespaces so far \(criu cannot join a PID namespace either\)/);
    r = restore("--join-ns", "uts:1");
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--join-ns uts:1: the tree was dumped with a uts namespace of its own, .*crest joins a uts namespace only for a tree dumped in crest's own/);
    r = restore("--join-ns", "net:/nonexistent/netns");
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--join-ns net:\/nonexistent\/netns: cannot open \/nonexistent\/netns: ENOENT/);
    assert.ok(!alive(w.pid), "no restored process is left");
    r = restore("--join-ns", "net");
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /bad --join-ns value 'net'/);
  } finally {
    stop(w);
  }
});
