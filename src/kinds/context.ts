// What a kind sees while it dumps or restores, and the interface a kind
// implements. The pipelines own these objects; kinds fill (dump) or read
// (restore) the image entries in them, reach images only through the run's
// image store, and keep whatever they need for the whole run in a typed
// state of their own (run.state).
import type { ChainPages } from "./memory/chain.js";
import type { ParentTracking } from "./memory/tracking.js";
import type { Logger } from "../log.js";
import type { Options } from "../options.js";
import type { Remote } from "../remote/remote.js";
import type { Tracee } from "../remote/tracee.js";
import type { Regs } from "../sys/structs.js";
import type { DumpImages, RestoreImages } from "../images/store.js";
import type {
  core_entry, fdinfo_entry, file_entry, fs_entry, inventory_entry, mm_entry, pagemap_entry, PagemapRuns, task_kobj_ids_entry,
} from "../images/index.js";
import type { Fdinfo, ProcStat, ProcStatus, SmapsEntry } from "../proc/index.js";

/** Counters that end up in stats-dump / stats-restore. */
export interface Stats {
  pagesScanned: number;
  pagesWritten: number;
  shpagesScanned: number;
  shpagesWritten: number;
  pagesRestored: number;
  /** Dump: pages left in the parent images (unchanged since a pre-dump). */
  pagesSkippedParent: number;
  /** Dump --lazy-pages: pages left in the tasks, for the restore side's lazy-pages daemon to fetch (PE_LAZY alone). */
  pagesLazy: number;
  /** Restore: pages of a child compared with what it inherited from its parent, and those found equal (left shared). */
  pagesCompared: number;
  pagesSkippedCow: number;
  /** µs spent reading memory out of tasks, and writing it to images. */
  memdumpUs: number;
  memwriteUs: number;
}

export const newStats = (): Stats => ({
  pagesScanned: 0, pagesWritten: 0, shpagesScanned: 0, shpagesWritten: 0, pagesRestored: 0, pagesSkippedParent: 0, pagesLazy: 0,
  pagesCompared: 0, pagesSkippedCow: 0, memdumpUs: 0, memwriteUs: 0,
});

/**
 * The key of a state a module keeps for one run: what it has dumped already,
 * the entries of a whole-run image it gathers, objects it has recreated.
 * `create` makes it the first time the run is asked for it.
 */
export interface StateKey<S, R> {
  readonly name: string;
  readonly create: (run: R) => S;
}

export const dumpState = <S>(name: string, create: (run: DumpRun) => S): StateKey<S, DumpRun> => ({ name, create });
export const restoreState = <S>(name: string, create: (run: RestoreRun) => S): StateKey<S, RestoreRun> => ({ name, create });

/** The states of one run, one per key, made on first use. */
export class RunStates<R> {
  private readonly made = new Map<StateKey<unknown, R>, unknown>();

  constructor(private readonly run: () => R) {}

  of<S>(key: StateKey<S, R>): S {
    if (!this.made.has(key)) this.made.set(key, key.create(this.run()));
    // The map holds, for each key, what that key's create made.
    return this.made.get(key) as S;
  }
}

interface RunBase {
  opts: Options;
  /** Runs criu's action scripts of a hook a kind reaches (the network lock of a tree's own network namespace); throws if one fails. */
  script(hook: "network-lock" | "network-unlock"): void;
  /** The log of the task being worked on (the pipeline switches it per task on restore). */
  log: Logger;
  stats: Stats;
}

/** State of one dump run, shared by all tasks. */
export interface DumpRun extends RunBase {
  images: DumpImages;
  /** files.img, in id order. */
  files: file_entry[];
  /** The tree's root: the task whose namespaces are the tree's own. */
  root: DumpTask;
  /** The tree's tasks, root first (a kind finds a task's namespace ids here). */
  tasks: readonly DumpTask[];
  /** Every PID and TID of the tree's tasks, as crest sees them. */
  treeTids: ReadonlySet<number>;
  /** Namespace kinds the tree's root has of its own (differing from crest's). */
  ownNamespaces: ReadonlySet<string>;
  /** The kobj ids of the tree's tasks' namespaces (their *_ns_id), by link ("net:[4026531840]"). */
  namespaceIds: ReadonlyMap<string, number>;
  /** Hands out ids for files.img entries, pages-N.img and the kobj ids. */
  nextId(kind: "file" | "pages" | "kobj"): number;
  /**
   * What the kinds did to objects the tree keeps using (connections put in
   * repair mode, the network locked), undone, last first, when the tree
   * runs on: the dump failed, or -R/-s leaves it alive. A tree that is
   * killed keeps them so.
   */
  undo: Array<() => void>;
  /** Undone, last first, only when the dump fails (after `undo`): what a dump that succeeds keeps. */
  failed: Array<() => void>;
  /** Fields the kinds add to inventory.img (the network lock a restore must lift). */
  inventory: Partial<inventory_entry>;
  /** --prev-images-dir with --track-mem: the parent images and the tracking since, opened before the freeze. */
  parent: ParentTracking | null;
  state<S>(key: StateKey<S, DumpRun>): S;
}

