// The dump pipeline, in stages: freeze the tree; name its tasks and the
// objects they share; take every task apart with the kinds (registers,
// memory, files, ...); let the kinds write what they gathered for the whole
// run; put the tasks back as they were; write the tree's images and commit
// them (inventory last); then kill the tree (or leave it running or
// stopped). Any failure before the end puts every task back exactly as it
// was, lets it run, and leaves the images directory as it was.
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { checkTlsFiles, pageServerFor } from "../../images/page-server.js";
import type { Logger } from "../../log.js";
import { unsupportedExternal, type Options } from "../../options.js";
import { DUMP_SEIZE_OPTIONS, freezeProcess, freezeTree, thawTree, type FrozenTree, type FrozenTask } from "./freeze.js";
import { freezeCgroup, releaseSeized, restoreFreezerState } from "../../kinds/cgroup/freezer.js";
import { Remote } from "../../remote/remote.js";
import { RemoteTally } from "../../remote/counters.js";
import { taskGadget } from "../../remote/gadget.js";
import { copySnapshots, killSnapshots, mappingsAtFreeze, reapSnapshot, snapshotsTaken, takesSnapshots } from "../../kinds/memory/snapshot.js";
import { readEarlySmaps } from "../../kinds/memory/early-smaps.js";
import { DUMP_KINDS } from "../../kinds/registry.js";
import { newStats, RunStates, UnsupportedError, type DumpRun, type DumpTask } from "../../kinds/context.js";
import { TASK_STATE } from "../../kinds/task/task-state.js";
import { IMG, IMAGES_V1_1, PagemapRuns, core_entry_march, lsmtype, type core_entry, type pstree_entry, type task_kobj_ids_entry } from "../../images/index.js";
import { dedupImages } from "../../kinds/memory/chain.js";
import { serveDumpedPages } from "../../kinds/memory/lazy-server.js";
import { openParentTracking, type ParentTracking } from "../../kinds/memory/tracking.js";
import { PRECOPY_DIR, precopyRound } from "./precopy.js";
import { DumpImages } from "../../images/store.js";
import { parseSmaps, parseStat, parseStatus, type ProcStat, type SmapsEntry } from "../../proc/index.js";
import { resumeLive } from "../../kinds/task/regs.js";
import { PTRACE, SIG } from "../../sys/constants.js";
import { ptrace, wait4 } from "../../sys/syscalls.js";
import { faultPoint } from "../../fault.js";
import { planSessions } from "../sessions.js";
import { assignKobjIds, TreeNamespaces } from "./tree-ids.js";
import { ActionScripts } from "../actions.js";
import type { RunHooks } from "../hooks.js";
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

