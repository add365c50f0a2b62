// The one model of what the user asked for. The command line, configuration
// files, RPC requests and the library API all fill an Options.
import { DEFAULT_LOG_LEVEL } from "./log.js";

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
  /** --pidfile: restore writes the restored root's PID there. */
  pidfile?: string;
}

export function defaultOptions(command: Command): Options {
  return {
    command,
    imagesDir: ".",
    logLevel: DEFAULT_LOG_LEVEL,
    leaveRunning: false,
    leaveStopped: false,
    restoreDetached: false,
  };
}
