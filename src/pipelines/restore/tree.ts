// Building the process tree: every task with its PID (clone3 with set_tid,
// injected into its parent), its session (sessions.ts: some leaders start
// theirs only after forking children into the one they were born in) and
// process group, helpers standing in for group leaders that had exited and
// forking the root's reparented children into their sessions, and zombies
// that die again with their exit status for their parents to collect.
import type { pstree_entry } from "../../images/index.js";
import { CLONE, SIG, SYS, WALL } from "../../sys/constants.js";
import { packU64s } from "../../sys/structs.js";
import { RemoteError, type Remote } from "../../remote/remote.js";
import { cloneChild } from "../../remote/clone.js";
import { startStub } from "../../remote/stub.js";
import type { Logger } from "../../log.js";
import { planSessions } from "../sessions.js";
import { EEXIST } from "../../sys/errno.js";

/** A task of the images; a zombie of them; a helper of crest's (sessions, groups); a stand-in for a process that had exited whose /proc files the tree holds. */
export type Role = "task" | "zombie" | "helper" | "dead";

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
  /**
   * A session leader created in another session, which children of its are
   * created in too (they were forked before its setsid): it starts its own
   * session once those exist.
   */
  bornSid?: number;
  /**
   * A session's helper (sessions.ts): it forks the root's children of that
   * session, then exits, and they are the root's again. With `freePid`, its
   * PID is any the images do not use (these are), chosen as it is created.
   */
  forks?: { freePid?: ReadonlySet<number> };
  /** wait status a zombie ends with. */
  exitStatus: number;
  /** The PID crest sees, once created. */
  pid: number;
  remote?: Remote;
}

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
  const sessions = planSessions(entries, outside?.sid);
  if (sessions.problem !== undefined) throw new Error(`pstree.img: ${sessions.problem}`);
  for (const [pid, sid] of sessions.bornIn) {
    const n = byPid.get(pid)!;
    n.bornSid = sid;
    // Created in that session, it is in that session's group until its setsid.
    n.bornPgid = sid;
  }
  if (sessions.helpers.length) {
    const used = new Set(entries.flatMap((e) => [e.pid, e.pgid, e.sid, ...e.threads]));
    let next = Math.max(...used) + 1;
    for (const h of sessions.helpers) {
      // A child of the leader, in its session and group; or the leader's stand-in, which starts the session.
      const parent = h.leaderInTree ? byPid.get(h.sid)! : nodes[0]!;
      const helper: TreeNode = {
        vpid: h.leaderInTree ? next++ : h.sid, pgid: h.sid, sid: h.sid, role: "helper", parent, sharesFiles: false, sharesFs: false,
        bornPgid: h.sid, exitStatus: 0, pid: 0, forks: h.leaderInTree ? { freePid: used } : {},
      };
      byPid.set(helper.vpid, helper);
      nodes.push(helper);
      for (const c of h.children) byPid.get(c)!.parent = helper;
    }
  }
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
  return sessions.bornIn.size || sessions.helpers.length ? sessionOrder(nodes) : nodes;
}

/**
 * Adds, as children of the root created last, a stand-in for each process
 * that had exited whose /proc/PID files the tree holds (criu's PROCFS
 * remaps): it has that PID while the files are opened, then exits
 * (endStandIns).
 */
export function addStandIns(nodes: TreeNode[], pids: readonly number[]): void {
  const root = nodes[0]!;
  for (const pid of new Set(pids)) {
    if (nodes.some((n) => n.vpid === pid)) throw new Error(`remap-fpath.img: a process that had exited (PID ${pid}, whose /proc files the tree holds) has the PID of one the restore makes`);
    nodes.push({ vpid: pid, pgid: root.pgid, sid: root.sid, role: "dead", parent: root, sharesFiles: false, sharesFs: false, bornPgid: root.bornPgid, exitStatus: 0, pid: 0 });
  }
}

