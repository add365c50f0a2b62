// The fs struct: current directory, root directory and umask. The two
// directories go to files.img as regular files; the task gets them back with
// fchdir and chroot after its files are open (paths are crest's view).
import { readlinkSync, statSync } from "node:fs";
import type { TaskKind } from "../context.js";
import { UnsupportedError } from "../context.js";
import { O, SYS } from "../../sys/constants.js";
import { IMG } from "../../images/index.js";
import { checkReopenable, dumpDeletedFile, dumpRegFile, queueOpenRegFile, regFile } from "../files/regfile.js";
import { procfsPath } from "../files/proc-path.js";

export const fsKind: TaskKind = {
  name: "fs",
  dump(task, run) {
    const dir = (which: "cwd" | "root") => {
      const via = `/proc/${task.pid}/${which}`;
      const what = `the ${which === "cwd" ? "current" : "root"} directory of process ${task.pid}`;
      // A directory of /proc that procfs calls deleted while it is there keeps its path (proc-path.ts).
      const path = procfsPath(readlinkSync(via), statSync(via), what);
      const flags = O.RDONLY | O.DIRECTORY | O.LARGEFILE;
      // A removed directory comes back as a ghost (mkdir, then rmdir once entered).
      if (path.endsWith(" (deleted)")) return dumpDeletedFile(run, { path: path.slice(0, -10), flags, pos: 0n }, via, what);
      const st = checkReopenable(path, via, what);
      return dumpRegFile(run, { path, flags, pos: 0n }, st, what);
    };
    const root = dir("root");
    if (run.files.find((f) => f.id === root)?.reg?.name !== "/") {
      throw new UnsupportedError(`process ${task.pid} runs chrooted (root ${readlinkSync(`/proc/${task.pid}/root`)}); crest does not support chroots yet`);
    }
    const umask = task.status[0]!.umask;
    task.fs = { cwd_id: dir("cwd"), root_id: root, umask };
  },
  restore(task, run) {
    if (task.sharesFs) return; // created with CLONE_FS: its parent restored it
    const r = task.remotes[0]!;
    const cwd = regFile(run, task.fs.cwd_id);
    const fd = queueOpenRegFile(r, cwd);
    r.later({ what: `change directory of task ${task.pid} to ${cwd.name} (cwd_id ${task.fs.cwd_id} of ${run.images.name(IMG.fs, task.vpid)})`, nr: SYS.fchdir, args: [fd] });
    r.later({ what: `close a temporary fd of task ${task.pid}`, nr: SYS.close, args: [fd] });
    if (task.fs.umask !== undefined) r.later({ what: `set the umask of task ${task.pid}`, nr: SYS.umask, args: [task.fs.umask] });
  },
};
