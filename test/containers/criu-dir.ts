// crest (or a real criu) as the runtimes find criu: a directory whose `criu`
// runs it with the runtime's arguments unchanged and logs each call
// (make-criu-dir.sh), put first on the runtime's PATH (or given to runc with
// --criu). What the runtime asked is read back from the logs: the command
// lines (LXC) and, for `criu swrk`, each RPC request (runc, podman) as crest
// logs it at -v4.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CONTAINERS_SRC } from "./rootfs.js";

/** crest's command in this tree. */
export const CREST_BIN = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "bin", "crest");

export interface CriuDir {
  /** The directory to put first on PATH. */
  dir: string;
  /** Its criu. */
  criu: string;
  /** What it runs. */
  target: string;
  logs: string;
  /** PATH with dir first. */
  path: string;
}

export function makeCriuDir(work: string, target: string = CREST_BIN): CriuDir {
  const dir = join(work, "criu-bin"), logs = join(work, "criu-logs");
  execFileSync(join(CONTAINERS_SRC, "make-criu-dir.sh"), [dir, target, logs]);
  return { dir, criu: join(dir, "criu"), target, logs, path: `${dir}:${process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin"}` };
}

/** The command lines the runtime ran criu with, in order. */
export function criuCalls(c: CriuDir): string[] {
  const f = join(c.logs, "calls.log");
  if (!existsSync(f)) return [];
  return readFileSync(f, "utf8").split("\n").filter(Boolean).map((l) => l.replace(/^\d+ \S+ /, ""));
}

/** The RPC requests of every swrk session, as crest logged them ("DUMP: {json}"). */
export function rpcRequests(c: CriuDir): string[] {
  if (!existsSync(c.logs)) return [];
  return readdirSync(c.logs).filter((f) => f.startsWith("swrk-")).sort()
    .flatMap((f) => readFileSync(join(c.logs, f), "utf8").split("\n"))
    .map((l) => /RPC request (.*)$/.exec(l)?.[1]).filter((l): l is string => l !== undefined);
}

/** What the criu run that failed wrote: its log's error lines (the log file the runtime named). */
export function errorLines(log: string): string[] {
  if (!existsSync(log)) return [`(no log at ${log})`];
  return readFileSync(log, "utf8").split("\n").filter((l) => /Error/.test(l));
}
