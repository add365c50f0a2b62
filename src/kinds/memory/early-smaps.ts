// smaps read before the freeze. The kernel walks every page of a mapping to
// show it in smaps (10-13 ms a GiB here), and a dump needs the VmFlags. A
// dump that can check them afterwards, or that does not depend on them,
// reads every task's smaps before it freezes the tree; frozen, it reads only
// /proc/PID/maps (no page walk) and VmLck, and takes the flags read before
// where the mappings are the same ones and the locked memory as much.
//
// - A snapshot dump (snapshot.ts) then asks the snapshot child, which has the
//   task's mappings and flags as they were at the fork: a task whose flags
//   changed in between fails the dump, which its tree survives.
// - A pre-dump only needs to know which mappings hold private pages (not
//   shared, hugetlb or droppable: what a mapping is from its making on, and
//   shows in maps); the final dump reads its flags anew, frozen.
import { readdirSync, readFileSync } from "node:fs";
import { lockedKb, parseMaps, parseSmaps, sameMappings, type ProcStatus, type SmapsEntry } from "../../proc/index.js";

/** smaps of every process of the tree of `root`, read before the freeze; those gone meanwhile are left out. */
export function readEarlySmaps(root: number): Map<number, SmapsEntry[]> {
  return readRunningTree(root, (pid) => parseSmaps(readFileSync(`/proc/${pid}/smaps`, "utf8")));
}

/** What `read` tells of every process of the running tree of `root`; those gone meanwhile (or zombies) are left out. */
export function readRunningTree<T>(root: number, read: (pid: number) => T): Map<number, T> {
  const out = new Map<number, T>();
  const todo = [root];
  for (let pid; (pid = todo.pop()) !== undefined;) {
    try {
      out.set(pid, read(pid));
      for (const tid of readdirSync(`/proc/${pid}/task`)) {
        for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").split(" ")) if (c.trim()) todo.push(Number(c));
      }
    } catch {
      // gone, or a zombie: the dump reads it frozen, as any other
    }
  }
  return out;
}

/**
 * A frozen process's mappings as read before the freeze, if /proc/PID/maps
 * shows the same ones now and its locked memory (`status`, read frozen) is
 * as much; else null.
 */
export function earlyMappings(pid: number, status: ProcStatus, early: ReadonlyMap<number, SmapsEntry[]> | null): SmapsEntry[] | null {
  const before = early?.get(pid);
  if (!before || lockedKb(before) !== (status.vm?.lck ?? 0)) return null;
  return sameMappings(parseMaps(readFileSync(`/proc/${pid}/maps`, "utf8")), before) ? before : null;
}
