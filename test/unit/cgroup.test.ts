// The pure part of cgroups (kinds/cgroup/sets.ts, props.ts): a task's
// /proc/PID/cgroup as a sorted set, the hierarchies from crest's own, the
// controller matching and yard names, the directory forest the walks make,
// --cgroup-root's rewriting, property values as criu keeps them, and
// criu's property-list format.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  DirForest, contains, copyPrefixes, hierarchiesOf, ifpriomapLines, membersOf, propValue, rewriteRoots, rootFor, sameMembers, setPrefixes, subtreeControlWrite, yardName,
} from "../../src/kinds/cgroup/sets.js";
import { CgroupPropsError, parseProps, propLists } from "../../src/kinds/cgroup/props.js";
import type { cgroup_entry } from "../../src/images/index.js";

// This machine's layout: v1 hierarchies, a named one, co-mounted cpu,cpuacct, the v2 line.
const HYBRID = `12:name=zdtmtst:/
9:name=systemd:/user.slice
8:pids:/box
4:memory:/process_api/x
2:cpu,cpuacct:/
0::/box
`;

test("cgroup: a task's membership sorted by controller name (v2's \"\" first), filtered by --cgroup-dump-controller", () => {
  const m = membersOf(HYBRID, []);
  assert.deepEqual(m.map((x) => x.name), ["", "cpu,cpuacct", "memory", "name=systemd", "name=zdtmtst", "pids"]);
  assert.deepEqual(m[0], { name: "", path: "/box" });
  assert.deepEqual(membersOf(HYBRID, ["memory", "pids"]).map((x) => `${x.name}:${x.path}`), ["memory:/process_api/x", "pids:/box"]);
  assert.ok(sameMembers(membersOf(HYBRID, []), membersOf(HYBRID.trim().split("\n").reverse().join("\n"), [])), "order of lines does not matter");
  assert.ok(!sameMembers(m, membersOf(HYBRID.replace("/box\n", "/box/kid\n"), [])));
});

test("cgroup: hierarchies from crest's own cgroup file: real controllers, v2 as \"\", named ones left for the walks", () => {
  assert.deepEqual(hierarchiesOf(HYBRID, []), [["pids"], ["memory"], ["cpu", "cpuacct"], [""]]);
  assert.deepEqual(hierarchiesOf(HYBRID, ["memory"]), [["memory"]]);
  assert.deepEqual(hierarchiesOf("0::/\n", []), [[""]], "a pure v2 host");
});

test("cgroup: which hierarchy holds a member, and its name in a yard", () => {
  assert.ok(contains(["cpu", "cpuacct"], "cpu,cpuacct"));
  assert.ok(!contains(["cpu", "cpuacct"], "cpu"));
  assert.ok(!contains(["cpu"], "cpuset"), "whole words only");
  assert.ok(contains([""], "") && !contains([""], "memory") && !contains(["memory"], ""));
  assert.ok(contains(["name=systemd"], "name=systemd"));
  assert.deepEqual([yardName(["cpu", "cpuacct"]), yardName([""]), yardName(["name=systemd"])], ["cpu,cpuacct", "unified", "systemd"]);
});

test("cgroup: the directory forest: heads by path, children by name, a deeper head moved under a later walk's parent", () => {
  const f = new DirForest();
  const e = () => ({ properties: [] });
  f.add("/a/b", e());
  f.add("/a/b/c", e());
  f.add("/x", e());
  assert.deepEqual(f.heads.map((h) => h.entry.dir_name), ["a/b", "x"]);
  f.add("/a", e());
  assert.deepEqual(f.heads.map((h) => h.entry.dir_name), ["x", "a"]);
  const a = f.heads[1]!.entry;
  assert.deepEqual(a.children.map((c) => c.dir_name), ["b"]);
  assert.deepEqual(a.children[0]!.children.map((c) => c.dir_name), ["c"]);
  const root = new DirForest();
  root.add("/", e());
  root.add("/s", e());
  assert.deepEqual([root.heads[0]!.entry.dir_name, root.heads[0]!.entry.children[0]!.dir_name], ["", "s"], "the root's dir_name is empty, as criu's");
  assert.ok(root.has("/s") && !root.has("/t"));
});

