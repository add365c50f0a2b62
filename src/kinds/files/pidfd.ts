// pidfd: a handle on a process. Dumped from fdinfo ("Pid" in crest's
// namespace, "NSpid" down to the tree's): the process must be in the dumped
// tree, and the image holds its PID there. Restored with pidfd_open of that
// PID, in the task. A pidfd of a process already reaped ("Pid: -1") is
// recreated as CRIU does: the task forks a child, opens a pidfd of it for
// every description that named the same dead process (same pidfs inode:
// they must stay one process), and the child is killed and reaped.
import { readFileSync } from "node:fs";
import { UnsupportedError } from "../context.js";
import { IMG, fd_types, type file_entry } from "../../images/index.js";
import { O, PTRACE_EVENT, SIG, SYS, WALL } from "../../sys/constants.js";
import { CLONE_ARGS_SIZE, packCloneArgs } from "../../sys/structs.js";
import { parseStat } from "../../proc/index.js";
import { pidfdNsPid } from "../../proc/fdinfo-kinds.js";
import { isAnon, setAsync, type FileKind, type OpenContext } from "./file-kind.js";
import { Tracee, TraceError } from "../../remote/tracee.js";

/** PIDFD_THREAD: a pidfd of one thread (Linux 6.9); O_EXCL among the file flags. */
const PIDFD_THREAD = O.EXCL;

/** Whether `pid` (crest's view) is `root` or one of its descendants: a process of the dumped tree. */
function inTree(root: number, pid: number): boolean {
  for (let p = pid, hops = 0; p > 0 && hops < 4096; hops++) {
    if (p === root) return true;
    try {
      p = parseStat(readFileSync(`/proc/${p}/stat`, "utf8")).ppid;
    } catch {
      return false;
    }
  }
  return false;
}

export const pidfdKind: FileKind = {
  name: "pidfd",
  type: fd_types.PIDFD,
  claims: isAnon("pidfd"),
  dump(f, run) {
    const p = f.info.pidfd;
    if (!p) throw new UnsupportedError(`${f.what} (${f.text}) shows no Pid in its fdinfo; crest cannot tell which process it names`);
    const flags = f.info.flags & ~(O.CLOEXEC | O.ACCMODE);
    if (flags & PIDFD_THREAD) throw new UnsupportedError(`${f.what} is a pidfd of a thread (PIDFD_THREAD); crest does not support it yet`);
    let nspid = -1;
    if (p.pid === 0) throw new UnsupportedError(`${f.what} is a pidfd of a process outside crest's PID namespace; crest does not support it`);
    if (p.pid > 0) {
      if (!run.opts.dump.tree || !inTree(run.opts.dump.tree, p.pid)) {
        throw new UnsupportedError(`${f.what} is a pidfd of process ${p.pid}, which is not in the dumped tree; crest does not support it`);
      }
      nspid = pidfdNsPid(p);
    }
    const id = run.nextId("file");
    // ino is what ties the pidfds of one dead process together (pidfs inodes fit 32 bits in practice).
    const ino = Number(BigInt(f.st.ino) & 0xffffffffn);
    run.files.push({ type: fd_types.PIDFD, id, pidfd: { id, ino, flags, nspid, fown: f.fown } });
    return id;
  },
  fown: (entry) => entry.pidfd?.fown,
  open(c, entry) {
    const { r, task } = c;
    const p = entry.pidfd!;
    const what = `pidfd ${entry.id} in task ${task.vpid}`;
    if (p.nspid === -1) return openDead(c, entry);
    const fd = r.call(`open ${what} (of process ${p.nspid})`, SYS.pidfd_open, p.nspid, p.flags & O.NONBLOCK);
    setAsync(r, fd, p.flags, what);
    return fd;
  },
};

/**
 * Opens every pidfd of the dead process `entry` names, from a child of the
 * task that is then killed and reaped; returns the one for `entry` and parks
 * the others for whichever task needs them.
 */
function openDead({ r, task, run, park }: OpenContext, entry: file_entry): number {
  const ino = entry.pidfd!.ino;
  const group = [...run.files.values()].filter((f) => f.type === fd_types.PIDFD && f.pidfd?.nspid === -1 && f.pidfd.ino === ino);
  const what = `the dead process of pidfd ${entry.id} in task ${task.vpid}`;
  r.resetScratch();
  // exit_signal 0: the task gets no SIGCHLD for it. TRACEFORK hands it to crest, stopped.
  const got = r.call(`create ${what}`, SYS.clone3, r.put(packCloneArgs({ flags: 0, exitSignal: 0 })), CLONE_ARGS_SIZE);
  const ev = r.events.find((e) => e.event === PTRACE_EVENT.FORK || e.event === PTRACE_EVENT.CLONE);
  if (!ev) throw new TraceError(`create ${what}: the kernel reported no new task`);
  const child = Tracee.adopt(ev.child);
  let mine = -1;
  try {
    const s = child.wait();
    if (s.kind !== "event" && s.kind !== "group") throw new TraceError(`create ${what}: it did not stop as expected: ${JSON.stringify(s)}`);
    for (const f of group) {
      const fd = r.call(`open pidfd ${f.id} in task ${task.vpid}`, SYS.pidfd_open, got, f.pidfd!.flags & O.NONBLOCK);
      setAsync(r, fd, f.pidfd!.flags, `pidfd ${f.id} in task ${task.vpid}`);
      if (f.id === entry.id) mine = fd;
      else {
        const kept = park(fd);
        run.opened.set(f.id, { task, fd: kept });
        run.transient.push({ task, fd: kept });
      }
    }
  } finally {
    // Killed even when something failed: crest traces it, so it dies at once.
    process.kill(ev.child, SIG.KILL);
    for (let s = child.wait(); s.kind !== "killed" && s.kind !== "exited"; s = child.wait()) child.cont();
    r.call(`reap ${what}`, SYS.wait4, got, 0, WALL, 0);
  }
  if (mine < 0) throw run.images.invalid(IMG.files, undefined, `pidfd ${entry.id} not found among the pidfds of dead process ${ino}`);
  return mine;
}
