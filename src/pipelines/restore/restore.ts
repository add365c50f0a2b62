// The restore pipeline: read and check the images, build the process tree
// out of stubs with the dumped PIDs, sessions and groups, giving each its
// memory before its children are forked from it (they inherit it
// copy-on-write), turn each stub into its task with the other kinds
// (threads, files, signals, ..., registers last), and let them all go. If
// anything fails, every task created so far is killed: nothing is left
// half-alive.
import { closeSync, existsSync, fstatSync, openSync, readFileSync, statSync, writeSync, constants as fsc } from "node:fs";
import { parseStat } from "../../proc/stat.js";
import { isAbsolute, join } from "node:path";
import type { Logger } from "../../log.js";
import type { Options } from "../../options.js";
import {
  IMG, readImage, writeImage, imageExists, imagePath, ImageError, IMAGES_V1_1,
  type core_entry, type file_entry, type inventory_entry, type pstree_entry, type restore_stats_entry,
} from "../../images/index.js";
import { RESTORE_KINDS } from "../../kinds/registry.js";
import { memoryKind } from "../../kinds/memory/memory.js";
import { closeTransient } from "../../kinds/files/fd-table.js";
import { newStats, type RestoreRun, type RestoreTask, type TaskKind } from "../../kinds/context.js";
import { TASK_STATE } from "../../kinds/task/task-state.js";
import { pageCount, PE } from "../../kinds/memory/pages.js";
import { restoreNamespaces } from "../../kinds/namespaces/ipc-uts.js";
import { createTree, finishTree, planTree, type TreeNode } from "./tree.js";
import { takenPid } from "./pid-wait.js";
import { sleepMs, wait4 } from "../../sys/syscalls.js";
import { native } from "../../sys/native.js";
import { CLONE, PAGE_SIZE, PR, SIG, SYS, WNOHANG } from "../../sys/constants.js";
import { ActionScripts } from "../actions.js";
import { displayRestoreStats } from "../stats.js";
import { Regs } from "../../sys/structs.js";
import type { Remote } from "../../remote/remote.js";
import { faultPoint } from "../fault.js";

export interface RestoreResult {
  /** The restored root's PID (as crest sees it). */
  pid: number;
  /** Without --restore-detached: how the root ended (its exit code, or 128 + signal). */
  exitCode?: number;
}

/** Resolves a path given on the command line the way criu does: relative to the work directory. */
export function workPath(opts: Options, p: string): string {
  return isAbsolute(p) ? p : join(opts.workDir ?? opts.imagesDir, p);
}

function readCores(dir: string, entry: pstree_entry): core_entry[] {
  return entry.threads.map((tid) => {
    const c = readImage(dir, IMG.core, tid);
    if (c.length !== 1) throw new ImageError(imagePath(dir, IMG.core, tid), "invalid", `expected one entry, found ${c.length}`);
    return c[0]!;
  });
}

/** Reads and checks everything a live task needs. */
function loadTask(dir: string, entry: pstree_entry, core: core_entry[]): RestoreTask {
  const vpid = entry.pid;
  if (entry.threads[0] !== vpid) throw new ImageError(imagePath(dir, IMG.pstree), "invalid", `process ${vpid}'s first thread is ${entry.threads[0]}`);
  const ids = readImage(dir, IMG.ids, vpid)[0];
  const mm = readImage(dir, IMG.mm, vpid)[0];
  const fs = readImage(dir, IMG.fs, vpid)[0];
  if (!ids || !mm || !fs) throw new ImageError(dir, "invalid", `ids, mm or fs image of process ${vpid} is empty`);
  const pagemap = readImage(dir, IMG.pagemap, vpid);
  const pagesPath = imagePath(dir, IMG.pages, pagemap.head.pages_id);
  const need = pagemap.entries.filter((e) => (e.flags ?? PE.PRESENT) & PE.PRESENT).reduce((n, e) => n + pageCount(e), 0) * PAGE_SIZE;
  if (!existsSync(pagesPath)) throw new ImageError(pagesPath, "missing", "");
  const have = statSync(pagesPath).size;
  if (have !== need) throw new ImageError(pagesPath, "truncated", `has ${have} bytes, the pagemap needs ${need}`);
  return {
    pid: 0, vpid, vtids: entry.threads, sharesFiles: false, sharesFs: false, parent: null,
    threads: [], remotes: [], core, ids, mm, fs,
    pagemap: pagemap.entries, pagesId: pagemap.head.pages_id,
    fdinfo: imageExists(dir, IMG.fdinfo, ids.files_id) ? readImage(dir, IMG.fdinfo, ids.files_id) : [],
    final: [],
  };
}

