// Action scripts (--action-script): criu's hooks, run at fixed points of a
// dump or restore with CRTOOLS_SCRIPT_ACTION naming the hook,
// CRTOOLS_IMAGE_DIR a path to the images directory through an fd crest holds
// open, and CRTOOLS_INIT_PID the root's PID once it is known. As in criu,
// the scripts run in the reverse order of the command line, and one that
// fails fails the operation (except after the tasks are let go). An RPC
// client that asked for notifications (notify_scripts) is told of each hook
// first and must answer before crest goes on, as criu's RPC mode does.
import { spawnSync } from "node:child_process";
import { closeSync, openSync, writeSync, constants as fsc } from "node:fs";
import type { Logger } from "../log.js";
import type { Options } from "../options.js";

export type Hook =
  | "pre-dump" | "post-dump" | "pre-restore" | "setup-namespaces" | "post-setup-namespaces"
  | "post-restore" | "pre-resume" | "post-resume" | "network-lock" | "network-unlock" | "query-ext-files"
  | "orphan-pts-master" | "status-ready";

/**
 * Tells an RPC client of a hook (criu's NOTIFY, with the root's PID where
 * criu sends it, and a file descriptor passed along for orphan-pts-master)
 * and waits for its answer; throws if the client says it failed. Returns
 * what the client answered with (query-ext-files: the external objects it
 * adds).
 */
export type Notifier = (hook: Hook, pid?: number, fd?: number) => { external: string[] };

/** criu sends the root's PID with these two hooks only. */
const WITH_PID: ReadonlySet<Hook> = new Set<Hook>(["setup-namespaces", "post-restore"]);

export class ActionScripts {
  private dirFd = -1;
  /** The root's PID, once known. */
  rootPid?: number;

  constructor(private readonly scripts: readonly string[], private readonly imagesDir: string, private readonly log: Logger,
    private readonly notify?: Notifier) {}

  /** Tells the RPC client, then runs every script for `hook`; throws if either fails. */
  run(hook: Hook): void {
    this.notify?.(hook, WITH_PID.has(hook) ? this.rootPid : undefined);
    if (!this.scripts.length) return;
    if (this.dirFd < 0) this.dirFd = openSync(this.imagesDir, fsc.O_RDONLY | fsc.O_DIRECTORY);
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      CRTOOLS_SCRIPT_ACTION: hook,
      CRTOOLS_IMAGE_DIR: `/proc/${process.pid}/fd/${this.dirFd}`,
      ...(this.rootPid ? { CRTOOLS_INIT_PID: String(this.rootPid) } : {}),
    };
    this.log.debug(`Running ${hook} scripts`);
    const failed: string[] = [];
    for (const script of [...this.scripts].reverse()) {
      const r = spawnSync(script, [], { env, stdio: ["ignore", "inherit", "inherit"] });
      const code = r.error ? `${r.error.message}` : r.status !== null ? `exit code ${r.status}` : `signal ${r.signal}`;
      if (r.error || r.status !== 0) {
        this.log.error(`Script ${script} exited with ${code}`);
        failed.push(`${script} (${code})`);
      }
    }
    if (failed.length) throw new Error(`the ${hook} action script failed: ${failed.join(", ")}`);
  }

  /** Dump: the external objects an RPC client adds when asked (criu's query-ext-files); none without a client. */
  queryExternal(): string[] {
    return this.notify?.("query-ext-files").external ?? [];
  }

  /** Like run, but a failure is only logged (the tasks are already running). */
  runLate(hook: Hook): void {
    try {
      this.run(hook);
    } catch (e) {
      this.log.error((e as Error).message);
    }
  }

  close(): void {
    if (this.dirFd >= 0) closeSync(this.dirFd);
    this.dirFd = -1;
  }
}

/**
 * As criu's status_ready, once a page server, lazy-pages daemon or service
 * is ready for its peer: the status-ready action scripts, then a byte to
 * --status-fd, which is closed. A failing script fails the command.
 */
export function statusReady(opts: Options, log: Logger): void {
  new ActionScripts(opts.actionScripts, opts.images.dir, log).run("status-ready");
  const fd = opts.restore.statusFd;
  if (fd === undefined) return;
  writeSync(fd, Buffer.of(0));
  closeSync(fd);
}
