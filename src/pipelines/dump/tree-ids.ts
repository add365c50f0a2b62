// The tree's namespaces and the kernel objects its tasks share. PIDs in the
// images are the ones the tree's own PID namespace uses (a tree started with
// `crest run` has its root as PID 1); which mm, fd table, fs and signal
// handlers tasks share is found with kcmp and written as task_kobj_ids_entry.
import { readFileSync, readlinkSync } from "node:fs";
import type { FrozenTree } from "./freeze.js";
import { UnsupportedError, type DumpRun, type DumpTask } from "../../kinds/context.js";
import { parseStatus } from "../../proc/index.js";
import { KCMP, SYS } from "../../sys/constants.js";
import { sys } from "../../sys/syscalls.js";
import { errnoName } from "../../sys/errno.js";
import { NESTED_NS, NS_KINDS, SUPPORTED_NS, type NsKind } from "../../kinds/namespaces/owned.js";
import type { task_kobj_ids_entry } from "../../images/index.js";

type NextId = DumpRun["nextId"];

type NsLinkKind = NsKind | "pid_for_children" | "time_for_children";
/** A task's NSpid: from the status the freeze read (a zombie's is read here). */
const nsPid = (t: FrozenTree["tasks"][number]): number[] => t.status[0]?.nsPid ?? parseStatus(readFileSync(`/proc/${t.pid}/status`, "utf8")).nsPid;

export class TreeNamespaces {
  readonly root: number;
  /** Index into NSpid/NSpgid/NSsid lists of the tree's PID namespace. */
  private readonly level: number;
  private readonly toVirtual = new Map<number, number>();
  /** Namespaces of the root that differ from crest's own, by kind. */
  readonly own = new Map<NsKind, string>();
  /** Namespace inode link -> kobj id. */
  readonly nsIds = new Map<string, number>();

  private readonly links = new Map<string, string>();

  /** A task's namespace link, read once (the tree is frozen; crest's own do not change). */
  link(pid: number | "self", kind: NsLinkKind): string {
    const path = `/proc/${pid}/ns/${kind}`;
    let link = this.links.get(path);
    if (link === undefined) {
      link = readlinkSync(path);
      this.links.set(path, link);
    }
    return link;
  }

  constructor(readonly tree: FrozenTree) {
    this.root = tree.root;
    for (const kind of NS_KINDS) {
      const mine = this.link("self", kind);
      const roots = this.link(tree.root, kind);
      if (roots === mine) continue;
      if (!SUPPORTED_NS.has(kind)) {
        throw new UnsupportedError(`process ${tree.root} is in its own ${kind} namespace (${roots}); crest supports trees with their own ${[...SUPPORTED_NS].join(", ")} namespaces only so far`);
      }
      this.own.set(kind, roots);
    }
    const rootPids = nsPid(tree.tasks[0]!);
    this.level = rootPids.length - 1;
    if (this.own.has("pid") && rootPids[this.level] !== 1) {
      throw new UnsupportedError(`process ${tree.root} is PID ${rootPids[this.level]} of its PID namespace, not its init; dump the namespace's init (PID 1) instead`);
    }
    for (const t of tree.tasks) {
      this.toVirtual.set(t.pid, this.vpid(nsPid(t), t.pid));
      if (t.zombie) continue; // a zombie has no namespaces left to show
      for (const kind of NS_KINDS) {
        const link = this.link(t.pid, kind);
        const want = this.link(tree.root, kind);
        if (link !== want && kind === "mnt" && !this.own.has("mnt")) {
          // As criu: nested mount namespaces are kept with the tree's own only (their mounts refer to its mounts).
          throw new UnsupportedError(`process ${t.pid} is in mnt namespace ${link}, not the tree's (${want}), which is crest's own; crest keeps a nested mount namespace ` +
            "only in a tree with a mount namespace of its own (start the tree with crest run --ns mnt, or dump the task as a tree of its own)");
        }
        if (link !== want && !NESTED_NS.has(kind)) {
          throw new UnsupportedError(`process ${t.pid} is in ${kind} namespace ${link}, not the tree's (${want}); crest keeps nested ${[...NESTED_NS].join(", ")} namespaces only ` +
            `so far: let the task share the root's ${kind} namespace, or dump it as a tree of its own`);
        }
      }
      // unshare(CLONE_NEWPID / CLONE_NEWTIME) without a child yet: only the
      // *_for_children link shows it, and the restored task would lose it.
      for (const kind of ["pid", "time"] as const) {
        const next = this.link(t.pid, `${kind}_for_children`);
        if (next !== this.link(t.pid, kind)) {
          throw new UnsupportedError(`process ${t.pid} has unshared a ${kind} namespace for its future children (${next}); crest does not support that yet`);
        }
      }
    }
  }

