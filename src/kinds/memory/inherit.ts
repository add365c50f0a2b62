// What a child keeps of its parent's restored memory. crest restores a
// task's memory before it forks the task's children (restore/tree.ts), so a
// child starts with its parent's layout: the private mappings it has as its
// parent had them stay copy-on-write shared, and only the pages that differ
// are written, as criu does.
import type { RestoreTask, RestoreRun } from "../context.js";
import type { vma_entry } from "../../images/index.js";
import { MADV, MAP, SYS } from "../../sys/constants.js";
import type { PageSource } from "../../images/store.js";
import type { MapEntry } from "../../proc/index.js";
import { regFile } from "../files/regfile.js";
import { restoreOverInherited, splitRuns, type PageRun } from "./pages.js";
import { runsOf } from "./chain.js";
import { is, isGuard, isSpecial, MAP_DROPPABLE, MAP_TYPE, protOf, subtract, VMA } from "./vma.js";


/**
 * The same file or object: each task's images name files by ids of their own,
 * so a mapped file is compared by path, a memfd by its inode.
 */
function sameObject(run: RestoreRun, a: vma_entry, b: vma_entry): boolean {
  if (a.shmid === b.shmid) return true;
  // A memfd's mapping has a FILE_* bit too (criu sets both).
  if (is(a, VMA.MEMFD)) {
    const ma = run.files.get(Number(a.shmid))?.memfd, mb = run.files.get(Number(b.shmid))?.memfd;
    return !!ma && !!mb && ma.inode_id === mb.inode_id;
  }
  if (is(a, VMA.FILE_PRIVATE) || is(a, VMA.FILE_SHARED)) return regFile(run, Number(a.shmid)).name === regFile(run, Number(b.shmid)).name;
  return false;
}

/** Same mapping of the same object, with the same protection, flags and hints. */
function sameVma(run: RestoreRun, a: vma_entry, b: vma_entry): boolean {
  return a.start === b.start && a.end === b.end && a.prot === b.prot && a.flags === b.flags && a.status === b.status &&
    a.pgoff === b.pgoff && (a.fdflags ?? -1) === (b.fdflags ?? -1) && (a.madv ?? 0n) === (b.madv ?? 0n) && sameObject(run, a, b);
}

/** Whether the parent runs the same program: then the child has its exe link already. */
export function sameExe(run: RestoreRun, task: RestoreTask): boolean {
  const p = task.parent;
  if (!p) return false;
  return p.mm.exe_file_id === task.mm.exe_file_id || regFile(run, p.mm.exe_file_id).name === regFile(run, task.mm.exe_file_id).name;
}

/** Whether the current layout has [v.start, v.end) mapped without a gap, with v's protection and sharing. */
function covered(current: MapEntry[], v: vma_entry): boolean {
  let at = Number(v.start);
  const end = Number(v.end);
  for (const m of current) {
    if (m.end <= at || m.start >= end) continue;
    if (m.start > at || protOf(m) !== v.prot || m.shared !== !!(v.flags & MAP.SHARED)) return false;
    at = m.end;
  }
  return at >= end;
}

/**
 * The task's VMAs it can keep as inherited from its parent (crest forked it
 * from the parent once the parent's memory was restored): those the parent
 * has at the same place, of the same object, with the same protection,
 * flags and hints. Not kept: locked memory (locks are not inherited),
 * MADV_DONTFORK / MADV_WIPEONFORK areas (not inherited, or as zeros),
 * droppable and hugetlb memory, anything a guard region of the parent's
 * touches, and everything of a parent running another program (as criu).
 */
export function inheritedVmas(task: RestoreTask, run: RestoreRun, current: MapEntry[]): Set<vma_entry> {
  const kept = new Set<vma_entry>();
  const p = task.parent;
  if (!p || !sameExe(run, task)) return kept;
  const guards = p.mm.vmas.filter(isGuard);
  const theirs = new Map(p.mm.vmas.filter((v) => !isGuard(v) && !isSpecial(v)).map((v) => [v.start, v]));
  for (const v of task.mm.vmas) {
    if (isSpecial(v) || isGuard(v)) continue;
    const pv = theirs.get(v.start);
    if (!pv || !sameVma(run, v, pv)) continue;
    if (v.flags & (MAP.LOCKED | MAP.HUGETLB) || (v.flags & MAP_TYPE) === MAP_DROPPABLE) continue;
    const madv = v.madv ?? 0n;
    if ((madv >> BigInt(MADV.DONTFORK)) & 1n || (madv >> BigInt(MADV.WIPEONFORK)) & 1n) continue;
    if (guards.some((g) => g.start < v.end && v.start < g.end)) continue;
    if (!covered(current, v)) continue;
    kept.add(v);
  }
  return kept;
}

/**
 * In the inherited private mappings: pages the parent has data for and the
 * task has not become what a fresh mapping holds (zeros, or the file's page)
 * with MADV_DONTNEED; each page the task has is compared with the inherited
 * one and written only if it differs.
 */
export function restoreInherited(task: RestoreTask, run: RestoreRun, sources: PageSource[], priv: vma_entry[], mine: PageRun[]): void {
  if (!priv.length) return;
  const r = task.remotes[0]!;
  const ranges = priv.map((v) => ({ start: v.start, end: v.end })).sort((a, b) => (a.start < b.start ? -1 : 1));
  const toNum = (rs: PageRun[]) => rs.map((p) => ({ start: Number(p.vaddr), end: Number(p.vaddr) + p.len }));
  const theirs = splitRuns(task.parent!.pages.runs, ranges).inside;
  const drop = subtract(toNum(theirs), toNum(mine));
  // After the task's queued mappings, in the same batch.
  for (const d of drop) {
    r.later({ nr: SYS.madvise, args: [d.start, d.end - d.start, MADV.DONTNEED], what: () => `drop inherited pages at 0x${d.start.toString(16)} in task ${task.vpid}` });
  }
  // crest writes through /proc/PID/mem: what the task queued first.
  r.flush();
  sources.forEach((pages, layer) => restoreOverInherited(task.pid, pages, runsOf(mine, layer), run.stats));
}
