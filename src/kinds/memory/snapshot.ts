// Snapshots: a dump with --leave-running keeps the tree frozen only while
// it takes the tasks' state, not while it copies their memory. Each task,
// frozen, is made to fork (an injected clone that signals no one when it
// ends): the child, which the kernel hands to crest stopped before it runs
// a single instruction, holds the task's memory as it was at that instant,
// copy-on-write, whatever the task does to its own once it runs on (writes,
// munmap, exec). crest copies the pages out of the child, kills it and has
// the task reap it (a short second stop). The images are those a frozen
// copy would have written, byte for byte. What the child does not get is
// copied while frozen: mappings marked MADV_DONTFORK or MADV_WIPEONFORK.
// The kernel copies the page tables at the fork (milliseconds a GiB); the
// pages the task writes before crest has copied them are copied by the
// kernel (memory for as long as the copy takes).
import { closeSync, openSync, readFileSync } from "node:fs";
import type { DumpRun, DumpTask } from "../context.js";
import type { Options } from "../../options.js";
import { mappingDifference, parseSmaps, type SmapsEntry } from "../../proc/index.js";
import { earlyMappings } from "./early-smaps.js";
import { dumpState } from "../context.js";
import { Tracee, DUMP_SEIZE_OPTIONS } from "../../remote/tracee.js";
import { RemoteError, type Remote } from "../../remote/remote.js";
import { PTRACE, PTRACE_EVENT, PTRACE_O, SIG, SYS } from "../../sys/constants.js";
import { ptrace } from "../../sys/syscalls.js";
import { errnoName } from "../../sys/errno.js";
import type { PagesWriter } from "./pages.js";

const P_PID = 1, WEXITED = 4, WALL = 0x40000000;

interface Snapshot {
  task: DumpTask;
  child: Tracee;
  pages: PagesWriter;
  /** The task's /proc/PID/mem, through which its unreadable pages were to be read. */
  taskMem: number;
}

const snapshots = dumpState("memory snapshots", () => ({ taken: [] as Snapshot[], early: new Set<DumpTask>() }));

/** Whether a dump with these options copies memory after the tree runs on again: with --leave-running (not with --lazy-pages: the tasks stay frozen while the restore side takes their lazy pages). */
export const takesSnapshots = (opts: Options): boolean => opts.dump.leaveRunning && !opts.restore.lazyPages;
export const snapshotting = (run: DumpRun): boolean => takesSnapshots(run.opts);

/**
 * A frozen task's mappings with their flags: those read before the freeze
 * where they still hold (early-smaps.ts; the snapshot child is then asked
 * whether the flags were right: checkEarly), else smaps, read now.
 */
export function mappingsAtFreeze(run: DumpRun, task: DumpTask, early: ReadonlyMap<number, SmapsEntry[]> | null): SmapsEntry[] {
  const before = earlyMappings(task.pid, task.status[0]!, early);
  if (before) {
    run.state(snapshots).early.add(task);
    return before;
  }
  return parseSmaps(readFileSync(`/proc/${task.pid}/smaps`, "utf8"));
}

/** A task's flags read before the freeze, against `now` (its snapshot child's, or its own while still frozen): throws if they were not those at the freeze. */
function checkEarly(run: DumpRun, task: DumpTask, now: SmapsEntry[], fork: boolean): void {
  const s = run.state(snapshots);
  if (!s.early.has(task)) return;
  s.early.delete(task);
  const diff = mappingDifference(task.vmas, now, fork);
  if (diff !== null) throw new Error(`process ${task.pid} changed its mappings as the dump began (${diff}): dump it again`);
}

/**
 * Forks the frozen task, whose pages (recorded, not copied, by `pages`)
 * are copied from the child once the tree runs (copySnapshots). False
 * where the task cannot fork (its cgroup's pids limit, memory): logged,
 * and the caller copies its pages now.
 */
export function takeSnapshot(task: DumpTask, run: DumpRun, pages: PagesWriter, taskMem: number): boolean {
  const r = task.remotes[0]!;
  ptrace(PTRACE.SETOPTIONS, r.pid, 0, DUMP_SEIZE_OPTIONS | PTRACE_O.TRACECLONE);
  let child: Tracee;
  try {
    r.events = [];
    const got = r.syscall(SYS.clone, 0, 0, 0, 0, 0);
    if (got < 0) {
      run.log.warn(`process ${task.pid} cannot fork a snapshot of its memory (${errnoName(-got)}): its pages are copied while it is frozen`);
      // No child to ask: the flags read before the freeze are checked against the task's own, now.
      checkEarly(run, task, parseSmaps(readFileSync(`/proc/${task.pid}/smaps`, "utf8")), false);
      return false;
    }
    const ev = r.events.find((e) => e.event === PTRACE_EVENT.CLONE);
    if (!ev) throw new Error(`the snapshot fork of process ${task.pid} was not reported by the kernel`);
    child = Tracee.adopt(ev.child);
    child.wait();
  } finally {
    ptrace(PTRACE.SETOPTIONS, r.pid, 0, DUMP_SEIZE_OPTIONS);
  }
  run.state(snapshots).taken.push({ task, child, pages, taskMem });
  pages.defer();
  run.log.info(`process ${task.pid}: its memory is kept in a snapshot, process ${child.tid}`);
  return true;
}

/** Whether tasks' pages wait in snapshots: the pipeline lets the tree run before copySnapshots. */
export const snapshotsTaken = (run: DumpRun): boolean => run.state(snapshots).taken.length > 0;

/** Once the tree runs on: each snapshot's pages copied into its images (the task's pagemap is complete then). */
export function copySnapshots(run: DumpRun): void {
  for (const snap of run.state(snapshots).taken) {
    checkEarly(run, snap.task, parseSmaps(readFileSync(`/proc/${snap.child.tid}/smaps`, "utf8")), true);
    const mem = openSync(`/proc/${snap.child.tid}/mem`, "r");
    try {
      snap.pages.replay(snap.child.tid, mem, snap.taskMem);
    } finally {
      closeSync(mem);
      closeSync(snap.taskMem);
      snap.pages.close();
    }
  }
}

/**
 * Kills the snapshot processes (after copySnapshots, or when the dump
 * fails) and returns them with their parents, which must reap them
 * (reapSnapshot, run in the parent): a clone child that signals no one, a
 * task would never wait for it.
 */
export function killSnapshots(run: DumpRun): Array<{ task: DumpTask; child: number }> {
  const s = run.state(snapshots);
  const dead = s.taken.map(({ task, child }) => {
    process.kill(child.tid, SIG.KILL);
    for (let st = child.wait(); st.kind !== "killed" && st.kind !== "exited"; st = child.wait()) child.cont();
    return { task, child: child.tid };
  });
  s.taken = [];
  return dead;
}

/** Reaps a killed snapshot process, in its parent task (under remote control). */
export function reapSnapshot(r: Remote, child: number): void {
  const got = r.syscall(SYS.waitid, P_PID, child, 0, WEXITED | WALL, 0);
  if (got < 0) throw new RemoteError(`reap the snapshot process ${child} in process ${r.pid}`, -got);
}
