// The small /proc files: children, comm, personality, timerslack_ns, loginuid,
// oom_score_adj, pid_max, ns links, fd links and cgroup.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  parseChildren, parseComm, parsePersonality, parseTimerslackNs, parseLoginuid, parseOomScoreAdj, parsePidMax,
  LOGINUID_UNSET, parseNsLink, classifyFdLink, parseCgroup, ProcParseError, type FdLink,
} from "../../src/proc/index.js";

const fixture = (name: string): string => readFileSync(new URL(`../../../test/fixtures/proc/${name}`, import.meta.url), "utf8");

test("children: pids with a trailing space, or none", () => {
  assert.deepEqual(parseChildren(fixture("zoo/task/children")), [9564, 9565]);
  assert.deepEqual(parseChildren(fixture("pidns/init-children")), [9685, 9686]);
  assert.deepEqual(parseChildren(""), []);
  assert.throws(() => parseChildren("12 x3 "), ProcParseError);
});

test("one-value files", () => {
  assert.equal(parseComm(fixture("zoo/comm")), "we(ird) )name");
  assert.equal(parseComm(fixture("zoo/task/worker-comm")), "cw\t\\x\n(y) z", "comm is raw, newline and all");
  assert.equal(parsePersonality(fixture("zoo/personality")), 0x0040000, "ADDR_NO_RANDOMIZE");
  assert.equal(parseTimerslackNs(fixture("zoo/timerslack_ns")), 123456n);
  assert.equal(parseLoginuid(fixture("zoo/loginuid")), LOGINUID_UNSET, "no trailing newline in this file");
  assert.equal(parseOomScoreAdj(fixture("zoo/oom_score_adj")), 321);
  assert.equal(parseOomScoreAdj("-1000\n"), -1000);
  assert.equal(parsePidMax(fixture("pid_max")), 32768);
  assert.throws(() => parseComm("no newline"), /no final newline/);
  assert.throws(() => parsePersonality("40000\n"), /8 hex digits/);
  assert.throws(() => parseTimerslackNs("-1\n"), ProcParseError);
  assert.throws(() => parseLoginuid("4294967296"), /not a u32/);
  assert.throws(() => parseOomScoreAdj("1001\n"), /-1000..1000/);
  assert.throws(() => parsePidMax("32768\n1\n"), /more than one line/);
  assert.throws(() => parsePidMax("0\n"), /not positive/);
});

test("ns links: kind and inode", () => {
  const ns = fixture("zoo/ns").trim().split("\n").map(parseNsLink);
  assert.deepEqual(ns.map((n) => n.kind), ["cgroup", "ipc", "mnt", "net", "pid", "pid", "time", "time", "user", "uts"]);
  assert.deepEqual(ns[1], { kind: "ipc", inode: 4026532177 }, "the capture program's own IPC namespace");
  assert.deepEqual(ns[4], { kind: "pid", inode: 4026531836 });
  const inner = fixture("pidns/ns").trim().split("\n").map(parseNsLink);
  assert.deepEqual(inner[4], { kind: "pid", inode: 4026532179 });
  assert.throws(() => parseNsLink("pipe:[12]"), /KIND:\[INODE\]/);
  assert.throws(() => parseNsLink("pid:4026531836"), ProcParseError);
});

test("fd links: every kind the capture program opened", () => {
  const links = new Map(fixture("zoo/fdlinks").trim().split("\n").map((l) => {
    const [fd, text] = l.split("\t") as [string, string];
    return [Number(fd), classifyFdLink(text)] as [number, FdLink];
  }));
  const strip = (l: FdLink): FdLink => (l.kind === "path" ? { ...l, path: l.path.replace(/^\/tmp\/crest-proc-fixtures\.[^/]+/, "/T") } : l);
  assert.deepEqual(strip(links.get(3)!), { kind: "path", path: "/T/zoo-dir/with space (x)", deleted: false });
  assert.deepEqual(links.get(4), { kind: "path", path: "/memfd:crest memfd", deleted: true, memfd: "crest memfd" });
  assert.deepEqual(links.get(5), { kind: "pipe", inode: 116982 });
  assert.deepEqual(links.get(6), links.get(5), "both ends of one pipe");
  assert.deepEqual(links.get(7), { kind: "socket", inode: 116983 });
  assert.deepEqual([10, 12, 14, 17, 18, 19, 29, 3000].map((fd) => links.get(fd)), [
    { kind: "anon", name: "eventfd" }, { kind: "anon", name: "eventpoll" }, { kind: "anon", name: "timerfd" },
    { kind: "anon", name: "signalfd" }, { kind: "anon", name: "inotify" }, { kind: "anon", name: "fanotify" },
    { kind: "anon", name: "pidfd" }, { kind: "anon", name: "eventfd" },
  ]);
  assert.deepEqual(strip(links.get(24)!), { kind: "path", path: "/T/zoo-dir/gone", deleted: true });
  assert.deepEqual(links.get(25), { kind: "path", path: "/dev/ptmx", deleted: false });
  assert.deepEqual(links.get(26), { kind: "path", path: "/dev/pts/0", deleted: false, pts: 0 });
  assert.deepEqual(links.get(27), { kind: "ns", ns: "net", inode: 4026531833 });
  assert.deepEqual(strip(links.get(28)!), { kind: "path", path: "/T/zoo-dir", deleted: false });
  assert.deepEqual(classifyFdLink("anon_inode:[io_uring]"), { kind: "anon", name: "io_uring" });
  assert.deepEqual(classifyFdLink("/memfd:x"), { kind: "path", path: "/memfd:x", deleted: false }, "a real file named like a memfd");
  assert.deepEqual(classifyFdLink("bpf:[7]"), { kind: "other", text: "bpf:[7]" });
  assert.throws(() => classifyFdLink("pipe:[99999999999999999]"), ProcParseError);
});

test("cgroup: v1 hierarchies, a named one, and v2", () => {
  const cg = parseCgroup(fixture("zoo/cgroup"));
  assert.equal(cg.length, 10);
  assert.deepEqual(cg[0], { hierarchyId: 9, controllers: ["name=systemd"], path: "/" });
  assert.deepEqual(cg[5], { hierarchyId: 4, controllers: ["memory"], path: "/process_api/2ce4e0b85010c98e019e691d94739aba" });
  assert.deepEqual(cg[9], { hierarchyId: 0, controllers: [], path: "/" });
  assert.deepEqual(parseCgroup("3:cpu,cpuacct:/a:b\n")[0], { hierarchyId: 3, controllers: ["cpu", "cpuacct"], path: "/a:b" });
  assert.throws(() => parseCgroup("x::/\n"), /ID:CONTROLLERS/);
  assert.throws(() => parseCgroup("0::relative\n"), ProcParseError);
});
