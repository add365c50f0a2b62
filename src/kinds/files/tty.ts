// Terminals behind fds, as criu 4.x keeps them: unix98 pty masters
// (/dev/ptmx, /dev/pts/ptmx) and slaves (/dev/pts/N), /dev/tty (the
// controlling terminal, criu's CTTY), /dev/console, virtual consoles and
// serial terminals, and terminals named with --external tty[RDEV:DEV].
//
// Dump: each description is a tty_file_entry in files.img (flags, owner)
// with a reg_file_entry of its path (regf_id, not for external ones), and
// each terminal (a pty's two sides apart: id = index * 2, + 1 for the
// master) one tty_info_entry in tty-info.img: termios, locked termios and
// window size, the session and foreground group it controls, the pty's
// index, slave lock, packet mode, exclusive mode, owner and, crest's
// addition, whether a master's slave was opened and closed again. crest
// takes each terminal into itself (pidfd_getfd) and asks it there; the
// session of a slave is the holder's if it is its controlling terminal (as
// criu's TIOCGSID from inside the task gives it). Once every task is dumped
// the pairs and sessions are checked (a slave whose master is outside the
// tree is a shell job's: -j) and the data queued in each pair is read into
// tty-data.img (tty-data.ts), and put back if the tree runs on.
//
// Restore: crest makes every pty pair itself before any task exists, with
// its index: it opens ptmx until the kernel hands out that index (the
// lowest free one: lower ones are held meanwhile), so a taken index fails
// the restore before anything is made, naming who holds it. It sets the
// termios, window size, packet mode and the master's exclusive mode, puts
// the queued data back, and holds a slave open while the tasks open theirs.
// A slave whose master was outside the tree gets crest's own terminal with
// -j, or, for an RPC client that asked for orphan pts masters (runc), a new
// master at its index, handed to the client when the slave is first opened.
// A task gets its master from crest (over a socket pair), opens its slave
// and the other terminals by path (O_NOCTTY: controlling terminals are
// tty-session.ts's); the slave's exclusive mode and the lock come last.
// A shell job's slave (its master outside the tree) becomes crest's own
// terminal, its stdin, with -j, as criu does; --inherit-fd fd[N]:tty[R:D]
// gives any terminal from crest's caller.
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, statSync, fstatSync, constants as fsc } from "node:fs";
import { dirname } from "node:path";
import type { DumpRun, RestoreRun } from "../context.js";
import { dumpState, restoreState, UnsupportedError } from "../context.js";
import { IMG, TtyType, fd_types, type file_entry, type tty_data_entry, type tty_info_entry } from "../../images/index.js";
import { AT_FDCWD, F, O, SYS, TIOC } from "../../sys/constants.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import type { FileKind, OpenContext } from "./file-kind.js";
import { dumpRegFile } from "./regfile.js";
import { giveFd } from "./inherit.js";
import { takeFd } from "../sockets/unix.js";
import { ownedAtRestore, treePath } from "../namespaces/owned.js";
import {
  getLockedTermios, getTermios, getWinsize, ioctl, ioctlInt, ioctlSetInt, setLockedTermios, setTermios, setWinsize, tryIoctlInt,
} from "./tty-ioctl.js";
import { putMasterOutput, putSlaveInput, takeMasterOutput, takeSlaveInput } from "./tty-data.js";
import { devName, ETTY_INDEX, ptsIndex, ttyDriver, ttyInfoId, ttyKey } from "./tty-driver.js";

const EIO = 5, ENOTTY = 25, POLLHUP = 0x10;

// --- dump -----------------------------------------------------------------------

/** One terminal (one tty_info) as the dump found it. */
interface DumpedTty {
  info: tty_info_entry;
  /** Session and foreground group in crest's PID namespace (0: none), made the tree's at the end. */
  rawSid: number;
  rawPgrp: number;
  /** crest's copy of a pty (kept for its queued data), -1 for none. */
  copy: number;
  index: number;
  master: boolean;
  /** "/dev/pts/3 (fd 4 of process 42)" */
  what: string;
  path: string;
  holder: number;
}

/** A task as the session checks need it (its ids in crest's namespace and in the tree's), recorded by tty-session.ts. */
export interface TtyTask {
  pid: number;
  vpid: number;
  vsid: number;
  vpgid: number;
  session: number;
  pgrp: number;
  ttyNr: number;
  tpgid: number;
}

export const ttyDumpState = dumpState("ttys", () => ({
  ttys: new Map<number, DumpedTty>(),
  tasks: [] as TtyTask[],
  extCount: 0,
  /** crest's copies, closed once nothing needs them. */
  copies: [] as number[],
}));

