// Cgroups: the cgroups workload enters v1 memory and pids cgroups with
// limits and a v2 cgroup (cgroup.max.descendants, a property v2 keeps on
// this host, whose v2 hierarchy has no controllers), its child a memory
// cgroup below; dumped, the directories removed, restored: each task back
// in its cgroups (the workload compares /proc/self/cgroup), the limits as
// criu's modes say. soft (the default) gives the properties to the
// directories it creates and leaves existing ones alone; full sets them
// everywhere; strict refuses an existing directory; ignore leaves the tasks
// where the restore puts them. A failed restore removes the directories it
// made. --cgroup-root moves a hierarchy's dumped root; --freeze-cgroup
// freezes the tree through a v1 or v2 freezer while it is seized.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { readImage, IMG, type cgroup_dir_entry } from "../../src/images/index.js";
import { membersOf, yardName } from "../../src/kinds/cgroup/sets.js";
import {
  alive, assertDumpRefused, CREST, critDecodeAll, crest, dumpLog, dumpWorkload, finish, imagesDir, procState, restoreWorkload, startWorkload, stop, waitFor, waitTreeGone,
  type Workload,
} from "./harness.js";

const CG = "/sys/fs/cgroup";
const V2 = existsSync(`${CG}/unified/cgroup.procs`) ? `${CG}/unified` : existsSync(`${CG}/cgroup.procs`) ? CG : undefined;
const V1 = existsSync(`${CG}/memory/cgroup.procs`) && existsSync(`${CG}/pids/cgroup.procs`);
const skip = !V1 || !V2 ? "needs v1 memory and pids hierarchies and a cgroup2 one" : false;

const MEM_LIMIT = String(48 << 20);
const KID_LIMIT = String(40 << 20);

interface Cgroups {
  name: string;
  mem: string;
  kid: string;
  pids: string;
  v2: string;
}

/** Removes a cgroup directory and everything below it, children first (their tasks must be gone). */
function rmTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const d of readdirSync(dir, { withFileTypes: true })) if (d.isDirectory()) rmTree(join(dir, d.name));
  waitFor(`${dir} to empty`, () => {
    try {
      rmdirSync(dir);
      return true;
    } catch {
      return false;
    }
  });
}

function makeCgroups(limits = true): Cgroups {
  const name = `crest-cg-${process.pid}-${Date.now() % 100000}`;
  const c = { name, mem: `${CG}/memory/${name}/app`, kid: `${CG}/memory/${name}/app/kid`, pids: `${CG}/pids/${name}`, v2: `${V2}/${name}` };
  mkdirAll(c, limits);
  return c;
}

function mkdirAll(c: Cgroups, limits: boolean): void {
  for (const d of [c.kid, c.pids, c.v2]) mkdirSync(d, { recursive: true });
  if (!limits) return;
  writeFileSync(`${c.mem}/memory.limit_in_bytes`, MEM_LIMIT);
  writeFileSync(`${c.kid}/memory.limit_in_bytes`, KID_LIMIT);
  writeFileSync(`${c.pids}/pids.max`, "64");
  writeFileSync(`${c.v2}/cgroup.max.descendants`, "5");
}

function removeCgroups(c: Cgroups): void {
  rmTree(`${CG}/memory/${c.name}`);
  rmTree(c.pids);
  rmTree(c.v2);
}

const start = (c: Cgroups): Workload =>
  startWorkload("cgroups", [`${c.mem}/cgroup.procs`, `${c.pids}/cgroup.procs`, `${c.v2}/cgroup.procs`, "--", `${c.kid}/cgroup.procs`]);

const limitsOf = (c: Cgroups) => ({
  mem: readFileSync(`${c.mem}/memory.limit_in_bytes`, "utf8").trim(),
  kid: readFileSync(`${c.kid}/memory.limit_in_bytes`, "utf8").trim(),
  pids: readFileSync(`${c.pids}/pids.max`, "utf8").trim(),
  v2: readFileSync(`${c.v2}/cgroup.max.descendants`, "utf8").trim(),
});
const LIMITS = { mem: MEM_LIMIT, kid: KID_LIMIT, pids: "64", v2: "5" };

/** The cgroup lines of a process that are not at a hierarchy's root. */
const placed = (pid: number) => readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n").filter((l) => l && !l.endsWith(":/")).sort();

