// The pure part of cgroups as criu keeps them in cgroup.img: a task's
// membership (/proc/PID/task/TID/cgroup) as a set of (controller, path)
// pairs sorted by controller name, the hierarchies seen from crest's own
// /proc/self/cgroup, the directory trees under the sets' cgroups, and
// --cgroup-root's rewriting of dumped paths on restore.
import { parseCgroup } from "../../proc/index.js";
import type { cg_controller_entry, cg_member_entry, cg_set_entry, cgroup_dir_entry, cgroup_entry } from "../../images/index.js";
import type { CgroupRoot } from "../../options.js";

/**
 * One line of /proc/PID/cgroup as criu names it: name is the line's
 * controllers as written ("cpu,cpuacct", "name=systemd", "" for the v2
 * hierarchy), path the cgroup.
 */
export interface Member {
  name: string;
  path: string;
  /** Under a cgroup namespace: the length of path's part above the namespace's root (criu's cgns_prefix). */
  cgns_prefix?: number;
}

/** criu's strcmp order of controller names (ASCII: code units compare the same). */
const byName = (a: Member, b: Member) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** A task's membership, filtered by --cgroup-dump-controller (none given: every line), sorted by name. */
export function membersOf(text: string, dumpControllers: readonly string[]): Member[] {
  return parseCgroup(text)
    .map((m) => ({ name: m.controllers.join(","), path: m.path }))
    .filter((m) => dumpControllers.length === 0 || dumpControllers.includes(m.name))
    .sort(byName);
}

export const sameMembers = (a: readonly Member[], b: readonly Member[]): boolean =>
  a.length === b.length && a.every((m, i) => m.name === b[i]!.name && m.path === b[i]!.path && (m.cgns_prefix ?? 0) === (b[i]!.cgns_prefix ?? 0));

/**
 * Where a task's cgroup namespace is rooted, from its cgroups as crest sees
 * them (outer) and as the task itself does (inner, read from inside its
 * namespace): for each controller whose paths differ, the inner path must
 * end the outer one, and what comes before it (without its trailing '/')
 * is the namespace's root: cgns_prefix is its length.
 */
export function setPrefixes(outer: Member[], inner: readonly Member[], what: string): void {
  for (const m of outer) {
    const i = inner.find((x) => x.name === m.name);
    if (!i || i.path === m.path) continue;
    const tail = i.path.slice(1);
    if (!m.path.endsWith(tail)) throw new Error(`${what}: invalid cgroup configuration, ${i.path} (seen from its cgroup namespace) does not end ${m.name || "(v2)"}:${m.path}`);
    let at = m.path.length - tail.length;
    if (m.path[at - 1] === "/") at--;
    m.cgns_prefix = at;
  }
}

/** A task of the tree other than its root: in the root's cgroup namespace, its prefixes are the root's (criu allows no nesting). */
export function copyPrefixes(members: Member[], root: readonly Member[], what: string): void {
  for (const m of members) {
    const r = root.find((x) => x.name === m.name);
    if (!r?.cgns_prefix) continue;
    if (m.path.length < r.cgns_prefix) throw new Error(`${what}: the cgroup ${m.name || "(v2)"}:${m.path} is shorter than its namespace's root (${r.cgns_prefix} characters)`);
    m.cgns_prefix = r.cgns_prefix;
  }
}

/**
 * The hierarchies crest itself is in, as criu's collect_controllers: each
 * line's real controllers (named ones, "name=X", come in only when a task is
 * in them); the v2 line is one controller named "".
 */
export function hierarchiesOf(selfText: string, dumpControllers: readonly string[]): string[][] {
  const out: string[][] = [];
  for (const m of parseCgroup(selfText)) {
    const name = m.controllers.join(",");
    if (dumpControllers.length && !dumpControllers.includes(name)) continue;
    const real = name === "" ? [""] : m.controllers.filter((c) => !c.startsWith("name="));
    if (real.length) out.push(real);
  }
  return out;
}

/**
 * criu's cgroup_contains: whether a hierarchy's controllers all appear in a
 * comma-separated name ("cpu,cpuacct"); the v2 hierarchy ([""]) contains
 * only "".
 */
export function contains(cnames: readonly string[], name: string): boolean {
  if (cnames.length === 1 && cnames[0] === "") return name === "";
  if (cnames.length === 0) return false;
  const words = name.split(",");
  return cnames.every((c) => words.includes(c));
}

/** The directory a hierarchy has in a cgroup yard, as criu names it: controllers joined by ',', "unified" for v2, a named one by its name. */
export function yardName(cnames: readonly string[]): string {
  return cnames.map((c) => (c === "" ? "unified" : c.startsWith("name=") ? c.slice(5) : c)).join(",");
}

/** A directory of a hierarchy as the dump walks it: path from the hierarchy's root ("/" for the root). */
export interface WalkedDir {
  path: string;
  entry: cgroup_dir_entry;
}

/**
 * The directories of one hierarchy, gathered from walks starting at the
 * sets' cgroups, as a forest: each directory under the nearest walked
 * ancestor (criu's find_dir), a head's dir_name its path without the
 * leading '/' ("" for the root), a child's its last component.
 */
export class DirForest {
  readonly heads: WalkedDir[] = [];
  private readonly byPath = new Map<string, WalkedDir>();

  has(path: string): boolean {
    return this.byPath.has(path);
  }