/** One fd of a task as the dump found it, for the kinds that look at fds after the fd table (file locks). */
export interface DumpedFd {
  fd: number;
  /** files.img id of its description. */
  id: number;
  info: Fdinfo;
  /** An earlier fd (of this or another task) refers to the same description. */
  shared: boolean;
  /** "fd 3 of process 42 (/tmp/x)", for messages. */
  what: string;
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
  /**
   * /proc/PID/task/TID/status of each thread (same order) and the leader's
   * /proc/PID/stat, read once as the tree was frozen: ids, capabilities,
   * seccomp, umask, namespaces' ids. Not the signal masks (crest sets them).
   */
  status: ProcStatus[];
  stat: ProcStat;
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
  pagemap: PagemapRuns;
  pagesId: number;
  fs?: fs_entry;
  fdinfo: fdinfo_entry[];
  /** Its fds as dumped (empty for a task sharing its parent's fd table). */
  fds: DumpedFd[];
}

/** An open file description recreated in some task: the task and an fd there that holds it. */
export interface HeldFile {
  task: RestoreTask;
  fd: number;
}

/** State of one restore run. */
export interface RestoreRun extends RunBase {
  images: RestoreImages;
  inventory: inventory_entry;
  /** files.img entries by id. */
  files: Map<number, file_entry>;
  /** Every live task, in tree order, root first. */
  tasks: RestoreTask[];
  /** Open file descriptions already recreated, by files.img id. */
  opened: Map<number, HeldFile>;
  /** fds held only to hand a description to another task (the other end of a pipe); closed before release. */
  transient: Array<{ task: RestoreTask; fd: number }>;
  /** What crest itself holds during the restore (a FIFO kept open so opens do not block), undone at the end, on success or failure. */
  cleanup: Array<() => void>;
  /**
   * Hands a pty master to the RPC client (criu's orphan-pts-master
   * notification, the fd passed with it); absent without a client that takes
   * notifications.
   */
  giveOrphanPtsMaster?: (fd: number) => void;
  state<S>(key: StateKey<S, RestoreRun>): S;
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
  /** Session and process group, as restored (a shell job's outside session is crest's own, -j). */
  sid: number;
  pgid: number;
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
  /** Its pagemap entries here (pagemap-PID.img, pages-ID.img). */
  pagemap: pagemap_entry[];
  pagesId: number;
  /** Its pages across the image chain: each pages file read, and every run (chain.ts). */
  pages: ChainPages;
  fs: fs_entry;
  fdinfo: fdinfo_entry[];
  /** Filled by the kinds, applied by the pipeline when the task is released. */
  final: FinalThreadState[];
}

/**
 * A kernel object kind: how it is taken out of a task and put back. The
 * pipelines run the kinds in registry order (kinds/registry.ts), each hook
 * at its stage.
 */
export interface TaskKind {
  readonly name: string;
  /** Dump: takes the kind's objects out of one task (its threads stopped and under remote control). */
  dump?(task: DumpTask, run: DumpRun): void;
  /** Dump: once every task is dumped, writes the whole-run images the kind gathered. */
  finishDump?(run: DumpRun): void;
  /**
   * Restore, before any task exists: checks what the kind needs of the
   * images and returns the CLONE_NEW* flags the root must be created with.
   */
  plan?(run: RestoreRun): number;
  /** Restore: right after the task is created and before its children are, which inherit what it did (memory). */
  born?(task: RestoreTask, run: RestoreRun): void;
  /** Restore, once the whole tree exists: one task, for every task in tree order. */
  restore?(task: RestoreTask, run: RestoreRun): void;
  /** Restore: the same stage for every task at once, for objects that tie tasks together (the fd tables). */
  restoreAll?(tasks: readonly RestoreTask[], run: RestoreRun): void;
  /** Restore: once every stage has run in every task, before the tasks are let go. */
  finishRestore?(run: RestoreRun): void;
  /**
   * Restore: the very last step before the tasks run, once every script
   * and the pidfile are done: what cannot be undone by killing the tree
   * (the network unlocked, connections out of repair mode).
   */
  resume?(run: RestoreRun): void;
}

/** An object crest does not handle yet: the dump stops and says what and where. */
export class UnsupportedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UnsupportedError";
  }
}
