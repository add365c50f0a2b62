// What a kind sees while it dumps or restores one task, and the interface a
// kind implements. The pipelines own these objects; kinds fill (dump) or
// read (restore) the image entries in them.
import type { Logger } from "../log.js";
import type { Options } from "../options.js";
import type { Remote } from "../remote/remote.js";
import type { Tracee } from "../remote/tracee.js";
import type { Regs } from "../sys/structs.js";
import type {
  core_entry, fdinfo_entry, file_entry, fs_entry, mm_entry, pagemap_entry, seccomp_filter,
  task_kobj_ids_entry,
} from "../images/index.js";
import type { SmapsEntry } from "../proc/index.js";

/** Counters that end up in stats-dump / stats-restore. */
export interface Stats {
  pagesScanned: number;
  pagesWritten: number;
  shpagesScanned: number;
  shpagesWritten: number;
  pagesRestored: number;
  /** Restore: pages of a child compared with what it inherited from its parent, and those found equal (left shared). */
  pagesCompared: number;
  pagesSkippedCow: number;
  /** µs spent reading memory out of tasks, and writing it to images. */
  memdumpUs: number;
  memwriteUs: number;
}

export const newStats = (): Stats => ({
  pagesScanned: 0, pagesWritten: 0, shpagesScanned: 0, shpagesWritten: 0, pagesRestored: 0,
  pagesCompared: 0, pagesSkippedCow: 0, memdumpUs: 0, memwriteUs: 0,
});

/** State of one dump run, shared by all tasks. */
export interface DumpRun {
  opts: Options;
  log: Logger;
  /** The images directory. */
  dir: string;
  /** files.img, in id order. */
  files: file_entry[];
  /** seccomp.img filters; indexes are what thread_core_entry.seccomp_filter refers to. */
  seccomp: seccomp_filter[];
  stats: Stats;
  /** Shared memory objects (by shmid) already written. */
  shmemDumped: Set<bigint>;
  /** Open file descriptions seen so far in any task, to find the ones several fds (or tasks) share. */
  descriptions: DumpedDescription[];
  /** fd tables (files_id) already dumped: a task sharing one has nothing more to add. */
  fdTables: Set<number>;
  /** Images of whole-run objects (pipe data, ...) that kinds queue to be written with the others. */
  deferred: Array<() => void>;
  /** What kinds keep for the whole run (objects already dumped, lists of entries), by key. */
  objects: Map<string, unknown>;
  /** Hands out ids for files.img entries, pages-N.img and the kobj ids. */
  nextId(kind: "file" | "pages" | "kobj"): number;
}

/** An open file description already in files.img, and one fd that refers to it. */
export interface DumpedDescription {
  id: number;
  pid: number;
  fd: number;
  dev: number;
  ino: number;
}

/** One task being dumped. Its threads are stopped and under remote control. */
export interface DumpTask {
  /** The PID crest sees (and traces). */
  pid: number;
  /** PIDs as the tree's own PID namespace sees them: what the images hold. */
  vpid: number;
  vppid: number;
  vpgid: number;
  vsid: number;
  /** Thread ids in the tree's PID namespace, leader first. */
  vtids: number[];
  /** Dead, waiting for its parent: only its exit status is dumped. */
  zombie: boolean;
  /** Leader first. */
  threads: Tracee[];
  /** One remote-control session per thread, same order; they share one scratch mapping. */
  remotes: Remote[];
  /** The task's mappings, read before crest mapped anything into it. */
  vmas: SmapsEntry[];
  /** core-TID.img entries, one per thread, same order. */
  core: core_entry[];
  ids: task_kobj_ids_entry;
  mm?: mm_entry;
  pagemap: pagemap_entry[];
  pagesId: number;
  fs?: fs_entry;
  fdinfo: fdinfo_entry[];
}

/** State of one restore run. */
export interface RestoreRun {
  opts: Options;
  log: Logger;
  dir: string;
  /** files.img entries by id. */
  files: Map<number, file_entry>;
  seccomp: seccomp_filter[];
  stats: Stats;
  /** Open file descriptions already recreated: files.img id -> a task (its vpid) and an fd there holding it. */
  opened: Map<number, { vpid: number; fd: number }>;
  /** fds held only to hand a description to another task (the other end of a pipe); closed before release. */
  transient: Array<{ task: RestoreTask; fd: number }>;
  /** Whole-run images a kind has read (pipe data, ...), by kind. */
  cache: Map<string, unknown>;
  /** Last steps once every task's kinds have run (memfd seals), before the tasks are let go. */
  finishing: Array<() => void>;
  /** What crest itself holds during the restore (a FIFO kept open so opens do not block), undone at the end. */
  cleanup: Array<() => void>;
}

/** What a thread gets back last, right before it is let go. */
export interface FinalThreadState {
  regs: Regs;
  xstate: Buffer;
  sigmask: bigint;
  /** Memory to write after the last injected syscall (the kernel may change it while crest drives the thread). */
  memoryWrites: Array<{ addr: bigint; data: Buffer }>;
}

/** One task being restored: a stub being turned into the dumped task. */
export interface RestoreTask {
  /** The PID crest sees (0 until the stub exists). */
  pid: number;
  /** Its PID in the tree's own PID namespace, as the images name it. */
  vpid: number;
  /** Thread ids in the tree's PID namespace, leader first. */
  vtids: number[];
  /** Created with CLONE_FILES / CLONE_FS from its parent: that one restores them. */
  sharesFiles: boolean;
  sharesFs: boolean;
  /**
   * The parent task, whose restored memory this one was forked from (its
   * private mappings are inherited copy-on-write); null for the root, or a
   * parent that is not a task.
   */
  parent: RestoreTask | null;
  threads: Tracee[];
  remotes: Remote[];
  core: core_entry[];
  ids: task_kobj_ids_entry;
  mm: mm_entry;
  pagemap: pagemap_entry[];
  pagesId: number;
  fs: fs_entry;
  fdinfo: fdinfo_entry[];
  /** Filled by the kinds, applied by the pipeline when the task is released. */
  final: FinalThreadState[];
}

/**
 * A kernel object kind: how it is taken out of a task and put back. Kinds
 * run in registry order on dump and restore (see kinds/index.ts).
 */
export interface TaskKind {
  readonly name: string;
  dump?(task: DumpTask, run: DumpRun): void;
  restore?(task: RestoreTask, run: RestoreRun): void;
}

/** An object crest does not handle yet: the dump stops and says what and where. */
/** What the run computes once under `key` (an image read whole, a table built from several), kept in run.cache. */
export function once<T>(run: RestoreRun, key: string, make: () => T): T {
  if (!run.cache.has(key)) run.cache.set(key, make());
  return run.cache.get(key) as T;
}

export class UnsupportedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UnsupportedError";
  }
}
