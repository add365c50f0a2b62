// The dump pipeline: freeze the tree, take every task apart with the kinds
// (registers, memory, files, ...), write the images, then kill the tree (or
// leave it running or stopped). Any failure before the end puts every task
// back exactly as it was and lets it run.
import { mkdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import type { Logger } from "../log.js";
import type { Options } from "../options.js";
import { freezeTree, thawTree, type FrozenTree } from "./freeze.js";
import { Remote } from "../remote/remote.js";
import { vdsoGadget } from "../remote/gadget.js";
import { DUMP_KINDS } from "../kinds/index.js";
import { newStats, UnsupportedError, type DumpRun, type DumpTask } from "../kinds/context.js";
import { IMG, writeImage } from "../images/index.js";
import { core_entry_march, lsmtype, type core_entry, type pstree_entry, type task_kobj_ids_entry } from "../images/index.js";
import { parseSmaps, parseStat } from "../proc/index.js";
import { PTRACE, SIG } from "../sys/constants.js";
import { ptrace, wait4 } from "../sys/syscalls.js";
import { IMAGES_V1_1 } from "../images/index.js";
import { faultPoint } from "../fault.js";
import { TASK_STATE } from "../kinds/task-state.js";

const SCRATCH_SIZE = 64 << 10;
const NS_KINDS = ["pid", "net", "ipc", "uts", "mnt", "user", "cgroup", "time"] as const;

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
  const vdso = vmas.find((m) => m.path === "[vdso]");
  if (!vdso) throw new UnsupportedError(`process ${pid} has no vDSO mapped; crest needs it to run code in the task`);
  const gadget = vdsoGadget(pid, vdso);
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

export function dump(opts: Options, log: Logger): DumpResult {
  if (!opts.tree) throw new UnsupportedError("dump needs the root of the tree: -t PID");
  const dir = opts.imagesDir;
  mkdirSync(dir, { recursive: true });
  if (!statSync(dir).isDirectory()) throw new Error(`${dir} is not a directory`);
  log.info(`Dumping processes (pid: ${opts.tree})`);

  let ids = { file: 0, pages: 0, kobj: 0 };
  const run: DumpRun = {
    opts, log, dir, files: [], seccomp: [], stats: newStats(), shmemDumped: new Set(),
    nextId: (kind) => ++ids[kind],
  };
  const t0 = process.hrtime.bigint();
  const tree: FrozenTree = freezeTree(opts.tree, log);
  const freezingUs = us(t0);
  const frozenAt = process.hrtime.bigint();
  log.info(`Frozen ${tree.tasks.length} task(s) in ${freezingUs} us`);

  const tasks: DumpTask[] = [];
  /** Tasks whose threads are still under remote control. */
  const open: DumpTask[] = [];
  try {
    faultPoint("dump:frozen");
    const rootStat = parseStat(readFileSync(`/proc/${tree.root}/stat`, "utf8"));
    if (rootStat.session !== tree.root) {
      throw new UnsupportedError(`process ${tree.root} is not a session leader (its session is ${rootStat.session}, outside the dumped tree); run it in its own session (setsid, or crest run), since --shell-job is not supported yet`);
    }
    const nsIds = new Map<string, number>();
    for (const ft of tree.tasks) {
      if (ft.threads.length > 1) throw new UnsupportedError(`process ${ft.pid} has ${ft.threads.length} threads; crest dumps single-threaded processes only so far`);
      if (ft.pid !== tree.root) throw new UnsupportedError(`process ${tree.root} has child process ${ft.pid}; crest dumps single processes only so far`);
      const vmas = parseSmaps(readFileSync(`/proc/${ft.pid}/smaps`, "utf8"));
      const kobj: task_kobj_ids_entry = {
        vm_id: run.nextId("kobj"), files_id: run.nextId("kobj"), fs_id: run.nextId("kobj"), sighand_id: run.nextId("kobj"),
      };
      for (const ns of NS_KINDS) {
        const link = readlinkSync(`/proc/${ft.pid}/ns/${ns}`);
        if (!nsIds.has(link)) nsIds.set(link, run.nextId("kobj"));
        (kobj as unknown as Record<string, number>)[`${ns}_ns_id`] = nsIds.get(link)!;
      }
      const task: DumpTask = {
        pid: ft.pid, threads: ft.threads, remotes: [], vmas, ids: kobj,
        core: ft.threads.map((_, i) => newCore(i === 0)), pagemap: [], pagesId: 0, fdinfo: [],
      };
      task.remotes = openTask(ft.pid, ft.threads, vmas);
      tasks.push(task);
      open.push(task);
      for (const kind of DUMP_KINDS) {
        log.debug(`dumping ${kind.name} of ${ft.pid}`);
        kind.dump?.(task, run);
        faultPoint(`dump:${kind.name}`);
      }
    }
    while (open.length) {
      closeTask(open[open.length - 1]!.remotes);
      open.pop();
    }
    faultPoint("dump:images");
    writeImages(run, tree, tasks);
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
  writeImage(dir, IMG.stats, "dump", [{
    dump: {
      freezing_time: freezingUs, frozen_time: frozenUs, memdump_time: st.memdumpUs, memwrite_time: st.memwriteUs,
      pages_scanned: BigInt(st.pagesScanned), pages_skipped_parent: 0n, pages_written: BigInt(st.pagesWritten), pages_lazy: 0n,
      shpages_scanned: BigInt(st.shpagesScanned), shpages_skipped_parent: 0n, shpages_written: BigInt(st.shpagesWritten),
    },
  }]);
  return { pids: tree.tasks.map((t) => t.pid), stats: st, frozenUs };
}

function writeImages(run: DumpRun, tree: FrozenTree, tasks: DumpTask[]): void {
  const dir = run.dir;
  const pstree: pstree_entry[] = tasks.map((t) => {
    const st = parseStat(readFileSync(`/proc/${t.pid}/stat`, "utf8"));
    return { pid: t.pid, ppid: t.pid === tree.root ? 0 : st.ppid, pgid: st.pgrp, sid: st.session, threads: t.threads.map((th) => th.tid) };
  });
  for (const t of tasks) {
    t.threads.forEach((th, i) => writeImage(dir, IMG.core, th.tid, [t.core[i]!]));
    writeImage(dir, IMG.ids, t.pid, [t.ids]);
    writeImage(dir, IMG.mm, t.pid, [t.mm!]);
    writeImage(dir, IMG.pagemap, t.pid, { head: { pages_id: t.pagesId }, entries: t.pagemap });
    writeImage(dir, IMG.fdinfo, t.ids.files_id, t.fdinfo);
    writeImage(dir, IMG.fs, t.pid, [t.fs!]);
  }
  writeImage(dir, IMG.files, undefined, run.files);
  if (run.seccomp.length) writeImage(dir, IMG.seccomp, undefined, [{ seccomp_filters: run.seccomp }]);
  writeImage(dir, IMG.pstree, undefined, pstree);
  // The inventory goes last: an image directory without it is incomplete.
  writeImage(dir, IMG.inventory, undefined, [{
    img_version: IMAGES_V1_1, fdinfo_per_id: true, ns_per_id: true, root_ids: tasks[0]!.ids, lsmtype: lsmtype.NO_LSM,
  }]);
}

/** Kills the tree (the default), or lets it run or stop, as asked. */
function release(opts: Options, tree: FrozenTree): void {
  if (opts.leaveRunning) return thawTree(tree);
  if (opts.leaveStopped) return thawTree(tree, SIG.STOP);
  for (const t of tree.tasks) process.kill(t.pid, SIG.KILL);
  // Wait until each thread is gone, so the PIDs are dead when crest returns.
  for (const t of tree.tasks) for (const th of t.threads) waitGone(th.tid);
}

function waitGone(tid: number): void {
  for (;;) {
    const s = wait4(tid, 0, `wait for thread ${tid} to die`);
    if (!s || s.exited || s.signaled) return;
    ptrace(PTRACE.CONT, tid, 0, 0);
  }
}
