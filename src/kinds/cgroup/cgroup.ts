// Cgroups as criu keeps them: every thread's cgroups (/proc/PID/task/TID/
// cgroup, v1 hierarchies and the v2 one) become a set in cgroup.img, named
// by thread_core_entry.cg_set; each hierarchy a task set is in keeps the
// directory tree below the set's cgroup with the controllers' properties.
// crest's own set goes in inventory.root_cg_set, not in the image; a tree
// entirely in crest's cgroups writes no cgroup.img (as criu).
//
// Restore (--manage-cgroups, soft by default): before the root exists
// further than a stub, the dumped directories are created where missing
// (none/props: a missing one fails; strict: an existing one fails), with
// their permissions and the properties that must be set before a task
// enters (cpuset.cpus, devices.list, ...); each task is written into its
// cgroups right after it is born, before its memory is restored (so it is
// charged there) and before its children are created (they inherit them).
// Once every task is in, the other properties: of the directories crest
// created (soft), of every dumped directory (full, strict). ignore leaves
// the tasks where the restore puts them. A failed restore removes the
// directories it created.
import { closeSync, constants, existsSync, fchmodSync, fchownSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, rmdirSync, statSync, writeSync } from "node:fs";
import { dumpState, restoreState, UnsupportedError, type DumpRun, type DumpTask, type RestoreRun, type RestoreTask, type TaskKind } from "../context.js";
import { IMG, type cg_controller_entry, type cg_set_entry, type cgroup_dir_entry, type cgroup_entry, type cgroup_perms, type cgroup_prop_entry } from "../../images/index.js";
import { sleepMs } from "../../sys/syscalls.js";
import { inNamespaceOf } from "../../sys/namespace.js";
import { CLONE, SYS } from "../../sys/constants.js";
import { workPath } from "../../options.js";
import { GLOBAL_V1_PROPS, GLOBAL_V2_PROPS, SPECIAL_PROPS, propLists, type PropLists } from "./props.js";
import {
  DirForest, contains, controllerOf, copyPrefixes, hierarchiesOf, ifpriomapLines, membersOf, propValue, rewriteRoots, rootFor, sameMembers,
  setById, setPrefixes, subtreeControlWrite, type Member,
} from "./sets.js";
import { Hierarchies } from "./hierarchy.js";
import { originalFreezerState } from "./freezer.js";

// --- dump ---------------------------------------------------------------------

interface DumpController {
  cnames: string[];
  forest: DirForest;
  threaded: boolean;
}

interface CgroupDump {
  sets: Array<{ id: number; members: Member[] }>;
  /** crest's own set: id 1, as criu's (read first). */
  crestSet: number;
  rootSet?: number;
  controllers: DumpController[];
  props: PropLists;
}

const cgroupDump = dumpState<CgroupDump>("cgroups", (run) => {
  const o = run.opts.cgroups;
  const file = o.propsFile !== undefined ? { path: o.propsFile, text: readFileSync(workPath(run.opts, o.propsFile), "utf8") } : undefined;
  const self = readFileSync("/proc/self/cgroup", "utf8");
  return {
    sets: [{ id: 1, members: membersOf(self, o.dumpControllers) }],
    crestSet: 1,
    controllers: hierarchiesOf(self, o.dumpControllers).map((cnames) => ({ cnames, forest: new DirForest(), threaded: false })),
    props: propLists(o.props, file),
  };
});

const permsOf = (path: string): cgroup_perms => {
  const st = statSync(path);
  return { mode: st.mode, uid: st.uid, gid: st.gid };
};

/** A cgroup directory's owner and mode as dumped. */
function setPerms(path: string, perms: cgroup_perms): void {
  const fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fchownSync(fd, perms.uid, perms.gid);
    fchmodSync(fd, perms.mode & 0o7777);
  } finally {
    closeSync(fd);
  }
}

/** Reads up to 1023 bytes, as criu does. */
function readProp(path: string): string {
  const fd = openSync(path, constants.O_RDONLY);
  try {
    const buf = Buffer.alloc(1023);
    return buf.subarray(0, readSync(fd, buf, 0, buf.length, null)).toString("utf8");
  } finally {
    closeSync(fd);
  }
}