/** Once the tree's files are open: the stand-ins exit and the root reaps them. */
export function endStandIns(nodes: TreeNode[]): void {
  for (const n of nodes) {
    if (n.role !== "dead") continue;
    n.remote!.exit(0);
    const root = n.parent!.remote!;
    root.call(`reap the stand-in for process ${n.vpid}`, SYS.wait4, n.vpid, 0, WALL, 0);
    drainSigchld(root);
  }
}

/** Whether n is created in the session its parent was born in (before the parent's own setsid). */
const inParentsFormerSession = (n: TreeNode): boolean =>
  n.parent?.bornSid !== undefined && (n.bornSid ?? (n.sid === n.vpid ? undefined : n.sid)) === n.parent.bornSid;

/** Where a child comes among its siblings: those born in the parent's former session, group helpers, session helpers, the others. */
const rank = (n: TreeNode): number => (inParentsFormerSession(n) ? 0 : n.role === "helper" ? (n.forks ? 2 : 1) : 3);

/**
 * The nodes parents first (a session helper's children after it), each
 * one's children in rank order, their subtrees with them: the parent's
 * deferred setsid comes after the first rank, a group's helper before the
 * members, a session helper before what it forks.
 */
function sessionOrder(nodes: TreeNode[]): TreeNode[] {
  const children = new Map<TreeNode, TreeNode[]>();
  for (const n of nodes.slice(1)) children.set(n.parent!, [...(children.get(n.parent!) ?? []), n]);
  const out: TreeNode[] = [];
  const visit = (n: TreeNode) => {
    out.push(n);
    for (const k of [...(children.get(n) ?? [])].sort((a, b) => rank(a) - rank(b))) visit(k);
  };
  visit(nodes[0]!);
  return out;
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
  // Leaders born in another session, whose setsid waits for the children created there.
  const pending = new Set<TreeNode>();
  const startSession = (n: TreeNode) => {
    pending.delete(n);
    n.remote!.call(`make process ${n.vpid} a session leader`, SYS.setsid);
  };
  for (const n of nodes.slice(1)) {
    if (pending.has(n.parent!) && !inParentsFormerSession(n)) startSession(n.parent!);
    const parent = n.parent!.remote!;
    parent.needScratch();
    const flags = (n.sharesFiles ? CLONE.FILES : 0) | (n.sharesFs ? CLONE.FS : 0);
    n.remote = n.forks?.freePid ? cloneFree(parent, n, n.forks.freePid) : cloneChild(parent, n.vpid, flags, SIG.CHLD, `create process ${n.vpid}`);
    created.push(n.remote);
    n.pid = n.remote.pid;
    if (n.bornSid !== undefined) pending.add(n);
    else if (n.sid === n.vpid) startSession(n);
    log.debug(`created process ${n.vpid} (pid ${n.pid} here) as a ${n.role}${n.bornSid !== undefined ? ` in session ${n.bornSid}, its own once its children there exist` : ""}`);
    born(n);
  }
  for (const n of pending) startSession(n);
}

/** Creates a session helper with the first PID from n.vpid on that is free here and not one of the images'. */
function cloneFree(parent: Remote, n: TreeNode, used: ReadonlySet<number>): Remote {
  for (let tries = 0; ; tries++, n.vpid++) {
    while (used.has(n.vpid)) n.vpid++;
    try {
      return cloneChild(parent, n.vpid, 0, SIG.CHLD, `create the helper of session ${n.sid}`);
    } catch (e) {
      if (!(e instanceof RemoteError && e.errno === EEXIST) || tries === 100) throw e;
    }
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
export function finishTree(all: TreeNode[]): void {
  // The stand-ins live on until the files are open.
  const nodes = all.filter((n) => n.role !== "dead");
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
  // Children before parents: a helper or zombie whose parent is a zombie too is reaped by it before it dies.
  for (const n of [...nodes].reverse()) {
    if (n.role === "task") continue;
    die(n);
    const parent = n.parent!.remote!;
    if (n.role === "helper") {
      parent.call(`reap helper ${n.vpid}`, SYS.wait4, n.vpid, 0, WALL, 0);
    }
    drainSigchld(parent);
  }
}
