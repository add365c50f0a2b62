// crest run: start a program as the root of a tree ready to be checkpointed,
// the way CRIU's documentation builds it by hand: in new PID and IPC (and
// optionally UTS, mount, network and time: a new network namespace has only its loopback,
// down; a new time namespace has crest's clock offsets; in a new user
// namespace, ids 0-65535 are 100000-165535 outside and the program runs as
// its root) namespaces, in a session of its own, stdin from
// /dev/null, stdout and stderr appended to a log, nothing inherited from the
// caller but those three fds. Prints the root's PID and returns.
import { accessSync, closeSync, constants as fsc, openSync } from "node:fs";
import { delimiter, isAbsolute, join, resolve } from "node:path";
import { native } from "../../sys/native.js";
import { CLONE } from "../../sys/constants.js";
import { errnoName } from "../../sys/errno.js";
import { UsageError } from "./args.js";

const NS_FLAGS: Record<string, number> = { pid: CLONE.NEWPID, ipc: CLONE.NEWIPC, uts: CLONE.NEWUTS, net: CLONE.NEWNET, mnt: CLONE.NEWNS, time: CLONE.NEWTIME, user: CLONE.NEWUSER };

/** A new user namespace's maps: its ids 0-65535 are 100000-165535 out here (a container's subordinate range); the program runs as its root. */
export const RUN_USERNS_MAP = "0 100000 65536\n";

export const RUN_USAGE = `Usage: crest run [--ns pid,ipc,uts,net,mnt,time,user] [--log FILE] -- CMD [ARGS...]
  --ns LIST    namespaces to create (default pid,ipc; "none" for none)
  --log FILE   where stdout and stderr go, appended (default crest-run.log)
`;

export interface RunRequest {
  flags: number;
  log: string;
  argv: string[];
}

export function parseRun(args: string[]): RunRequest {
  let ns = "pid,ipc";
  let log = "crest-run.log";
  let i = 0;
  for (; i < args.length && args[i] !== "--"; i++) {
    const a = args[i]!;
    const [name, inline] = a.includes("=") ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)] : [a, undefined];
    const value = () => {
      const v = inline ?? args[++i];
      if (v === undefined) throw new UsageError(`${name} needs a value`);
      return v;
    };
    if (name === "--ns") ns = value();
    else if (name === "--log") log = value();
    else if (!a.startsWith("-")) break;
    else throw new UsageError(`crest run: unknown option ${a}`);
  }
  if (args[i] === "--") i++;
  const argv = args.slice(i);
  if (!argv.length) throw new UsageError("crest run needs a command: crest run [--ns ...] -- CMD [ARGS...]");
  let flags = 0;
  for (const n of ns === "none" ? [] : ns.split(",").map((s) => s.trim()).filter(Boolean)) {
    const f = NS_FLAGS[n];
    if (f === undefined) throw new UsageError(`crest run: unknown namespace '${n}' (use pid, ipc, uts, net, mnt, time, user)`);
    flags |= f;
  }
  return { flags, log, argv };
}

/** The command's path, looked up in PATH as a shell would. */
function which(cmd: string): string {
  if (cmd.includes("/")) return resolve(cmd);
  for (const dir of (process.env.PATH ?? "/usr/bin:/bin").split(delimiter)) {
    const p = join(dir, cmd);
    try {
      accessSync(p, fsc.X_OK);
      return isAbsolute(p) ? p : resolve(p);
    } catch {
      // not here
    }
  }
  throw new Error(`crest run: ${cmd}: command not found`);
}

/** Starts the tree and returns its root's PID. */
export function run(req: RunRequest): number {
  const path = which(req.argv[0]!);
  const nul = openSync("/dev/null", "r");
  const log = openSync(req.log, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_APPEND, 0o644);
  try {
    const env = Object.entries(process.env).map(([k, v]) => `${k}=${v}`);
    const pid = native.spawn({ path, argv: req.argv, env, flags: req.flags, setsid: 1, fds: [nul, log, log], cwd: process.cwd(),
      ...(req.flags & CLONE.NEWUSER ? { uidMap: RUN_USERNS_MAP, gidMap: RUN_USERNS_MAP } : {}),
    });
    if (pid < 0) throw new Error(`crest run: cannot start ${path}: ${errnoName(-pid)}`);
    return pid;
  } finally {
    closeSync(nul);
    closeSync(log);
  }
}