/** The properties of one directory: each controller's list, then the global ones of its version. */
function dirProps(dir: string, ctl: DumpController, lists: PropLists): cgroup_prop_entry[] {
  const v2 = ctl.cnames[0] === "";
  const names = [...ctl.cnames.flatMap((c) => lists.get(c) ?? []), ...(v2 ? GLOBAL_V2_PROPS : GLOBAL_V1_PROPS)];
  const out: cgroup_prop_entry[] = [];
  for (const name of names) {
    const path = `${dir}/${name}`;
    if (!existsSync(path)) continue;
    const procs = name === "cgroup.procs" || name === "tasks";
    const value = procs ? "" : propValue(name, readProp(path));
    if ((name === "cgroup.type" && value === "threaded") || name === "tasks") ctl.threaded = true;
    out.push({ name, value, perms: permsOf(path) });
  }
  return out;
}

/** Walks a hierarchy from one cgroup down, adding every directory not walked yet (criu's add_cgroup over ftw). */
function walk(root: string, path: string, ctl: DumpController, lists: PropLists): void {
  if (ctl.forest.has(path)) return;
  const dir = path === "/" ? root : `${root}${path}`;
  ctl.forest.add(path, { dir_perms: permsOf(dir), properties: dirProps(dir, ctl, lists) });
  for (const d of readdirSync(dir, { withFileTypes: true })) {
    if (d.isDirectory()) walk(root, path === "/" ? `/${d.name}` : `${path}/${d.name}`, ctl, lists);
  }
}

/** A new set of the tree: the hierarchies its cgroups are in, walked from each (unless cgroups are ignored). */
function collect(run: DumpRun, st: CgroupDump, members: readonly Member[], what: string): void {
  const o = run.opts.cgroups;
  const hier = new Hierarchies(o.yard !== undefined ? workPath(run.opts, o.yard) : undefined);
  try {
    for (const m of members) {
      let ctl = st.controllers.find((c) => contains(c.cnames, m.name));
      if (!ctl) {
        // Only a named hierarchy (name=systemd) can be one crest is not in.
        if (!m.name.startsWith("name=")) throw new Error(`${what} is in the cgroup ${m.name}:${m.path}, a controller crest does not see in its own /proc/self/cgroup`);
        ctl = { cnames: [m.name], forest: new DirForest(), threaded: false };
        st.controllers.push(ctl);
      }
      if (o.mode === "ignore") continue;
      const from = rootFor(o.roots, ctl.cnames, m.name) ?? m.path;
      const root = hier.rootOf(ctl.cnames);
      if (!existsSync(from === "/" ? root : `${root}${from}`)) throw new Error(`${what}: the cgroup ${m.name || "(v2)"}:${from} does not exist`);
      run.log.info(`Walking cgroup ${m.name || "(v2)"}:${from} of ${what}`);
      walk(root, from, ctl, st.props);
      if (o.freeze !== undefined && m.name === "freezer") {
        const head = ctl.forest.heads[0]?.entry;
        if (head && !head.properties.some((p) => p.name === "freezer.state")) {
          head.properties.push({ name: "freezer.state", value: originalFreezerState(run.opts) ?? "THAWED" });
        }
      }
    }
  } finally {
    hier.closeAll();
  }
}

