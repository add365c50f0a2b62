// The dump pipeline: freeze the tree, take every task apart with the kinds
// (registers, memory, files, ...), write the images, then kill the tree (or
// leave it running or stopped). Any failure before the end puts every task
// back exactly as it was and lets it run.
import { mkdirSync, readFileSync, statSync } from "node:fs";
import type { Logger } from "../../log.js";
import type { Options } from "../../options.js";
import { freezeTree, thawTree, type FrozenTree, type FrozenTask } from "./freeze.js";
import { Remote } from "../../remote/remote.js";
import { syscallGadget } from "../../remote/gadget.js";
import { DUMP_KINDS } from "../../kinds/registry.js";
import { newStats, UnsupportedError, type DumpRun, type DumpTask } from "../../kinds/context.js";
import { TASK_STATE } from "../../kinds/task/task-state.js";
import { IMG, writeImage, IMAGES_V1_1, core_entry_march, lsmtype, type core_entry, type pstree_entry, type task_kobj_ids_entry } from "../../images/index.js";
import { parseSmaps, parseStat, parseStatus } from "../../proc/index.js";
import { PTRACE, SIG } from "../../sys/constants.js";
import { ptrace, wait4 } from "../../sys/syscalls.js";
import { faultPoint } from "../fault.js";
import { assignKobjIds, TreeNamespaces } from "./tree-ids.js";
import { ActionScripts } from "../actions.js";
import { displayDumpStats } from "../stats.js";

const SCRATCH_SIZE = 64 << 10;
/** criu's DEFAULT_TIMEOUT: seconds freezing may take when --timeout is not given. */
const DEFAULT_TIMEOUT = 10;

export interface DumpResult {
  /** The tasks dumped, root first. */
  pids: number[];
  stats: DumpRun["stats"];
  frozenUs: number;
}

const us = (from: bigint): number => Number((process.hrtime.bigint() - from) / 1000n);

function newCore(isLeader: boolean): core_entry {
  return {
    mtype: core_entry_march.X86_64,
    thread_core: { futex_rla: 0n, futex_rla_len: 0 },
    ...(isLeader ? { tc: { task_state: TASK_STATE.ALIVE, exit_code: 0, personality: 0, flags: 0, blk_sigset: 0n, comm: "", sigactions: [] } } : {}),
  };
}

/** Opens remote control of every thread of a task; the leader maps the shared scratch page. */
function openTask(pid: number, threads: DumpTask["threads"], vmas: DumpTask["vmas"]): Remote[] {
  const vdso = vmas.filter((m) => m.path === "[vdso]");
  const code = vmas.filter((m) => m.prot.exec && m.prot.read && m.path !== "[vdso]" && m.path !== "[vsyscall]");
  if (!vdso.length && !code.length) throw new UnsupportedError(`process ${pid} has no readable code mapped (no vDSO either); crest needs a syscall instruction in the task to run code in it`);
  const gadget = syscallGadget(pid, [...vdso, ...code]);
  const remotes: Remote[] = [];
  try {
    for (const t of threads) remotes.push(new Remote(t, gadget));
    const scratch = remotes[0]!.mapScratch(SCRATCH_SIZE);
    for (const r of remotes.slice(1)) r.useScratch(scratch, SCRATCH_SIZE);
  } catch (e) {
    closeTask(remotes);
    throw e;
  }
  return remotes;
}

/** Removes crest's scratch page and puts every thread's registers and mask back. */
function closeTask(remotes: Remote[]): void {
  let first: unknown;
  const attempt = (f: () => void) => {
    try {
      f();
    } catch (e) {
      first ??= e;
    }
  };
  if (remotes[0]) attempt(() => remotes[0]!.unmapScratch());
  for (const r of remotes) attempt(() => r.restore());
  if (first) throw first;
}

/** A zombie: only its exit status matters, for the parent to collect. */
function zombieCore(pid: number): core_entry {
  const st = parseStat(readFileSync(`/proc/${pid}/stat`, "utf8"));
  const core = newCore(true);
  core.tc!.task_state = TASK_STATE.ZOMBIE;
  core.tc!.exit_code = st.exitCode;
  core.tc!.comm = st.comm;
  return core;
}

