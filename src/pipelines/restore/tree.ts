// Building the process tree: every task with its PID (clone3 with set_tid,
// injected into its parent), its session and process group, helpers
// standing in for group leaders that had exited, and zombies that die again
// with their exit status for their parents to collect.
import type { pstree_entry } from "../../images/index.js";
import { CLONE, SIG, SYS, WALL } from "../../sys/constants.js";
import { packU64s } from "../../sys/structs.js";
import type { Remote } from "../../remote/remote.js";
import { cloneChild } from "../../remote/clone.js";
import { startStub } from "../../remote/stub.js";
import type { Logger } from "../../log.js";
import { sessionProblem } from "../sessions.js";

export type Role = "task" | "zombie" | "helper";

/** How the root is created: its CLONE_* flags (new namespaces, CLONE_PARENT), and whether it is PID 1 of a new PID namespace. */
export interface RootFlags {
  flags: number;
  ownPidNs: boolean;
  /** A new user namespace (CLONE_NEWUSER in flags): its maps, written before the root runs. */
  userns?: { uidMap: string; gidMap: string };
}

export interface TreeNode {
  /** PID in the tree's PID namespace. */
  vpid: number;
  pgid: number;
  sid: number;
  role: Role;
  parent: TreeNode | null;
  /** Created with CLONE_FILES / CLONE_FS: shares the fd table / fs struct with its parent. */
  sharesFiles: boolean;
  sharesFs: boolean;
  /** The group it is in when created (its session leader's, or crest's for a shell job's tasks), before finishTree moves it. */
  bornPgid: number;
  /** wait status a zombie ends with. */
  exitStatus: number;
  /** The PID crest sees, once created. */
  pid: number;
  remote?: Remote;
}

const SCRATCH_SIZE = 64 << 10;

/** A shell job's session and groups, which are crest's, outside the tree (-j). */
export interface OutsideSession {
  sid: number;
  pgids: ReadonlySet<number>;
  /** crest's own group, which the tree's tasks are created in. */
  bornPgid: number;
}

/**
 * Orders the tree parents first and adds a helper for every process group
 * whose leader is not in it (it had exited): a child of the group's session
 * leader that creates the group, lets the members join and exits.
 */
export function planTree(entries: pstree_entry[], roleOf: (e: pstree_entry) => Role, exitStatusOf: (e: pstree_entry) => number,
  shares: (e: pstree_entry) => { files: boolean; fs: boolean }, outside?: OutsideSession): TreeNode[] {
  const byPid = new Map<number, TreeNode>();
  const nodes: TreeNode[] = [];
  for (const e of entries) {
    if (byPid.has(e.pid)) throw new Error(`pstree.img lists PID ${e.pid} twice`);
    const parent = e.ppid ? byPid.get(e.ppid) : null;
    if (parent === undefined) throw new Error(`pstree.img: process ${e.pid} comes before its parent ${e.ppid}, or the parent is missing`);
    if (!parent && nodes.length) throw new Error(`pstree.img: process ${e.pid} has no parent but is not the first entry`);
    const sh = shares(e);
    const n: TreeNode = {
      vpid: e.pid, pgid: e.pgid, sid: e.sid, role: roleOf(e), parent, sharesFiles: sh.files, sharesFs: sh.fs,
      bornPgid: outside && e.sid === outside.sid ? outside.bornPgid : e.sid, exitStatus: exitStatusOf(e), pid: 0,
    };
    byPid.set(e.pid, n);
    nodes.push(n);
  }
  const problem = sessionProblem(entries, outside?.sid);
  if (problem) throw new Error(`pstree.img: ${problem}`);
  for (const n of [...nodes]) {
    if (outside && n.sid === outside.sid) {
      if (byPid.has(n.pgid) || outside.pgids.has(n.pgid)) continue;
      throw new Error(`process ${n.vpid} is in group ${n.pgid}, whose leader is not in the images and not in crest's session; crest cannot restore that yet`);
    }
    if (byPid.has(n.pgid)) continue;
    const leader = byPid.get(n.sid)!;
    const helper: TreeNode = { vpid: n.pgid, pgid: n.pgid, sid: n.sid, role: "helper", parent: leader, sharesFiles: false, sharesFs: false, bornPgid: n.sid, exitStatus: 0, pid: 0 };
    byPid.set(n.pgid, helper);
    // Right after its parent, so it exists before any member is created.
    nodes.splice(nodes.indexOf(leader) + 1, 0, helper);
  }
  return nodes;
}