/** Finds a dumped directory by its path from the hierarchy's root. */
function dirAt(dirs: readonly cgroup_dir_entry[], path: string, base = ""): cgroup_dir_entry | undefined {
  for (const d of dirs) {
    const here = base === "" ? d.dir_name : `${base}/${d.dir_name}`;
    if (here === path) return d;
    const below = dirAt(d.children, path, here);
    if (below) return below;
  }
  return undefined;
}

function checkImage(w: Workload, c: Cgroups): void {
  assert.deepEqual(critDecodeAll(imagesDir(w)), [], "crit decodes every image, cgroup.img too");
  const [cg] = readImage(imagesDir(w), IMG.cgroup);
  const inv = readImage(imagesDir(w), IMG.inventory)[0]!;
  assert.equal(inv.root_cg_set, 1, "crest's own set is the first");
  const core = readImage(imagesDir(w), IMG.core, w.pid)[0]!;
  const set = cg!.sets.find((s) => s.id === core.thread_core!.cg_set)!;
  assert.ok(set, "the root's set is in cgroup.img");
  const path = (n: string) => set.ctls.find((m) => m.name === n)?.path;
  assert.deepEqual([path("memory"), path("pids"), path("")], [`/${c.name}/app`, `/${c.name}`, `/${c.name}`]);
  assert.equal(cg!.sets.length, 2, "the child's set too (its own memory cgroup)");
  const mem = cg!.controllers.find((x) => x.cnames.includes("memory"))!;
  const app = dirAt(mem.dirs, `${c.name}/app`)!;
  assert.equal(app.properties.find((p) => p.name === "memory.limit_in_bytes")?.value, MEM_LIMIT);
  assert.equal(app.children.find((d) => d.dir_name === "kid")?.properties.find((p) => p.name === "memory.limit_in_bytes")?.value, KID_LIMIT, "the child's cgroup below its parent's");
  const pids = cg!.controllers.find((x) => x.cnames.includes("pids"))!;
  assert.equal(dirAt(pids.dirs, c.name)?.properties.find((p) => p.name === "pids.max")?.value, "64");
  const v2 = cg!.controllers.find((x) => x.cnames.length === 1 && x.cnames[0] === "")!;
  assert.equal(dirAt(v2.dirs, c.name)?.properties.find((p) => p.name === "cgroup.max.descendants")?.value, "5");
}

test("cgroups: dumped, directories removed, restored soft: the tasks back in them, the directories crest made with their limits", { skip }, () => {
  const c = makeCgroups();
  const w = start(c);
  try {
    const before = placed(w.pid);
    dumpWorkload(w);
    checkImage(w, c);
    removeCgroups(c);
    restoreWorkload(w);
    assert.deepEqual(placed(w.pid), before, "the root in its cgroups before it runs");
    assert.deepEqual(limitsOf(c), LIMITS, "soft: directories crest created get their properties (as criu)");
    assert.match(dumpLog(w, "restore.log"), /Created cgroup memory:\/crest-cg-\S+\/app\/kid/);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
    removeCgroups(c);
  }
});

test("cgroups: a child where the dumper was (not in cgroup.img) goes where the restorer is, its parent in cgroups of its own", { skip }, () => {
  const c = makeCgroups();
  // The child goes back into the test's own cgroups, which crest, its child, shares.
  const mine = membersOf(readFileSync("/proc/self/cgroup", "utf8"), []);
  const at = (name: string, root: string) => `${root}${mine.find((m) => m.name === name)!.path.replace(/\/$/, "")}/cgroup.procs`;
  const w = startWorkload("cgroups", [`${c.mem}/cgroup.procs`, `${c.pids}/cgroup.procs`, "--", at("memory", `${CG}/memory`), at("pids", `${CG}/pids`)]);
  try {
    dumpWorkload(w);
    const [cg] = readImage(imagesDir(w), IMG.cgroup);
    assert.equal(cg!.sets.length, 1, "only the root's set: the child's is the dumper's own (inventory.root_cg_set)");
    removeCgroups(c);
    restoreWorkload(w);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
    removeCgroups(c);
  }
});