  /** The id, from an NSpid-style list, that the tree's PID namespace uses. */
  vpid(list: number[], real: number): number {
    if (!list.length) return real;
    const v = list[this.level];
    if (v === undefined) throw new Error(`process ${real} is not in the tree's PID namespace`);
    return v;
  }

  vpidOf(real: number): number {
    const v = this.toVirtual.get(real);
    if (v === undefined) throw new Error(`process ${real} is not in the dumped tree`);
    return v;
  }
}

/**
 * Fills task_kobj_ids_entry for every live task: objects found shared by
 * kcmp get one id. Processes may share an fd table or fs struct only with
 * their parent, which may share it with its own (the restore recreates that
 * with CLONE_FILES / CLONE_FS: zdtm's fdt_shared);
 * shared memory or signal handlers between processes are refused.
 */
export function assignKobjIds(tasks: DumpTask[], tree: FrozenTree, nextId: NextId, ns: TreeNamespaces): task_kobj_ids_entry {
  const kinds = [
    { field: "vm_id", kcmp: KCMP.VM, what: "memory (CLONE_VM)" },
    { field: "files_id", kcmp: KCMP.FILES, what: "fd table" },
    { field: "fs_id", kcmp: KCMP.FS, what: "fs struct (cwd, root, umask)" },
    { field: "sighand_id", kcmp: KCMP.SIGHAND, what: "signal handlers" },
  ] as const;
  const live = tasks.filter((t) => !t.zombie);
  const parentOf = new Map(tree.tasks.map((t) => [t.pid, t.ppid]));
  const byPid = new Map(live.map((t) => [t.pid, t]));
  // Per kind, one task per object, in kcmp's order: a task's object is found in log(n) calls.
  const holders = kinds.map(() => [] as DumpTask[]);
  live.forEach((t) => {
    kinds.forEach((k, i) => {
      const same = findOrAdd(holders[i]!, t, k.kcmp);
      if (!same) {
        t.ids[k.field] = nextId("kobj");
        return;
      }
      // The parent comes first (the tree's order): its ids are set.
      const parent = byPid.get(parentOf.get(t.pid)!);
      if (k.kcmp === KCMP.VM || k.kcmp === KCMP.SIGHAND || parent?.ids[k.field] !== same.ids[k.field]) {
        throw new UnsupportedError(`processes ${same.pid} and ${t.pid} share their ${k.what}; crest does not support that yet (it restores only an fd table or fs struct that a child shares with its parent)`);
      }
      t.ids[k.field] = same.ids[k.field];
    });
    setNsIds(t.ids, t.pid, nextId, ns);
  });
  // crest's own ids, for inventory.root_ids: a restore gives the root a new
  // namespace of every kind whose id differs from these (CRIU's rule).
  const self: task_kobj_ids_entry = { vm_id: nextId("kobj"), files_id: nextId("kobj"), fs_id: nextId("kobj"), sighand_id: nextId("kobj") };
  setNsIds(self, "self", nextId, ns);
  return self;
}

/**
 * The task in `sorted` whose object of this kcmp type is the task's own, or
 * none (the task is then put in its place). kcmp orders the objects of a type
 * (its answer 1 or 2), so the list is searched by halves.
 */
function findOrAdd(sorted: DumpTask[], task: DumpTask, type: number): DumpTask | undefined {
  let lo = 0, hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const other = sorted[mid]!;
    const order = sys(SYS.kcmp, task.pid, other.pid, type, 0, 0);
    if (order === 0) return other;
    if (order === 1) hi = mid;
    else if (order === 2) lo = mid + 1;
    else throw new Error(`cannot compare the kernel objects (kcmp type ${type}) of processes ${task.pid} and ${other.pid}: ${order < 0 ? errnoName(-order) : `no order (${order})`}`);
  }
  sorted.splice(lo, 0, task);
  return undefined;
}

function setNsIds(ids: task_kobj_ids_entry, pid: number | "self", nextId: NextId, ns: TreeNamespaces): void {
  for (const kind of NS_KINDS) {
    const link = ns.link(pid, kind);
    if (!ns.nsIds.has(link)) ns.nsIds.set(link, nextId("kobj"));
    (ids as unknown as Record<string, number>)[`${kind}_ns_id`] = ns.nsIds.get(link)!;
  }
}
