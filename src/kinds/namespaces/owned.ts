// Which namespaces a tree has of its own. At dump: those of the root that
// differ from crest's. At restore, as CRIU decides it: those whose id in the
// root's ids image differs from inventory.root_ids (the dumper's own
// namespaces); the root is created in a new namespace of each such kind.
import type { DumpRun, RestoreRun } from "../context.js";

/** Namespace kinds in the order of their *_ns_id fields. */
export const NS_KINDS = ["pid", "net", "ipc", "uts", "mnt", "user", "cgroup", "time"] as const;
export type NsKind = (typeof NS_KINDS)[number];

/** Namespaces a tree may have of its own so far (each has its kind here). */
export const SUPPORTED_NS: ReadonlySet<NsKind> = new Set<NsKind>(["pid", "net", "ipc", "uts", "cgroup", "mnt", "time", "user"]);

/**
 * Namespaces a task of the tree may have apart from the root's (a task that
 * unshared one, and its children): each has its own images, named by the id
 * in the task's ids image, and the restore makes it for the first task in it.
 */
export const NESTED_NS: ReadonlySet<NsKind> = new Set<NsKind>(["net", "uts", "mnt"]);

export function ownedAtRestore(run: RestoreRun, k: NsKind): boolean {
  const mine = run.inventory.root_ids;
  const field = `${k}_ns_id` as const;
  const root = run.tasks[0]!.ids;
  return mine !== undefined && root[field] !== undefined && mine[field] !== undefined && root[field] !== mine[field];
}

/**
 * A path of the tree's tasks as crest reaches it: through the root's
 * /proc/PID/root when the tree has its own mount namespace, else crest's
 * own path. The root's namespace: a task of a nested one reaches its
 * files through its own /proc/PID/root (regfile.ts inTaskRoot).
 */
export function treePath(run: DumpRun | RestoreRun, path: string): string {
  if (!path.startsWith("/")) return path;
  if ("root" in run) return run.ownNamespaces.has("mnt") ? `/proc/${run.root.pid}/root${path}` : path;
  return ownedAtRestore(run, "mnt") ? `/proc/${run.tasks[0]!.pid}/root${path}` : path;
}

/**
 * A path of one task as crest reaches it: as treePath for a task of the
 * root's mount namespace, through its own /proc/PID/root for a task of a
 * nested one (its files are where its mounts are).
 */
export function taskPath(run: DumpRun | RestoreRun, task: { pid: number; ids: { mnt_ns_id?: number } }, path: string): string {
  const root = "root" in run ? run.root : run.tasks[0]!;
  if (!path.startsWith("/") || task.ids.mnt_ns_id === root.ids.mnt_ns_id) return treePath(run, path);
  return `/proc/${task.pid}/root${path}`;
}
