// The interface every kind of open file implements (regular files, pipes,
// later sockets, ...): how the description an fd refers to is dumped into
// files.img, and recreated in a task at restore.
import type { Stats } from "node:fs";
import type { DumpRun, RestoreRun, RestoreTask } from "../context.js";
import type { fd_types, file_entry, fown_entry } from "../../images/index.js";
import type { Fdinfo, FdLink } from "../../proc/index.js";
import type { Remote } from "../../remote/remote.js";
import { F, O, SYS } from "../../sys/constants.js";

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

export interface FileKind {
  readonly name: string;
  /** fd_types value of its file_entry. */
  readonly type: fd_types;
  claims(f: FdFacts): boolean;
  /** Adds the description to files.img (and whatever else it needs) and returns its id. */
  dump(f: FdFacts, run: DumpRun): number;
  /**
   * Recreates the description in the task and returns the task's fd holding
   * it. Any other fd the kind must keep (another end of a pipe, for another
   * task) goes through `park`, which moves it above every fd the task will
   * use and returns its new number.
   */
  open(r: Remote, task: RestoreTask, run: RestoreRun, entry: file_entry, park: (fd: number) => number): number;
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
