// The one model of what the user asked for. The command line, configuration
// files, RPC requests and the library API all fill an Options.
import { isAbsolute, join } from "node:path";
import { DEFAULT_LOG_LEVEL } from "./log.js";

/** criu's DEFAULT_GHOST_LIMIT: 1 MiB. */
export const DEFAULT_GHOST_LIMIT = 1 << 20;

export type Command =
  | "dump" | "pre-dump" | "restore" | "check" | "service" | "swrk" | "page-server"
  | "lazy-pages" | "dedup" | "cpuinfo" | "exec" | "show";

export interface Options {
  command: Command;
  /** -t/--tree: root of the tree to dump. */
  tree?: number;
  /** -D/--images-dir */
  imagesDir: string;
  /** -W/--work-dir: where the log and other relative outputs go (defaults to imagesDir). */
  workDir?: string;
  /** -o/--log-file, relative to workDir. */
  logFile?: string;
  /** -v[N] */
  logLevel: number;
  /** -R/--leave-running */
  leaveRunning: boolean;
  /** -s/--leave-stopped */
  leaveStopped: boolean;
  /** -d/--restore-detached */
  restoreDetached: boolean;
  /** --pidfile: restore writes the restored root's PID there (dump leaves it alone). */
  pidfile?: string;
  /** -S/--restore-sibling: the restored root becomes a sibling of crest (a child of crest's parent). */
  restoreSibling: boolean;
  /** --timeout N: seconds the dump may spend freezing the tree. */
  timeout?: number;
  /** --display-stats: print the dump/restore statistics at the end. */
  displayStats: boolean;
  /** --log-pid: the log file name gets ".PID" appended. */
  logPid: boolean;
  /** --status-fd FD: a byte is written there when the restored tree is ready (then the fd is closed). */
  statusFd?: number;
  /** --action-script (repeatable): run for each hook with CRTOOLS_SCRIPT_ACTION set. */
  actionScripts: string[];
  /** --pre-dump-mode splice|read: how pre-dump copies memory (accepted for criu's callers). */
  preDumpMode?: "splice" | "read";
  /** check: --all (extra and experimental features too). */
  checkAll: boolean;
  /** check: --extra. */
  checkExtra: boolean;
  /** check: --experimental. */
  checkExperimental: boolean;
  /** check: --feature NAME (or "list"). */
  feature?: string;
  /** --no-default-config was given: /etc/criu/default.conf and ~/.criu/default.conf are not read. */
  noDefaultConfig: boolean;
  /** --config FILE, read after the default configuration files. */
  configFile?: string;
  /** --ghost-limit SIZE: the largest deleted file (in bytes on disk) a dump keeps in a ghost image. */
  ghostLimit: number;
  /** -l/--file-locks: dump and restore the file locks the tree holds (refused without it). */
  fileLocks: boolean;
}

/** Resolves a path given on the command line the way criu does: relative to the work directory. */
export function workPath(opts: Options, p: string): string {
  return isAbsolute(p) ? p : join(opts.workDir ?? opts.imagesDir, p);
}

export function defaultOptions(command: Command): Options {
  return {
    command,
    imagesDir: ".",
    logLevel: DEFAULT_LOG_LEVEL,
    leaveRunning: false,
    leaveStopped: false,
    restoreDetached: false,
    restoreSibling: false,
    displayStats: false,
    logPid: false,
    actionScripts: [],
    checkAll: false,
    checkExtra: false,
    checkExperimental: false,
    noDefaultConfig: false,
    ghostLimit: DEFAULT_GHOST_LIMIT,
    fileLocks: false,
  };
}