export function dump(opts: Options, log: Logger): DumpResult {
  if (!opts.tree) throw new UnsupportedError("dump needs the root of the tree: -t PID");
  const dir = opts.imagesDir;
  mkdirSync(dir, { recursive: true });
  if (!statSync(dir).isDirectory()) throw new Error(`${dir} is not a directory`);
  log.info(`Dumping processes (pid: ${opts.tree})`);

  const ids = { file: 0, pages: 0, kobj: 0 };
  const run: DumpRun = {
    opts, log, dir, files: [], seccomp: [], stats: newStats(), shmemDumped: new Set(), descriptions: [],
    fdTables: new Set(), deferred: [], objects: new Map(),
    nextId: (kind) => ++ids[kind],
  };
  const scripts = new ActionScripts(opts.actionScripts, dir, log);
  scripts.rootPid = opts.tree;
  try {
    return dumpTree(opts, log, run, scripts);
  } finally {
    scripts.close();
  }
}

function dumpTree(opts: Options, log: Logger, run: DumpRun, scripts: ActionScripts): DumpResult {
  const dir = run.dir;
  scripts.run("pre-dump");
  const t0 = process.hrtime.bigint();
  const tree: FrozenTree = freezeTree(opts.tree!, log, opts.timeout ?? DEFAULT_TIMEOUT);
  const freezingUs = us(t0);
  const frozenAt = process.hrtime.bigint();
  log.info(`Frozen ${tree.tasks.length} task(s) in ${freezingUs} us`);

  const tasks: DumpTask[] = [];
  /** Tasks whose threads are still under remote control. */
  const open: DumpTask[] = [];
  try {
    faultPoint("dump:frozen");
    const ns = new TreeNamespaces(tree, run);
    const rootStat = parseStat(readFileSync(`/proc/${tree.root}/stat`, "utf8"));
    if (rootStat.session !== tree.root) {
      throw new UnsupportedError(`process ${tree.root} is not a session leader (its session is ${rootStat.session}, outside the dumped tree); run it in its own session (setsid, or crest run), since --shell-job is not supported yet`);
    }
    for (const ft of tree.tasks) tasks.push(describeTask(ft, ns));
    const selfIds = assignKobjIds(tasks, tree, run, ns);
    for (const task of tasks) {
      if (task.zombie) continue;
      task.vmas = parseSmaps(readFileSync(`/proc/${task.pid}/smaps`, "utf8"));
      task.remotes = openTask(task.pid, task.threads, task.vmas);
      open.push(task);
      for (const kind of DUMP_KINDS) {
        log.debug(`dumping ${kind.name} of ${task.pid}`);
        kind.dump?.(task, run);
        faultPoint(`dump:${kind.name}`);
      }
    }
    ns.dump();
    while (open.length) {
      closeTask(open[open.length - 1]!.remotes);
      open.pop();
    }
    faultPoint("dump:images");
    writeImages(run, tasks, ns, selfIds);
    // A failing post-dump script fails the dump: the tree runs on, as criu does.
    scripts.run("post-dump");
  } catch (e) {
    for (const t of open) {
      try {
        closeTask(t.remotes);
      } catch (ce) {
        log.error(`could not put process ${t.pid} back as it was: ${(ce as Error).message}`);
      }
    }
    thawTree(tree);
    throw e;
  }
  release(opts, tree);
  const frozenUs = us(frozenAt);
  const st = run.stats;
  const stats = {
    freezing_time: freezingUs, frozen_time: frozenUs, memdump_time: st.memdumpUs, memwrite_time: st.memwriteUs,
    pages_scanned: BigInt(st.pagesScanned), pages_skipped_parent: 0n, pages_written: BigInt(st.pagesWritten), pages_lazy: 0n,
    shpages_scanned: BigInt(st.shpagesScanned), shpages_skipped_parent: 0n, shpages_written: BigInt(st.shpagesWritten),
  };
  writeImage(dir, IMG.stats, "dump", [{ dump: stats }]);
  if (opts.displayStats) displayDumpStats(log, stats);
  return { pids: tree.tasks.map((t) => t.pid), stats: st, frozenUs };
}