let hostPtsDev: number | undefined;
/** The device of the host's devpts, /dev/pts. */
function hostPts(what: string): number {
  if (hostPtsDev === undefined) {
    try {
      hostPtsDev = statSync("/dev/pts").dev;
    } catch {
      throw new UnsupportedError(`${what} is a pty, but there is no /dev/pts here; crest restores ptys of the host's devpts only`);
    }
  }
  return hostPtsDev;
}

/**
 * Refuses a pty of a devpts instance other than the one at /dev/pts: the
 * host's, or, in a tree with its own mount namespace, the tree's (which the
 * restore mounts again, and makes the ptys in).
 */
function checkDevpts(run: DumpRun, path: string, dev: number, master: boolean, what: string): void {
  const own = run.ownNamespaces.has("mnt");
  let pts: number;
  try {
    pts = own ? statSync(treePath(run, "/dev/pts")).dev : hostPts(what);
  } catch {
    throw new UnsupportedError(`${what} is a pty, but the tree's mount namespace has no /dev/pts; crest restores ptys of the devpts at /dev/pts only`);
  }
  if (dev === pts) return;
  // A master opened through a ptmx device node belongs to the devpts mounted beside it, at pts/.
  if (master) {
    try {
      if (statSync(treePath(run, `${dirname(path)}/pts`)).dev === pts) return;
    } catch {
      // no pts/ beside it: not the one at /dev/pts
    }
  }
  throw new UnsupportedError(
    `${what} is ${path}, a pty of a devpts instance that is not the ${own ? "tree's" : "host's"} /dev/pts (a newinstance mount); ` +
    "crest restores ptys of the devpts at /dev/pts only: use its ptmx and pts",
  );
}

function holderStat(pid: number): { session: number; tpgid: number; ttyNr: number } {
  if (pid === process.pid) return { session: 0, tpgid: 0, ttyNr: 0 };
  const text = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { session: Number(f[3]), ttyNr: Number(f[4]), tpgid: Number(f[5]) };
}

function copyOf(pid: number, fd: number, what: string): number {
  if (pid === process.pid) return check(native.syscall(SYS.fcntl, fd, F.DUPFD_CLOEXEC, 0), `copy ${what}`);
  return takeFd(pid, fd, what);
}

/** The terminal's own state, asked on crest's copy; its session and group as the holder sees them. */
function readInfo(copy: number, id: number, type: TtyType, index: number, master: boolean, f: { pid: number; st: { rdev: number; dev: number; uid: number; gid: number } }, what: string): Omit<DumpedTty, "copy" | "index" | "master" | "what" | "path" | "holder"> {
  const excl = tryIoctlInt(copy, TIOC.GEXCL);
  if (excl.err === EIO) {
    // Hung up (a pty slave whose master was closed): only what names it, as criu writes it; restored hung up again.
    if (type !== TtyType.PTY || master) throw new UnsupportedError(`${what} is a terminal that was hung up; crest cannot restore it: close it first`);
    return {
      info: { id, type, locked: false, exclusive: false, packet_mode: false, sid: 0, pgrp: 0, rdev: f.st.rdev, pty: { index }, dev: f.st.dev, uid: f.st.uid, gid: f.st.gid },
      rawSid: 0, rawPgrp: 0,
    };
  }
  if (excl.err) check(-excl.err, `read the exclusive mode of ${what}`);
  let rawSid = 0, rawPgrp = 0;
  let locked = false, packet = false, slaveClosed = false;
  if (type === TtyType.PTY && master) {
    // On a master these name the slave's session and foreground group, whoever asks.
    const sid = tryIoctlInt(copy, TIOC.GSID), pgrp = tryIoctlInt(copy, TIOC.GPGRP);
    if (sid.err && sid.err !== ENOTTY) check(-sid.err, `read the session of ${what}`);
    rawSid = sid.value;
    rawPgrp = pgrp.err ? 0 : pgrp.value;
    locked = ioctlInt(copy, TIOC.GPTLCK, `read the lock of ${what}`) !== 0;
    packet = ioctlInt(copy, TIOC.GPKT, `read the packet mode of ${what}`) !== 0;
    const p = Buffer.alloc(8);
    p.writeInt32LE(copy, 0);
    check(native.syscall(SYS.poll, p, 1, 0), `poll ${what}`);
    slaveClosed = (p.readInt16LE(6) & POLLHUP) !== 0;
  } else {
    // A slave, console, ...: the holder's session if it is the holder's controlling terminal (criu asks TIOCGSID in the task).
    const h = holderStat(f.pid);
    if (h.ttyNr && (type === TtyType.CTTY || h.ttyNr === f.st.rdev)) {
      rawSid = h.session;
      rawPgrp = h.tpgid > 0 ? h.tpgid : 0;
    }
  }
  const info: tty_info_entry = {
    id, type, locked, exclusive: excl.value !== 0, packet_mode: packet, sid: 0, pgrp: 0, rdev: f.st.rdev,
    termios: getTermios(copy, what), termios_locked: getLockedTermios(copy, what), winsize: getWinsize(copy, what),
    ...(type === TtyType.PTY ? { pty: { index } } : {}),
    dev: f.st.dev, uid: f.st.uid, gid: f.st.gid,
    ...(slaveClosed ? { slave_closed: true } : {}),
  };
  return { info, rawSid, rawPgrp };
}