function checkInventory(dir: string): inventory_entry {
  const inv = readImage(dir, IMG.inventory)[0];
  const file = imagePath(dir, IMG.inventory);
  if (!inv) throw new ImageError(file, "invalid", "no inventory entry");
  if (inv.img_version !== IMAGES_V1_1) throw new ImageError(file, "invalid", `image version ${inv.img_version}; crest reads version ${IMAGES_V1_1} (CRIU v1.1 images)`);
  if (!inv.fdinfo_per_id) throw new ImageError(file, "invalid", "images without fdinfo_per_id are too old to restore");
  return inv;
}

/** Hands a finished task its registers and mask and lets it run. */
function release(task: RestoreTask): void {
  task.remotes[0]!.unmapScratch();
  task.threads.forEach((t, i) => {
    const f = task.final[i]!;
    for (const w of f.memoryWrites) task.remotes[i]!.write(w.addr, w.data);
    t.setXstate(f.xstate);
    t.setRegs(f.regs);
    t.setSigmask(f.sigmask);
  });
  for (const t of task.threads) t.detach();
}

/**
 * Kills everything a failed restore made and reaps it: crest is a child
 * subreaper while it restores, so the stubs orphaned when their parents die
 * come back to it, and their PIDs are free when it returns. A wait4 that
 * succeeds may only have collected the tracee's death (crest traces them
 * all): the zombie then still holds its PID for its parent, so a PID counts
 * as free only once it has left /proc, or when it is the zombie of a
 * process outside the restore (the root under -S), whose to reap.
 */
function killAll(remotes: Remote[]): void {
  for (const r of [...remotes].reverse()) {
    try {
      process.kill(r.pid, SIG.KILL);
    } catch {
      // already gone
    }
  }
  const left = new Set(remotes.map((r) => r.pid));
  const settled = (pid: number): boolean => {
    try {
      wait4(pid, WNOHANG);
    } catch {
      // not (yet) crest's child: its parent has not died yet
    }
    let st;
    try {
      st = parseStat(readFileSync(`/proc/${pid}/stat`, "utf8"));
    } catch {
      return true;
    }
    return st.state === "Z" && st.ppid !== process.pid && !left.has(st.ppid);
  };
  for (let tries = 0; left.size && tries < 500; tries++) {
    for (const pid of left) if (settled(pid)) left.delete(pid);
    if (left.size) sleepMs(10);
  }
}