test("cgroups: --cgroup-dump-controller keeps only the controllers named, --cgroup-props replaces a controller's property list", { skip }, () => {
  const c = makeCgroups();
  const w = start(c);
  try {
    dumpWorkload(w, ["--cgroup-dump-controller", "memory", "--cgroup-dump-controller", "pids", "--cgroup-props", '"memory":\n - "strategy": "replace"\n - "properties": ["memory.swappiness"]\n']);
    const [cg] = readImage(imagesDir(w), IMG.cgroup);
    assert.deepEqual(cg!.controllers.map((x) => x.cnames.join(",")).sort(), ["memory", "pids"]);
    assert.ok(cg!.sets.every((s) => s.ctls.every((m) => m.name === "memory" || m.name === "pids")));
    const app = dirAt(cg!.controllers.find((x) => x.cnames[0] === "memory")!.dirs, `${c.name}/app`)!;
    assert.deepEqual(app.properties.map((p) => p.name), ["memory.swappiness", "cgroup.clone_children", "notify_on_release", "cgroup.procs", "tasks"]);
    removeCgroups(c);
    restoreWorkload(w);
    const lines = placed(w.pid);
    assert.ok(lines.some((l) => l.endsWith(`:memory:/${c.name}/app`)) && lines.some((l) => l.endsWith(`:pids:/${c.name}`)), lines.join(" "));
    assert.ok(!existsSync(c.v2), "the v2 cgroup was not dumped, nor made");
    assert.equal(readFileSync(`${c.mem}/memory.limit_in_bytes`, "utf8").trim(), "9223372036854771712", "no limit kept");
  } finally {
    stop(w);
    removeCgroups(c);
  }
});

test("cgroups: --cgroup-yard, the hierarchies mounted by the caller (criu's names: unified, systemd, cpu,cpuacct)", { skip }, () => {
  const c = makeCgroups();
  const yard = mkdtempSync("/tmp/crest-cgyard-");
  const mounted: string[] = [];
  const sh = (cmd: string[]) => assert.equal(spawnSync(cmd[0]!, cmd.slice(1)).status, 0, cmd.join(" "));
  sh(["mount", "-t", "tmpfs", "crest_yard", yard]);
  const w = start(c);
  try {
    // An empty yard: the dump says which hierarchy is missing there, and the tree runs on.
    const empty = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump-empty-yard.log", "--cgroup-yard", yard]);
    assert.equal(empty.code, 1);
    assert.match(empty.stderr, /--cgroup-yard \S+: \S+ does not exist; mount the \S+ hierarchy there first/);
    assert.equal(procState(w.pid).tracer, 0);
    for (const m of membersOf(readFileSync("/proc/self/cgroup", "utf8"), [])) {
      const dir = `${yard}/${yardName(m.name === "" ? [""] : m.name.split(","))}`;
      mkdirSync(dir);
      if (m.name === "") sh(["mount", "-t", "cgroup2", "none", dir]);
      else sh(["mount", "-t", "cgroup", "none", dir, "-o", m.name.startsWith("name=") ? `none,${m.name}` : m.name]);
      mounted.push(dir);
    }
    dumpWorkload(w, ["--cgroup-yard", yard]);
    removeCgroups(c);
    restoreWorkload(w, ["--cgroup-yard", yard]);
    assert.deepEqual(limitsOf(c), LIMITS);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
    for (const d of mounted) spawnSync("umount", [d]);
    spawnSync("umount", [yard]);
    rmdirSync(yard);
    removeCgroups(c);
  }
});

test("cgroups: existing directories without the limits: soft leaves them alone, full sets them", { skip }, () => {
  const c = makeCgroups();
  const w = start(c);
  try {
    dumpWorkload(w);
    removeCgroups(c);
    mkdirAll(c, false);
    const bare = limitsOf(c);
    assert.notDeepEqual(bare, LIMITS);
    restoreWorkload(w);
    assert.deepEqual(limitsOf(c), bare, "soft: existing directories keep their own properties");
    assert.equal(finish(w), "PASS");
    restoreWorkload(w, ["--manage-cgroups=full"]);
    assert.deepEqual(limitsOf(c), LIMITS, "full: the dumped limits");
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
    removeCgroups(c);
  }
});