function dumpTask(task: DumpTask, run: DumpRun): void {
  const st = run.state(cgroupDump);
  const controllers = run.opts.cgroups.dumpControllers;
  task.threads.forEach((t, i) => {
    const file = `/proc/${task.pid}/task/${t.tid}/cgroup`;
    const members = membersOf(readFileSync(file, "utf8"), controllers);
    const what = `thread ${t.tid} of process ${task.pid}`;
    if (task === run.root && run.ownNamespaces.has("cgroup")) {
      // The root's view from inside its cgroup namespace says where that is rooted.
      setPrefixes(members, membersOf(inNamespaceOf(task.pid, "cgroup", () => readFileSync(file, "utf8")), controllers), what);
      // Rooted where crest's own is, a namespace leaves no trace in the paths: criu restores the tree without it; crest says so instead.
      if (i === 0 && !members.some((m) => m.cgns_prefix)) {
        throw new UnsupportedError(`process ${task.pid} is in a cgroup namespace of its own rooted where crest's is (its cgroups look the same from inside): crest, as criu, can only recreate a cgroup namespace rooted below crest's; dump it from inside that namespace, or unshare it in the task's own cgroup`);
      }
    } else if (task !== run.root && st.rootSet !== undefined) {
      copyPrefixes(members, st.sets.find((s) => s.id === st.rootSet)!.members, what);
    }
    let set = st.sets.find((s) => sameMembers(s.members, members));
    if (!set) {
      set = { id: st.sets.length + 1, members };
      st.sets.push(set);
      run.log.info(`Cgroup set ${set.id}: ${members.map((m) => `${m.name || "(v2)"}:${m.path}`).join(" ")}`);
      collect(run, st, members, what);
    }
    if (task === run.root && i === 0) st.rootSet = set.id;
    task.core[i]!.thread_core!.cg_set = set.id;
  });
}

function finishDump(run: DumpRun): void {
  const st = run.state(cgroupDump);
  run.inventory.root_cg_set = st.crestSet;
  if (st.rootSet === st.crestSet && st.sets.length === 1) {
    run.log.info("All tasks in crest's cgroups: no cgroup.img");
    return;
  }
  const cg: cgroup_entry = {
    sets: st.sets.filter((s) => s.id !== st.crestSet).map((s) => ({
      id: s.id, ctls: s.members.map((m) => ({ name: m.name, path: m.path, ...(m.cgns_prefix ? { cgns_prefix: m.cgns_prefix } : {}) })),
    })),
    controllers: st.controllers.map((c) => ({ cnames: c.cnames, dirs: c.forest.heads.map((h) => h.entry), is_threaded: c.threaded })),
  };
  run.images.write(IMG.cgroup, undefined, [cg]);
}

// --- restore ------------------------------------------------------------------

interface CgroupRestore {
  cg?: cgroup_entry;
  hier: Hierarchies;
  /** Directories crest made, parents first (removed, children first, if the restore fails). */
  created: string[];
  /** freezer.state to write last (criu's restore_freezer_state). */
  freezer?: { path: string; value: string };
  done: boolean;
}

const cgroupRestore = restoreState<CgroupRestore>("cgroups", (run) => ({
  hier: new Hierarchies(run.opts.cgroups.yard !== undefined ? workPath(run.opts, run.opts.cgroups.yard) : undefined), created: [], done: false,
}));

/** A thread's set: thread_core's, else the older task_core one. */
const cgSetOf = (task: RestoreTask, i = 0): number | undefined => task.core[i]?.thread_core?.cg_set ?? task.core[i]?.tc?.cg_set;

