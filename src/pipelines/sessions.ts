// The shape of a tree's sessions that crest (as criu) can build again: it
// creates each process from its parent, and a session leader starts its
// session right after it is born, so every process is in its parent's
// session or leads its own, and every session's leader is in the tree (but
// a shell job's, which is crest's own on restore). Pure; the dump refuses
// what fails here (the tree runs on), and the restore checks its images.

export interface SessionIds {
  pid: number;
  ppid: number;
  sid: number;
}

/** Why the tree's sessions cannot be built again, or null. `outside`: a shell job's session, which is not the tree's. */
export function sessionProblem(tasks: readonly SessionIds[], outside?: number): string | null {
  const byPid = new Map(tasks.map((t) => [t.pid, t]));
  for (const t of tasks) {
    if (t.sid === outside) continue;
    if (!byPid.has(t.sid)) return `process ${t.pid} is in session ${t.sid}, whose leader is not in the tree (it has exited); crest cannot restore that yet`;
    const parent = byPid.get(t.ppid);
    if (parent && t.sid !== t.pid && parent.sid !== t.sid) {
      return `process ${t.pid} is in session ${t.sid} while its parent ${parent.pid} leads session ${parent.sid} (the parent started its own session after forking it); ` +
        "crest, as criu, cannot create a process in its parent's former session";
    }
  }
  return null;
}
