// A PID the images need can still be held, for a second or two, by the
// corpse of the very process that was dumped: dump kills it with SIGKILL, and
// the PID stays taken until its parent (often PID 1) reaps the zombie. So a
// restore right after the dump waits a little for that case, and only that
// case; anything else holding a PID is refused at once.
import { readFileSync } from "node:fs";
import { parseStat, type ProcStat } from "../../proc/index.js";
import { SIG } from "../../sys/constants.js";
import { sleepMs } from "../../sys/syscalls.js";
import type { Logger } from "../../log.js";
import type { TreeNode } from "./tree.js";

/** How long a restore waits, in all, for the dumped processes' zombies to be reaped. */
export const CORPSE_WAIT_MS = 5000;

/** What the images say a dumped task's corpse looks like: its comm, and the wait status it died with. */
export interface Corpse {
  comm: string;
  status: number;
}

/** The corpse a tree node's PID may be held by: none for a helper (no dumped task had its PID). */
export function corpseOf(n: TreeNode, comm: string | undefined): Corpse | undefined {
  if (n.role === "helper" || n.role === "dead" || comm === undefined) return undefined;
  // Dump kills live tasks with SIGKILL; a zombie in the images stays the zombie it was.
  return { comm, status: n.role === "zombie" ? n.exitStatus : SIG.KILL };
}

/** Whether the process holding a PID is that corpse: a zombie with the images' comm, dead the way the dump left it. */
export function isCorpse(st: Pick<ProcStat, "state" | "comm" | "exitCode">, corpse: Corpse): boolean {
  return st.state === "Z" && st.comm === corpse.comm && st.exitCode === corpse.status;
}

function statOf(pid: number): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null; // free
  }
  return parseStat(text);
}

/**
 * The first PID of the tree that is taken, and by whom, after waiting (up to
 * ms in all) for PIDs held by the dumped processes' own zombies to be freed.
 */
export function takenPid(nodes: readonly TreeNode[], commOf: (vpid: number) => string | undefined, log: Logger,
  ms = CORPSE_WAIT_MS): { pid: number; holder: string } | null {
  const deadline = Date.now() + ms;
  for (const n of nodes) {
    // A session helper takes a free PID as it is made.
    if (n.forks?.freePid) continue;
    const corpse = corpseOf(n, commOf(n.vpid));
    for (let waited = false; ; waited = true) {
      const st = statOf(n.vpid);
      if (!st) break;
      const holder = `process ${n.vpid} (${st.comm})`;
      if (!corpse || !isCorpse(st, corpse)) return { pid: n.vpid, holder };
      if (Date.now() >= deadline) {
        return { pid: n.vpid, holder: `${holder}, the dumped process's zombie, which its parent ${st.ppid} did not reap within ${ms / 1000} s` };
      }
      if (!waited) log.info(`PID ${n.vpid} is held by the zombie of the dumped process; waiting for its parent ${st.ppid} to reap it`);
      sleepMs(20);
    }
  }
  return null;
}