  /** Adds a directory (walks go parents first); an earlier head below it moves under it. */
  add(path: string, entry: Omit<cgroup_dir_entry, "dir_name" | "children">): cgroup_dir_entry {
    const parent = this.nearestAncestor(path);
    const dir: WalkedDir = {
      path,
      entry: { dir_name: parent ? path.slice(parent.path === "/" ? 1 : parent.path.length + 1) : path.slice(1), children: [], ...entry },
    };
    if (parent) parent.entry.children.push(dir.entry);
    else this.heads.push(dir);
    this.byPath.set(path, dir);
    // Heads walked earlier from a deeper cgroup now hang below this one.
    for (const h of [...this.heads]) {
      if (h !== dir && isBelow(h.path, path)) {
        this.heads.splice(this.heads.indexOf(h), 1);
        const up = this.nearestAncestor(h.path)!;
        h.entry.dir_name = h.path.slice(up.path === "/" ? 1 : up.path.length + 1);
        up.entry.children.push(h.entry);
      }
    }
    return dir.entry;
  }

  private nearestAncestor(path: string): WalkedDir | undefined {
    let p = path;
    while (p !== "/") {
      p = p.slice(0, p.lastIndexOf("/")) || "/";
      const d = this.byPath.get(p);
      if (d) return d;
    }
    return undefined;
  }
}

/** Whether path is strictly below dir. */
export function isBelow(path: string, dir: string): boolean {
  return dir === "/" ? path !== "/" : path.startsWith(`${dir}/`);
}

/** The root a dump walks from, or a restore moves a hierarchy's dumped root to: the controller's own --cgroup-root, else the global one. */
export function rootFor(roots: readonly CgroupRoot[], cnames: readonly string[], name?: string): string | undefined {
  const own = roots.filter((r) => r.controller !== undefined && (name !== undefined ? r.controller === name : contains(cnames, r.controller)));
  if (own.length) return own[own.length - 1]!.path;
  return roots.filter((r) => r.controller === undefined).pop()?.path;
}

/**
 * --cgroup-root on restore (criu's rewrite_cgroup_roots): each hierarchy's
 * dumped top directories become the new root, and the sets' paths in them
 * follow. Two roots named for controllers of one hierarchy must agree.
 */
export function rewriteRoots(cg: cgroup_entry, roots: readonly CgroupRoot[]): void {
  if (!roots.length) return;
  for (const ctl of cg.controllers) {
    const named = roots.filter((r) => r.controller !== undefined && ctl.cnames.some((c) => contains([c], r.controller!)));
    const paths = new Set(named.map((r) => r.path));
    if (paths.size > 1) throw new Error(`--cgroup-root: controllers of the hierarchy ${ctl.cnames.join(",")} are given different roots (${[...paths].join(", ")})`);
    const root = named[0]?.path ?? roots.filter((r) => r.controller === undefined).pop()?.path;
    if (root === undefined) continue;
    for (const dir of ctl.dirs) {
      const old = dir.dir_name;
      for (const set of cg.sets) {
        for (const m of set.ctls) {
          const rel = m.path.slice(1);
          if (!contains(ctl.cnames, m.name) || !(old === "" || rel === old || rel.startsWith(`${old}/`))) continue;
          const rest = rel.slice(old.length);
          m.path = rest === "" ? root : rest.startsWith("/") ? root.replace(/\/$/, "") + rest : `${root.replace(/\/$/, "")}/${rest}`;
        }
      }
      dir.dir_name = root;
    }
  }
}

/** The hierarchy a set's member is in, among the image's controllers. */
export function controllerOf(controllers: readonly cg_controller_entry[], m: cg_member_entry): cg_controller_entry | undefined {
  return controllers.find((c) => contains(c.cnames, m.name));
}

/** The cgroup.img set with that id. */
export const setById = (cg: cgroup_entry, id: number): cg_set_entry | undefined => cg.sets.find((s) => s.id === id);

/** A property value as criu keeps it: one trailing newline off; a number at or beyond LLONG_MAX is "-1". */
export function propValue(name: string, raw: string): string {
  let v = raw.endsWith("\n") ? raw.slice(0, -1) : raw;
  const n = /^\s*([+-]?\d+)/.exec(v);
  if (n && BigInt(n[1]!) >= 0x7fffffffffffffffn) v = "-1";
  if (name === "memory.oom_control") {
    const m = /oom_kill_disable (\d+)/.exec(v);
    if (!m) throw new Error(`cannot read oom_kill_disable from memory.oom_control: ${JSON.stringify(v)}`);
    v = m[1]!;
  }
  return v;
}

/** The lines of a net_prio.ifpriomap worth writing back: those with a priority other than 0 (criu's filter_ifpriomap). */
export function ifpriomapLines(value: string): string[] {
  return value.split("\n").filter((l) => {
    const sp = l.indexOf(" ");
    if (sp < 0) {
      if (l === "") return false;
      throw new Error(`Invalid value for ifpriomap: \`${l}'`);
    }
    return parseInt(l.slice(sp + 1), 10) !== 0 && !Number.isNaN(parseInt(l.slice(sp + 1), 10));
  });
}

/** The value to write to cgroup.subtree_control to go from what it has to what was dumped: "-" each current, "+" each wanted. */
export function subtreeControlWrite(current: string, wanted: string): string {
  const words = (s: string) => s.trim().split(/\s+/).filter((w) => w !== "");
  return [...words(current).map((w) => `-${w}`), ...words(wanted).map((w) => `+${w}`)].join(" ");
}
