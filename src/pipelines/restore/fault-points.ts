// Every point where CREST_FAULT=<point> can make a restore fail (src/fault.ts),
// in the order the pipeline reaches them: the one place that lists them, so
// that test/cr/restore-faults.test.ts fails a restore at each of them and a
// point added to the pipeline is tested with the others. The kinds' points
// are named from the registry (restorePoint); the others are the literal
// names the pipeline and the kinds pass to faultPoint, and a unit test
// (test/unit/fault-points.test.ts) checks that every literal restore point
// passed to faultPoint in src/ is listed here.
import type { TaskKind } from "../../kinds/context.js";
import { NAMESPACE_KINDS, TASK_RESTORE_KINDS } from "../../kinds/registry.js";

export type KindStage = "born" | "restore" | "finish" | "resume";

/**
 * The point after one kind's hook of one stage: a kind's main stage is
 * `restore:NAME` (`restore:files`, `restore:memory`, which works as each
 * task is born), the others `restore:NAME:STAGE` (`restore:tty sessions:born`,
 * `restore:files:finish`, `restore:files:resume`).
 */
export function restorePoint(kind: TaskKind, stage: KindStage): string {
  const main = stage === "restore" || (stage === "born" && !kind.restore && !kind.restoreAll);
  return main ? `restore:${kind.name}` : `restore:${kind.name}:${stage}`;
}

const ALL_KINDS: readonly TaskKind[] = [...NAMESPACE_KINDS, ...TASK_RESTORE_KINDS];
const points = (kinds: readonly TaskKind[], has: (k: TaskKind) => unknown, stage: KindStage): string[] =>
  kinds.filter(has).map((k) => restorePoint(k, stage));

/** The points of a restore, in pipeline order. Those after `restore:tcp-unlock` come once the network is unlocked. */
export const RESTORE_FAULT_POINTS: readonly string[] = [
  // The root is born: its namespaces are filled; each task as it is born (memory, cgroups).
  ...points(NAMESPACE_KINDS, (k) => k.born, "born"),
  ...points(TASK_RESTORE_KINDS, (k) => k.born, "born"),
  "restore:forked",
  // Once the tree exists: every kind's stage over every task; the files' open queue has run before the fds are settled.
  ...points(TASK_RESTORE_KINDS.slice(0, TASK_RESTORE_KINDS.findIndex((k) => k.name === "files")), (k) => k.restore ?? k.restoreAll, "restore"),
  "restore:tcp-repair",
  "restore:files:opened",
  ...points(TASK_RESTORE_KINDS.slice(TASK_RESTORE_KINDS.findIndex((k) => k.name === "files")), (k) => k.restore ?? k.restoreAll, "restore"),
  "restore:flushed",
  ...points(ALL_KINDS, (k) => k.finishRestore, "finish"),
  // Scripts and pidfile done: the last point before anything is resumed.
  "restore:post-restore",
  // The inet sockets lift the network lock first thing in the files' resume.
  ...ALL_KINDS.filter((k) => k.resume).flatMap((k) => [...(k.name === "files" ? ["restore:tcp-unlock"] : []), restorePoint(k, "resume")]),
  "restore:pre-resume",
];

/** Whether a fault at this point comes after the network was unlocked (as with criu, a failure there loses connections). */
export function afterNetworkUnlock(point: string): boolean {
  return RESTORE_FAULT_POINTS.indexOf(point) > RESTORE_FAULT_POINTS.indexOf("restore:tcp-unlock");
}
