// criu's cr_errno for the two failures its clients tell apart (pycriu:
// "No process with such pid", "Process with requested pid already exists"):
// ESRCH when the process to dump does not exist (criu: its /proc/PID cannot
// be opened, or the task cannot be interrupted), EEXIST when a PID the
// restore needs is held by a process (criu: clone3 with set_tid says
// EEXIST). crest's pipelines say so in words; the face reads the fact from
// /proc once the command has failed. Only for a failure that carries no
// errno of its own: criu keeps the first one set.
import { existsSync } from "node:fs";
import { IMG, readImage } from "../../images/index.js";

export const ESRCH = 3, EEXIST = 17;

/** ESRCH if the process a failed dump was asked for is not there, else 0. */
export function dumpErrno(pid: number | undefined): number {
  return pid !== undefined && !existsSync(`/proc/${pid}`) ? ESRCH : 0;
}

/**
 * EEXIST if a PID a failed restore needed is held now, else 0. A tree with
 * a PID namespace of its own needs no PID out here; a failed restore has
 * killed and reaped every task it made, so a PID held now is someone else's.
 */
export function restoreErrno(dir: string): number {
  try {
    const rootIds = readImage(dir, IMG.inventory)[0]?.root_ids;
    const tree = readImage(dir, IMG.pstree);
    if (!tree.length) return 0;
    const ids = readImage(dir, IMG.ids, tree[0]!.pid)[0];
    if (ids?.pid_ns_id !== undefined && rootIds?.pid_ns_id !== undefined && ids.pid_ns_id !== rootIds.pid_ns_id) return 0;
    return tree.some((e) => [e.pid, ...e.threads].some((p) => existsSync(`/proc/${p}`))) ? EEXIST : 0;
  } catch {
    // Images that cannot be read: the failure was about them, not about PIDs.
    return 0;
  }
}
