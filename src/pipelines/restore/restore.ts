// The restore pipeline, in stages: read and check the images; let every
// kind plan (check what it needs, say which new namespaces the root needs);
// build the process tree out of stubs with the dumped PIDs, sessions and
// groups, the namespace kinds filling the root's namespaces once it exists
// and the memory kind giving each task its memory before its children are
// forked from it (they inherit it copy-on-write); then every other kind, one
// stage after the other, over every task (threads, files, signals, ...,
// registers last); the kinds' last steps; and let them all go. If anything
// fails, every task created so far is killed: nothing is left half-alive.
import { joinedOwnFlags, joinNamespaces } from "../../kinds/namespaces/join.js";
import { resolveChain } from "../../kinds/memory/chain.js";
import { closeSync, existsSync, fstatSync, openSync, readFileSync, rmSync, statSync, writeSync, constants as fsc } from "node:fs";
import { parseStat } from "../../proc/stat.js";
import type { Logger } from "../../log.js";
import { workPath, type Options } from "../../options.js";
import {
  IMG, ImageError, IMAGES_V1_1, type EntriesKind, type core_entry, type file_entry, type inventory_entry, type pstree_entry, type restore_stats_entry,
} from "../../images/index.js";
import { RestoreImages } from "../../images/store.js";
import { NAMESPACE_KINDS, TASK_RESTORE_KINDS } from "../../kinds/registry.js";
import { newStats, RunStates, type RestoreRun, type RestoreTask, type TaskKind } from "../../kinds/context.js";
import { TASK_STATE } from "../../kinds/task/task-state.js";
import { rootUserns } from "../../kinds/namespaces/user.js";
import { addStandIns, createTree, endStandIns, finishTree, planTree, type OutsideSession, type TreeNode } from "./tree.js";
import { deadProcesses } from "../../kinds/files/ghost.js";
import { takenPid } from "./pid-wait.js";
import { sleepMs, wait4 } from "../../sys/syscalls.js";
import { native } from "../../sys/native.js";
import { CLONE, PR, SIG, SYS, WNOHANG } from "../../sys/constants.js";
import { ActionScripts } from "../actions.js";
import type { RunHooks } from "../hooks.js";
import { displayRestoreStats } from "../stats.js";
import { Regs } from "../../sys/structs.js";
import { Remote } from "../../remote/remote.js";
import { RemoteTally } from "../../remote/counters.js";
import { faultPoint } from "../../fault.js";
import { verifyImages } from "../../images/manifest.js";
import { restorePoint, type KindStage } from "./fault-points.js";

const ALL_KINDS: readonly TaskKind[] = [...NAMESPACE_KINDS, ...TASK_RESTORE_KINDS];

export interface RestoreResult {
  /** The restored root's PID (as crest sees it). */
  pid: number;
  /** Without --restore-detached: how the root ended (its exit code, or 128 + signal). */
  exitCode?: number;
}

function readCores(images: RestoreImages, entry: pstree_entry): core_entry[] {
  return entry.threads.map((tid) => {
    const c = images.read(IMG.core, tid);
    if (c.length !== 1) throw images.invalid(IMG.core, tid, `expected one entry, found ${c.length}`);
    return c[0]!;
  });
}

/** Reads and checks everything a live task needs. */
function loadTask(images: RestoreImages, entry: pstree_entry, core: core_entry[]): RestoreTask {
  const vpid = entry.pid;
  if (entry.threads[0] !== vpid) throw images.invalid(IMG.pstree, undefined, `process ${vpid}'s first thread is ${entry.threads[0]}`);
  const one = <T>(kind: EntriesKind<T>): T => {
    const e = images.read(kind, vpid);
    if (e.length !== 1) throw images.invalid(kind, vpid, `expected one ${kind.type.name} of process ${vpid}, found ${e.length}`);
    return e[0]!;
  };
  const ids = one(IMG.ids), mm = one(IMG.mm), fs = one(IMG.fs);
  const pagemap = images.read(IMG.pagemap, vpid);
  return {
    pid: 0, vpid, vtids: entry.threads, sid: entry.sid, pgid: entry.pgid, sharesFiles: false, sharesFs: false, parent: null,
    threads: [], remotes: [], core, ids, mm, fs,
    pagemap: pagemap.entries, pagesId: pagemap.head.pages_id, pages: resolveChain(images, vpid, pagemap.entries, pagemap.head.pages_id),
    fdinfo: images.readOr(IMG.fdinfo, ids.files_id, []),
    final: [],
  };
}