/** Session and group ids of crest's namespace as the tree's namespace has them (an outside one, a shell's, as it is). */
function treeIds(tasks: TtyTask[], sid: number, pgrp: number): { sid: number; pgrp: number; pgrpInTree: boolean } {
  const s = sid ? tasks.find((t) => t.session === sid) : undefined;
  const g = pgrp ? tasks.find((t) => t.pgrp === pgrp) : undefined;
  return { sid: s ? s.vsid : sid, pgrp: g ? g.vpgid : pgrp, pgrpInTree: !pgrp || !!g };
}

function ptsName(index: number): string {
  return `/dev/pts/${index}`;
}

/** Checks the pairs and sessions of every terminal dumped. */
function checkTtys(run: DumpRun, ttys: Map<number, DumpedTty>, tasks: TtyTask[]): void {
  const shellJob = run.opts.features.shellJob;
  // An RPC client asking for orphan pts masters (runc, always) takes the master's place on restore.
  const masterOutsideOk = shellJob || run.opts.features.orphanPtsMaster;
  const leaderOf = (vsid: number) => tasks.find((t) => t.vpid === vsid && t.vsid === vsid);
  const outside = new Set<number>();
  for (const t of ttys.values()) {
    if (t.info.type === TtyType.PTY && !t.master && !ttys.has(t.info.id + 1) && t.info.termios) {
      if (!masterOutsideOk) {
        throw new UnsupportedError(
          `${t.what}: its master (the other end of ${ptsName(t.index)}) is not in the dumped tree; if the tree is a job of a shell, dump it with -j (--shell-job); ` +
          `otherwise name it --external ${ttyKey(t.info.rdev, t.info.dev ?? 0)} and give it back on restore with --inherit-fd`,
        );
      }
      outside.add(t.index);
    }
    if (t.info.type === TtyType.CTTY && !t.rawSid) {
      throw new UnsupportedError(`${t.what} is /dev/tty of a process that has no controlling terminal any more; crest cannot restore it`);
    }
  }
  if (outside.size > 1) {
    throw new UnsupportedError(`the tree holds slaves of ${outside.size} ptys whose masters are outside it (${[...outside].map(ptsName).join(", ")}); crest gives back only one (with -j its own terminal, with orphan_pts_master a new master for the RPC client)`);
  }
  for (const t of ttys.values()) {
    if (!t.info.sid || t.info.type === TtyType.CTTY || t.info.type === TtyType.EXT_TTY) continue;
    if (!leaderOf(t.info.sid)) {
      if (shellJob && outside.has(t.index) && !t.master) continue;
      throw new UnsupportedError(
        `${t.what} is the controlling terminal of session ${t.info.sid}, whose leader is not in the dumped tree; crest cannot restore it` +
        (shellJob ? "" : " (a job of a shell: dump it with -j, --shell-job)"),
      );
    }
    if (!treeIds(tasks, 0, t.rawPgrp).pgrpInTree) {
      throw new UnsupportedError(`${t.what} is the controlling terminal of session ${t.info.sid}, whose foreground process group has no process left in the tree; crest cannot restore it`);
    }
  }
  // A session of the tree with a controlling terminal: some terminal dumped must carry it.
  for (const k of tasks) {
    if (!k.ttyNr || !leaderOf(k.vsid)) continue;
    const carried = [...ttys.values()].some((t) => t.info.sid === k.vsid && t.info.type !== TtyType.CTTY && t.info.type !== TtyType.EXT_TTY);
    if (carried) continue;
    const drv = ttyDriver(k.ttyNr);
    const name = drv?.type === TtyType.PTY && !drv.master ? ptsName(ptsIndex(k.ttyNr)) : `device ${devName(k.ttyNr)}`;
    throw new UnsupportedError(
      `process ${k.pid} (session ${k.vsid}) has the controlling terminal ${name}, which no process of the tree holds open` +
      (drv?.type === TtyType.PTY ? " and whose master is not in the tree" : "") +
      "; crest cannot restore it: keep an fd of it (or of its pty master) open in the tree, or start the tree without one (setsid)",
    );
  }
}