/** Opens a cgroup file for writing only (kernfs refuses a read-write open of a file that cannot be read). */
function writeProp(path: string, value: string, what: string, opts: { perms?: cgroup_perms; onlyPerms?: boolean; lines?: boolean; tolerate?: (e: NodeJS.ErrnoException) => boolean } = {}): void {
  const fd = openSync(path, opts.onlyPerms ? constants.O_RDONLY : constants.O_WRONLY);
  try {
    if (opts.perms) {
      fchownSync(fd, opts.perms.uid, opts.perms.gid);
      fchmodSync(fd, opts.perms.mode & 0o7777);
    }
    if (opts.onlyPerms) return;
    // The kernel takes one line a write for some (devices.allow, ifpriomap).
    for (const line of opts.lines ? value.split("\n") : [value]) {
      try {
        writeSync(fd, line);
      } catch (e) {
        if (opts.tolerate?.(e as NodeJS.ErrnoException)) continue;
        throw new Error(`cannot write ${JSON.stringify(line)} to ${what}: ${(e as Error).message}`);
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** One property back, as criu's restore_cgroup_prop. */
function restoreProp(dir: string, shown: string, p: cgroup_prop_entry): void {
  const path = `${dir}/${p.name}`;
  const what = `${shown}/${p.name}`;
  if (p.name === "cgroup.procs" || p.name === "tasks") {
    writeProp(path, "", what, { ...(p.perms ? { perms: p.perms } : {}), onlyPerms: true });
    return;
  }
  if (p.name === "cgroup.type" && p.value !== "threaded") return;
  if (p.name === "cgroup.subtree_control") {
    const change = subtreeControlWrite(readFileSync(path, "utf8"), p.value);
    writeProp(path, change, what, p.perms ? { perms: p.perms } : {});
    return;
  }
  if (p.name === "net_prio.ifpriomap") {
    // Interfaces differ between hosts: only non-zero priorities, one a write, failures let go (criu's skip_fails).
    const lines = ifpriomapLines(p.value);
    if (lines.length) writeProp(path, lines.join("\n"), what, { ...(p.perms ? { perms: p.perms } : {}), lines: true, tolerate: () => true });
    return;
  }
  // memory.kmem.limit_in_bytes is gone from recent kernels (EOPNOTSUPP), as criu lets it go.
  const tolerate = (e: NodeJS.ErrnoException) => p.name === "memory.kmem.limit_in_bytes" && e.code === "EOPNOTSUPP";
  writeProp(path, p.value, what, { ...(p.perms ? { perms: p.perms } : {}), tolerate });
}

/** The properties a directory needs before it has tasks or children, set when crest creates it. */
function restoreSpecial(dir: string, shown: string, e: cgroup_dir_entry): void {
  for (const p of e.properties) {
    if (!SPECIAL_PROPS.has(p.name)) continue;
    // The kernel's defaults: nothing to write (criu skips them too).
    if ((p.name === "memory.swappiness" && p.value === "60") || (p.name === "memory.oom_control" && p.value === "0")) continue;
    if (p.name === "devices.list") {
      // A whitelist: deny all, then allow each line.
      writeProp(`${dir}/devices.deny`, "a", `${shown}/devices.deny`);
      if (p.value !== "") writeProp(`${dir}/devices.allow`, p.value, `${shown}/devices.allow`, { lines: true });
      continue;
    }
    restoreProp(dir, shown, p);
  }
}

/** Shown in messages: "memory:/a/b", "(v2):/a". */
const shownPath = (ctl: cg_controller_entry, rel: string) => `${ctl.cnames.join(",") || "(v2)"}:${rel.startsWith("/") ? rel : `/${rel}`}`;

const joinRel = (a: string, b: string) => (b === "" ? a : a === "" ? b : `${a.replace(/\/$/, "")}/${b.replace(/^\//, "")}`);

/** Creates what is missing of one hierarchy's dumped directories (criu's prepare_cgroup_dirs). */
function prepareDirs(run: RestoreRun, st: CgroupRestore, ctl: cg_controller_entry, root: string, rel: string, dirs: readonly cgroup_dir_entry[]): void {
  const mode = run.opts.cgroups.mode;
  for (const e of dirs) {
    const here = joinRel(rel, e.dir_name);
    const path = here === "" ? root : `${root}/${here.replace(/^\//, "")}`;
    const shown = shownPath(ctl, here);
    if (!existsSync(path)) {
      if (mode === "none" || mode === "props") throw new Error(`cgroup ${shown} does not exist (--manage-cgroups=${mode} creates no directory)`);
      // Parents first, each one made recorded, so a failure removes exactly those.
      const parts = here.replace(/^\//, "").split("/");
      for (let i = 1; i <= parts.length; i++) {
        const p = `${root}/${parts.slice(0, i).join("/")}`;
        if (existsSync(p)) continue;
        mkdirSync(p, 0o755);
        st.created.push(p);
      }
      run.log.info(`Created cgroup ${shown}`);
      if (e.dir_perms) setPerms(path, e.dir_perms);
      restoreSpecial(path, shown, e);
    } else {
      if (mode === "strict") throw new Error(`cgroup ${shown} exists already (--manage-cgroups=strict restores only into cgroups it creates)`);
      // soft and none leave an existing directory's properties alone.
      if (mode === "soft" || mode === "none") e.properties = [];
      if (mode !== "none" && e.dir_perms) setPerms(path, e.dir_perms);
    }
    prepareDirs(run, st, ctl, root, here, e.children);
  }
}

/** The properties of every dumped directory still holding some, once every task is in (criu's prepare_cgroup_properties). */
function restoreProps(st: CgroupRestore, ctl: cg_controller_entry, root: string, rel: string, dirs: readonly cgroup_dir_entry[]): void {
  for (const e of dirs) {
    const here = joinRel(rel, e.dir_name);
    const path = here === "" ? root : `${root}/${here.replace(/^\//, "")}`;
    // A hierarchy's root keeps the host's properties.
    if (e.dir_name !== "") {
      for (const p of e.properties) {
        if (p.name === "freezer.state") {
          st.freezer = { path: `${path}/freezer.state`, value: p.value };
          continue;
        }
        if (SPECIAL_PROPS.has(p.name)) continue;
        restoreProp(path, shownPath(ctl, here), p);
      }
    }
    restoreProps(st, ctl, root, here, e.children);
  }
}

/**
 * A set by id; the dumper's own set (inventory.root_cg_set), which is not in
 * the image, is the restorer's own cgroups now: a task that was where the
 * dumper was goes where the restorer is (criu fails to find that set).
 */
function setOf(run: RestoreRun, st: CgroupRestore, id: number): cg_set_entry | undefined {
  if (id !== run.inventory.root_cg_set) return setById(st.cg!, id);
  const own = membersOf(readFileSync("/proc/self/cgroup", "utf8"), []).filter((m) => controllerOf(st.cg!.controllers, m));
  return { id, ctls: own.map((m) => ({ name: m.name, path: m.path })) };
}

/** Writes pid (or a thread's tid, into `file`) into every cgroup of a set that differs from `from`. */
function moveInto(run: RestoreRun, st: CgroupRestore, id: number, id2pid: number, what: string, file: (v2: boolean) => string, from?: number): void {
  const set = setOf(run, st, id);
  if (!set) throw new Error(`${what}: cgroup set ${id} is not in ${run.images.name(IMG.cgroup)}`);
  const before = from !== undefined ? setOf(run, st, from) : undefined;
  for (const m of set.ctls) {
    if (before?.ctls.some((b) => b.name === m.name && b.path === m.path)) continue;
    const ctl = controllerOf(st.cg!.controllers, m)!;
    const dir = `${st.hier.rootOf(ctl.cnames)}${m.path === "/" ? "" : m.path}`;
    try {
      writeProp(`${dir}/${file(ctl.cnames[0] === "")}`, String(id2pid), "");
    } catch (e) {
      throw new Error(`cannot move ${what} into the cgroup ${shownPath(ctl, m.path)}: ${(e as Error).message.replace(/^cannot write "\d+" to : /, "")}`);
    }
    run.log.debug(`${what} is in ${shownPath(ctl, m.path)}`);
  }
}

/**
 * The root's cgroup namespace (criu's prepare_cgns): a namespace is rooted
 * at the cgroup its creator is in when it unshares, so the root enters the
 * cgroups above its namespace's root first, unshares (an injected unshare:
 * only the task itself can), and then goes on into its own cgroups; its
 * children inherit the namespace.
 */
function enterCgns(run: RestoreRun, st: CgroupRestore, task: RestoreTask, id: number): void {
  const set = setById(st.cg!, id);
  const prefixed = set?.ctls.filter((m) => m.cgns_prefix) ?? [];
  if (!prefixed.length) return;
  for (const m of prefixed) {
    const ctl = controllerOf(st.cg!.controllers, m)!;
    const top = m.path.slice(0, m.cgns_prefix);
    run.log.info(`Cgroup namespace of process ${task.vpid} rooted at ${shownPath(ctl, top)}`);
    const dir = `${st.hier.rootOf(ctl.cnames)}${top === "/" ? "" : top}`;
    try {
      writeProp(`${dir}/cgroup.procs`, String(task.pid), "");
    } catch (e) {
      throw new Error(`cannot move process ${task.vpid} into ${shownPath(ctl, top)}, the root of its cgroup namespace: ${(e as Error).message.replace(/^cannot write "\d+" to : /, "")}`);
    }
  }
  task.remotes[0]!.call(`unshare the cgroup namespace of process ${task.vpid}`, SYS.unshare, CLONE.NEWCGROUP);
}

/** Creates the dumped directories (the first thing the restore does once the root stub exists) and arranges their removal if it fails. */
function prepare(run: RestoreRun, st: CgroupRestore): void {
  run.cleanup.push(() => {
    if (!st.done) removeCreated(run, st);
    st.hier.closeAll();
  });
  for (const ctl of st.cg!.controllers) {
    if (!ctl.cnames.length) throw new Error(`${run.images.name(IMG.cgroup)}: a controller entry names no controller`);
    prepareDirs(run, st, ctl, st.hier.rootOf(ctl.cnames), "", ctl.dirs);
  }
}

/** Removes the directories a failed restore made, children first; a cgroup stays busy until its killed tasks are reaped. */
function removeCreated(run: RestoreRun, st: CgroupRestore): void {
  for (const dir of [...st.created].reverse()) {
    for (let tries = 0; ; tries++) {
      try {
        rmdirSync(dir);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") break;
        if ((e as NodeJS.ErrnoException).code !== "EBUSY" || tries >= 200) {
          run.log.error(`could not remove the cgroup ${dir} the failed restore made: ${(e as Error).message}`);
          break;
        }
        sleepMs(10);
      }
    }
  }
  st.created.length = 0;
}

export const cgroupKind: TaskKind = {
  name: "cgroups",
  dump: dumpTask,
  finishDump,
  plan(run) {
    if (run.opts.cgroups.mode === "ignore") return 0;
    const st = run.state(cgroupRestore);
    const [cg] = run.images.readOr(IMG.cgroup, undefined, []);
    if (!cg || !cg.sets.length) return 0;
    rewriteRoots(cg, run.opts.cgroups.roots);
    for (const s of cg.sets) {
      for (const m of s.ctls) {
        if (!controllerOf(cg.controllers, m)) throw new Error(`${run.images.name(IMG.cgroup)}: set ${s.id} names the cgroup ${m.name || "(v2)"}:${m.path} of a hierarchy the image does not describe`);
      }
    }
    st.cg = cg;
    return 0;
  },
  // Right after the task is created, before its memory (charged to its cgroups) and its children (which inherit them).
  born(task, run) {
    const st = run.state(cgroupRestore);
    if (!st.cg) return;
    if (task === run.tasks[0]) prepare(run, st);
    const id = cgSetOf(task);
    if (!id) return;
    if (task === run.tasks[0] && id !== run.inventory.root_cg_set) enterCgns(run, st, task, id);
    let up = task.parent;
    while (up && !cgSetOf(up)) up = up.parent;
    const from = up ? cgSetOf(up) : run.inventory.root_cg_set;
    if (id === from) return;
    moveInto(run, st, id, task.pid, `process ${task.vpid} (pid ${task.pid} here)`, () => "cgroup.procs", from);
  },
  finishRestore(run) {
    const st = run.state(cgroupRestore);
    if (!st.cg) return;
    for (const ctl of st.cg.controllers) restoreProps(st, ctl, st.hier.rootOf(ctl.cnames), "", ctl.dirs);
  },
  resume(run) {
    const st = run.state(cgroupRestore);
    if (!st.cg) return;
    if (st.freezer) writeProp(st.freezer.path, st.freezer.value, "freezer.state");
    st.done = true;
  },
};

/** Threads whose cgroups differ from their leader's (v1 tasks, v2 threaded cgroups): moved once the threads exist. */
export const cgroupThreadsKind: TaskKind = {
  name: "cgroups of threads",
  restore(task, run) {
    const st = run.state(cgroupRestore);
    if (!st.cg) return;
    const leader = cgSetOf(task);
    task.threads.forEach((t, i) => {
      const id = cgSetOf(task, i);
      if (i === 0 || !id || id === leader) return;
      moveInto(run, st, id, t.tid, `thread ${task.vtids[i]} of process ${task.vpid}`, (v2) => (v2 ? "cgroup.threads" : "tasks"), leader);
    });
  },
};