export function restore(opts: Options, log: Logger): RestoreResult {
  const dir = opts.imagesDir;
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ImageError(dir, "missing", "");
  if (opts.statusFd !== undefined && !isOpenFd(opts.statusFd)) throw new Error(`--status-fd ${opts.statusFd} is not an open file descriptor of crest`);
  const inventory = checkInventory(dir);
  const entries = readImage(dir, IMG.pstree);
  if (entries.length === 0) throw new ImageError(imagePath(dir, IMG.pstree), "invalid", "no tasks");
  const root = entries[0]!;
  if (root.sid !== root.pid) {
    throw new Error(`process ${root.pid} was not a session leader (session ${root.sid}); restoring it needs --shell-job, which crest does not support yet`);
  }
  const files = new Map<number, file_entry>(readImage(dir, IMG.files).map((f) => [f.id, f]));
  const seccomp = imageExists(dir, IMG.seccomp) ? readImage(dir, IMG.seccomp)[0]?.seccomp_filters ?? [] : [];
  const run: RestoreRun = { opts, log, dir, files, seccomp, stats: newStats(), opened: new Map(), transient: [], cache: new Map(), cleanup: [], finishing: [] };

  const cores = new Map(entries.map((e) => [e.pid, readCores(dir, e)]));
  const state = (e: pstree_entry) => cores.get(e.pid)![0]!.tc?.task_state ?? TASK_STATE.ALIVE;
  for (const e of entries) {
    const s = state(e);
    if (s !== TASK_STATE.ALIVE && s !== TASK_STATE.STOPPED && s !== TASK_STATE.ZOMBIE) throw new Error(`process ${e.pid} has task state ${s}, which crest cannot restore`);
  }
  const tasks = new Map<number, RestoreTask>();
  for (const e of entries) if (state(e) !== TASK_STATE.ZOMBIE) tasks.set(e.pid, loadTask(dir, e, cores.get(e.pid)!));
  const parentOf = new Map(entries.map((e) => [e.pid, e.ppid]));
  const shares = (e: pstree_entry) => {
    const t = tasks.get(e.pid), p = tasks.get(parentOf.get(e.pid) ?? 0);
    return { files: !!t && !!p && t.ids.files_id === p.ids.files_id, fs: !!t && !!p && t.ids.fs_id === p.ids.fs_id };
  };
  const nodes = planTree(entries, (e) => (state(e) === TASK_STATE.ZOMBIE ? "zombie" : "task"),
    (e) => cores.get(e.pid)![0]!.tc?.exit_code ?? 0, shares);
  const ns = restoreNamespaces(dir, inventory, tasks.get(root.pid)!);
  if (!ns.flags.ownPidNs) {
    const taken = takenPid(nodes, (vpid) => cores.get(vpid)?.[0]?.tc?.comm, log);
    if (taken) {
      throw new Error(`PID ${taken.pid} is taken by ${taken.holder}: stop it first (a killed process's PID can stay taken until its parent reaps it), or restore into a new PID namespace`);
    }
  }
  log.info(`Restoring ${entries.length} process(es), root ${root.pid}`);

  const scripts = new ActionScripts(opts.actionScripts, dir, log);
  const t0 = process.hrtime.bigint();
  native.syscall(SYS.prctl, PR.SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  const created: Remote[] = [];
  const live: RestoreTask[] = [];
  const logs = new Map<RestoreTask, Logger>();
  let forkingUs = 0;
  /** Runs kinds in a task with its own log (kept open between the two rounds: reopening truncates it). */
  const restoreKinds = (task: RestoreTask, kinds: readonly TaskKind[]) => {
    let tlog = logs.get(task);
    if (!tlog) {
      tlog = log.forTask(task.vpid, opts.logPid);
      logs.set(task, tlog);
      tlog.info(`Restoring process ${task.vpid} (pid ${task.pid} here)`);
    }
    run.log = tlog;
    try {
      for (const kind of kinds) {
        run.log.debug(`restoring ${kind.name}`);
        kind.restore?.(task, run);
        faultPoint(`restore:${kind.name}`);
      }
    } finally {
      run.log = log;
    }
  };
  try {
    scripts.run("pre-restore");
    // Memory first, in each task right after it is created and before its
    // children are: they inherit it, and keep what is still theirs shared.
    let memoryUs = 0n;
    // -S: the root becomes a child of crest's parent, which then owns it.
    createTree(nodes, { ...ns.flags, flags: ns.flags.flags | (opts.restoreSibling ? CLONE.PARENT : 0) }, created, log, (n) => {
      if (n === nodes[0]) {
        scripts.rootPid = n.pid;
        // SysV segments must exist before the root's memory attaches them.
        scripts.run("setup-namespaces");
        ns.populate(n.pid);
        scripts.run("post-setup-namespaces");
      }
      if (n.role !== "task") return;
      const task = tasks.get(n.vpid)!;
      bind(task, n, n.parent?.role === "task" ? tasks.get(n.parent.vpid)! : null);
      live.push(task);
      // fds the parent holds only for the restore (shared memory objects) are not the child's.
      if (task.parent && !n.sharesFiles) {
        for (const t of run.transient) {
          if (t.task === task.parent) n.remote!.call(`close an inherited temporary fd of task ${task.vpid}`, SYS.close, t.fd);
        }
      }
      const t1 = process.hrtime.bigint();
      restoreKinds(task, [memoryKind]);
      memoryUs += process.hrtime.bigint() - t1;
    });
    faultPoint("restore:forked");
    finishTree(nodes);
    forkingUs = Number((process.hrtime.bigint() - t0 - memoryUs) / 1000n);
    const rest = RESTORE_KINDS.filter((k) => k !== memoryKind);
    for (const task of live) restoreKinds(task, rest);
    for (const step of run.finishing) step();
    closeTransient(run);
    ns.finish(nodes[0]!.pid);
    scripts.run("post-restore");
    if (opts.pidfile) writePidfile(workPath(opts, opts.pidfile), nodes[0]!.pid);
    scripts.run("pre-resume");
    const restoreUs = Number((process.hrtime.bigint() - t0) / 1000n);
    const stats = writeStats(dir, forkingUs, restoreUs, run);
    log.info("Restore finished successfully. Resuming tasks.");
    for (const t of live) release(t);
    if (opts.statusFd !== undefined) signalReady(opts.statusFd, log);
    if (opts.displayStats) displayRestoreStats(log, stats);
  } catch (e) {
    killAll(created);
    throw e;
  } finally {
    for (const l of logs.values()) l.close();
    for (const undo of run.cleanup) undo();
  }
  scripts.runLate("post-resume");
  scripts.close();
  const rootPid = nodes[0]!.pid;
  // A sibling is not crest's child to wait for: criu leaves it to its parent too.
  if (opts.restoreDetached || opts.restoreSibling) return { pid: rootPid };
  const st = wait4(rootPid, 0, `wait for restored process ${rootPid}`)!;
  return { pid: rootPid, exitCode: st.exited ? st.code : 128 + st.code };
}

/** Ties a task's images to the stub built for it. */
function bind(task: RestoreTask, n: TreeNode, parent: RestoreTask | null): void {
  const r = n.remote!;
  task.pid = n.pid;
  task.parent = parent;
  task.sharesFiles = n.sharesFiles;
  task.sharesFs = n.sharesFs;
  task.threads = [r.t];
  task.remotes = [r];
  task.final = [{ regs: new Regs(), xstate: Buffer.alloc(0), sigmask: 0n, memoryWrites: [] }];
}

function writeStats(dir: string, forkingUs: number, restoreUs: number, run: RestoreRun): restore_stats_entry {
  const restore = {
    pages_compared: BigInt(run.stats.pagesCompared), pages_skipped_cow: BigInt(run.stats.pagesSkippedCow),
    forking_time: forkingUs, restore_time: restoreUs, pages_restored: BigInt(run.stats.pagesRestored),
  };
  writeImage(dir, IMG.stats, "restore", [{ restore }]);
  return restore;
}

function isOpenFd(fd: number): boolean {
  try {
    fstatSync(fd);
    return true;
  } catch {
    return false;
  }
}

/** --status-fd: one zero byte once the tree runs, then the fd is closed (criu's status_ready). */
function signalReady(fd: number, log: Logger): void {
  try {
    writeSync(fd, Buffer.of(0));
    closeSync(fd);
  } catch (e) {
    log.error(`cannot write to --status-fd ${fd}: ${(e as Error).message}`);
  }
}

/** criu creates the pidfile exclusively: an existing file is an error, not overwritten. */
function writePidfile(path: string, pid: number): void {
  let fd: number;
  try {
    fd = openSync(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
  } catch (e) {
    throw new Error(`cannot create pidfile ${path}: ${(e as Error).message}`);
  }
  writeSync(fd, `${pid}`);
  closeSync(fd);
}