/**
 * Creates every process of the tree, parents first, each in its session;
 * `born` runs for each right after it exists, before its children are
 * created (so they inherit what it did: the restored memory). `created`
 * collects their remotes (also on failure, to kill them).
 */
export function createTree(nodes: TreeNode[], ns: RootFlags, created: Remote[], log: Logger, born: (n: TreeNode) => void): void {
  const root = nodes[0]!;
  // A shell job's root stays in crest's session, with crest's terminal (-j).
  root.remote = startStub({ pid: ns.ownPidNs ? 1 : root.vpid, flags: ns.flags, setsid: root.sid === root.vpid, ...(ns.userns ? { userns: ns.userns } : {}) });
  created.push(root.remote);
  root.pid = root.remote.pid;
  born(root);
  for (const n of nodes.slice(1)) {
    const parent = n.parent!.remote!;
    if (!parent.scratch) parent.mapScratch(SCRATCH_SIZE);
    const flags = (n.sharesFiles ? CLONE.FILES : 0) | (n.sharesFs ? CLONE.FS : 0);
    n.remote = cloneChild(parent, n.vpid, flags, SIG.CHLD, `create process ${n.vpid}`);
    created.push(n.remote);
    n.pid = n.remote.pid;
    if (n.sid === n.vpid) n.remote.call(`make process ${n.vpid} a session leader`, SYS.setsid);
    log.debug(`created process ${n.vpid} (pid ${n.pid} here) as a ${n.role}`);
    born(n);
  }
}

/** Drops a SIGCHLD the task got from crest's own work on its children (helpers and zombies dying). */
function drainSigchld(r: Remote): void {
  r.resetScratch();
  const set = r.put(packU64s([1n << BigInt(SIG.CHLD - 1)]));
  const zero = r.put(packU64s([0, 0]));
  r.syscall(SYS.rt_sigtimedwait, set, 0, zero, 8);
}

/** Ends a task with a wait status: an exit code, or death by a signal. */
function die(n: TreeNode): void {
  const r = n.remote!;
  const sig = n.exitStatus & 0x7f;
  if (sig) {
    // The default action of that signal kills it; crest passes the signal on.
    // SIGKILL and SIGSTOP always have their default action (and rt_sigaction refuses them).
    if (sig !== SIG.KILL && sig !== SIG.STOP) {
      r.resetScratch();
      r.call(`reset the action of signal ${sig} of process ${n.vpid}`, SYS.rt_sigaction, sig, r.put(Buffer.alloc(32)), 0, 8);
    }
    r.t.setSigmask(0n);
    process.kill(n.pid, sig);
    // SIGKILL takes it out of its ptrace stop at once: nothing to resume.
    if (sig !== SIG.KILL) r.t.cont();
    for (let s = r.t.wait(); s.kind !== "killed" && s.kind !== "exited"; s = r.t.wait()) r.t.cont(s.kind === "signal" ? s.sig : 0);
  } else {
    r.exit((n.exitStatus >> 8) & 0xff);
  }
}

/**
 * Puts every task in its process group (leaders first), lets helpers go and
 * zombies die; their parents reap the helpers and keep the zombies.
 */
export function finishTree(nodes: TreeNode[]): void {
  for (const n of nodes) {
    if (n.pgid === n.vpid && n.sid !== n.vpid) n.remote!.call(`make process ${n.vpid} a group leader`, SYS.setpgid, 0, 0);
  }
  // Until now everyone is in the group of its session's leader (created from
  // it before any setpgid; a shell job's tasks in crest's group): only those
  // in other groups move.
  for (const n of nodes) {
    if (n.pgid !== n.vpid && n.pgid !== n.bornPgid) {
      n.remote!.call(`put process ${n.vpid} in group ${n.pgid}`, SYS.setpgid, 0, n.pgid);
    }
  }
  for (const n of nodes) {
    if (n.role === "task") continue;
    die(n);
    const parent = n.parent!.remote!;
    if (n.role === "helper") {
      parent.call(`reap helper ${n.vpid}`, SYS.wait4, n.vpid, 0, WALL, 0);
    }
    drainSigchld(parent);
  }
}
