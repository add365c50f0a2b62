// Freezing a process tree: seize and interrupt every thread of every task,
// top down, so a task is stopped before its children are read (a stopped
// task cannot fork) and threads are re-listed until none appear.
import { readdirSync, readFileSync } from "node:fs";
import { Tracee, TraceError } from "../../remote/tracee.js";
import { SIG } from "../../sys/constants.js";
import { parseChildren, parseStatus, type ProcStatus } from "../../proc/index.js";
import { EPERM, ESRCH, ETIMEDOUT } from "../../sys/errno.js";
import type { Logger } from "../../log.js";

export interface FrozenTask {
  pid: number;
  ppid: number;
  /** The thread group leader first; empty for a zombie. */
  threads: Tracee[];
  /** Each thread's /proc/PID/task/TID/status, read as it was frozen; empty for a zombie. */
  status: ProcStatus[];
  children: number[];
  /** Dead, waiting for its parent to collect its exit status: nothing to seize. */
  zombie: boolean;
}

export interface FrozenTree {
  root: number;
  /** Tasks in tree order: parents before children. */
  tasks: FrozenTask[];
}

import { DUMP_SEIZE_OPTIONS } from "../../remote/tracee.js";
export { DUMP_SEIZE_OPTIONS };

function listThreads(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).map(Number).sort((a, b) => (a === pid ? -1 : b === pid ? 1 : a - b));
}

function readChildren(pid: number, tid: number): number[] {
  return parseChildren(readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8"));
}

function procState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
}

/**
 * crest runs code in a task with int3 traps, which a pending SIGTRAP would
 * be mistaken for (and consumed by): refused before anything runs, as criu
 * does, so the signal stays pending.
 */