/** A task's identity in the tree: its pids as the tree's PID namespace sees them, group, session. */
function describeTask(ft: FrozenTask, ns: TreeNamespaces): DumpTask {
  const status = parseStatus(readFileSync(`/proc/${ft.pid}/status`, "utf8"));
  const tids = ft.zombie ? [ft.pid] : ft.threads.map((t) => t.tid);
  return {
    pid: ft.pid,
    vpid: ns.vpid(status.nsPid, ft.pid),
    vppid: ft.pid === ns.root ? 0 : ns.vpidOf(ft.ppid),
    vpgid: ns.vpid(status.nsPgid, ft.pid),
    vsid: ns.vpid(status.nsSid, ft.pid),
    vtids: tids.map((tid) => ns.vpid(parseStatus(readFileSync(`/proc/${ft.pid}/task/${tid}/status`, "utf8")).nsPid, tid)),
    zombie: ft.zombie,
    threads: ft.threads,
    remotes: [],
    vmas: [],
    core: ft.zombie ? [zombieCore(ft.pid)] : ft.threads.map((_, i) => newCore(i === 0)),
    ids: { vm_id: 0, files_id: 0, fs_id: 0, sighand_id: 0 },
    pagemap: [],
    pagesId: 0,
    fdinfo: [],
  };
}

function writeImages(run: DumpRun, tasks: DumpTask[], ns: TreeNamespaces, selfIds: task_kobj_ids_entry): void {
  const dir = run.dir;
  const pstree: pstree_entry[] = tasks.map((t) => ({ pid: t.vpid, ppid: t.vppid, pgid: t.vpgid, sid: t.vsid, threads: t.vtids }));
  const fdinfoWritten = new Set<number>();
  for (const t of tasks) {
    t.core.forEach((c, i) => writeImage(dir, IMG.core, t.vtids[i]!, [c]));
    if (t.zombie) continue;
    writeImage(dir, IMG.ids, t.vpid, [t.ids]);
    writeImage(dir, IMG.mm, t.vpid, [t.mm!]);
    writeImage(dir, IMG.pagemap, t.vpid, { head: { pages_id: t.pagesId }, entries: t.pagemap });
    if (!fdinfoWritten.has(t.ids.files_id)) {
      writeImage(dir, IMG.fdinfo, t.ids.files_id, t.fdinfo);
      fdinfoWritten.add(t.ids.files_id);
    }
    writeImage(dir, IMG.fs, t.vpid, [t.fs!]);
  }
  ns.write(tasks[0]!.ids);
  for (const write of run.deferred) write();
  writeImage(dir, IMG.files, undefined, run.files);
  if (run.seccomp.length) writeImage(dir, IMG.seccomp, undefined, [{ seccomp_filters: run.seccomp }]);
  writeImage(dir, IMG.pstree, undefined, pstree);
  // The inventory goes last: an image directory without it is incomplete.
  writeImage(dir, IMG.inventory, undefined, [{
    img_version: IMAGES_V1_1, fdinfo_per_id: true, ns_per_id: true, root_ids: selfIds, lsmtype: lsmtype.NO_LSM,
  }]);
}

/** Kills the tree (the default), or lets it run or stop, as asked. */
function release(opts: Options, tree: FrozenTree): void {
  if (opts.leaveRunning) return thawTree(tree);
  if (opts.leaveStopped) return thawTree(tree, SIG.STOP);
  for (const t of tree.tasks) if (!t.zombie) process.kill(t.pid, SIG.KILL);
  // Wait until each thread is gone, so the PIDs are dead when crest returns.
  // Children first and leaders last: a leader's exit is reported only after
  // its other threads', and a namespace's init waits for everything in it.
  for (const t of [...tree.tasks].reverse()) for (const th of [...t.threads].reverse()) waitGone(th.tid);
}

function waitGone(tid: number): void {
  for (;;) {
    const s = wait4(tid, 0, `wait for thread ${tid} to die`);
    if (!s || s.exited || s.signaled) return;
    ptrace(PTRACE.CONT, tid, 0, 0);
  }
}
