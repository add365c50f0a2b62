// The interface every kind of open file implements (regular files, pipes,
// later sockets, ...): how the description an fd refers to is dumped into
// files.img, and recreated in a task at restore.
import type { Stats } from "node:fs";
import type { DumpRun, RestoreRun, RestoreTask } from "../context.js";
import type { fd_types, file_entry, fown_entry } from "../../images/index.js";
import type { Fdinfo, FdLink } from "../../proc/index.js";
import type { Remote } from "../../remote/remote.js";
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

export interface FileKind {
  readonly name: string;
  /** fd_types value of its file_entry. */
  readonly type: fd_types;
  claims(f: FdFacts, run: DumpRun): boolean;
  /** Restore, before any task exists: checks what the kind needs of the images and options. */
  plan?(run: RestoreRun): void;
  /** Adds the description to files.img (and whatever else it needs) and returns its id. */
  dump(f: FdFacts, run: DumpRun): number;
  /** Once every task is dumped: writes the whole-run images the kind gathered. */
  finishDump?(run: DumpRun): void;
  /**
   * Recreates the description in the task and returns the task's fd
   * holding it, or says which description it needs open first (a socket's
   * peer, a pty's master): the fd table tries it again once that one is.
   */
  open(c: OpenContext, entry: file_entry): number | Waiting;
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