test("cgroup: --cgroup-root rewrites a hierarchy's top directories and the sets' paths in them", () => {
  const cg = (): cgroup_entry => ({
    sets: [{ id: 2, ctls: [{ name: "memory", path: "/old/app" }, { name: "pids", path: "/old" }, { name: "cpu,cpuacct", path: "/" }] }],
    controllers: [
      { cnames: ["memory"], dirs: [{ dir_name: "old", children: [], properties: [] }] },
      { cnames: ["pids"], dirs: [{ dir_name: "old", children: [], properties: [] }] },
      { cnames: ["cpu", "cpuacct"], dirs: [{ dir_name: "", children: [], properties: [] }] },
    ],
  });
  const one = cg();
  rewriteRoots(one, [{ controller: "memory", path: "/new" }]);
  assert.deepEqual(one.sets[0]!.ctls.map((m) => m.path), ["/new/app", "/old", "/"]);
  assert.equal(one.controllers[0]!.dirs[0]!.dir_name, "/new");
  const all = cg();
  rewriteRoots(all, [{ path: "/g" }, { controller: "cpu", path: "/c" }]);
  assert.deepEqual(all.sets[0]!.ctls.map((m) => m.path), ["/g/app", "/g", "/c"]);
  assert.throws(() => rewriteRoots(cg(), [{ controller: "cpu", path: "/1" }, { controller: "cpuacct", path: "/2" }]), /different roots/);
  assert.equal(rootFor([{ path: "/g" }, { controller: "memory", path: "/m" }], ["memory"]), "/m");
  assert.equal(rootFor([{ path: "/g" }], ["pids"]), "/g");
  assert.equal(rootFor([], ["pids"]), undefined);
});

test("cgroup: property values as criu keeps them", () => {
  assert.equal(propValue("pids.max", "max\n"), "max");
  assert.equal(propValue("memory.limit_in_bytes", "9223372036854771712\n"), "9223372036854771712");
  assert.equal(propValue("x", "9223372036854775807\n"), "-1", "LLONG_MAX");
  assert.equal(propValue("memory.oom_control", "oom_kill_disable 1\nunder_oom 0\noom_kill 0\n"), "1");
  assert.throws(() => propValue("memory.oom_control", "nonsense"), /oom_kill_disable/);
  assert.deepEqual(ifpriomapLines("lo 0\neth0 5\nveth1 0\nwlan 3"), ["eth0 5", "wlan 3"]);
  assert.throws(() => ifpriomapLines("lo"), /Invalid value for ifpriomap/);
  assert.equal(subtreeControlWrite("cpu io\n", "memory pids"), "-cpu -io +memory +pids");
  assert.equal(subtreeControlWrite("", ""), "");
});

test("cgroup: property lists in criu's format, merged or replaced over the built-in ones", () => {
  const base = propLists();
  assert.deepEqual(base.get("pids"), ["pids.max"]);
  assert.equal(base.get("memory")![0], "memory.limit_in_bytes", "limit before memsw, as the kernel needs");
  assert.deepEqual(base.get("freezer"), []);
  const more = propLists('"pids":\n - "strategy": "merge"\n - "properties": ["pids.events"]\n"net_cls":\n - "strategy": "replace"\n - "properties": ["net_cls.classid", "x"]\n');
  assert.deepEqual(more.get("pids"), ["pids.max", "pids.events"]);
  assert.deepEqual(more.get("net_cls"), ["net_cls.classid", "x"]);
  assert.throws(() => propLists('"":\n - "strategy": "merge"\n - "properties": ["memory.max"]\n'), CgroupPropsError, "an empty controller name, as criu's parser refuses it");
  const replaced = propLists(undefined, { path: "f.yaml", text: '"cpu":\n - "strategy": "replace"\n - "properties": [ ]\n' });
  assert.deepEqual(replaced.get("cpu"), []);
  assert.throws(() => parseProps('"cpu":\n - "strategy": "swap"\n - "properties": []\n', "t"), /unknown strategy "swap"/);
  assert.throws(() => parseProps('"cpu": oops', "t"), CgroupPropsError);
});

test("cgroup: a cgroup namespace's root from the outer and inner views (criu's cgns_prefix), copied to the tree's other tasks", () => {
  const outer = membersOf("4:memory:/box/app\n8:pids:/box\n2:cpu:/\n", []);
  setPrefixes(outer, membersOf("4:memory:/app\n8:pids:/\n2:cpu:/\n", []), "t");
  assert.deepEqual(outer.map((m) => [m.name, m.cgns_prefix]), [["cpu", undefined], ["memory", 4], ["pids", 4]]);
  assert.equal(outer[1]!.path.slice(0, 4), "/box");
  assert.throws(() => setPrefixes(membersOf("4:memory:/box/app\n", []), membersOf("4:memory:/other\n", []), "task 7"), /task 7: invalid cgroup configuration/);
  const kid = membersOf("4:memory:/box/app/kid\n8:pids:/box\n2:cpu:/\n", []);
  copyPrefixes(kid, outer, "t");
  assert.deepEqual(kid.map((m) => m.cgns_prefix), [undefined, 4, 4]);
  assert.ok(!sameMembers(outer, membersOf("4:memory:/box/app\n8:pids:/box\n2:cpu:/\n", [])), "a prefix makes another set");
});
