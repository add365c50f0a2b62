// The user namespace: a tree in a user namespace of its own keeps its uid
// and gid maps, in userns-N.img (criu's userns_entry: per extent `first`,
// `lower_first`, `count`; the lower ids as crest's namespace sees them).
// Credentials in the images are the tree's own ids, as criu's parasite
// reads them inside the namespace: crest reads /proc/PID/status in its own
// namespace's terms and maps them through the tree's maps.
//
// Restore: the root is cloned with CLONE_NEWUSER together with the other new
// namespaces (the kernel makes the user namespace first, and it owns them);
// crest writes its maps before the root runs on, and the root becomes uid
// and gid 0 of the namespace, which keeps its capabilities there across the
// execve of crest's stub. The creds kind then sets each thread's ids, which
// the kernel takes in the tree's namespace.
import { readFileSync } from "node:fs";
import { dumpState, UnsupportedError, type DumpRun, type RestoreRun, type TaskKind } from "../context.js";
import { IMG, type uid_gid_extent } from "../../images/index.js";
import { CLONE, SYS } from "../../sys/constants.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { ownedAtRestore } from "./owned.js";

/** The lines of /proc/PID/uid_map or gid_map: "first lower count". */
export function parseIdMap(text: string, what: string): uid_gid_extent[] {
  return text.split("\n").filter((l) => l.trim()).map((line) => {
    const m = /^\s*(\d+)\s+(\d+)\s+(\d+)\s*$/.exec(line);
    if (!m) throw new Error(`${what}: cannot parse '${line}'`);
    return { first: Number(m[1]), lower_first: Number(m[2]), count: Number(m[3]) };
  });
}

/** An id of crest's namespace as the tree's namespace sees it; undefined where the map has none. */
export function idInside(map: readonly uid_gid_extent[], id: number): number | undefined {
  const e = map.find((x) => id >= x.lower_first && id - x.lower_first < x.count);
  return e && e.first + (id - e.lower_first);
}

/**
 * The command prefix that runs a program in the user namespace of process
 * `pid` as its root (nsenter: setns, then uid and gid 0 there), for the
 * tools crest runs on the tree's files (tar of a tmpfs): owners are then
 * the namespace's ids, and the files of a file system mounted in it can be
 * made (the kernel refuses crest's own uid there, which it does not map).
 */
export const runAsUsernsRoot = (pid: number): string[] => ["nsenter", "-t", String(pid), "-U", "-S", "0", "-G", "0", "--"];

const mapText = (map: readonly uid_gid_extent[]): string => map.map((e) => `${e.first} ${e.lower_first} ${e.count}\n`).join("");

interface TreeMaps {
  uid: uid_gid_extent[];
  gid: uid_gid_extent[];
}

/** Dump: the root's maps, read once (null: the tree is in crest's user namespace). */
const dumpMaps = dumpState("user namespace maps", (run): TreeMaps | null => {
  if (!run.ownNamespaces.has("user")) return null;
  const pid = run.root.pid;
  return {
    uid: parseIdMap(readFileSync(`/proc/${pid}/uid_map`, "utf8"), `/proc/${pid}/uid_map`),
    gid: parseIdMap(readFileSync(`/proc/${pid}/gid_map`, "utf8"), `/proc/${pid}/gid_map`),
  };
});

/**
 * Dump: uids and gids as crest reads them turned into the tree's own
 * (the same without a user namespace of its own); an id the tree's maps do
 * not cover is refused, naming what holds it.
 */
export function treeIds(run: DumpRun): { uid(id: number, what: string): number; gid(id: number, what: string): number } {
  const maps = run.state(dumpMaps);
  const inside = (kind: "uid" | "gid") => (id: number, what: string): number => {
    if (!maps) return id;
    const v = idInside(maps[kind], id);
    if (v === undefined) {
      throw new UnsupportedError(`${what} has ${kind} ${id}, which the ${kind} map of the tree's user namespace does not cover; crest cannot restore it there`);
    }
    return v;
  };
  return { uid: inside("uid"), gid: inside("gid") };
}

/** Restore: an id of the tree's user namespace as crest's sees it (the same without one of its own, or where the maps have none). */
export function idOutside(run: RestoreRun, kind: "uid" | "gid", id: number): number {
  if (!ownedAtRestore(run, "user")) return id;
  const [e] = run.images.read(IMG.userns, run.tasks[0]!.ids.user_ns_id!);
  const x = (kind === "uid" ? e?.uid_map : e?.gid_map)?.find((m) => id >= m.first && id - m.first < m.count);
  return x ? x.lower_first + (id - x.first) : id;
}