/** What the stages before the kinds establish: the tree, frozen, with its tasks named. */
interface Tree {
  frozen: FrozenTree;
  tasks: DumpTask[];
  ns: TreeNamespaces;
  /** crest's own kobj and namespace ids, for inventory.root_ids. */
  selfIds: task_kobj_ids_entry;
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
export function openTask(pid: number, threads: DumpTask["threads"], vmas: DumpTask["vmas"], trapIgnored: boolean): Remote[] {
  const gadget = taskGadget(pid, vmas);
  const remotes: Remote[] = [];
  try {
    for (const t of threads) remotes.push(new Remote(t, gadget));
    remotes[0]!.mapScratch(SCRATCH_SIZE, 0n, trapIgnored);
    for (const r of remotes.slice(1)) r.shareScratch(remotes[0]!);
  } catch (e) {
    closeTask(remotes);
    throw e;
  }
  return remotes;
}

/** Puts every task still under remote control back as it was, last opened first. */
export function closeAll(open: Array<{ remotes: Remote[] }>): void {
  while (open.length) {
    closeTask(open[open.length - 1]!.remotes);
    open.pop();
  }
}

/** Removes crest's scratch page and puts every thread's registers and mask back. */
export function closeTask(remotes: Remote[]): void {
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
function zombieCore(st: ProcStat): core_entry {
  const core = newCore(true);
  core.tc!.task_state = TASK_STATE.ZOMBIE;
  core.tc!.exit_code = st.exitCode;
  core.tc!.comm = st.comm;
  return core;
}

export function dump(opts: Options, log: Logger, hooks: RunHooks = {}): DumpResult {
  if (!opts.dump.tree) throw new UnsupportedError("dump needs the root of the tree: -t PID");
  const dir = opts.images.dir;
  mkdirSync(dir, { recursive: true });
  if (!statSync(dir).isDirectory()) throw new Error(`${dir} is not a directory`);
  log.info(`Dumping processes (pid: ${opts.dump.tree})`);
  // --lazy-pages --tls serves once the images are committed: its certificate files are named now, before the tree is touched.
  if (opts.restore.lazyPages) checkTlsFiles(opts);
  const tracking = openParentTracking(opts, log, opts.dump.trackMem);
  const precopy = opts.dump.precopy ? precopyRound(opts, log, tracking) : null;
  // A tree that runs on is tracked on through the previous tracking's userfaultfds, whose marks are renewed
  // for these images: the previous ones are marked meanwhile (as a pre-dump marks them), and a failed dump ends
  // that tracking. (--precopy's round does the same for itself.)
  const renews = !precopy && opts.dump.trackMem && (opts.dump.leaveRunning || opts.dump.leaveStopped) ? tracking?.prev ?? null : null;
  const unmark = renews?.markRenewing(log, "dump");
  let pageServer: ReturnType<typeof pageServerFor>;
  let images: DumpImages;
  try {
    pageServer = pageServerFor(opts);
    images = new DumpImages(dir, pageServer);
  } catch (e) {
    precopy?.finish(false);
    unmark?.();
    throw e;
  }
  if (opts.dump.prevImagesDir !== undefined) images.linkParent(precopy ? PRECOPY_DIR : opts.dump.prevImagesDir);
  const scripts = new ActionScripts(opts.actionScripts, dir, log, hooks.notify);
  scripts.rootPid = opts.dump.tree;
  let result: DumpResult;
  try {
    result = dumpTree(opts, log, images, scripts, hooks, precopy?.parent ?? tracking);
  } catch (e) {
    images.abort();
    precopy?.finish(false);
    renews?.stop();
    unmark?.();
    throw e;
  } finally {
    scripts.close();
    pageServer?.close();
  }
  precopy?.finish(true);
  // The dump handed the tracking on (handOverTracking), and ended the previous one where it renewed its marks.
  unmark?.();
  if (opts.dump.autoDedup) dedup(dir, log);
  return result;
}

/** crest dedup, and --auto-dedup once the images are in place: their parents' older copies of the pages they hold go. */
export function dedup(dir: string, log: Logger): void {
  log.info(`Deduplicated ${dedupImages(dir)} bytes of the parent images of ${dir}`);
}

/** Stage: names the frozen tree's tasks as its own PID namespace sees them, and the objects they share. */
function nameTree(frozen: FrozenTree, nextId: DumpRun["nextId"], opts: Options): Tree {
  const ns = new TreeNamespaces(frozen);
  const tasks = frozen.tasks.map((ft) => describeTask(ft, ns));
  const session = tasks[0]!.stat.session;
  if (session !== frozen.root && !opts.features.shellJob) {
    throw new UnsupportedError(
      `process ${frozen.root} is a shell job: its session ${session} (and its terminal) is outside the dumped tree; ` +
      "dump it with -j (--shell-job), or run it in its own session (setsid, or crest run)",
    );
  }
  const sessions = planSessions(tasks.map((t) => ({ pid: t.vpid, ppid: t.vppid, sid: t.vsid })), session !== frozen.root ? tasks[0]!.vsid : undefined);
  if (sessions.problem !== undefined) throw new UnsupportedError(sessions.problem);
  for (const [vpid, sid] of sessions.bornIn) {
    const t = tasks.find((t) => t.vpid === vpid)!;
    // Its terminal would be taken after its setsid, which the restore defers past its children born in session sid.
    if (t.stat.ttyNr) {
      throw new UnsupportedError(`process ${t.pid} started its own session after forking children that stayed in session ${sid}, and its session has a controlling terminal; crest cannot restore that yet`);
    }
  }
  const selfIds = assignKobjIds(tasks, frozen, nextId, ns);
  return { frozen, tasks, ns, selfIds };
}

/**
 * Stage: every kind takes its objects out of every task, which is then
 * handed to taskDone (its images written, behind, by the store's thread,
 * while the next task is dumped; or kept for later); then the kinds write
 * what they gathered for the whole run.
 */
function runKinds(run: DumpRun, tasks: DumpTask[], open: DumpTask[], hooks: RunHooks, taskDone: (task: DumpTask) => void, early: ReadonlyMap<number, SmapsEntry[]> | null): void {
  const tally = new RemoteTally();
  const t0 = process.hrtime.bigint();
  const progress = (done: number) => hooks.progress?.({
    stage: "dumping", tasksDone: done, tasksTotal: tasks.length, pagesWritten: run.stats.pagesWritten,
    bytesPerSecond: Math.round((run.stats.pagesWritten * 4096) / Math.max(1e-6, Number(process.hrtime.bigint() - t0) / 1e9)),
  });
  for (const [i, task] of tasks.entries()) {
    if (i) progress(i);
    if (task.zombie) {
      taskDone(task);
      continue;
    }
    task.vmas = mappingsAtFreeze(run, task, early);
    task.remotes = openTask(task.pid, task.threads, task.vmas, (task.status[0]!.sigIgn & (1n << BigInt(SIG.TRAP - 1))) !== 0n);
    open.push(task);
    for (const kind of DUMP_KINDS) {
      if (!kind.dump) continue;
      run.log.debug(`dumping ${kind.name} of ${task.pid}`);
      tally.count(kind.name, () => kind.dump!(task, run));
      faultPoint(`dump:${kind.name}`);
    }
    // The kinds' questions still queued, answered in one stop a thread.
    tally.count("answers", () => Remote.flushAll(task.remotes));
    taskDone(task);
  }
  progress(tasks.length);
  for (const kind of DUMP_KINDS) kind.finishDump?.(run);
  run.log.info(`Remote control by kind (syscalls/stops): ${tally}`);
}

function dumpTree(opts: Options, log: Logger, images: DumpImages, scripts: ActionScripts, hooks: RunHooks, parent: ParentTracking | null): DumpResult {
  scripts.run("pre-dump");
  // A snapshot dump reads its tasks' smaps before it freezes them (snapshot.ts).
  const early = takesSnapshots(opts) ? readEarlySmaps(opts.dump.tree!) : null;
  faultPoint("dump:early-smaps");
  const t0 = process.hrtime.bigint();
  // --freeze-cgroup: the cgroup freezer holds the tree while crest seizes it.
  const pre = opts.cgroups.freeze !== undefined ? freezeCgroup(opts, log, DUMP_SEIZE_OPTIONS, opts.dump.timeout ?? DEFAULT_TIMEOUT) : undefined;
  let frozen: FrozenTree;
  try {
    frozen = freezeTree(opts.dump.tree!, log, opts.dump.timeout ?? DEFAULT_TIMEOUT, pre);
  } catch (e) {
    if (pre) {
      releaseSeized(pre);
      restoreFreezerState(opts, log);
    }
    throw e;
  }
  if (pre) releaseSeized(pre, log);
  const freezingUs = us(t0);
  const frozenAt = process.hrtime.bigint();
  log.info(`Frozen ${frozen.tasks.length} task(s) in ${freezingUs} us`);
  hooks.progress?.({ stage: "frozen", tasks: frozen.tasks.length });
  images.expectTasks(frozen.tasks.length);

  const ids = { file: 0, pages: 0, kobj: 0 };
  const nextId: DumpRun["nextId"] = (kind) => ++ids[kind];
  const stats = newStats();
  /** Tasks whose threads are still under remote control. */
  const open: DumpTask[] = [];
  const undo: DumpRun["undo"] = [];
  const failed: DumpRun["failed"] = [];
  /** Set once the tree runs again. */
  let frozenUs: number | undefined;
  /** The run, once the kinds have started on the tree. */
  let started: DumpRun | undefined;
  // Undone last: a freezer cgroup frozen before the dump is frozen again when the tree runs on.
  if (pre) undo.push(() => restoreFreezerState(opts, log));
  try {
    faultPoint("dump:frozen");
    // An RPC client may name more external objects now that the tree is frozen (criu's query-ext-files).
    for (const e of scripts.queryExternal()) {
      const why = unsupportedExternal(e);
      if (why) throw new UnsupportedError(`the RPC client added an external object: ${why}`);
      opts.external.push(e);
    }
    const tree = nameTree(frozen, nextId, opts);
    const run: DumpRun = {
      opts, log, stats, images, files: [], root: tree.tasks[0]!, tasks: tree.tasks, ownNamespaces: new Set(tree.ns.own.keys()), namespaceIds: tree.ns.nsIds, nextId,
      treeTids: new Set(frozen.tasks.flatMap((t) => [t.pid, ...t.threads.map((th) => th.tid)])),
      undo, failed, inventory: {}, parent, state: (key) => states.of(key), script: (hook) => scripts.run(hook),
    };
    const states = new RunStates(() => run);
    started = run;
    const fdinfoWritten = new Set<number>();
    const writeTask = (t: DumpTask) => writeTaskImages(run, t, fdinfoWritten);
    // A tree that runs on: its tasks' images are encoded and written after it does (not frozen time),
    // and a snapshot's pagemap is complete only then.
    const unwritten: DumpTask[] = [];
    runKinds(run, tree.tasks, open, hooks, opts.dump.leaveRunning ? (t) => void unwritten.push(t) : writeTask, early);
    // A tree that is killed once its images are written need not be put back
    // as it was (scratch page, registers, masks), unless a post-dump script
    // could look at it first; kept under control, it is still put back if
    // anything fails before the images are committed.
    const killed = !opts.dump.leaveRunning && !opts.dump.leaveStopped && !opts.actionScripts.length;
    if (!killed) closeAll(open);
    if (snapshotsTaken(run)) {
      // --leave-running: the tree runs on while its memory is copied from the snapshots (snapshot.ts).
      undoAll(undo, log);
      release(opts, frozen);
      frozenUs = us(frozenAt);
      faultPoint("dump:thawed");
      copySnapshots(run);
      endSnapshots(run, true);
    }
    unwritten.forEach(writeTask);
    faultPoint("dump:images");
    writeTreeImages(run, tree);
    // A failing post-dump script fails the dump: the tree runs on, as criu does.
    scripts.run("post-dump");
    if (opts.restore.lazyPages) {
      // dump --lazy-pages: put back as they were, the tasks stay frozen while the restore side takes their lazy pages.
      closeAll(open);
      serveDumpedPages(run, tree.tasks);
    }
  } catch (e) {
    if (started) endSnapshots(started, frozenUs !== undefined);
    for (const t of open) {
      try {
        closeTask(t.remotes);
      } catch (ce) {
        log.error(`could not put process ${t.pid} back as it was: ${(ce as Error).message}`);
      }
    }
    undoAll(undo, log);
    undoAll(failed, log);
    if (frozenUs === undefined) thawTree(frozen);
    throw e;
  }
  if (frozenUs === undefined) {
    if (opts.dump.leaveRunning || opts.dump.leaveStopped) undoAll(undo, log);
    release(opts, frozen);
    frozenUs = us(frozenAt);
    reapKilled(opts, frozen);
  }
  // Written here, or behind by the store's writer thread.
  const entry = {
    freezing_time: freezingUs, frozen_time: frozenUs, memdump_time: stats.memdumpUs, memwrite_time: stats.memwriteUs + images.pagesWriteUs,
    pages_scanned: BigInt(stats.pagesScanned), pages_skipped_parent: BigInt(stats.pagesSkippedParent), pages_written: BigInt(stats.pagesWritten), pages_lazy: BigInt(stats.pagesLazy),
    shpages_scanned: BigInt(stats.shpagesScanned), shpages_skipped_parent: 0n, shpages_written: BigInt(stats.shpagesWritten),
  };
  images.write(IMG.stats, "dump", [{ dump: entry }]);
  if (opts.log.displayStats) displayDumpStats(log, entry);
  return { pids: frozen.tasks.map((t) => t.pid), stats, frozenUs };
}

/**
 * Kills the snapshot processes (snapshot.ts) and has each parent reap its
 * own: through its remote control while the tree is frozen, or frozen
 * again for a moment once it runs.
 */
function endSnapshots(run: DumpRun, thawed: boolean): void {
  for (const { task, child } of killSnapshots(run)) {
    try {
      if (!thawed) {
        reapSnapshot(task.remotes[0]!, child);
        continue;
      }
      const tree = freezeProcess(task.pid, run.log, run.opts.dump.timeout ?? DEFAULT_TIMEOUT);
      if (!tree) continue; // gone: its children went to their reaper
      try {
        const ft = tree.tasks[0]!;
        const remotes = openTask(task.pid, ft.threads, parseSmaps(readFileSync(`/proc/${task.pid}/smaps`, "utf8")), (ft.status[0]!.sigIgn & (1n << BigInt(SIG.TRAP - 1))) !== 0n);
        try {
          // Its threads resume the calls crest's interrupt woke them from (epoll_wait would fail with EINTR).
          remotes.forEach((r, i) => resumeLive(r, task.pid, ft.status[i]!, run.log));
          reapSnapshot(remotes[0]!, child);
        } finally {
          closeTask(remotes);
        }
      } finally {
        thawTree(tree);
      }
    } catch (e) {
      run.log.warn(`process ${task.pid} could not reap its snapshot process ${child} (${(e as Error).message}): it stays a zombie child of it`);
    }
  }
}

/** A task's identity in the tree: its pids as the tree's PID namespace sees them, group, session. */
function describeTask(ft: FrozenTask, ns: TreeNamespaces): DumpTask {
  const tids = ft.zombie ? [ft.pid] : ft.threads.map((t) => t.tid);
  // Read once for every kind: nothing in them changes while the tree is frozen but the signal masks crest sets.
  const status = ft.status.length ? ft.status : tids.map((tid) => parseStatus(readFileSync(`/proc/${ft.pid}/task/${tid}/status`, "utf8")));
  const stat = parseStat(readFileSync(`/proc/${ft.pid}/stat`, "utf8"));
  const leader = status[0]!;
  return {
    pid: ft.pid,
    vpid: ns.vpid(leader.nsPid, ft.pid),
    vppid: ft.pid === ns.root ? 0 : ns.vpidOf(ft.ppid),
    vpgid: ns.vpid(leader.nsPgid, ft.pid),
    vsid: ns.vpid(leader.nsSid, ft.pid),
    vtids: tids.map((tid, i) => ns.vpid(status[i]!.nsPid, tid)),
    status,
    stat,
    zombie: ft.zombie,
    threads: ft.threads,
    remotes: [],
    vmas: [],
    core: ft.zombie ? [zombieCore(stat)] : ft.threads.map((_, i) => newCore(i === 0)),
    ids: { vm_id: 0, files_id: 0, fs_id: 0, sighand_id: 0 },
    pagemap: new PagemapRuns(),
    pagesId: 0,
    fdinfo: [],
    fds: [],
  };
}

/** A task's own images, once its kinds are done with it (fdinfo once per table it shares with others). */
function writeTaskImages(run: DumpRun, t: DumpTask, fdinfoWritten: Set<number>): void {
  const images = run.images;
  t.core.forEach((c, i) => images.write(IMG.core, t.vtids[i]!, [c]));
  if (t.zombie) return;
  images.write(IMG.ids, t.vpid, [t.ids]);
  images.write(IMG.mm, t.vpid, [t.mm!]);
  images.write(IMG.pagemap, t.vpid, { head: { pages_id: t.pagesId }, entries: t.pagemap });
  if (!fdinfoWritten.has(t.ids.files_id)) {
    images.write(IMG.fdinfo, t.ids.files_id, t.fdinfo);
    fdinfoWritten.add(t.ids.files_id);
  }
  images.write(IMG.fs, t.vpid, [t.fs!]);
  images.flush();
}

/** Stage: the images of the tree, then the commit (the inventory goes last). */
function writeTreeImages(run: DumpRun, tree: Tree): void {
  const images = run.images;
  const pstree: pstree_entry[] = tree.tasks.map((t) => ({ pid: t.vpid, ppid: t.vppid, pgid: t.vpgid, sid: t.vsid, threads: t.vtids }));
  images.write(IMG.files, undefined, run.files);
  images.write(IMG.pstree, undefined, pstree);
  images.commit({ img_version: IMAGES_V1_1, fdinfo_per_id: true, ns_per_id: true, root_ids: tree.selfIds, lsmtype: lsmtype.NO_LSM, ...run.inventory });
  if (images.removedStale.length) run.log.warn(`Removed ${images.removedStale.length} image file(s) an older dump left in ${images.dir}: ${images.removedStale.join(", ")}`);
  const summed = images.pagesSumUs;
  run.log.info(`Wrote crest-manifest.json (pages summed in ${summed.here} us here, ${summed.thread} us on the writer thread)`);
}

/** Undoes, last first, what the kinds did to objects a tree that runs on keeps using; a step that fails is logged and the rest still run. */
function undoAll(undo: DumpRun["undo"], log: Logger): void {
  for (const step of undo.reverse()) {
    try {
      step();
    } catch (e) {
      log.error((e as Error).message);
    }
  }
  undo.length = 0;
}

/**
 * Ends the tree's freeze: thawed (--leave-running, --leave-stopped) or sent
 * SIGKILL, after which it is no longer frozen but dying (criu stops its
 * frozen-time clock there too); reapKilled waits for the deaths.
 */
function release(opts: Options, tree: FrozenTree): void {
  if (opts.dump.leaveRunning) return thawTree(tree);
  if (opts.dump.leaveStopped) return thawTree(tree, SIG.STOP);
  for (const t of tree.tasks) if (!t.zombie) process.kill(t.pid, SIG.KILL);
}

/**
 * After release killed the tree: waits until each thread is gone, so the
 * PIDs are dead when crest returns. Children first and leaders last: a
 * leader's exit is reported only after its other threads', and a
 * namespace's init waits for everything in it.
 */
function reapKilled(opts: Options, tree: FrozenTree): void {
  if (opts.dump.leaveRunning || opts.dump.leaveStopped) return;
  for (const t of [...tree.tasks].reverse()) for (const th of [...t.threads].reverse()) waitGone(th.tid);
}

function waitGone(tid: number): void {
  for (;;) {
    const s = wait4(tid, 0, `wait for thread ${tid} to die`);
    if (!s || s.exited || s.signaled) return;
    ptrace(PTRACE.CONT, tid, 0, 0);
  }
}
