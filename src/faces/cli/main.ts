// The crest command: parse the command line into Options, run the command,
// log as criu does and exit with criu's exit codes.
import { pageServerMain } from "../page-server.js";
import { lazyPagesMain } from "../lazy-pages.js";
import { mkdirSync, readFileSync } from "node:fs";
import { Logger } from "../../log.js";
import { COMMANDS, IMPLEMENTED, parseArgs, UsageError } from "./args.js";
import { workPath, type Command, type Options } from "../../options.js";
import { ConfigError, SYSTEM_CONFIG_ENV } from "./config.js";
import { execute } from "../execute.js";
import { inspectMain } from "../inspect.js";
import { dedup } from "../../pipelines/dump/dump.js";
import { serveConnection, swrk } from "../rpc/session.js";
import { daemonize, service } from "../rpc/service.js";
import { projectRoot } from "../../sys/native.js";
import { parseRun, run, RUN_USAGE } from "./run.js";
import { critMain } from "../crit/cli.js";

/** The criu release whose command line, images and RPC crest follows. */
const CRIU_VERSION = "4.2";

const USAGE = `
Usage:
  crest dump|pre-dump -t PID [<options>]
  crest restore [<options>]
  crest check [--feature FEAT]
  crest page-server -D DIR [--address A] [--port P] [-d] [--pidfile F] [--lazy-pages]
  crest service [--address PATH] [--pidfile FILE] [-d] [<options>]
  crest swrk FD
  crest dedup -D DIR
  crest lazy-pages -D DIR [-W DIR] [-d] [--pidfile F] [--page-server --address A [--port P]]
  crest run [--ns pid,ipc,uts,net,mnt,time,user] [--log FILE] -- CMD [ARGS...]
  crest inspect [--format text|json|dot|svg] DIR
  crest crit decode|encode|info|show|x ...   criu's crit (crest crit --help)

Commands:
  dump           checkpoint a process/tree identified by pid
  pre-dump       pre-dump a process/tree's memory (it runs on), for a later dump --prev-images-dir --track-mem
  restore        restore a process/tree
  check          checks whether the kernel support is up-to-date
  inspect        what a checkpoint holds: the tree, each task's memory, fds and namespaces, the dump's statistics
  run            start CMD as the root of a tree ready to checkpoint (own PID/IPC namespaces, own session)
  service        serve criu's RPC on a SEQPACKET socket (--address, default ./criu_service.socket)
  swrk           serve criu's RPC on an inherited socket (as go-criu, libcriu and pycriu start criu)
  page-server    receive the pages of a dump or pre-dump run with --page-server (criu's protocol)
                 (--lazy-pages: serve the lazy pages of the images to a lazy-pages --page-server)
  dedup          punch out of the parent images (--prev-images-dir) the pages DIR holds anew
  lazy-pages     serve the memory of a restore --lazy-pages from the images, page by page on first touch
                 (start it first; with --page-server, the lazy pages come from a dump --lazy-pages there)
  (cpuinfo: recognised, not implemented by crest yet)

Most of the true / false long options (the ones without arguments) can be
prefixed with --no- to negate the option (example: --display-stats and
--no-display-stats). Options may also come from configuration files:
/etc/criu/default.conf, ~/.criu/default.conf, $CRIU_CONFIG_FILE, --config FILE
(--no-default-config skips the first two).

Dump/Restore options:
  -t|--tree PID         checkpoint a process tree identified by PID
  -d|--restore-detached detach after restore
  -S|--restore-sibling  restore root task as sibling (with -d)
     --no-verify        restore without checking the images against the
                        manifest their dump wrote (crest-manifest.json)
  -s|--leave-stopped    leave tasks in stopped state after checkpoint
  -R|--leave-running    leave tasks in running state after checkpoint
  -D|--images-dir DIR   directory for image files
     --pidfile FILE     write the restored root's PID to FILE
  -W|--work-dir DIR     directory to write logs/pidfiles/stats to
                        (if not specified, value of --images-dir is used)
     --timeout NUM      seconds the dump may take to freeze the tree (default 10, 0: no limit)
     --action-script FILE  run FILE at each hook (CRTOOLS_SCRIPT_ACTION)
     --status-fd FD     write a zero byte to FD when the restored tree runs
     --lazy-pages       restore: leave private memory to \`crest lazy-pages\` (started first),
                        which brings each page in on first touch; dump: leave it in the
                        frozen tasks and serve it on --address:--port (default 1234) to a
                        \`crest lazy-pages --page-server\`, then end as a dump ends
  -l|--file-locks       dump and restore file locks and leases
     --ghost-limit SIZE keep deleted files up to SIZE (K, M, G; default 1M)

Logging:
  -o|--log-file FILE    log file name (relative to the work dir)
     --log-pid          with a log file: each restored task logs to FILE.PID
  -v[v...]|-vNUM        set logging level (0 .. 4, default 2)
     --display-stats    print the dump/restore statistics at the end

Check options:
  --extra, --experimental, --all   check more kernel features
  --feature FEAT        check a particular feature (--feature list names them)

Other:
  -h|--help             show this text
  -V|--version          show the version
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

/**
 * criu's --version form ("Version: X", then "GitID: Y"), which callers such
 * as LXC parse: the criu version whose interfaces crest follows, and crest's.
 */
function version(): string {
  const pkg = JSON.parse(readFileSync(`${projectRoot()}package.json`, "utf8")) as { version: string };
  return `Version: ${CRIU_VERSION}\nGitID: crest-${pkg.version}\n`;
}

/** What criu says of the commands it dropped. */
const DEPRECATED: Partial<Record<Command, string>> = {
  exec: 'The "exec" action is deprecated by the Compel library.',
  show: 'The "show" action is deprecated by the CRIT utility.\nTo view an image use the "crit decode -i $name --pretty" command.',
};

/** The words after the command that criu accepts. */
function checkRest(cmd: Command, rest: string[]): string | null {
  if (cmd === "cpuinfo") {
    if (rest.length === 0) return "cpuinfo requires an action: dump or check";
    if (rest[0] !== "dump" && rest[0] !== "check") return `unknown cpuinfo sub-command: ${rest[0]}`;
    rest = rest.slice(1);
  }
  if (cmd === "swrk") return rest.length === 1 ? null : "Usage: crest swrk <fd>";
  return rest.length ? `excessive parameter${rest.length > 1 ? "s" : ""} for command ${cmd}` : null;
}

/** Combinations criu refuses before it starts. */
function checkCombination(o: Options): string | null {
  if (o.restore.sibling && !o.restore.detached) return "--restore-sibling only makes sense with --restore-detached";
  if ((o.command === "dump" || o.command === "pre-dump") && !o.dump.tree) return "No pid specified (-t option)";
  return null;
}

/**
 * `crest service-worker FD [-vN]`: not a criu command; the service starts
 * one per connection, the connection at FD, and logs to the service's stderr.
 */
function serviceWorker(args: string[]): number {
  const level = Number(/^-v(\d)$/.exec(args[1] ?? "")?.[1] ?? 2);
  const log = new Logger(level);
  try {
    return serveConnection(Number(args[0]), log);
  } finally {
    log.close();
  }
}

/** `crest service`: in the foreground until stopped, or (-d/--daemon) in a detached copy of itself. */
function serviceMain(opts: Options, argv: string[], refused: string[], log: Logger): number | Promise<number> {
  if (refused.length) {
    for (const why of refused) log.error(why);
    log.close();
    return 1;
  }
  if (opts.restore.detached) {
    const code = daemonize(argv, log);
    log.close();
    return code;
  }
  return service(opts, log).finally(() => log.close());
}

export function main(argv: string[]): number | Promise<number> {
  if (argv[0] === "run") return runMain(argv.slice(1));
  if (argv[0] === "inspect") return inspectMain(argv.slice(1));
  if (argv[0] === "crit") return critMain(argv.slice(1));
  if (argv[0] === "service-worker") return serviceWorker(argv.slice(1));
  let parsed;
  try {
    parsed = parseArgs(argv, SYSTEM_CONFIG_ENV);
  } catch (e) {
    if (!(e instanceof UsageError) && !(e instanceof ConfigError)) throw e;
    process.stderr.write(`crest: ${e.message}\nTry 'crest --help' for more information.\n`);
    return 1;
  }
  if (parsed.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (parsed.version) {
    process.stdout.write(version());
    return 0;
  }
  const cmd = parsed.command as Command | undefined;
  const usage = (why: string): number => {
    process.stderr.write(`crest: ${why}\nTry 'crest --help' for more information.\n`);
    return 1;
  };
  if (!cmd) return usage("command is required");
  if (!COMMANDS.includes(cmd)) return usage(`unknown command: ${cmd}`);
  const bad = checkRest(cmd, parsed.rest) ?? checkCombination(parsed.options);
  if (bad) return usage(bad);
  if (DEPRECATED[cmd]) {
    process.stderr.write(`Error: ${DEPRECATED[cmd]}\n`);
    return 1;
  }
  const opts = parsed.options;
  let log: Logger;
  try {
    // A dump creates its images directory (and the work directory it logs to).
    if (cmd === "dump" || cmd === "pre-dump" || cmd === "page-server") mkdirSync(opts.images.workDir ?? opts.images.dir, { recursive: true });
    log = new Logger(opts.log.level, opts.log.file ? workPath(opts, opts.log.file) : undefined);
  } catch (e) {
    process.stderr.write(`crest: cannot open the log file: ${(e as Error).message}\n`);
    return 1;
  }
  if (cmd === "service") return serviceMain(opts, argv, parsed.refused.map((o) => `option ${o} is not supported by crest yet`), log);
  if (cmd === "lazy-pages") {
    try {
      return lazyPagesMain(opts, argv, parsed.refused.map((o) => `option ${o} is not supported by crest yet`), log);
    } finally {
      log.close();
    }
  }
  if (cmd === "page-server") {
    try {
      return pageServerMain(opts, argv, parsed.refused.map((o) => `option ${o} is not supported by crest yet`), log);
    } finally {
      log.close();
    }
  }
  try {
    if (cmd === "swrk") return swrk(Number(parsed.rest[0]), log);
    if (cmd === "dedup") {
      try {
        dedup(opts.images.dir, log);
        return 0;
      } catch (e) {
        log.error((e as Error).message);
        return 1;
      }
    }
    if (cmd !== "check" && cmd !== "dump" && cmd !== "pre-dump" && cmd !== "restore") {
      log.error(`'${cmd}' is not implemented by crest yet; crest carries out ${[...IMPLEMENTED].join(", ")}`);
      return 1;
    }
    return execute(cmd, opts, parsed.refused.map((o) => `option ${o} is not supported by crest yet`), log).code;
  } finally {
    log.close();
  }
}
