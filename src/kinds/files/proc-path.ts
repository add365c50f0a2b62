// Files under /proc/PID of the dumped tree's own tasks (/proc/self/net/dev,
// which icewm holds open, /proc/self/status, /proc/thread-self/...: the
// kernel names them all /proc/PID/... or /proc/PID/task/TID/...). PID and
// TID are crest's view of the task, which a tree with its own PID namespace
// does not keep across a restore (only the PIDs inside it are restored).
//
// The kernel may call such a file "(deleted)" while it is there: procfs
// drops the dentries under /proc/PID/net at every new lookup of the path
// (their contents depend on the network namespace of whoever looks), so
// once anyone else opens or stats /proc/PID/net/dev, an fd opened before
// reads "/proc/PID/net/dev (deleted)". Such a file is dumped under its path
// as long as its process is alive (criu strips the suffix the same way). A
// file of a process that has exited is kept as criu keeps it: a PROCFS remap
// names the PID, and the restore opens the file while a helper process with
// that PID lives (deadProcPid).
//
// Dump: the path stays as the kernel gave it (criu's image), and
// reg_file_entry.proc_vpid / proc_vtid (crest's own fields) name the task and
// thread by their ids in the tree's namespace. Restore: the path is rebuilt
// with the restored task's and thread's ids as crest sees them, and the task
// opens that: the same file of the restored task. Without the fields (criu's
// images) the path is opened as it is, as criu does.
import { existsSync, readFileSync, statfsSync, statSync, type Stats } from "node:fs";
import type { DumpRun, RestoreRun } from "../context.js";
import { UnsupportedError } from "../context.js";
import type { reg_file_entry } from "../../images/index.js";
import { IMG } from "../../images/index.js";
import { parseStatus } from "../../proc/index.js";

/** /proc/PID, then optionally /task/TID, then the end or a '/'. */
const PROC_PID_PATH = /^\/proc\/(\d+)(?:\/task\/(\d+))?(?=\/|$)/;

let procDev: number | undefined;

/** Whether a file is on crest's procfs (the one /proc paths here are read with). */
function onProc(st: Stats): boolean {
  procDev ??= statSync("/proc").dev;
  return st.dev === procDev;
}

/** A thread's id in the innermost PID namespace it is in (the tree's: nested ones are refused). */
function innermostTid(tid: number, what: string): number {
  let status;
  try {
    status = parseStatus(readFileSync(`/proc/${tid}/status`, "utf8"));
  } catch (e) {
    throw new UnsupportedError(`${what}: cannot read /proc/${tid}/status: ${(e as Error).message}`);
  }
  const ids = status.nsPid;
  return ids.length ? ids[ids.length - 1]! : tid;
}

/**
 * Dump: the path to keep for a file on procfs (others keep theirs): without
 * the " (deleted)" procfs may have put after it, if it still leads to a file
 * of the same type. A file of the /proc/PID (or /proc/PID/task/TID) of a
 * process or thread that is gone is refused (criu keeps it with a helper
 * task).
 */
export function procfsPath(path: string, st: Stats, what: string): string {
  if (!onProc(st)) return path;
  const live = path.endsWith(" (deleted)") ? path.slice(0, -" (deleted)".length) : path;
  const m = PROC_PID_PATH.exec(live);
  if (m && !existsSync(m[0])) {
    throw new UnsupportedError(`${what} is ${live}, of a ${m[2] === undefined ? "process" : "thread"} that has exited; crest keeps files of /proc/PID of a process that has exited (as criu), not of /proc/PID/task/TID of a thread`);
  }
  if (live !== path) {
    let now: Stats | undefined;
    try {
      now = statSync(live);
    } catch {
      // below
    }
    if (!now || now.dev !== st.dev || ((now.mode ^ st.mode) & 0o170000) !== 0) {
      throw new UnsupportedError(`${what} is ${path}, and ${live} is ${now ? "another kind of file" : "gone"} now; crest cannot restore it`);
    }
  }
  return live;
}

/** statfs f_type of procfs. */
const PROC_SUPER_MAGIC = 0x9fa0;

/**
 * Dump: the PID of the process that has exited whose /proc/PID, or a file
 * under it, `path` is (behind `via`, a /proc link of task `taskPid`), as
 * the task's /proc numbers it; null for any other file. The kernel keeps
 * such an fd or directory working (reading it fails); criu keeps it with a
 * PROCFS remap, for which the restore makes a helper process with that PID
 * while the file is opened (dumpDeadProcFile, tree.ts).
 */
export function deadProcPid(path: string, via: string, taskPid: number): number | null {
  const live = path.endsWith(" (deleted)") ? path.slice(0, -" (deleted)".length) : path;
  const m = PROC_PID_PATH.exec(live);
  if (!m || m[2] !== undefined) return null;
  try {
    if (statfsSync(via).type !== PROC_SUPER_MAGIC || existsSync(`/proc/${taskPid}/root${m[0]}`)) return null;
  } catch {
    return null;
  }
  return Number(m[1]);
}

export type ProcOwner = Pick<reg_file_entry, "proc_vpid" | "proc_vtid">;

/**
 * Dump: the fields that tie `path` to a task of the tree, or nothing for a
 * path that is not under /proc/PID of one of the tree's tasks (a process
 * outside the tree keeps its literal path, as with criu).
 */
export function procOwner(run: DumpRun, path: string, st: Stats, what: string): ProcOwner {
  const m = PROC_PID_PATH.exec(path);
  if (!m || !onProc(st)) return {};
  const pid = Number(m[1]);
  if (!run.treeTids.has(pid)) return {};
  const owner: ProcOwner = { proc_vpid: innermostTid(pid, what) };
  if (m[2] !== undefined) {
    const tid = Number(m[2]);
    // A thread of a tree task that crest did not freeze cannot be: refuse rather than guess.
    if (!run.treeTids.has(tid)) throw new UnsupportedError(`${what} is ${path}, of thread ${tid}, which crest did not find in the dumped tree`);
    owner.proc_vtid = innermostTid(tid, what);
  }
  return owner;
}

/** Restore: the thread with id `vtid` in the tree's namespace, as crest sees it now. */
function restoredTid(run: RestoreRun, vtid: number, reg: reg_file_entry): number {
  for (const t of run.tasks) {
    const i = t.vtids.indexOf(vtid);
    const tid = i < 0 ? undefined : t.threads[i]?.tid;
    if (tid) return tid;
  }
  throw run.images.invalid(IMG.files, undefined, `file ${reg.id} (${reg.name}) belongs to task ${vtid} of the tree, which is not restored (yet)`);
}

/** Restore: the entry with its path under the restored task's /proc/PID (and /task/TID). */
export function withRestoredProc(run: RestoreRun, reg: reg_file_entry): reg_file_entry {
  if (reg.proc_vpid === undefined) return reg;
  const m = PROC_PID_PATH.exec(reg.name);
  if (!m) throw run.images.invalid(IMG.files, undefined, `file ${reg.id} has proc_vpid ${reg.proc_vpid} but its path ${reg.name} is not under /proc/PID`);
  if ((m[2] === undefined) !== (reg.proc_vtid === undefined)) {
    throw run.images.invalid(IMG.files, undefined, `file ${reg.id} (${reg.name}): proc_vtid ${reg.proc_vtid ?? "absent"} does not match its path`);
  }
  const pid = restoredTid(run, reg.proc_vpid, reg);
  const task = reg.proc_vtid === undefined ? "" : `/task/${restoredTid(run, reg.proc_vtid, reg)}`;
  return { ...reg, name: `/proc/${pid}${task}${reg.name.slice(m[0].length)}` };
}