function checkNoPendingTrap(pid: number, tid: number): ProcStatus {
  const st = parseStatus(readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8"));
  if ((st.sigPnd | st.shdPnd) & (1n << BigInt(SIG.TRAP - 1))) {
    const where = st.sigPnd & (1n << BigInt(SIG.TRAP - 1)) ? `thread ${tid} of process ${pid}` : `process ${pid}`;
    throw new TraceError(`${where} has a pending SIGTRAP; crest does not dump a pending SIGTRAP (its own traps are SIGTRAPs)`);
  }
  return st;
}

/**
 * A thread of a stopped process (group-stop): crest runs code in it anyway
 * (ptrace overrides the stop), and the kernel puts it back in the stop when
 * crest detaches. SIGSTOP cannot be blocked, so a pending one would stop
 * crest's first injected syscall: each is taken here, under a full mask,
 * and dropped (the process is stopped already, and SIGCONT would discard
 * it). The thread ends at an interrupt trap.
 */
function settleStopped(pid: number, t: Tracee, deadline: number): void {
  const bit = 1n << BigInt(SIG.STOP - 1);
  const st = parseStatus(readFileSync(`/proc/${pid}/task/${t.tid}/status`, "utf8"));
  let pending = (st.sigPnd & bit ? 1 : 0) + (st.shdPnd & bit ? 1 : 0);
  const mask = t.getSigmask();
  t.setSigmask(~0n);
  try {
    // The interrupt crest asked for may still be due: it traps (reporting
    // the stop signal, as every trap of a stopped process does) before
    // any signal is taken.
    for (let tries = 0; pending > 0; tries++) {
      t.cont();
      const s = t.wait(deadline);
      if (s.kind === "signal" && s.sig === SIG.STOP) pending--;
      else if (s.kind !== "group" || tries > 8) throw new TraceError(`thread ${t.tid} of stopped process ${pid} did not take its pending SIGSTOP: ${JSON.stringify(s)}`);
    }
    // One more trap, so none is left due when crest runs code in it.
    t.requestInterrupt();
    t.cont();
    const s = t.wait(deadline);
    if (s.kind !== "group") throw new TraceError(`thread ${t.tid} of stopped process ${pid} did not stop as expected: ${JSON.stringify(s)}`);
  } finally {
    t.setSigmask(mask);
  }
}

/** Seizes and stops every thread of pid, re-listing until the set is stable. */
function freezeTask(pid: number, ppid: number, log: Logger, seized: Tracee[], deadline: number, pre?: Map<number, Tracee>): FrozenTask {
  const byTid = new Map<number, Tracee>();
  const statusOf = new Map<number, ProcStatus>();
  for (;;) {
    let tids: number[];
    try {
      tids = listThreads(pid);
    } catch {
      throw new TraceError(`process ${pid} does not exist`);
    }
    const fresh = tids.filter((t) => !byTid.has(t));
    if (fresh.length === 0) break;
    // Seize all, then interrupt all, then wait: the threads stop together
    // instead of one scheduling round each.
    const batch: Tracee[] = [];
    const asked = new Set<Tracee>();
    for (const tid of fresh) {
      let t: Tracee;
      // Seized and interrupted already through the freezer cgroup (--freeze-cgroup).
      const had = pre?.get(tid);
      if (had) {
        pre!.delete(tid);
        seized.push(had);
        byTid.set(tid, had);
        batch.push(had);
        asked.add(had);
        continue;
      }
      try {
        t = Tracee.seize(tid, DUMP_SEIZE_OPTIONS);
      } catch (e) {
        // A thread that exited since the listing is simply not there any more.
        if (tid !== pid && e instanceof TraceError && e.errno === ESRCH) continue;
        throw e;
      }
      seized.push(t);
      byTid.set(tid, t);
      batch.push(t);
    }
    for (const t of batch) if (!asked.has(t)) t.requestInterrupt();
    for (const t of batch) {
      const s = t.waitInterrupted(deadline);
      if (s.kind === "exited" || s.kind === "killed") {
        // It exited in between: a thread is simply gone; a process is now a zombie (or gone).
        byTid.delete(t.tid);
        seized.splice(seized.indexOf(t), 1);
        if (t.tid === pid) throw new TraceError(`process ${pid} exited while being seized`, ESRCH);
        continue;
      }
      if (s.kind === "group") {
        t.stopSignal = s.sig;
        continue;
      }
      if (s.kind !== "event") throw new TraceError(`thread ${t.tid} of process ${pid} did not stop as expected: ${JSON.stringify(s)}`);
    }
    for (const t of batch) if (byTid.has(t.tid)) statusOf.set(t.tid, checkNoPendingTrap(pid, t.tid));
    const stopped = [...byTid.values()].filter((t) => t.stopSignal);
    if (stopped.length && stopped.length !== byTid.size) {
      throw new TraceError(`some threads of process ${pid} are stopped (by signal ${stopped[0]!.stopSignal}) and others not; crest does not dump a process that is stopping or individually stopped threads`);
    }
    for (const t of batch) if (t.stopSignal) settleStopped(pid, t, deadline);
    log.debug(`seized ${batch.length} thread(s) of ${pid}`);
  }
  const threads = [...byTid.values()].sort((a, b) => (a.tid === pid ? -1 : b.tid === pid ? 1 : a.tid - b.tid));
  return { pid, ppid, threads, status: threads.map((t) => statusOf.get(t.tid)!), children: childrenOf(pid, threads), zombie: false };
}

/** The children of a frozen process: every thread's, sorted. */
function childrenOf(pid: number, threads: Tracee[]): number[] {
  return [...new Set(threads.flatMap((t) => readChildren(pid, t.tid)))].sort((a, b) => a - b);
}

const zombie = (pid: number, ppid: number): FrozenTask => ({ pid, ppid, threads: [], status: [], children: [], zombie: true });

/**
 * Freezes one task, or records it as a zombie. A child may exit between its
 * parent's children being read and its seizing (its parent, stopped, cannot
 * reap it): then it is a zombie, or gone and nothing is returned.
 */
function threadCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/task`).length;
  } catch {
    return 0;
  }
}

function freezeOne(pid: number, ppid: number, isRoot: boolean, log: Logger, seized: Tracee[], deadline: number, pre?: Map<number, Tracee>): FrozenTask | null {
  const state = (): string | null => {
    try {
      return procState(pid);
    } catch {
      return null;
    }
  };
  const before = state();
  if (before === null) {
    if (isRoot) throw new TraceError(`process ${pid} does not exist`);
    return null;
  }
  if (before === "Z") {
    // A leader that called pthread_exit shows as a zombie while its threads run on.
    if (threadCount(pid) > 1) {
      throw new TraceError(`the main thread of process ${pid} has exited while its other threads run on; crest does not support that yet`);
    }
    if (isRoot) throw new TraceError(`process ${pid} is a zombie: there is nothing to dump`);
    return zombie(pid, ppid);
  }
  try {
    return freezeTask(pid, ppid, log, seized, deadline, pre);
  } catch (e) {
    if (isRoot || !(e instanceof TraceError) || (e.errno !== ESRCH && e.errno !== EPERM)) throw e;
    const after = state();
    if (after === null) return null;
    if (after === "Z") return zombie(pid, ppid);
    throw e;
  }
}

/**
 * Freezes the tree rooted at root. On failure every thread seized so far is
 * detached (left running as before) and the error is rethrown.
 */
export function freezeTree(root: number, log: Logger, timeoutSec: number, pre?: Map<number, Tracee>): FrozenTree {
  // Like criu's alarm(timeout): 0 means no limit.
  const deadline = timeoutSec > 0 ? Date.now() + timeoutSec * 1000 : Infinity;
  const seized: Tracee[] = [];
  const tasks: FrozenTask[] = [];
  try {
    const queue: Array<[number, number]> = [[root, 0]];
    const seen = new Set<number>();
    for (;;) {
      while (queue.length) {
        const [pid, ppid] = queue.shift()!;
        if (Date.now() > deadline) throw new TraceError(`freezing the tree of process ${root} took longer than ${timeoutSec} s (--timeout)`, ETIMEDOUT);
        seen.add(pid);
        const task = freezeOne(pid, ppid, pid === root, log, seized, deadline, pre);
        if (!task) continue;
        tasks.push(task);
        for (const c of task.children) queue.push([c, pid]);
      }
      // A child that exited after its parent's children were read, before it was
      // seized, left its own children to a frozen task of the tree (a subreaper,
      // a PID namespace's init): read every list again until nothing new
      // appears, as criu does.
      for (const t of tasks) {
        if (t.zombie) continue;
        const now = childrenOf(t.pid, t.threads);
        const fresh = now.filter((c) => !seen.has(c));
        if (!fresh.length) continue;
        log.debug(`process ${t.pid} was given ${fresh.join(", ")} during the freeze`);
        t.children = now;
        for (const c of fresh) queue.push([c, t.pid]);
      }
      if (!queue.length) break;
    }
  } catch (e) {
    for (const t of seized) {
      try {
        t.detach();
      } catch {
        // already gone
      }
    }
    if (e instanceof TraceError && e.errno === ETIMEDOUT) {
      throw new TraceError(`freezing the tree of process ${root} took longer than ${timeoutSec} s (--timeout): ${e.message}`, ETIMEDOUT);
    }
    throw e;
  }
  return { root, tasks };
}

/** Freezes one process alone (not its children), as freezeTree would; null once it is gone. */
export function freezeProcess(pid: number, log: Logger, timeoutSec: number): FrozenTree | null {
  const deadline = timeoutSec > 0 ? Date.now() + timeoutSec * 1000 : Infinity;
  const seized: Tracee[] = [];
  try {
    const task = freezeOne(pid, 0, false, log, seized, deadline);
    return task && !task.zombie ? { root: pid, tasks: [task] } : null;
  } catch (e) {
    for (const t of seized) {
      try {
        t.detach();
      } catch {
        // already gone
      }
    }
    throw e;
  }
}

/** Lets every thread of the tree go, optionally sending sig to each task first (SIGSTOP for --leave-stopped). */
export function thawTree(tree: FrozenTree, sig = 0): void {
  for (const task of tree.tasks) {
    if (sig) process.kill(task.pid, sig);
    for (const t of task.threads) {
      try {
        t.detach();
      } catch {
        // gone
      }
    }
  }
}
