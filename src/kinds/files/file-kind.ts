// The interface every kind of open file implements (regular files, pipes,
// later sockets, ...): how the description an fd refers to is dumped into
// files.img, and recreated in a task at restore.
import type { Stats } from "node:fs";
import type { DumpRun, RestoreRun, RestoreTask } from "../context.js";
import type { fd_types, file_entry, fown_entry } from "../../images/index.js";
import type { Fdinfo, FdLink } from "../../proc/index.js";
import type { Pending, Remote } from "../../remote/remote.js";
import { F, O, SYS } from "../../sys/constants.js";
import type { Waiting } from "./open-queue.js";

/** What is known of one fd of a task being dumped. */
export interface FdFacts {
  pid: number;
  fd: number;
  /** The /proc/PID/fd/N link, and what it names. */
  text: string;
  link: FdLink;
  /** /proc/PID/fd/N: reaches the file even where its path does not. */
  via: string;
  st: Stats;
  info: Fdinfo;
  /** "fd 3 of process 42", for messages. */
  what: string;
  /** The owner of the file's async I/O signals. */
  fown: fown_entry;
  /**
   * For a file in flight (`pid` is crest's, holding a copy): the task whose
   * fd numbers the file's own fd numbers refer to (an epoll's targets), the
   * task whose socket's queue carried it.
   */
  table?: number;
}

/** What a task under restore needs to recreate one description. */
export interface OpenContext {
  r: Remote;
  task: RestoreTask;
  run: RestoreRun;
  /**
   * Moves an fd of the task above every fd number its table will have, so
   * placing the table's fds never closes it, and returns its new number:
   * for fds a kind keeps to hand to another task (the other end of a pipe).
   */
  park(fd: number): number;
}

/** What a kind may ask of the fd table while it dumps a description. */
export interface HeldFiles {
  /**
   * Dumps a description crest holds a copy of at its own fd `fd` (a file in
   * flight in a socket's queue, which the peek gave crest) as any task's fd,
   * deduplicated against every description seen (kcmp). It runs once the
   * description being dumped is recorded, so a socket passed over itself
   * finds itself; `then` gets the files.img id. The fd table owns the copy
   * from here and closes it at the end of the dump. `what` names it.
   */
  dumpHeld(fd: number, what: string, then: (id: number) => void): void;
}

/** How a restore may take a description from crest's caller (--inherit-fd fd[N]:KEY) instead of recreating it. */
export interface InheritKey {
  /** criu's key: pipe:[INO], socket:[INO], a path without its leading '/' ('.' for the root). */
  key: string;
  /** Open flags to reopen the given file with through /proc (each end of a pipe its own), rather than use it as it is. */
  reopen?: number;
}

export interface FileKind {
  readonly name: string;
  /** fd_types value of its file_entry. */
  readonly type: fd_types;
  claims(f: FdFacts, run: DumpRun): boolean;
  /** Restore: whether an entry of its type is this kind's, where kinds share a type (an mqueue fd is a REG entry); all are when absent. */
  owns?(entry: file_entry): boolean;
  /** Restore, before any task exists: checks what the kind needs of the images and options. */
  plan?(run: RestoreRun): void;
  /** Adds the description to files.img (and whatever else it needs) and returns its id. */
  dump(f: FdFacts, run: DumpRun, held: HeldFiles): number;
  /** Once every task is dumped: writes the whole-run images the kind gathered. */
  finishDump?(run: DumpRun): void;
  /**
   * Recreates the description in the task and returns the task's fd
   * holding it (or that fd to come, from a queued call), or says which
   * description it needs open first (a socket's
   * peer, a pty's master): the fd table tries it again once that one is.
   */
  open(c: OpenContext, entry: file_entry): number | Pending | Waiting;
  /** The description's key for --inherit-fd, if it can be given by crest's caller (criu's file_desc_ops.name). */
  inheritKey?(entry: file_entry, run: RestoreRun): InheritKey | undefined;
  /**
   * Descriptions (files.img ids) this one carries in flight: files passed in
   * a unix socket's queue. The fd table opens those that no fd of any task
   * refers to in the task that opens this one, and holds them until the end.
   */
  carries?(entry: file_entry, run: RestoreRun): number[];
  /** The owner of the description's async I/O signals, as dumped. */
  fown(entry: file_entry, run: RestoreRun): fown_entry | undefined;
  /** Once every description of every task is open and in place: what needs other fds (an epoll's targets). */
  settle?(c: OpenContext, entry: file_entry, fd: number): void;
  /** Once every stage of every task has run, before the tasks are let go (memfd seals, ghosts removed). */
  finishRestore?(run: RestoreRun): void;
  /** The last step before the tasks run (TaskKind.resume): connections out of repair mode. */
  resume?(run: RestoreRun): void;
}

/** Claims fds whose link is anon_inode:[NAME] (eventfd, signalfd, timerfd, pidfd, eventpoll). */
export const isAnon = (name: string) => (f: FdFacts): boolean => f.link.kind === "anon" && f.link.name === name;

/**
 * Sets O_ASYNC (the only other status flag these files keep) where the
 * description had it; O_NONBLOCK is given to the call that creates them.
 */
export function setAsync(r: Remote, fd: number, flags: number, what: string): void {
  if (flags & O.ASYNC) r.call(`set the flags of ${what}`, SYS.fcntl, fd, F.SETFL, flags & (O.ASYNC | O.NONBLOCK));
}
