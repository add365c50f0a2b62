// The fs struct: current directory, root directory and umask. The two
// directories go to files.img as regular files, named from the mount
// namespace's root (a chrooted task's root too); the task gets them back
// after its files are open and before its rlimits (its two temporary fds
// must not hit RLIMIT_NOFILE), seccomp filters and credentials (chroot needs
// CAP_SYS_CHROOT): opens both, chroot(".") from its root, then fchdir to its
// current directory.
import { readlinkSync, statSync } from "node:fs";
import type { TaskKind } from "../context.js";
import { O, SYS } from "../../sys/constants.js";
import { IMG } from "../../images/index.js";
import { checkReopenable, dumpDeadProcFile, dumpDeletedFile, dumpRegFile, queueOpenRegFile, regFile } from "../files/regfile.js";
import { deadProcPid, procfsPath } from "../files/proc-path.js";

export const fsKind: TaskKind = {
  name: "fs",
  dump(task, run) {
    const dir = (which: "cwd" | "root") => {
      const via = `/proc/${task.pid}/${which}`;
      const what = `the ${which === "cwd" ? "current" : "root"} directory of process ${task.pid}`;
      const flags = O.RDONLY | O.DIRECTORY | O.LARGEFILE;
      const text = readlinkSync(via);
      const dead = deadProcPid(text, via, task.pid);
      if (dead !== null) return dumpDeadProcFile(run, { path: text, flags, pos: 0n }, via, dead, what);
      // A directory of /proc that procfs calls deleted while it is there keeps its path (proc-path.ts).
      const path = procfsPath(text, statSync(via), what);
      // A removed directory comes back as a ghost (mkdir, then rmdir once entered).
      if (path.endsWith(" (deleted)")) return dumpDeletedFile(run, { path: path.slice(0, -10), flags, pos: 0n }, via, what);
      const st = checkReopenable(path, via, what);
      return dumpRegFile(run, { path, flags, pos: 0n }, st, what);
    };
    const umask = task.status[0]!.umask;
    task.fs = { cwd_id: dir("cwd"), root_id: dir("root"), umask };
  },
  restore(task, run) {
    if (task.sharesFs) return; // created with CLONE_FS: its parent restored it
    const r = task.remotes[0]!;
    const cwd = regFile(run, task.fs.cwd_id);
    const fd = queueOpenRegFile(r, cwd);
    const root = regFile(run, task.fs.root_id);
    if (root.name !== "/") {
      const rootFd = queueOpenRegFile(r, root);
      const ofImage = `(root_id ${task.fs.root_id} of ${run.images.name(IMG.fs, task.vpid)})`;
      r.later({ what: `enter the root directory ${root.name} of task ${task.pid} ${ofImage}`, nr: SYS.fchdir, args: [rootFd] });
      r.later({ what: `chroot task ${task.pid} to ${root.name} ${ofImage}`, nr: SYS.chroot, args: [r.putString(".")] });
      r.later({ what: `close a temporary fd of task ${task.pid}`, nr: SYS.close, args: [rootFd] });
    }
    r.later({ what: `change directory of task ${task.pid} to ${cwd.name} (cwd_id ${task.fs.cwd_id} of ${run.images.name(IMG.fs, task.vpid)})`, nr: SYS.fchdir, args: [fd] });
    r.later({ what: `close a temporary fd of task ${task.pid}`, nr: SYS.close, args: [fd] });
    if (task.fs.umask !== undefined) r.later({ what: `set the umask of task ${task.pid}`, nr: SYS.umask, args: [task.fs.umask] });
  },
};