function checkInventory(images: RestoreImages): inventory_entry {
  const inv = images.read(IMG.inventory)[0];
  if (!inv) throw images.invalid(IMG.inventory, undefined, "no inventory entry");
  if (inv.img_version !== IMAGES_V1_1) throw images.invalid(IMG.inventory, undefined, `image version ${inv.img_version}; crest reads version ${IMAGES_V1_1} (CRIU v1.1 images)`);
  if (!inv.fdinfo_per_id) throw images.invalid(IMG.inventory, undefined, "images without fdinfo_per_id are too old to restore");
  return inv;
}

/** Hands the finished tasks their registers and masks and lets them run. */
function release(tasks: readonly RestoreTask[]): void {
  // The threads' queues (they share the leader's scratch page) before it goes, all tasks side by side.
  Remote.flushAll(tasks.flatMap((t) => t.remotes));
  Remote.unmapAll(tasks.map((t) => t.remotes[0]!));
  for (const task of tasks) {
    task.threads.forEach((t, i) => {
      const f = task.final[i]!;
      for (const w of f.memoryWrites) task.remotes[i]!.write(w.addr, w.data);
      t.setXstate(f.xstate);
      t.setRegs(f.regs);
      t.setSigmask(f.sigmask);
    });
    for (const t of task.threads) t.detach();
  }
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

/** What the first stage reads: the images of the tree, checked. */
interface LoadedTree {
  images: RestoreImages;
  inventory: inventory_entry;
  entries: pstree_entry[];
  /** Every task's cores (zombies' too), by vpid. */
  cores: Map<number, core_entry[]>;
  /** Live tasks by vpid, tree order. */
  tasks: Map<number, RestoreTask>;
  nodes: TreeNode[];
}

/**
 * A shell job (-j): the root was not a session leader, its session and
 * terminal were a shell's outside the tree. As criu does, the tree joins
 * crest's own session: every task of the old session moves to crest's, the
 * group of the old session's leader becomes crest's session leader's group,
 * and a root that was not a group leader joins crest's group. Returns the
 * session and groups that are outside the tree.
 */
function joinShell(entries: pstree_entry[], opts: Options): OutsideSession {
  const root = entries[0]!;
  if (!opts.features.shellJob) {
    throw new Error(`process ${root.pid} was not a session leader (session ${root.sid} in pstree.img): it is a shell job; restore it with -j (--shell-job) in the terminal it should use`);
  }
  const sid = native.syscall(SYS.getsid, 0), pgid = native.syscall(SYS.getpgid, 0);
  const oldSid = root.sid, oldPgid = root.pgid;
  for (const e of entries) {
    if (e.pid === sid || e.pid === pgid) throw new Error(`crest's session ${sid} (group ${pgid}) is process ${e.pid} of the images: restore the shell job from another shell`);
    if (sid !== oldSid && (e.sid === sid || e.pgid === sid)) throw new Error(`crest's session ${sid} is a session or group of process ${e.pid} in the images: restore the shell job from another shell`);
  }
  for (const e of entries) {
    if (e.sid === oldSid) e.sid = sid;
    if (e.pgid === oldSid) e.pgid = sid;
    else if (root.pgid !== root.pid && e.pgid === oldPgid) e.pgid = pgid;
  }
  return { sid, pgids: new Set([sid, pgid]), bornPgid: pgid };
}

/** The kernel's largest pid_max (PID_MAX_LIMIT). */
const PID_MAX_LIMIT = 4 * 1024 * 1024;

/**
 * Every process and thread of pstree.img has a PID of its own, its leader's
 * its process's (else a PID is made twice, or a core image is missing), and
 * every PID, group and session is one the kernel can give.
 */
function checkPids(images: RestoreImages, entries: pstree_entry[]): void {
  const seen = new Set<number>();
  entries.forEach((e, i) => {
    const bad = (detail: string) => images.invalid(IMG.pstree, undefined, `entry ${i} (process ${e.pid}): ${detail}`);
    if (e.pid <= 0) throw bad(`pid ${e.pid} is not a PID`);
    // 0: a group or session outside the tree's PID namespace, as the tree saw it.
    for (const f of ["pid", "ppid", "pgid", "sid"] as const) if (e[f] > PID_MAX_LIMIT) throw bad(`${f} ${e[f]} is not a PID`);
    if (e.threads[0] !== e.pid) throw bad(`threads[0] is ${e.threads[0]}, not the process's own PID`);
    e.threads.forEach((t, j) => {
      if (t <= 0 || t > PID_MAX_LIMIT || seen.has(t)) throw bad(`threads[${j}] ${t} is ${seen.has(t) ? "named twice in the tree" : "not a PID"}`);
      seen.add(t);
    });
  });
}

/** Stage: reads and checks the images of the tree before anything is created. */
function loadTree(dir: string, opts: Options): LoadedTree {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ImageError(dir, "missing", "");
  const images = new RestoreImages(dir);
  const inventory = checkInventory(images);
  const entries = images.read(IMG.pstree);
  if (entries.length === 0) throw images.invalid(IMG.pstree, undefined, "no tasks");
  checkPids(images, entries);
  const root = entries[0]!;
  const outside = root.sid !== root.pid ? joinShell(entries, opts) : undefined;
  const cores = new Map(entries.map((e) => [e.pid, readCores(images, e)]));
  const state = (e: pstree_entry) => cores.get(e.pid)![0]!.tc?.task_state ?? TASK_STATE.ALIVE;
  for (const e of entries) {
    const s = state(e);
    if (s !== TASK_STATE.ALIVE && s !== TASK_STATE.STOPPED && s !== TASK_STATE.ZOMBIE) throw new Error(`process ${e.pid} has task state ${s}, which crest cannot restore`);
  }
  const tasks = new Map<number, RestoreTask>();
  for (const e of entries) if (state(e) !== TASK_STATE.ZOMBIE) tasks.set(e.pid, loadTask(images, e, cores.get(e.pid)!));
  const parentOf = new Map(entries.map((e) => [e.pid, e.ppid]));
  const shares = (e: pstree_entry) => {
    const t = tasks.get(e.pid), p = tasks.get(parentOf.get(e.pid) ?? 0);
    return { files: !!t && !!p && t.ids.files_id === p.ids.files_id, fs: !!t && !!p && t.ids.fs_id === p.ids.fs_id };
  };
  const nodes = planTree(entries, (e) => (state(e) === TASK_STATE.ZOMBIE ? "zombie" : "task"),
    (e) => cores.get(e.pid)![0]!.tc?.exit_code ?? 0, shares, outside);
  addStandIns(nodes, deadProcesses(images.readOr(IMG.remapFpath, undefined, [])));
  return { images, inventory, entries, cores, tasks, nodes };
}

/** Stage: every kind checks what it needs; returns the CLONE_NEW* flags the root is created with. */
function planKinds(run: RestoreRun): number {
  let flags = 0;
  for (const kind of ALL_KINDS) flags |= kind.plan?.(run) ?? 0;
  return flags;
}

/**
 * In a tree in crest's PID namespace, the dumped PIDs must be free (after a
 * short wait for the dumped processes' own zombies to be reaped).
 */
function checkPidsFree(tree: LoadedTree, log: Logger): void {
  const taken = takenPid(tree.nodes, (vpid) => tree.cores.get(vpid)?.[0]?.tc?.comm, log);
  if (taken) {
    throw new Error(`PID ${taken.pid} is taken by ${taken.holder}: stop it first (a killed process's PID can stay taken until its parent reaps it), or restore into a new PID namespace`);
  }
}

export function restore(opts: Options, log: Logger, hooks: RunHooks = {}): RestoreResult {
  if (opts.mnt.compatMode) log.info("--mntns-compat-mode: crest builds a mount namespace one way (as criu's mount-v2), which makes the same mounts");
  if (opts.restore.statusFd !== undefined && !isOpenFd(opts.restore.statusFd)) throw new Error(`--status-fd ${opts.restore.statusFd} is not an open file descriptor of crest`);
  // As criu's inherit_fd_add: the fd must be open; the files it replaces are logged as they are found (kinds/files/inherit.ts).
  for (const i of opts.inheritFd) {
    if (!isOpenFd(i.fd)) throw new Error(`--inherit-fd fd[${i.fd}]:${i.key}: fd ${i.fd} is not an open file descriptor of crest`);
    log.info(`File ${i.key} will be restored from inherit fd ${i.fd}`);
  }
  // Before anything is read or made: the set against its manifest (pages files are summed on a second thread meanwhile;
  // in a lazy restore by the lazy-pages daemon as it serves them, which ends the tree if one is not the dump's).
  if (opts.restore.noVerify) log.info("--no-verify: the images are not checked against their manifest");
  const pagesCheck = opts.restore.noVerify ? null : verifyImages(opts.images.dir, (m) => log.info(m), {
    deferPages: true, ...(opts.restore.lazyPages ? { sumPagesElsewhere: "the lazy-pages daemon, which ends the tree if one is not what the dump wrote" } : {}),
  });
  let tree: LoadedTree;
  try {
    tree = loadTree(opts.images.dir, opts);
  } catch (e) {
    pagesCheck?.stop();
    throw e;
  }
  const { images, nodes } = tree;
  const scripts = new ActionScripts(opts.actionScripts, images.dir, log, hooks.notify);
  const run: RestoreRun = {
    opts, log, stats: newStats(), images, inventory: tree.inventory,
    files: new Map<number, file_entry>(images.read(IMG.files).map((f) => [f.id, f])),
    tasks: [...tree.tasks.values()], opened: new Map(), transient: [], cleanup: [],
    state: (key) => states.of(key), script: (hook) => scripts.run(hook),
    ...(hooks.notify ? { giveOrphanPtsMaster: (fd: number) => { hooks.notify!("orphan-pts-master", undefined, fd); } } : {}),
  };
  const states = new RunStates(() => run);
  // --join-ns net of a tree with a network namespace of its own: the one named, filled from the images, not a new one.
  const nsFlags = planKinds(run) & ~joinedOwnFlags(run);
  if (!(nsFlags & CLONE.NEWPID)) checkPidsFree(tree, log);
  log.info(`Restoring ${tree.entries.length} process(es), root ${tree.entries[0]!.pid}`);

  const t0 = process.hrtime.bigint();
  native.syscall(SYS.prctl, PR.SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  const created: Remote[] = [];
  const logs = new Map<RestoreTask, Logger>();
  const tally = new RemoteTally();
  let forkingUs = 0;
  /** Written once the tree is complete; a failure after that removes it (it would name a dead PID, and block the next try's O_EXCL). */
  let pidfile: string | undefined;
  /** Runs one kind's hook in a task, with the task's own log (kept open between stages: reopening truncates it). */
  const inTask = (task: RestoreTask, kind: TaskKind, stage: KindStage, hook: (task: RestoreTask, run: RestoreRun) => void) => {
    let tlog = logs.get(task);
    if (!tlog) {
      tlog = log.forTask(task.vpid, opts.log.perPid);
      logs.set(task, tlog);
      tlog.info(`Restoring process ${task.vpid} (pid ${task.pid} here)`);
    }
    run.log = tlog;
    try {
      run.log.debug(`restoring ${kind.name}`);
      tally.count(kind.name, () => {
        hook(task, run);
      });
      faultPoint(restorePoint(kind, stage));
    } finally {
      run.log = log;
    }
  };
  try {
    scripts.run("pre-restore");
    let bornUs = 0n, born = 0;
    // -S: the root becomes a child of crest's parent, which then owns it.
    const rootFlags = nsFlags | (opts.restore.sibling ? CLONE.PARENT : 0);
    const userns = rootUserns(run);
    createTree(nodes, { flags: rootFlags, ownPidNs: (nsFlags & CLONE.NEWPID) !== 0, ...(userns ? { userns } : {}) }, created, log, (n) => {
      const task = tree.tasks.get(n.vpid);
      if (n === nodes[0]) {
        scripts.rootPid = n.pid;
        scripts.run("setup-namespaces");
        bind(task!, n, null);
        joinNamespaces(task!, run);
        for (const kind of NAMESPACE_KINDS) if (kind.born) inTask(task!, kind, "born", kind.born);
        scripts.run("post-setup-namespaces");
      }
      if (n.role !== "task") return;
      if (n !== nodes[0]) {
        // Forked by a session's helper (itself maybe forked by a zombie-to-be): a copy of the nearest task above, memory and temporary fds included.
        let from = n.parent;
        while (from && from.role !== "task") from = from.parent;
        bind(task!, n, from ? tree.tasks.get(from.vpid)! : null);
        // It enters its own namespaces (a nested one it unshared) before anything else, so its children inherit them.
        for (const kind of NAMESPACE_KINDS) if (kind.born) inTask(task!, kind, "born", kind.born);
      }
      const t1 = process.hrtime.bigint();
      for (const kind of TASK_RESTORE_KINDS) if (kind.born) inTask(task!, kind, "born", kind.born);
      bornUs += process.hrtime.bigint() - t1;
      hooks.progress?.({ stage: "restoring", tasksDone: ++born, tasksTotal: run.tasks.length, pagesRestored: run.stats.pagesRestored });
    });
    faultPoint("restore:forked");
    adoptOrphans(tree, (nsFlags & CLONE.NEWPID) !== 0);
    finishTree(nodes);
    forkingUs = Number((process.hrtime.bigint() - t0 - bornUs) / 1000n);
    for (const kind of TASK_RESTORE_KINDS) {
      if (kind.restoreAll) {
        run.log.debug(`restoring ${kind.name}`);
        tally.count(kind.name, () => kind.restoreAll!(run.tasks, run));
        faultPoint(restorePoint(kind, "restore"));
      } else if (kind.restore) {
        for (const task of run.tasks) inTask(task, kind, "restore", kind.restore);
      }
    }
    // What the kinds queued in each thread runs now, all side by side: a failure is a failed restore, not one already announced.
    Remote.flushAll(run.tasks.flatMap((t) => t.remotes));
    endStandIns(nodes);
    faultPoint("restore:flushed");
    // The pages the tasks read were the dump's, or none of it runs.
    pagesCheck?.wait();
    for (const kind of ALL_KINDS) {
      if (!kind.finishRestore) continue;
      kind.finishRestore(run);
      faultPoint(restorePoint(kind, "finish"));
    }
    scripts.run("post-restore");
    if (opts.restore.pidfile) {
      pidfile = workPath(opts, opts.restore.pidfile);
      writePidfile(pidfile, nodes[0]!.pid);
    }
    faultPoint("restore:post-restore");
    // From here on a failure loses connections, as with criu: the network is unlocked.
    for (const kind of ALL_KINDS) {
      if (!kind.resume) continue;
      kind.resume(run);
      faultPoint(restorePoint(kind, "resume"));
    }
    scripts.run("pre-resume");
    faultPoint("restore:pre-resume");
    const restoreUs = Number((process.hrtime.bigint() - t0) / 1000n);
    const stats = writeStats(images, forkingUs, restoreUs, run);
    log.info(`Remote control by kind (syscalls/stops): ${tally}`);
    log.info("Restore finished successfully. Resuming tasks.");
    release(run.tasks);
    if (opts.restore.statusFd !== undefined) signalReady(opts.restore.statusFd, log);
    if (opts.log.displayStats) displayRestoreStats(log, stats);
  } catch (e) {
    pagesCheck?.stop();
    killAll(created);
    if (pidfile) rmSync(pidfile, { force: true });
    throw e;
  } finally {
    for (const l of logs.values()) l.close();
    for (const undo of run.cleanup) undo();
  }
  scripts.runLate("post-resume");
  scripts.close();
  const rootPid = nodes[0]!.pid;
  // A sibling is not crest's child to wait for: criu leaves it to its parent too.
  if (opts.restore.detached || opts.restore.sibling) return { pid: rootPid };
  const st = wait4(rootPid, 0, `wait for restored process ${rootPid}`)!;
  return { pid: rootPid, exitCode: st.exited ? st.code : 128 + st.code };
}

/** Ties a task's images to the stub built for it. */
/**
 * The children session helpers fork become the root's when the helpers exit:
 * the root is their PID namespace's init, or was a child subreaper (that
 * was how they became its), which it is made now rather than with its
 * other settings, after the tree is built.
 */
function adoptOrphans(tree: LoadedTree, ownPidNs: boolean): void {
  if (ownPidNs || !tree.nodes.some((n) => n.forks)) return;
  const root = tree.nodes[0]!;
  if (!tree.cores.get(root.vpid)?.[0]?.tc?.child_subreaper) {
    throw new Error(`process ${root.vpid} has children in sessions whose leaders are not their ancestors, so they were reparented to it, but it is neither a PID namespace's init nor a child subreaper in the images`);
  }
  root.remote!.call(`make process ${root.vpid} a child subreaper`, SYS.prctl, PR.SET_CHILD_SUBREAPER, 1, 0, 0, 0);
}

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

function writeStats(images: RestoreImages, forkingUs: number, restoreUs: number, run: RestoreRun): restore_stats_entry {
  const restore = {
    pages_compared: BigInt(run.stats.pagesCompared), pages_skipped_cow: BigInt(run.stats.pagesSkippedCow),
    forking_time: forkingUs, restore_time: restoreUs, pages_restored: BigInt(run.stats.pagesRestored),
  };
  images.write(IMG.stats, "restore", [{ restore }]);
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

