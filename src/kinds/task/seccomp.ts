// Seccomp: each thread's mode and filter chain. Filters are read with
// PTRACE_SECCOMP_GET_FILTER (0 = newest) and stored in seccomp.img oldest
// first, each newer one pointing at the one before it with `prev`;
// thread_core_entry.seccomp_filter names the newest. Restored oldest first,
// before the credentials drop (installing a filter needs CAP_SYS_ADMIN or
// no_new_privs); crest's own syscalls are not filtered thanks to
// PTRACE_O_SUSPEND_SECCOMP.
//
// Threads whose chains are the same (a filter installed with
// SECCOMP_FILTER_FLAG_TSYNC, or before the threads were made) must get one
// shared chain back, or a later TSYNC install fails: as criu does, only the
// leader keeps the chain, every filter of it marked TSYNC, and the other
// threads are dumped without one; the leader's install gives it to them.
import type { TaskKind, DumpTask, DumpRun, RestoreTask, RestoreRun } from "../context.js";
import { dumpState, restoreState } from "../context.js";
import { IMG, seccomp_mode, type seccomp_filter } from "../../images/index.js";
import { PR, SECCOMP_SET_MODE_FILTER, SYS } from "../../sys/constants.js";

const BPF_INSN = 8;

/** seccomp.img's filters: indexes are what thread_core_entry.seccomp_filter refers to. */
const dumped = dumpState("seccomp filters", (): seccomp_filter[] => []);
const restoring = restoreState("seccomp filters", (run): seccomp_filter[] => run.images.readOr(IMG.seccomp, undefined, [])[0]?.seccomp_filters ?? []);

/** SECCOMP_FILTER_FLAG_TSYNC: the filter goes to every thread of the process. */
const FLAG_TSYNC = 1;

type Chain = Array<{ filter: Buffer; flags: number }>;

/** A thread's filters, newest first; null if it is not in filter mode. */
function chainOf(task: DumpTask, i: number): Chain | null {
  const t = task.threads[i]!;
  const th = task.core[i]!.thread_core!;
  th.seccomp_mode = task.status[i]!.seccomp as seccomp_mode;
  if (th.seccomp_mode !== seccomp_mode.filter) return null;
  const chain: Chain = [];
  for (let n = 0; ; n++) {
    const filter = t.seccompFilter(n);
    if (!filter) break;
    chain.push({ filter, flags: t.seccompFlags(n) });
  }
  return chain;
}

const sameChain = (a: Chain | null, b: Chain | null): boolean =>
  !!a && !!b && a.length === b.length && a.every((f, i) => f.filter.equals(b[i]!.filter));

/** Writes a chain to seccomp.img, oldest first; returns the newest's index. */
function storeChain(run: DumpRun, chain: Chain, extraFlags: number): number | undefined {
  const filters = run.state(dumped);
  let prev: number | undefined;
  for (const f of [...chain].reverse()) {
    filters.push({ filter: f.filter, flags: f.flags | extraFlags, ...(prev !== undefined ? { prev } : {}) });
    prev = filters.length - 1;
  }
  return prev;
}

function dumpTask(task: DumpTask, run: DumpRun): void {
  const chains = task.threads.map((_, i) => chainOf(task, i));
  const shared = chains.length > 1 && chains.every((c) => sameChain(c, chains[0]!));
  chains.forEach((chain, i) => {
    const th = task.core[i]!.thread_core!;
    if (!chain) return;
    if (shared && i > 0) {
      th.seccomp_mode = seccomp_mode.disabled;
      return;
    }
    th.seccomp_filter = storeChain(run, chain, shared ? FLAG_TSYNC : 0);
  });
}

/** The filters of a thread, oldest first, following prev links from the newest. */
function restoredChain(run: RestoreRun, newest: number, tid: number): seccomp_filter[] {
  const filters = run.state(restoring);
  const out: seccomp_filter[] = [];
  for (let i: number | undefined = newest; i !== undefined; i = filters[i]!.prev) {
    const f = filters[i];
    if (!f || out.length > filters.length) throw run.images.invalid(IMG.seccomp, undefined, `broken filter chain of thread ${tid} at index ${i}`);
    if (f.filter.length % BPF_INSN) throw run.images.invalid(IMG.seccomp, undefined, `filter ${i} has ${f.filter.length} bytes, not whole BPF instructions`);
    out.push(f);
  }
  return out.reverse();
}

function restoreThread(task: RestoreTask, run: RestoreRun, i: number): void {
  const th = task.core[i]!.thread_core;
  const tid = task.threads[i]!.tid;
  const r = task.remotes[i]!;
  if (!th?.seccomp_mode) return;
  if (th.seccomp_mode === seccomp_mode.strict) {
    r.call(`enter strict seccomp mode in thread ${tid}`, SYS.prctl, PR.SET_SECCOMP, 1, 0, 0, 0);
    return;
  }
  if (th.seccomp_filter === undefined) throw run.images.invalid(IMG.core, task.vtids[i], "seccomp filter mode without a filter");
  for (const f of restoredChain(run, th.seccomp_filter, tid)) {
    r.resetScratch();
    const insns = r.put(f.filter);
    // struct sock_fprog: unsigned short len; struct sock_filter *filter
    const prog = Buffer.alloc(16);
    prog.writeUInt16LE(f.filter.length / BPF_INSN, 0);
    prog.writeBigUInt64LE(insns, 8);
    r.call(`install a seccomp filter in thread ${tid}`, SYS.seccomp, SECCOMP_SET_MODE_FILTER, f.flags ?? 0, r.put(prog));
  }
}

export const seccompKind: TaskKind = {
  name: "seccomp",
  dump: dumpTask,
  finishDump(run) {
    const filters = run.state(dumped);
    if (filters.length) run.images.write(IMG.seccomp, undefined, [{ seccomp_filters: filters }]);
  },
  restore(task, run) {
    task.threads.forEach((_, i) => restoreThread(task, run, i));
  },
};
