// The crest command: parse the command line into Options, run the command,
// log as criu does and exit with criu's exit codes.
import { mkdirSync, readFileSync } from "node:fs";
import { Logger } from "../log.js";
import { COMMANDS, IMPLEMENTED, parseArgs, UsageError } from "./args.js";
import type { Command } from "../options.js";
import { dump } from "../dump/dump.js";
import { restore, workPath } from "../restore/restore.js";
import { projectRoot } from "../sys/native.js";
import { parseRun, run, RUN_USAGE } from "./run.js";

const USAGE = `Usage:
  crest dump|pre-dump -t PID [<options>]
  crest restore [<options>]
  crest run [--ns pid,ipc,uts] [--log FILE] -- CMD [ARGS...]
  crest check [--feature FEAT]
  crest page-server
  crest service [<options>]
  crest dedup
  crest lazy-pages -D DIR [<options>]

Commands:
  dump           checkpoint a process/tree identified by pid
  restore        restore a process/tree
  run            start CMD as the root of a tree ready to checkpoint (own PID/IPC namespaces, own session)
  (pre-dump, check, service, swrk, page-server, lazy-pages, dedup, cpuinfo: not implemented yet)

Dump/Restore options:
  -t|--tree PID         checkpoint a process tree identified by PID
  -D|--images-dir DIR   directory for image files
  -W|--work-dir DIR     directory to cd and write logs/pidfiles/stats to (default: images dir)
  -o|--log-file FILE    log file name (relative to the work dir)
  -v[v...]|-vNUM        set logging level (0 .. 4, default 2)
  -R|--leave-running    leave tasks in running state after checkpoint
  -s|--leave-stopped    leave tasks in stopped state after checkpoint
  -d|--restore-detached detach after restore
  --pidfile FILE        write the root task's PID to FILE after restore
`;

/** crest run: not a criu command, so it has its own small command line. */
function runMain(args: string[]): number {
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(RUN_USAGE);
    return 0;
  }
  try {
    process.stdout.write(`${run(parseRun(args))}\n`);
    return 0;
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${e instanceof UsageError ? RUN_USAGE : ""}`);
    return 1;
  }
}

function version(): string {
  const pkg = JSON.parse(readFileSync(`${projectRoot}package.json`, "utf8")) as { version: string };
  return `crest ${pkg.version} (CRIU-compatible checkpoint/restore, images v1.1)`;
}

export function main(argv: string[]): number {
  if (argv[0] === "run") return runMain(argv.slice(1));
  let parsed;
  try {
    parsed = parseArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`crest: ${e.message}\nTry 'crest --help' for more information.\n`);
    return 1;
  }
  if (parsed.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (parsed.version) {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const cmd = parsed.command;
  if (!cmd) {
    process.stderr.write(`crest: no command given\n${USAGE}`);
    return 1;
  }
  if (!COMMANDS.includes(cmd as Command)) {
    process.stderr.write(`crest: unknown command '${cmd}'\nTry 'crest --help' for more information.\n`);
    return 1;
  }
  if (!IMPLEMENTED.has(cmd as Command)) {
    process.stderr.write(`crest: '${cmd}' is not implemented by crest yet\n`);
    return 1;
  }
  const opts = parsed.options;
  let log: Logger;
  try {
    // A dump creates its images directory (and the work directory it logs to).
    if (cmd === "dump") mkdirSync(opts.workDir ?? opts.imagesDir, { recursive: true });
    log = new Logger(opts.logLevel, opts.logFile ? workPath(opts, opts.logFile) : undefined);
  } catch (e) {
    process.stderr.write(`crest: cannot open the log file: ${(e as Error).message}\n`);
    return 1;
  }
  try {
    if (cmd === "dump") {
      dump(opts, log);
      log.info("Dumping finished successfully");
      return 0;
    }
    const r = restore(opts, log);
    return r.exitCode ?? 0;
  } catch (e) {
    const err = e as Error;
    log.error(err.message);
    if (log.debugOn && err.stack) log.debug(err.stack);
    log.error(cmd === "dump" ? "Dumping FAILED." : "Restoring FAILED.");
    return 1;
  } finally {
    log.close();
  }
}
