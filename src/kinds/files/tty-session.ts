// Controlling terminals of the tree's sessions, and a shell job's terminal.
//
// Dump: each task's controlling terminal and its foreground group, from
// /proc/PID/stat, for tty.ts's checks (a session of the tree whose terminal
// no fd of the tree reaches is refused there).
//
// Restore: the terminal a session had is the tty_info whose sid is the
// session (a pty's master carries it even when no fd holds the slave, as
// criu's images have it). Its leader takes it right after it is born and
// before it creates its children, so that they inherit it as they did
// (opens the slave, or the console, O_NOCTTY; TIOCSCTTY; closes it); the pty
// exists already (tty.ts makes every pair before the tree). Once every
// process is in its group, the leader sets the foreground group
// (TIOCSPGRP). A shell job (-j) runs in crest's own session and terminal: at
// the very end crest gives the terminal the job's termios and makes the
// root's group the foreground one (as criu does), the job's window size
// staying the terminal's own.
import { closeSync, openSync, constants as fsc } from "node:fs";
import type { TaskKind, RestoreRun, RestoreTask } from "../context.js";
import { TtyType, type tty_info_entry } from "../../images/index.js";
import { AT_FDCWD, O, SYS, TIOC } from "../../sys/constants.js";
import { treePath } from "../namespaces/owned.js";
import { makeTreePtys, ttyDumpState, ttyPath, ttyRestoreState } from "./tty.js";
import { setTermios, ioctlSetInt, tryIoctlInt } from "./tty-ioctl.js";
import { fd_types } from "../../images/index.js";
import { restoreState } from "../context.js";

/** A session's terminal: the path its leader opens to take it, and its foreground group. */
interface SessionTty {
  path: string;
  pgrp: number;
}

const sessions = restoreState("tty sessions", (run: RestoreRun) => {
  const s = run.state(ttyRestoreState);
  const out = new Map<number, SessionTty>();
  const leaders = new Set(run.tasks.filter((t) => t.sid === t.vpid).map((t) => t.vpid));
  const files = [...run.files.values()].filter((e) => e.type === fd_types.TTY && e.tty);
  for (const info of s.infos.values()) {
    if (!info.sid || !leaders.has(info.sid) || info.type === TtyType.CTTY || info.type === TtyType.EXT_TTY) continue;
    let path: string;
    if (info.type === TtyType.PTY) {
      // A shell job's terminal (no master in the images) is crest's, inherited, unless its new master went
      // to the RPC client (orphan_pts_master); a hung-up one controls nothing.
      if ((!s.infos.has(info.id | 1) && !s.orphaned.has(info.pty!.index)) || !info.termios) continue;
      path = `/dev/pts/${info.pty!.index}`;
    } else {
      const f = files.find((e) => e.tty!.tty_info_id === info.id);
      if (!f) continue;
      path = ttyPath(run, f);
    }
    out.set(info.sid, { path, pgrp: info.pgrp || info.sid });
  }
  return out;
});

function withTty(task: RestoreTask, path: string, what: string, fn: (fd: number) => void): void {
  const r = task.remotes[0]!;
  r.resetScratch();
  const fd = r.call(`open ${path} in task ${task.vpid} to ${what}`, SYS.openat, AT_FDCWD, r.putString(path), O.RDONLY | O.NOCTTY | O.CLOEXEC, 0);
  try {
    fn(fd);
  } finally {
    r.call(`close ${path} in task ${task.vpid}`, SYS.close, fd);
  }
}

/** The tty_info of a shell job's terminal (a pty slave with no master in the images), if any. */
function shellJobTty(run: RestoreRun): tty_info_entry | undefined {
  const infos = run.state(ttyRestoreState).infos;
  return [...infos.values()].find((i) => i.type === TtyType.PTY && !(i.id & 1) && !infos.has(i.id + 1) && i.termios);
}

export const ttySessionKind: TaskKind = {
  name: "tty sessions",
  dump(task, run) {
    const st = task.stat;
    run.state(ttyDumpState).tasks.push({
      pid: task.pid, vpid: task.vpid, vsid: task.vsid, vpgid: task.vpgid, session: st.session, pgrp: st.pgrp, ttyNr: st.ttyNr, tpgid: st.tpgid,
    });
  },
  born(task, run) {
    // The root's mounts are in place (the namespaces were born first): the tree's own devpts has its ptys made now.
    if (task === run.tasks[0]) makeTreePtys(run);
    if (task.sid !== task.vpid) return;
    const t = run.state(sessions).get(task.vpid);
    if (!t) return;
    run.log.info(`Restore session ${task.vpid} with the controlling terminal ${t.path}`);
    // A terminal is let go of its session when its last fd closes: crest holds one while the tasks open theirs (a pty's master does it for a pty).
    if (!t.path.startsWith("/dev/pts/")) {
      const held = openSync(treePath(run, t.path), fsc.O_RDWR | O.NOCTTY | O.CLOEXEC);
      run.cleanup.push(() => closeSync(held));
    }
    withTty(task, t.path, "make it its controlling terminal", (fd) => {
      task.remotes[0]!.call(`make ${t.path} the controlling terminal of session ${task.vpid}`, SYS.ioctl, fd, TIOC.SCTTY, 0);
    });
  },
  restore(task, run) {
    if (task.sid !== task.vpid) return;
    const t = run.state(sessions).get(task.vpid);
    if (!t) return;
    withTty(task, t.path, "set its foreground group", (fd) => {
      const r = task.remotes[0]!;
      const g = Buffer.alloc(4);
      g.writeInt32LE(t.pgrp, 0);
      r.call(`make group ${t.pgrp} the foreground of ${t.path}`, SYS.ioctl, fd, TIOC.SPGRP, r.put(g));
    });
  },
  resume(run) {
    const root = run.tasks[0];
    if (!root || root.sid === root.vpid || !run.opts.features.shellJob) return;
    if (tryIoctlInt(0, TIOC.GPGRP).err) {
      run.log.warn("crest's stdin is not a terminal: the shell job is restored without one to run in the foreground of");
      return;
    }
    const info = shellJobTty(run);
    // Before the foreground moves to the job: crest, in the background then, could not change its terminal.
    if (info?.termios) setTermios(0, info.termios, "crest's terminal (its stdin)");
    if (root.pgid === root.vpid) {
      run.log.info(`Making the shell job's group ${root.pid} the foreground of crest's terminal`);
      ioctlSetInt(0, TIOC.SPGRP, root.pid, "make the restored job the foreground of crest's terminal");
    }
  },
};