/** Reads the data queued in each pair the tree holds both ends of (or the master of), into tty-data.img entries; undone if the tree runs on. */
function takeQueuedData(run: DumpRun, ttys: Map<number, DumpedTty>): tty_data_entry[] {
  const out: tty_data_entry[] = [];
  for (const m of ttys.values()) {
    if (m.info.type !== TtyType.PTY || !m.master) continue;
    const s = ttys.get(m.info.id - 1);
    const pair = `the pty ${ptsName(m.index)}`;
    if (s && s.copy >= 0) {
      const input = takeSlaveInput(s.copy, `${pair} (slave side)`);
      if (input.length) {
        out.push({ tty_id: s.info.id, data: input });
        run.undo.push(() => putSlaveInput(s.copy, input, getTermios(s.copy, pair), pair));
      }
    }
    const output = takeMasterOutput(m.copy, m.info.packet_mode, `${pair} (master side, ${m.what})`);
    if (output.length) {
      out.push({ tty_id: m.info.id, data: output });
      run.undo.push(() => putMasterOutput(m.copy, output, pair));
    }
    run.log.info(`tty: ${pair}: ${s?.copy !== undefined && s.copy >= 0 ? `${out.find((e) => e.tty_id === m.info.id - 1)?.data.length ?? 0} bytes of input` : "no slave in the tree"}, ${output.length} bytes of output queued`);
  }
  return out;
}

// --- restore --------------------------------------------------------------------

interface RestoredTtys {
  infos: Map<number, tty_info_entry>;
  data: Map<number, Buffer>;
  /** crest's masters and slaves of the ptys it made, by index. */
  masters: Map<number, number>;
  slaves: Map<number, number>;
  /** Masters made only for hung-up slaves, closed once those are open. */
  fakes: Map<number, number>;
  /** Indexes of slaves whose master was outside the tree and goes to the RPC client (orphan_pts_master). */
  orphaned: Set<number>;
  /** Their new masters until handed over, when the slave is first opened (as criu). */
  orphans: Map<number, number>;
  /** The tty files whose ptys wait for the tree's devpts (its own mount namespace): makeTreePtys. */
  deferred?: file_entry[];
  /** Masters made while the mounts were restored, for a bind mount of their slave (makePtyForMount), by index. */
  premade: Map<number, number>;
}

export const ttyRestoreState = restoreState<RestoredTtys>("ttys", (run) => {
  const infos = new Map<number, tty_info_entry>();
  for (const i of run.images.readOr(IMG.ttyInfo, undefined, [] as tty_info_entry[])) {
    if (infos.has(i.id)) throw run.images.invalid(IMG.ttyInfo, undefined, `tty ${i.id} is listed twice`);
    if (i.type === TtyType.PTY && !i.pty) throw run.images.invalid(IMG.ttyInfo, undefined, `pty ${i.id} has no index`);
    infos.set(i.id, i);
  }
  const data = new Map<number, Buffer>();
  for (const d of run.images.readOr(IMG.ttyData, undefined, [] as tty_data_entry[])) {
    if (!infos.has(d.tty_id)) throw run.images.invalid(IMG.ttyData, undefined, `data queued for tty ${d.tty_id}, which is not in tty-info.img`);
    data.set(d.tty_id, Buffer.from(d.data));
  }
  const s: RestoredTtys = { infos, data, masters: new Map(), slaves: new Map(), fakes: new Map(), orphaned: new Set(), orphans: new Map(), premade: new Map() };
  run.cleanup.push(() => {
    for (const held of [s.masters, s.slaves, s.fakes, s.orphans, s.premade]) {
      for (const fd of held.values()) closeSync(fd);
      held.clear();
    }
  });
  return s;
});

/** The tty_info of a tty file. */
export function infoOf(run: RestoreRun, entry: file_entry): tty_info_entry {
  const info = run.state(ttyRestoreState).infos.get(entry.tty!.tty_info_id);
  if (!info) throw run.images.invalid(IMG.files, undefined, `tty file ${entry.id} names tty ${entry.tty!.tty_info_id}, which is not in tty-info.img`);
  return info;
}

/** The path a tty file was opened by (its reg_file_entry). */
export function ttyPath(run: RestoreRun, entry: file_entry): string {
  const reg = entry.tty!.regf_id !== undefined ? run.files.get(entry.tty!.regf_id)?.reg : undefined;
  if (!reg) throw run.images.invalid(IMG.files, undefined, `tty file ${entry.id} has no path (regf_id ${entry.tty!.regf_id})`);
  return reg.name;
}

const inheritedKey = (run: RestoreRun, info: tty_info_entry): boolean => run.opts.inheritFd.some((i) => i.key === ttyKey(info.rdev, info.dev ?? 0));

