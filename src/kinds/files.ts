// The fd table: which fd numbers a task has, which open file description
// each refers to (dup'ed fds share one, found with kcmp), and close-on-exec.
// What the description is (a regular file, later pipes and sockets) is up to
// the file kind that claims it.
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import type { TaskKind, DumpTask, RestoreTask, DumpRun, RestoreRun } from "./context.js";
import { UnsupportedError } from "./context.js";
import type { fdinfo_entry } from "../images/index.js";
import { fd_types } from "../images/index.js";
import { F, FD_CLOEXEC, KCMP, O, SYS } from "../sys/constants.js";
import { sys } from "../sys/syscalls.js";
import { parseFdinfo, classifyFdLink } from "../proc/index.js";
import { checkReopenable, dumpRegFile, openRegFile, regFile } from "./regfile.js";
import type { Remote } from "../remote/remote.js";

interface SeenFile {
  fd: number;
  id: number;
  dev: number;
  ino: number;
}

/** The owner of a file's async I/O signals (F_GETOWN_EX, F_GETSIG), asked inside the task. */
function fileOwner(r: Remote, fd: number, uid: number, euid: number) {
  r.resetScratch();
  const own = r.alloc(8);
  r.call(`read the owner of fd ${fd} of task ${r.pid}`, SYS.fcntl, fd, F.GETOWN_EX, own);
  const b = r.read(own, 8);
  const signum = r.call(`read the signal of fd ${fd} of task ${r.pid}`, SYS.fcntl, fd, F.GETSIG);
  const pid = b.readInt32LE(4);
  return { uid: pid ? uid : 0, euid: pid ? euid : 0, signum, pid_type: b.readInt32LE(0), pid };
}

function dumpFds(task: DumpTask, run: DumpRun): fdinfo_entry[] {
  const pid = task.pid;
  const r = task.remotes[0]!;
  const creds = task.core[0]!.thread_core?.creds;
  const fds = readdirSync(`/proc/${pid}/fd`).map(Number).sort((a, b) => a - b);
  const seen: SeenFile[] = [];
  const out: fdinfo_entry[] = [];
  for (const fd of fds) {
    const what = `fd ${fd} of process ${pid}`;
    const via = `/proc/${pid}/fd/${fd}`;
    const link = readlinkSync(via);
    const kind = classifyFdLink(link);
    if (kind.kind !== "path") {
      throw new UnsupportedError(`${what} is ${describe(kind.kind)} (${link}); crest does not support it yet`);
    }
    const st = checkReopenable(link, via, what);
    const info = parseFdinfo(readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8"));
    // A description shared with an earlier fd of this task (dup, dup2, F_DUPFD).
    const same = seen.find((s) => s.dev === st.dev && s.ino === st.ino && sys(SYS.kcmp, pid, pid, KCMP.FILE, s.fd, fd) === 0);
    let id: number;
    if (same) {
      id = same.id;
    } else {
      const fown = fileOwner(r, fd, creds?.uid ?? 0, creds?.euid ?? 0);
      id = dumpRegFile(run, { path: link, flags: info.flags, pos: info.pos, mntId: info.mntId, fown }, st);
      seen.push({ fd, id, dev: st.dev, ino: st.ino });
    }
    out.push({ id, flags: info.flags & O.CLOEXEC ? FD_CLOEXEC : 0, type: fd_types.REG, fd });
  }
  return out;
}

function describe(kind: string): string {
  switch (kind) {
    case "pipe": return "a pipe";
    case "socket": return "a socket";
    case "anon": return "an anonymous-inode object";
    default: return `a ${kind}`;
  }
}

function restoreFds(task: RestoreTask, run: RestoreRun): void {
  const r = task.remotes[0]!;
  const byId = new Map<number, fdinfo_entry[]>();
  for (const e of task.fdinfo) {
    if (e.type !== fd_types.REG) throw new Error(`fd ${e.fd} of task ${task.pid} has type ${e.type}, which crest cannot restore yet`);
    const list = byId.get(e.id) ?? [];
    list.push(e);
    byId.set(e.id, list);
  }
  for (const [id, entries] of byId) {
    const reg = regFile(run, id);
    const tmp = openRegFile(r, reg);
    for (const e of entries) {
      const cloexec = e.flags & FD_CLOEXEC ? O.CLOEXEC : 0;
      if (e.fd === tmp) {
        r.call(`set fd flags of fd ${e.fd} of task ${task.pid}`, SYS.fcntl, e.fd, F.SETFD, e.flags & FD_CLOEXEC);
      } else {
        r.call(`place ${reg.name} at fd ${e.fd} of task ${task.pid}`, SYS.dup3, tmp, e.fd, cloexec);
      }
    }
    if (!entries.some((e) => e.fd === tmp)) r.call(`close a temporary fd of task ${task.pid}`, SYS.close, tmp);
    const own = reg.fown;
    if (own && (own.pid || own.signum)) {
      const fd = entries[0]!.fd;
      if (own.pid) {
        r.resetScratch();
        const b = Buffer.alloc(8);
        b.writeInt32LE(own.pid_type, 0);
        b.writeInt32LE(own.pid, 4);
        r.call(`set the owner of fd ${fd} of task ${task.pid}`, SYS.fcntl, fd, F.SETOWN_EX, r.put(b));
      }
      if (own.signum) r.call(`set the signal of fd ${fd} of task ${task.pid}`, SYS.fcntl, fd, F.SETSIG, own.signum);
    }
  }
}

export const filesKind: TaskKind = {
  name: "files",
  dump(task, run) {
    task.fdinfo = dumpFds(task, run);
  },
  restore(task, run) {
    restoreFds(task, run);
  },
};