/** Restore: an id of crest's user namespace as the tree's sees it, or undefined (unmapped, or no user namespace of its own). */
export function idInsideAtRestore(run: RestoreRun, kind: "uid" | "gid", id: number): number | undefined {
  if (!ownedAtRestore(run, "user")) return undefined;
  const [e] = run.images.read(IMG.userns, run.tasks[0]!.ids.user_ns_id!);
  return e ? idInside(kind === "uid" ? e.uid_map : e.gid_map, id) : undefined;
}

/** Dump: a uid as the tree's user namespace sees it, or as crest reads it where the maps have none. */
export function uidInsideOr(run: DumpRun, id: number): number {
  const maps = run.state(dumpMaps);
  return (maps && idInside(maps.uid, id)) ?? id;
}

/** Restore: the maps to give the root's new user namespace, or undefined when the tree is in crest's. */
export function rootUserns(run: RestoreRun): { uidMap: string; gidMap: string } | undefined {
  if (!ownedAtRestore(run, "user")) return undefined;
  const id = run.tasks[0]!.ids.user_ns_id!;
  const [e] = run.images.read(IMG.userns, id);
  if (!e) throw run.images.invalid(IMG.userns, id, "no uid and gid maps");
  return { uidMap: mapText(e.uid_map), gidMap: mapText(e.gid_map) };
}

/**
 * Restore: a file system's uid= and gid= options (tmpfs), which the kernel
 * shows in the first user namespace's ids, as the tree's namespace takes
 * them when its root mounts it; unchanged without a user namespace of its own.
 */
export function mountOptionsInside(run: RestoreRun, options: string): string {
  if (!ownedAtRestore(run, "user")) return options;
  const id = run.tasks[0]!.ids.user_ns_id!;
  const [e] = run.images.read(IMG.userns, id);
  if (!e) return options;
  return options.replace(/(^|,)(uid|gid)=(\d+)/g, (_all, sep: string, kind: string, v: string) => {
    const inside = idInside(kind === "uid" ? e.uid_map : e.gid_map, Number(v));
    if (inside === undefined) throw new Error(`mount option ${kind}=${v} names an id the tree's user namespace (userns-${id}.img) does not map`);
    return `${sep}${kind}=${inside}`;
  });
}

/**
 * Restore: runs fn with crest's main thread's effective uid and gid those of
 * the root of the tree's user namespace (as crest's namespace sees them),
 * and back: the kernel lets the owner of a namespace's sysctls (its root)
 * write them, not crest's root, which has no CAP_SYS_RESOURCE here. Only
 * this thread changes (raw syscalls); its effective capabilities are gone
 * meanwhile and come back with uid 0. Without a user namespace of the
 * tree's own, just fn().
 */
export function asUsernsRoot<T>(run: RestoreRun, fn: () => T): T {
  if (!ownedAtRestore(run, "user")) return fn();
  const [e] = run.images.read(IMG.userns, run.tasks[0]!.ids.user_ns_id!);
  const root = (map: readonly uid_gid_extent[] | undefined) => map?.find((x) => x.first === 0)?.lower_first;
  const uid = root(e?.uid_map), gid = root(e?.gid_map);
  if (uid === undefined || gid === undefined) return fn();
  check(native.syscall(SYS.setresgid, -1, gid, -1), `take gid ${gid} (the root of the tree's user namespace)`);
  try {
    check(native.syscall(SYS.setresuid, -1, uid, -1), `take uid ${uid} (the root of the tree's user namespace)`);
    try {
      return fn();
    } finally {
      check(native.syscall(SYS.setresuid, -1, 0, -1), "take uid 0 back");
    }
  } finally {
    check(native.syscall(SYS.setresgid, -1, 0, -1), "take gid 0 back");
  }
}

export const userNamespaceKind: TaskKind = {
  name: "user namespace",
  finishDump(run) {
    const maps = run.state(dumpMaps);
    if (maps) run.images.write(IMG.userns, run.root.ids.user_ns_id!, [{ uid_map: maps.uid, gid_map: maps.gid }]);
  },
  plan(run) {
    if (!ownedAtRestore(run, "user")) return 0;
    const id = run.tasks[0]!.ids.user_ns_id!;
    const [e] = run.images.read(IMG.userns, id);
    if (!e) throw run.images.invalid(IMG.userns, id, "no uid and gid maps");
    // The root runs as uid and gid 0 there until its credentials are restored (see above).
    const hasRoot = (map: readonly uid_gid_extent[]) => map.some((x) => x.first === 0 && x.count > 0);
    if (!hasRoot(e.uid_map) || !hasRoot(e.gid_map)) {
      throw new Error(`the tree's user namespace (userns-${id}.img) maps no uid or gid 0; crest restores user namespaces whose maps have a root only`);
    }
    return CLONE.NEWUSER;
  },
};