test("cgroups: a restore that fails removes the directories it made, and only those", { skip }, () => {
  const c = makeCgroups();
  const w = start(c);
  try {
    dumpWorkload(w);
    removeCgroups(c);
    // The v2 one is there already: strict refuses it once it has made the v1 ones.
    mkdirSync(c.v2);
    const strict = crest(["restore", "-D", imagesDir(w), "-o", "restore-strict.log", "-v4", "-d", "--manage-cgroups=strict"]);
    assert.equal(strict.code, 1);
    assert.match(strict.stderr, /cgroup \S+ exists already \(--manage-cgroups=strict/);
    assert.ok(!existsSync(`${CG}/memory/${c.name}`) && !existsSync(c.pids), "the v1 directories strict made are gone");
    assert.ok(existsSync(c.v2), "the one it did not make stays");
    rmdirSync(c.v2);
    // A failure later on (after memory), every directory made.
    const late = crest(["restore", "-D", imagesDir(w), "-o", "restore-fault.log", "-v4", "-d"], { CREST_FAULT: "restore:memory" });
    assert.equal(late.code, 1);
    assert.match(late.stderr, /injected fault/);
    assert.ok(!alive(w.pid), "no task left");
    for (const d of [`${CG}/memory/${c.name}`, c.pids, c.v2]) assert.ok(!existsSync(d), `${d} removed`);
    // And the images still restore.
    restoreWorkload(w);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
    removeCgroups(c);
  }
});

test("cgroups: --manage-cgroups=ignore leaves the tasks in crest's cgroups and makes nothing", { skip }, () => {
  const c = makeCgroups();
  const w = start(c);
  try {
    dumpWorkload(w);
    removeCgroups(c);
    restoreWorkload(w, ["--manage-cgroups=ignore"]);
    assert.deepEqual(placed(w.pid), placed(process.pid), "where the restore put it: crest's cgroups, as the test's");
    assert.ok(!existsSync(`${CG}/memory/${c.name}`) && !existsSync(c.pids) && !existsSync(c.v2), "no directory made");
    assert.match(finish(w), /^FAIL: cgroups of the parent/, "the workload sees it is elsewhere");
  } finally {
    stop(w);
    removeCgroups(c);
  }
});

test("cgroups: --cgroup-root moves a hierarchy's dumped root", { skip }, () => {
  const c = makeCgroups();
  const w = start(c);
  const moved = `${c.name}-moved`;
  try {
    dumpWorkload(w);
    removeCgroups(c);
    restoreWorkload(w, [`--cgroup-root`, `pids:/${moved}`]);
    const lines = placed(w.pid);
    assert.ok(lines.some((l) => /:pids:/.test(l) && l.endsWith(`:/${moved}`)), `pids under the new root: ${lines.join(" ")}`);
    assert.equal(readFileSync(`${CG}/pids/${moved}/pids.max`, "utf8").trim(), "64");
    assert.ok(lines.some((l) => l.endsWith(`memory:/${c.name}/app`)), "other hierarchies where they were");
  } finally {
    stop(w);
    removeCgroups(c);
    rmTree(`${CG}/pids/${moved}`);
  }
});

for (const v of ["v1", "v2"] as const) {
  test(`cgroups: --freeze-cgroup through the ${v} freezer, dumped and left running, then dumped and restored`, { skip }, () => {
    const c = makeCgroups();
    const fz = v === "v1" ? `${CG}/freezer/${c.name}` : c.v2;
    if (v === "v1") mkdirSync(fz);
    const w = startWorkload("cgroups", [`${c.mem}/cgroup.procs`, `${fz}/cgroup.procs`, ...(v === "v1" ? [`${c.v2}/cgroup.procs`] : []), "--", `${c.kid}/cgroup.procs`]);
    const state = () => (v === "v1" ? readFileSync(`${fz}/freezer.state`, "utf8").trim() : readFileSync(`${fz}/cgroup.freeze`, "utf8").trim());
    try {
      dumpWorkload(w, ["--freeze-cgroup", fz, "-R"]);
      assert.match(dumpLog(w), /Seized 2 thread\(s\) of freezer cgroup/);
      assert.equal(state(), v === "v1" ? "THAWED" : "0", "thawed again");
      assert.equal(procState(w.pid).tracer, 0);
      if (v === "v1") {
        const [cg] = readImage(imagesDir(w), IMG.cgroup);
        const fr = cg!.controllers.find((x) => x.cnames.includes("freezer"))!;
        assert.equal(dirAt(fr.dirs, c.name)?.properties.find((p) => p.name === "freezer.state")?.value, "THAWED", "the state before the dump, for the restore");
      }
      dumpWorkload(w, ["--freeze-cgroup", fz]);
      removeCgroups(c);
      if (v === "v1") rmTree(fz);
      restoreWorkload(w);
      assert.equal(state(), v === "v1" ? "THAWED" : "0");
      assert.equal(finish(w), "PASS");
    } finally {
      stop(w);
      removeCgroups(c);
      if (v === "v1") rmTree(fz);
    }
  });
}

test("cgroups: a tree in its own cgroup namespace, rooted at its cgroups: the namespace comes back rooted there", { skip }, () => {
  const c = makeCgroups();
  const w = startWorkload("cgroups", ["--cgns", `${c.mem}/cgroup.procs`, `${c.pids}/cgroup.procs`, `${c.v2}/cgroup.procs`, "--", `${c.kid}/cgroup.procs`]);
  const ns = (pid: number | "self") => readlinkSync(`/proc/${pid}/ns/cgroup`);
  try {
    assert.notEqual(ns(w.pid), ns("self"));
    const before = placed(w.pid);
    dumpWorkload(w);
    const [cg] = readImage(imagesDir(w), IMG.cgroup);
    const root = cg!.sets.find((s) => s.id === readImage(imagesDir(w), IMG.core, w.pid)[0]!.thread_core!.cg_set)!;
    const mem = root.ctls.find((m) => m.name === "memory")!;
    assert.equal(mem.path.slice(0, mem.cgns_prefix), `/${c.name}/app`, "the namespace's root, as criu's cgns_prefix");
    removeCgroups(c);
    restoreWorkload(w);
    assert.deepEqual(placed(w.pid), before, "seen from crest's namespace: the same cgroups");
    assert.notEqual(ns(w.pid), ns("self"), "in a cgroup namespace of its own");
    assert.equal(finish(w), "PASS", "seen from inside: the same paths as before the dump");
  } finally {
    stop(w);
    removeCgroups(c);
  }
});

test("cgroups: a cgroup namespace rooted where crest's is (no trace in the paths) is refused, the tree left running", { skip }, () => {
  // At every hierarchy's root, then unshared: its cgroups look the same from inside.
  assertDumpRefused("cgroups", ["--cgns", `${CG}/memory/cgroup.procs`], /cgroup namespace of its own rooted where crest's is/);
});

/** Runs a python script with Debian's pycriu (a client nobody wrote for crest); returns its stdout. */
function pycriu(script: string, args: string[]): string {
  const r = spawnSync("/usr/bin/python3", ["-c", `import sys, os\nsys.path.insert(0, "/usr/lib/python3/dist-packages")\nimport pycriu\n${script}`, ...args], { encoding: "utf8" });
  assert.equal(r.status, 0, `python failed: ${r.stderr}`);
  return r.stdout.trim();
}

test("cgroups over RPC as runc asks (manage_cgroups, manage_cgroups_mode FULL, freeze_cgroup): into bare existing directories, the limits back", { skip }, () => {
  const c = makeCgroups();
  const fz = `${CG}/freezer/${c.name}`;
  mkdirSync(fz);
  const w = startWorkload("cgroups", [`${c.mem}/cgroup.procs`, `${c.pids}/cgroup.procs`, `${fz}/cgroup.procs`, "--", `${c.kid}/cgroup.procs`]);
  const client = `c = pycriu.criu()\nc.use_binary("${CREST}")\nc.opts.images_dir_fd = os.open(sys.argv[1], os.O_DIRECTORY)\nc.opts.log_level = 4\nc.opts.manage_cgroups = True\nc.opts.manage_cgroups_mode = 4\n`;
  try {
    mkdirSync(imagesDir(w), { recursive: true });
    assert.equal(pycriu(`${client}c.opts.pid = ${w.pid}\nc.opts.log_file = "dump.log"\nc.opts.freeze_cgroup = sys.argv[2]\nprint(c.dump().restored)`, [imagesDir(w), fz]), "False");
    assert.match(dumpLog(w), /Seized 2 thread\(s\) of freezer cgroup/);
    waitTreeGone(w, imagesDir(w));
    removeCgroups(c);
    mkdirAll(c, false);
    const pid = pycriu(`${client}c.opts.log_file = "restore.log"\nprint(c.restore().pid)`, [imagesDir(w)]);
    assert.equal(Number(pid), w.pid);
    assert.deepEqual(limitsOf(c), LIMITS, "FULL: the dumped limits on directories that were there");
    assert.equal(readFileSync(`${fz}/freezer.state`, "utf8").trim(), "THAWED");
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
    removeCgroups(c);
    rmTree(fz);
  }
});

test("cgroups: the workload's check fails when a task is not back in its cgroup (sabotage 1)", { skip }, () => {
  const c = makeCgroups();
  const w = startWorkload("cgroups", [`${c.mem}/cgroup.procs`], { env: ["CREST_WL_SABOTAGE=1"] });
  try {
    assert.match(finish(w), /^FAIL: cgroups of the parent/);
  } finally {
    stop(w);
    removeCgroups(c);
  }
});
