// The shape of a tree's sessions that crest (as criu) can build again. It
// creates each process from its parent, so a process is born in its
// parent's session; a session leader starts its own with setsid right after
// it is born, or, when children of its stayed in the session it was born in
// (it forked them before its setsid), once it has created those (criu's
// born_sid). A process of the root's that is in a session whose leader is
// not its ancestor was reparented to the root (a PID namespace's init, or a
// child subreaper): as criu, a helper in that session forks it and exits, a
// child of the session's leader or, when the leader has exited, a helper
// with the leader's PID that starts the session itself. Any other session
// must have its leader in the tree (but a shell job's, which is crest's own
// on restore). Pure; the dump refuses what fails here (the tree runs on),
// and the restore checks its images.

export interface SessionIds {
  pid: number;
  ppid: number;
  sid: number;
}

/** A helper that forks the root's children of a session whose leader is not their ancestor, and exits. */
export interface SessionHelper {
  sid: number;
  /** Whether the session's leader is in the tree (the helper is its child); else the helper stands for it, with its PID. */
  leaderInTree: boolean;
  children: number[];
}

export type SessionPlan =
  /** bornIn: the session each such leader is born in (it starts its own once its children born there exist). */
  | { bornIn: Map<number, number>; helpers: SessionHelper[]; problem?: undefined }
  | { problem: string };

/** How the tree's sessions are built again, or why they cannot be. `outside`: a shell job's session, which is not the tree's. */
export function planSessions(tasks: readonly SessionIds[], outside?: number): SessionPlan {
  const byPid = new Map(tasks.map((t) => [t.pid, t]));
  const bornIn = new Map<number, number>();
  const helpers = new Map<number, SessionHelper>();
  const root = tasks[0];
  for (const t of tasks) {
    if (t.sid === outside || t.sid === t.pid || byPid.get(t.ppid)?.sid === t.sid) continue;
    if (t !== root && t.ppid === root?.pid) {
      const h = helpers.get(t.sid) ?? { sid: t.sid, leaderInTree: byPid.has(t.sid), children: [] };
      h.children.push(t.pid);
      helpers.set(t.sid, h);
      continue;
    }
    if (!byPid.has(t.sid)) return { problem: `process ${t.pid} is in session ${t.sid}, whose leader is not in the tree (it has exited); crest cannot restore that yet` };
    // Born in session t.sid: so was each ancestor up to that session's leader, the leaders among them before their setsid.
    for (let p = byPid.get(t.ppid); p?.pid !== t.sid; p = byPid.get(p.ppid)) {
      if (!p) return { problem: `process ${t.pid} is in session ${t.sid}, whose leader is not among its ancestors; crest cannot restore that yet` };
      // In that session itself: its own turn walks on from there.
      if (p.sid === t.sid) break;
      if (p.sid !== p.pid) {
        return { problem: `process ${t.pid} is in session ${t.sid} while its ancestor ${p.pid} is in session ${p.sid}, which it does not lead; crest cannot restore that yet` };
      }
      const was = bornIn.get(p.pid);
      if (was !== undefined && was !== t.sid) {
        return { problem: `process ${p.pid} has descendants in sessions ${was} and ${t.sid}, which it left both; crest, as criu, cannot tell which one it was born in` };
      }
      bornIn.set(p.pid, t.sid);
    }
  }
  return { bornIn, helpers: [...helpers.values()] };
}

/** Why the tree's sessions cannot be built again, or null. */
export function sessionProblem(tasks: readonly SessionIds[], outside?: number): string | null {
  return planSessions(tasks, outside).problem ?? null;
}
