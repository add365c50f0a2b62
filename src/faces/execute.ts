// What every face does once it has Options: refuse what crest cannot do yet,
// run dump, restore or check, and log the outcome as criu does (the log's
// last line says "Dumping finished successfully" or "Dumping FAILED.", an
// error is one line saying where in crest it was raised). The command line,
// the RPC service and the library API call it; none runs a pipeline itself.
import type { Logger } from "../log.js";
import { unsupported, type Options } from "../options.js";
import { dump } from "../pipelines/dump/dump.js";
import { preDump } from "../pipelines/dump/pre-dump.js";
import { restore } from "../pipelines/restore/restore.js";
import type { RunHooks } from "../pipelines/hooks.js";
import { check } from "./check.js";
import { errorOrigin } from "./cli/origin.js";

export type Executed = "dump" | "pre-dump" | "restore" | "check";

export interface Outcome {
  /** criu's exit code: 0, 1, or (a foreground restore) the restored root's. */
  code: number;
  /** Why it failed: what the face reports (RPC's cr_errmsg, the API's error). */
  error?: Error;
  /** restore: the restored root's PID. */
  pid?: number;
}

/** Runs one command; never throws (every failure is logged and returned). */
export function execute(cmd: Executed, opts: Options, refused: readonly string[], log: Logger, hooks: RunHooks = {}): Outcome {
  const failed = cmd === "dump" ? "Dumping FAILED." : cmd === "pre-dump" ? "Pre-dumping FAILED." : cmd === "restore" ? "Restoring FAILED." : null;
  const reasons = [...refused, ...unsupported(opts)];
  if (reasons.length) {
    for (const why of reasons) log.error(why);
    if (failed) log.error(failed);
    return { code: 1, error: new Error(reasons.join("; ")) };
  }
  try {
    if (cmd === "check") {
      const code = check(opts, log);
      return code ? { code, error: new Error("crest check found kernel features missing") } : { code };
    }
    if (cmd === "dump") {
      if (opts.restore.statusFd !== undefined && !opts.restore.lazyPages) log.warn("--status-fd is not used by dump (criu and crest signal it on restore, page-server and lazy-pages)");
      dump(opts, log, hooks);
      log.info("Dumping finished successfully");
      return { code: 0 };
    }
    if (cmd === "pre-dump") {
      preDump(opts, log, hooks);
      log.info("Pre-dumping finished successfully");
      return { code: 0 };
    }
    const r = restore(opts, log, hooks);
    return { code: r.exitCode ?? 0, pid: r.pid };
  } catch (e) {
    const err = e as Error;
    // One line, as criu's: what went wrong and where in crest, no stack.
    log.error(err.message, errorOrigin(err));
    if (failed) log.error(failed);
    return { code: 1, error: err };
  }
}
