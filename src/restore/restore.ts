// The restore pipeline: read and check the images, start a stub with each
// task's PID, turn it into the task with the kinds (memory, files, signals,
// ..., registers last), and let it go. If anything fails, every task created
// so far is killed: nothing is left half-alive.
import { closeSync, existsSync, openSync, statSync, writeSync, constants as fsc } from "node:fs";
import { isAbsolute, join } from "node:path";
import type { Logger } from "../log.js";
import type { Options } from "../options.js";
import { IMG, readImage, writeImage, imageExists, imagePath, ImageError } from "../images/index.js";
import type { file_entry, inventory_entry, pstree_entry } from "../images/index.js";
import { IMAGES_V1_1 } from "../images/index.js";
import { RESTORE_KINDS } from "../kinds/index.js";
import { newStats, type RestoreRun, type RestoreTask } from "../kinds/context.js";
import { pageCount, PE } from "../kinds/pages.js";
import { startStub, pidHolder } from "./stub.js";
import { wait4 } from "../sys/syscalls.js";
import { PAGE_SIZE, SIG } from "../sys/constants.js";
import { Regs } from "../sys/structs.js";
import type { Remote } from "../remote/remote.js";
import { faultPoint } from "../fault.js";

export interface RestoreResult {
  /** The restored root's PID. */
  pid: number;
  /** Without --restore-detached: how the root ended (its exit code, or 128 + signal). */
  exitCode?: number;
}

/** Resolves a path given on the command line the way criu does: relative to the work directory. */
export function workPath(opts: Options, p: string): string {
  return isAbsolute(p) ? p : join(opts.workDir ?? opts.imagesDir, p);
}

function loadTask(dir: string, entry: pstree_entry): RestoreTask {
  const pid = entry.pid;
  if (entry.threads.length !== 1 || entry.threads[0] !== pid) {
    throw new Error(`process ${pid} had ${entry.threads.length} threads; crest restores single-threaded processes only so far`);
  }
  const core = entry.threads.map((tid) => {
    const c = readImage(dir, IMG.core, tid);
    if (c.length !== 1) throw new ImageError(imagePath(dir, IMG.core, tid), "invalid", `expected one entry, found ${c.length}`);
    return c[0]!;
  });
  if (!core[0]!.tc) throw new ImageError(imagePath(dir, IMG.core, pid), "invalid", "the task's core has no task_core_entry");
  const ids = readImage(dir, IMG.ids, pid)[0];
  const mm = readImage(dir, IMG.mm, pid)[0];
  const fs = readImage(dir, IMG.fs, pid)[0];
  if (!ids || !mm || !fs) throw new ImageError(dir, "invalid", `ids, mm or fs image of process ${pid} is empty`);
  const pagemap = readImage(dir, IMG.pagemap, pid);
  const pagesPath = imagePath(dir, IMG.pages, pagemap.head.pages_id);
  const need = pagemap.entries.filter((e) => (e.flags ?? PE.PRESENT) & PE.PRESENT).reduce((n, e) => n + pageCount(e), 0) * PAGE_SIZE;
  if (!existsSync(pagesPath)) throw new ImageError(pagesPath, "missing", "");
  const have = statSync(pagesPath).size;
  if (have !== need) throw new ImageError(pagesPath, "truncated", `has ${have} bytes, the pagemap needs ${need}`);
  return {
    pid, threads: [], remotes: [], core, ids, mm, fs,
    pagemap: pagemap.entries, pagesId: pagemap.head.pages_id,
    fdinfo: readImage(dir, IMG.fdinfo, ids.files_id),
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

function kill(remotes: Remote[]): void {
  for (const r of remotes) {
    try {
      process.kill(r.pid, SIG.KILL);
      wait4(r.pid, 0);
    } catch {
      // already gone
    }
  }
}

export function restore(opts: Options, log: Logger): RestoreResult {
  const dir = opts.imagesDir;
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ImageError(dir, "missing", "");
  checkInventory(dir);
  const tree = readImage(dir, IMG.pstree);
  if (tree.length === 0) throw new ImageError(imagePath(dir, IMG.pstree), "invalid", "no tasks");
  if (tree.length > 1) throw new Error(`the images hold ${tree.length} processes; crest restores single processes only so far`);
  const root = tree[0]!;
  if (root.sid !== root.pid) {
    throw new Error(`process ${root.pid} was not a session leader (session ${root.sid}); restoring it needs --shell-job, which crest does not support yet`);
  }
  const files = new Map<number, file_entry>(readImage(dir, IMG.files).map((f) => [f.id, f]));
  const seccomp = imageExists(dir, IMG.seccomp) ? readImage(dir, IMG.seccomp)[0]?.seccomp_filters ?? [] : [];
  const task = loadTask(dir, root);
  const run: RestoreRun = { opts, log, dir, files, seccomp, stats: newStats() };
  log.info(`Restoring process ${root.pid}`);

  const holder = pidHolder(root.pid);
  if (holder) throw new Error(`PID ${root.pid} is taken by ${holder}: stop it first (a killed process's PID can stay taken until its parent reaps it)`);

  const t0 = process.hrtime.bigint();
  const created: Remote[] = [];
  let forkingUs = 0;
  try {
    const r = startStub({ pid: root.pid, setsid: true });
    created.push(r);
    forkingUs = Number((process.hrtime.bigint() - t0) / 1000n);
    task.threads = [r.t];
    task.remotes = [r];
    task.final = [{ regs: new Regs(), xstate: Buffer.alloc(0), sigmask: 0n, memoryWrites: [] }];
    faultPoint("restore:forked");
    for (const kind of RESTORE_KINDS) {
      log.debug(`restoring ${kind.name} of ${task.pid}`);
      kind.restore?.(task, run);
      faultPoint(`restore:${kind.name}`);
    }
    if (opts.pidfile) writePidfile(workPath(opts, opts.pidfile), root.pid);
    const restoreUs = Number((process.hrtime.bigint() - t0) / 1000n);
    writeStats(dir, forkingUs, restoreUs, run);
    log.msg("Restore finished successfully. Resuming tasks.");
    release(task);
  } catch (e) {
    kill(created);
    throw e;
  }
  if (opts.restoreDetached) return { pid: root.pid };
  const st = wait4(root.pid, 0, `wait for restored process ${root.pid}`)!;
  return { pid: root.pid, exitCode: st.exited ? st.code : 128 + st.code };
}

function writeStats(dir: string, forkingUs: number, restoreUs: number, run: RestoreRun): void {
  writeImage(dir, IMG.stats, "restore", [{
    restore: { pages_compared: 0n, pages_skipped_cow: 0n, forking_time: forkingUs, restore_time: restoreUs, pages_restored: BigInt(run.stats.pagesRestored) },
  }]);
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