/** Who holds pty `index` now (its slave by path, or its master: a ptmx fd whose fdinfo names the index), for the error. */
function ptyHolders(index: number): string[] {
  const found: string[] = [];
  for (const pid of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    const comm = (() => {
      try {
        return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
      } catch {
        return "?";
      }
    })();
    for (const fd of fds) {
      try {
        const link = readlinkSync(`/proc/${pid}/fd/${fd}`);
        if (link === ptsName(index)) found.push(`process ${pid} (${comm}) holds its slave at fd ${fd}`);
        else if (link.endsWith("ptmx") && new RegExp(`^tty-index:\\s*${index}$`, "m").test(readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8"))) {
          found.push(`process ${pid} (${comm}) holds its master at fd ${fd}`);
        }
      } catch {
        // gone meanwhile
      }
    }
  }
  return found;
}

/**
 * Opens ptmx (at `path`) until the kernel hands out `index`: it gives the
 * lowest free one, so the lower ones crest is given are held (`spares`)
 * until every pty is made.
 */
function openPtmxIndex(run: RestoreRun, path: string, index: number, flags: number, spares: number[], at = ptyPath(run, path)): number {
  for (;;) {
    let fd: number;
    try {
      fd = openSync(at, (flags & (O.ACCMODE | O.NONBLOCK)) | O.NOCTTY | O.CLOEXEC);
    } catch (e) {
      throw new Error(`cannot open ${path} to make the pty ${ptsName(index)}: ${(e as Error).message}`);
    }
    const got = ioctlInt(fd, TIOC.GPTN, `read the index of a new pty`);
    if (got === index) return fd;
    if (got < index) {
      spares.push(fd);
      continue;
    }
    closeSync(fd);
    const holders = ptyHolders(index);
    throw new Error(
      `the pty ${ptsName(index)} cannot be made again: its index is taken` + (holders.length ? ` (${holders.join("; ")})` : "") +
      "; close it (or end that process) and restore again",
    );
  }
}

/**
 * A pty path of the tree as crest opens it: in the tree's mount namespace
 * when it has its own (its devpts, mounted again by then; /dev/ptmx is
 * the instance's own ptmx there, as a link to it may be absolute).
 */
function ptyPath(run: RestoreRun, path: string): string {
  if (!ownedAtRestore(run, "mnt")) return path;
  return treePath(run, path === "/dev/ptmx" ? "/dev/pts/ptmx" : path);
}

/**
 * Makes the pty pairs the images need, in plan (before any task exists), or,
 * in a tree with its own mount namespace, once its root has mounted its
 * devpts again (makeTreePtys, from the root's birth).
 */
export function makeTreePtys(run: RestoreRun): void {
  const s = run.state(ttyRestoreState);
  if (!s.deferred) return;
  const files = s.deferred;
  s.deferred = undefined;
  makePtys(run, files);
}

/**
 * A bind mount of a pty's slave (runc's /dev/console, a bind of the
 * container's /dev/pts/N) needs the pty while the mounts are restored,
 * before the tree's ptys are made: the mount restore makes it here through
 * the new devpts instance's ptmx (`ptmx`, as crest reaches it then), and
 * makePtys takes this master for index N (as criu's devpts_restore does).
 */
export function makePtyForMount(run: RestoreRun, ptmx: string, index: number): void {
  const s = run.state(ttyRestoreState);
  if (s.premade.has(index)) return;
  const spares: number[] = [];
  try {
    const m = openPtmxIndex(run, "/dev/ptmx", index, O.RDWR, spares, ptmx);
    // Unlocked now: the slave is what the mount binds; the pair's settings come with the other ptys.
    ioctlSetInt(m, TIOC.SPTLCK, 0, `unlock ${ptsName(index)}`);
    s.premade.set(index, m);
  } finally {
    for (const fd of spares) closeSync(fd);
  }
}

/** A master made for a mount (makePtyForMount), with the status flags `flags` asks; or undefined. */
function takePremade(s: RestoredTtys, index: number, flags: number): number | undefined {
  const m = s.premade.get(index);
  if (m === undefined) return undefined;
  s.premade.delete(index);
  if ((flags & O.ACCMODE) !== O.RDWR) {
    closeSync(m);
    throw new Error(`the master of ${ptsName(index)} was opened ${flags & O.ACCMODE ? "write" : "read"}-only, and its slave is bind-mounted: crest makes such a pty read-write only`);
  }
  if (flags & O.NONBLOCK) check(native.syscall(SYS.fcntl, m, F.SETFL, O.NONBLOCK), `make the master of ${ptsName(index)} non-blocking`);
  return m;
}

/** Makes every pty pair the images need, with its index, settings and queued data. */
function makePtys(run: RestoreRun, ttyFiles: file_entry[]): void {
  const s = run.state(ttyRestoreState);
  const masters = ttyFiles.filter((e) => { const i = infoOf(run, e); return i.type === TtyType.PTY && (i.id & 1) === 1; });
  const byIndex = new Map<number, file_entry>();
  for (const e of masters) {
    const info = infoOf(run, e);
    if (inheritedKey(run, info)) continue;
    if (byIndex.has(info.pty!.index)) throw run.images.invalid(IMG.files, undefined, `two descriptions of the master of ${ptsName(info.pty!.index)} (files ${byIndex.get(info.pty!.index)!.id} and ${e.id})`);
    byIndex.set(info.pty!.index, e);
  }
  // Hung-up slaves (their master was closed) come back through a master of their own, closed once they are open.
  const hung = new Set(ttyFiles.map((e) => infoOf(run, e)).filter((i) => i.type === TtyType.PTY && !(i.id & 1) && !i.termios && !s.infos.has(i.id + 1))
    .map((i) => i.pty!.index));
  const spares: number[] = [];
  try {
    for (const index of [...new Set([...byIndex.keys(), ...hung, ...s.orphaned])].sort((a, b) => a - b)) {
      const entry = byIndex.get(index);
      if (s.orphaned.has(index)) {
        const m = takePremade(s, index, O.RDWR) ?? openPtmxIndex(run, "/dev/ptmx", index, O.RDWR, spares);
        s.orphans.set(index, m);
        setUpPair(run, s, index, m, ttyFiles);
      } else if (!entry) {
        const m = takePremade(s, index, O.RDWR) ?? openPtmxIndex(run, "/dev/ptmx", index, O.RDWR, spares);
        s.fakes.set(index, m);
        ioctlSetInt(m, TIOC.SPTLCK, 0, `unlock ${ptsName(index)}`);
      } else {
        const m = takePremade(s, index, entry.tty!.flags) ?? openPtmxIndex(run, ttyPath(run, entry), index, entry.tty!.flags, spares);
        s.masters.set(index, m);
        setUpPair(run, s, index, m, ttyFiles);
      }
    }
  } finally {
    for (const fd of spares) closeSync(fd);
  }
}

/** Sets up a pair crest made: as dumped, or (an orphan: no master in the images) with the slave's settings. */
function setUpPair(run: RestoreRun, s: RestoredTtys, index: number, m: number, ttyFiles: file_entry[]): void {
  const what = `the pty ${ptsName(index)}`;
  const mi = s.infos.get(ttyInfoId(index, true));
  const si = s.infos.get(ttyInfoId(index, false));
  ioctlSetInt(m, TIOC.SPTLCK, 0, `unlock ${what}`);
  // Termios and the window size are the slave's: set through the master (criu sets each side's, the same values).
  const t = si?.termios ?? mi?.termios;
  const size = mi?.winsize ?? si?.winsize;
  if (mi?.termios_locked) setLockedTermios(m, mi.termios_locked, what);
  if (t) setTermios(m, t, what);
  if (size) setWinsize(m, size, what);
  if (mi?.exclusive) ioctl(m, TIOC.EXCL, 0, `make the master of ${what} exclusive`);
  if (mi) putMasterOutput(m, s.data.get(mi.id) ?? Buffer.alloc(0), what);
  const slaveFiles = ttyFiles.filter((e) => e.tty!.tty_info_id === ttyInfoId(index, false));
  if (slaveFiles.length) {
    // Held by crest while the tasks open theirs (and to put its input back into).
    const sfd = openSync(ptyPath(run, ptsName(index)), fsc.O_RDWR | O.NOCTTY | O.CLOEXEC);
    s.slaves.set(index, sfd);
    if (si?.uid !== undefined && si.gid !== undefined) {
      const st = fstatSync(sfd);
      if (st.uid !== si.uid || st.gid !== si.gid) check(native.syscall(SYS.fchown, sfd, si.uid, si.gid), `set the owner of ${ptsName(index)}`);
    }
    const mode = slaveFiles.map((e) => run.files.get(e.tty!.regf_id ?? -1)?.reg?.mode).find((x) => x !== undefined);
    if (mode !== undefined && (fstatSync(sfd).mode & 0o7777) !== (mode & 0o7777)) check(native.syscall(SYS.fchmod, sfd, mode & 0o7777), `set the mode of ${ptsName(index)}`);
    if (t) putSlaveInput(sfd, s.data.get(ttyInfoId(index, false)) ?? Buffer.alloc(0), t, what);
  } else if (mi?.slave_closed) {
    // Its slave was opened and closed again: its reader gets EIO, as it did.
    closeSync(openSync(ptyPath(run, ptsName(index)), fsc.O_RDWR | O.NOCTTY | O.CLOEXEC));
  }
  // After the data: turning packet mode on clears a pending status.
  if (mi?.packet_mode) ioctlSetInt(m, TIOC.PKT, 1, `set packet mode on ${what}`);
}

/** Gives the RPC client the new master of an orphan slave (criu's orphan-pts-master), once, as its slave is first opened. */
function handOverOrphan(run: RestoreRun, s: RestoredTtys, index: number): void {
  const m = s.orphans.get(index);
  if (m === undefined) return;
  run.log.info(`Handing the new master of ${ptsName(index)} to the RPC client (orphan-pts-master)`);
  run.giveOrphanPtsMaster!(m);
  s.orphans.delete(index);
  closeSync(m);
}

/** Whether crest's stdin is a terminal (the one a shell job is given back with -j). */
function stdinIsTty(): boolean {
  return native.syscall(SYS.ioctl, 0, TIOC.GPGRP, Buffer.alloc(4)) >= 0 || native.syscall(SYS.ioctl, 0, TIOC.TCGETS, Buffer.alloc(64)) >= 0;
}

function openByPath(c: OpenContext, path: string, flags: number, what: string): number {
  const { r, task } = c;
  r.resetScratch();
  return r.call(`open ${what} in task ${task.vpid}`, SYS.openat, AT_FDCWD, r.putString(path), (flags & ~(O.CREAT | O.EXCL | O.TRUNC | O.CLOEXEC)) | O.NOCTTY | O.CLOEXEC, 0);
}

/** Gives the task a description crest holds, with the dumped status flags. */
function giveTty(c: OpenContext, mine: number, flags: number, what: string): number {
  const fd = giveFd(c, mine, what);
  c.r.call(`set the flags of ${what} in task ${c.task.vpid}`, SYS.fcntl, fd, F.SETFL, flags & (O.NONBLOCK | O.ASYNC | O.APPEND));
  return fd;
}

export const ttyKind: FileKind = {
  name: "tty",
  type: fd_types.TTY,
  // A pty slave whose master was closed shows "(deleted)": its node left /dev/pts with the pair.
  claims: (f, run) => f.link.kind === "path" && (!f.link.deleted || ttyDriver(f.st.rdev)?.type === TtyType.PTY) && !(f.info.flags & O.PATH) && f.st.isCharacterDevice() &&
    (ttyDriver(f.st.rdev) !== undefined || run.opts.external.includes(ttyKey(f.st.rdev, f.st.dev))),
  dump(f, run) {
    const s = run.state(ttyDumpState);
    const external = run.opts.external.includes(ttyKey(f.st.rdev, f.st.dev));
    const driver = ttyDriver(f.st.rdev);
    const type = external ? TtyType.EXT_TTY : driver!.type;
    const master = !external && driver!.master;
    const path = f.link.kind === "path" ? f.link.path : f.text;
    const what = `${f.text} (${f.what})`;
    const copy = copyOf(f.pid, f.fd, what);
    let keep = false;
    try {
      let index: number;
      if (external) index = ETTY_INDEX + ++s.extCount;
      else if (type === TtyType.PTY) {
        checkDevpts(run, path, f.st.dev, master, f.what);
        index = master ? ioctlInt(copy, TIOC.GPTN, `read the index of ${what}`) : ptsIndex(f.st.rdev);
      } else index = driver!.index!;
      const infoId = ttyInfoId(index, master);
      const regfId = external ? undefined : dumpRegFile(run, { path, flags: f.info.flags, pos: f.info.pos, mntId: f.info.mntId, fown: f.fown }, f.st);
      const id = run.nextId("file");
      run.files.push({
        type: fd_types.TTY, id,
        tty: { id, tty_info_id: infoId, flags: f.info.flags & ~O.CLOEXEC, fown: f.fown, ...(regfId !== undefined ? { regf_id: regfId } : {}) },
      });
      if (!s.ttys.has(infoId)) {
        const got = readInfo(copy, infoId, type, index, master, f, what);
        keep = type === TtyType.PTY;
        s.ttys.set(infoId, { ...got, copy: keep ? copy : -1, index, master, what, path, holder: f.pid });
        if (keep) s.copies.push(copy);
      }
      return id;
    } finally {
      if (!keep) closeSync(copy);
    }
  },
  finishDump(run) {
    const s = run.state(ttyDumpState);
    // A session's controlling terminal no fd reaches is refused even when the tree holds no terminal at all.
    if (!s.ttys.size) return checkTtys(run, s.ttys, s.tasks);
    // Last to run when the tree runs on: crest's copies are closed after every write-back.
    run.undo.push(() => {
      for (const fd of s.copies) closeSync(fd);
      s.copies = [];
    });
    for (const t of s.ttys.values()) {
      const ids = treeIds(s.tasks, t.rawSid, t.rawPgrp);
      t.info.sid = ids.sid;
      t.info.pgrp = ids.pgrp;
    }
    checkTtys(run, s.ttys, s.tasks);
    const data = takeQueuedData(run, s.ttys);
    run.images.write(IMG.ttyInfo, undefined, [...s.ttys.values()].map((t) => t.info).sort((a, b) => a.id - b.id));
    if (data.length) run.images.write(IMG.ttyData, undefined, data);
  },
  plan(run) {
    const ttyFiles = [...run.files.values()].filter((e) => e.type === fd_types.TTY);
    if (!ttyFiles.length) return;
    const s = run.state(ttyRestoreState);
    for (const e of ttyFiles) {
      if (!e.tty) throw run.images.invalid(IMG.files, undefined, `file ${e.id} is a tty without its tty entry`);
      const info = infoOf(run, e);
      if (info.type === TtyType.PTY && !(info.id & 1) && !s.infos.has(info.id + 1) && info.termios && !inheritedKey(run, info)) {
        // As criu: a new master for the RPC client if it asked for one (and takes notifications), else crest's terminal with -j.
        if (run.opts.features.orphanPtsMaster && run.giveOrphanPtsMaster) {
          s.orphaned.add(info.pty!.index);
          continue;
        }
        if (!run.opts.features.shellJob) {
          throw new Error(
            `file ${e.id} is the pty slave ${ptsName(info.pty!.index)}, whose master was outside the dumped tree: restore it with -j (--shell-job) in the terminal it should use, ` +
            `or give a terminal with --inherit-fd fd[N]:${ttyKey(info.rdev, info.dev ?? 0)}` +
            (run.opts.features.orphanPtsMaster ? " (orphan_pts_master hands a new master to an RPC client that takes notifications: set notify_scripts too)" : ""),
          );
        }
        if (!stdinIsTty()) throw new Error(`restore -j gives the job crest's own terminal (its stdin), but crest's stdin is not a terminal: run crest restore -j in the terminal the job should use`);
      }
      if (info.type === TtyType.EXT_TTY && !inheritedKey(run, info)) {
        throw new Error(`file ${e.id} is an external terminal (dumped with --external ${ttyKey(info.rdev, info.dev ?? 0)}): give one with --inherit-fd fd[N]:${ttyKey(info.rdev, info.dev ?? 0)}`);
      }
    }
    if (ownedAtRestore(run, "mnt")) s.deferred = ttyFiles;
    else makePtys(run, ttyFiles);
  },
  open(c, entry) {
    const { run } = c;
    const info = infoOf(run, entry);
    const flags = entry.tty!.flags;
    if (info.type === TtyType.PTY) {
      const index = info.pty!.index;
      if (info.id & 1) return giveTty(c, run.state(ttyRestoreState).masters.get(index)!, flags, `the master of ${ptsName(index)}`);
      const s = run.state(ttyRestoreState);
      if (s.orphaned.has(index)) handOverOrphan(run, s, index);
      if (s.infos.has(info.id + 1) || !info.termios || s.orphaned.has(index)) return openByPath(c, ttyPath(run, entry), flags, ptsName(index));
      // A shell job's terminal: crest's own (-j, checked in plan).
      return giveTty(c, 0, flags, `crest's terminal (its stdin, for ${ptsName(index)} of the shell job)`);
    }
    if (info.type === TtyType.EXT_TTY) throw new Error(`file ${entry.id} is an external terminal: it needs --inherit-fd fd[N]:${ttyKey(info.rdev, info.dev ?? 0)}`);
    return openByPath(c, ttyPath(run, entry), flags, ttyPath(run, entry));
  },
  inheritKey: (entry, run) => ({ key: ttyKey(infoOf(run, entry).rdev, infoOf(run, entry).dev ?? 0) }),
  fown: (entry) => entry.tty?.fown,
  finishRestore(run) {
    const s = run.state(ttyRestoreState);
    for (const [index, sfd] of s.slaves) {
      if (s.infos.get(ttyInfoId(index, false))?.exclusive) ioctl(sfd, TIOC.EXCL, 0, `make ${ptsName(index)} exclusive`);
      closeSync(sfd);
      s.slaves.delete(index);
    }
    for (const [index, m] of s.masters) {
      if (s.infos.get(ttyInfoId(index, true))?.locked) ioctlSetInt(m, TIOC.SPTLCK, 1, `lock ${ptsName(index)}`);
    }
    // Their slaves hang up, as they were.
    for (const fd of s.fakes.values()) closeSync(fd);
    s.fakes.clear();
  },
};
