// Pipes and FIFOs. A pipe's ends are open file descriptions (pipe_entry:
// flags, owner);
// both ends share pipe_id (the pipe's inode). The data in flight and the
// pipe's size go to pipes-data.img. Dump reads the data without taking it:
// crest opens a new read end through /proc/PID/fd/N (a pipe opens like a
// FIFO there) and tee()s the contents into a pipe of its own. Restore makes
// the pipe with pipe2 in the first task that needs either end, writes the
// data back through /proc, and hands the other end to whichever task needs
// it (the fd table passes it on with pidfd_getfd). A FIFO is a path
// (fifo_entry points at a reg_file_entry with its flags) with its data in
// fifo-data.img; crest keeps it open for reading and writing during the
// restore, so the tasks' opens never block, and writes the data through it.
// A deleted FIFO is a ghost (ghost.ts) mknod'ed at its old path for the
// restore; crest's held end keeps the queued data alive after it is unlinked.
import { closeSync, openSync, readSync, writeSync, constants as fsc } from "node:fs";
import { treePath } from "../namespaces/owned.js";
import type { FileKind, OpenContext } from "./file-kind.js";
import { dumpState, restoreState, type DumpRun, type RestoreRun } from "../context.js";
import { IMG, fd_types, type file_entry, type PipeDataInput, type pipe_data_entry } from "../../images/index.js";
import { dumpDeletedFile, dumpRegFile, openRegFile, regFile } from "./regfile.js";
import { F, O, SYS } from "../../sys/constants.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import type { Remote } from "../../remote/remote.js";

const SPLICE_F_NONBLOCK = 2;
const FIONREAD = 0x541b;

/** Copies the data queued in a pipe without consuming it. */
function peekPipe(via: string, what: string): { data: Buffer; size: number } {
  const rd = openSync(via, fsc.O_RDONLY | fsc.O_NONBLOCK);
  const fds = new Int32Array(2);
  try {
    const size = check(native.syscall(SYS.fcntl, rd, F.GETPIPE_SZ), `read the size of ${what}`);
    const n = new Int32Array(1);
    check(native.syscall(SYS.ioctl, rd, FIONREAD, n), `count the data in ${what}`);
    const data = Buffer.alloc(n[0]!);
    if (!data.length) return { data, size };
    check(native.syscall(SYS.pipe2, fds, O.CLOEXEC), "make a pipe");
    check(native.syscall(SYS.fcntl, fds[1], F.SETPIPE_SZ, Math.max(size, data.length)), "size crest's pipe");
    const got = check(native.syscall(SYS.tee, rd, fds[1], data.length, SPLICE_F_NONBLOCK), `copy the data in ${what}`);
    if (got !== data.length) throw new Error(`copied ${got} of ${data.length} bytes queued in ${what}`);
    for (let off = 0; off < got;) off += readSync(fds[0]!, data, off, got - off, null);
    return { data, size };
  } finally {
    closeSync(rd);
    if (fds[0]) closeSync(fds[0]);
    if (fds[1]) closeSync(fds[1]);
  }
}

const isRead = (flags: number): boolean => (flags & O.ACCMODE) === O.RDONLY;

type DataImage = typeof IMG.pipesData | typeof IMG.fifoData;
type QueuedData = Map<number, pipe_data_entry & { payload: Buffer }>;

/** Dump: the data queued in each pipe and FIFO, recorded once per pipe (pipes-data.img, fifo-data.img). */
const dumped = dumpState("pipe data", () => ({ pipes: new Map<number, PipeDataInput>(), fifos: new Map<number, PipeDataInput>() }));

/** Restore: the data queued in each pipe and FIFO by pipe_id, and the FIFOs crest holds open. */
const restoring = restoreState("pipe data", (run) => {
  const read = (image: DataImage): QueuedData =>
    new Map(run.images.readOr(image, undefined, []).map((d) => [d.entry.pipe_id, { ...d.entry, payload: d.data }]));
  return { pipes: read(IMG.pipesData), fifos: read(IMG.fifoData), held: new Map<number, number>() };
});

/** Writes data into a pipe or FIFO through an fd crest holds. */
function writeAll(fd: number, data: Buffer): void {
  for (let off = 0; off < data.length;) off += writeSync(fd, data, off, data.length - off);
}

/** `always`: the fd was opened with flags of crest's (O_NONBLOCK), which must go if the description had none. */
function setFlags(r: Remote, fd: number, flags: number, what: string, always = false): void {
  const status = flags & (O.NONBLOCK | O.DIRECT | O.ASYNC);
  if (status || always) r.call(`set the flags of ${what}`, SYS.fcntl, fd, F.SETFL, status);
}

/** Creates pipe `pipeId` in the task; returns the fd for `entry`'s end and registers every other end. */
function makePipe({ r, task, run, park }: OpenContext, entry: file_entry): number {
  const pipeId = entry.pipe!.pipe_id;
  const what = `pipe ${pipeId} in task ${task.vpid}`;
  r.resetScratch();
  const fdsAddr = r.alloc(8);
  r.call(`create ${what}`, SYS.pipe2, fdsAddr, 0);
  const fds = r.read(fdsAddr, 8);
  const ends = { read: fds.readInt32LE(0), write: fds.readInt32LE(4) };
  const d = run.state(restoring).pipes.get(pipeId);
  if (d?.size) r.call(`set the size of ${what} to ${d.size}`, SYS.fcntl, ends.write, F.SETPIPE_SZ, d.size);
  if (d && d.payload.length) {
    // crest writes the data in flight through a write end of its own.
    const w = openSync(`/proc/${task.pid}/fd/${ends.write}`, fsc.O_WRONLY | fsc.O_NONBLOCK);
    try {
      writeAll(w, d.payload);
    } finally {
      closeSync(w);
    }
  }
  // Every description of this pipe: the first of each end gets the pipe2 fd,
  // further ones (a pipe reopened through /proc) a reopen of it.
  // `ends` follows the pipe2 fds as they are parked, so later reopens find them.
  const used = { read: false, write: false };
  let mine = -1;
  const all = [...run.files.values()].filter((f) => f.type === fd_types.PIPE && f.pipe?.pipe_id === pipeId);
  for (const f of all) {
    const end = isRead(f.pipe!.flags) ? "read" : "write";
    const reopen = used[end];
    let fd = ends[end];
    if (reopen) {
      // O_NONBLOCK: a read end opened alone would wait for a writer otherwise.
      r.resetScratch();
      fd = r.call(`reopen ${what}`, SYS.openat, -100, r.putString(`/proc/self/fd/${ends[end]}`), f.pipe!.flags | O.NONBLOCK | O.CLOEXEC, 0);
    }
    used[end] = true;
    setFlags(r, fd, f.pipe!.flags, `${what} (${end} end)`, reopen);
    if (f.id === entry.id) mine = fd;
    else {
      const kept = park(fd);
      if (!reopen) ends[end] = kept;
      run.opened.set(f.id, { task, fd: kept });
      run.transient.push({ task, fd: kept });
    }
  }
  for (const end of ["read", "write"] as const) {
    if (!used[end]) r.call(`close the unused ${end} end of ${what}`, SYS.close, ends[end]);
  }
  if (mine < 0) throw run.images.invalid(IMG.files, undefined, `pipe description ${entry.id} not found among pipe ${pipeId}'s`);
  return mine;
}

export const pipeKind: FileKind = {
  name: "pipe",
  type: fd_types.PIPE,
  // An O_PATH fd on a pipe (opened through /proc) is no end of it: refused as a path.
  claims: (f) => f.link.kind === "pipe" && !(f.info.flags & O.PATH),
  dump(f, run) {
    const pipeId = f.st.ino;
    const id = run.nextId("file");
    run.files.push({ type: fd_types.PIPE, id, pipe: { id, pipe_id: pipeId, flags: f.info.flags & ~O.CLOEXEC, fown: f.fown } });
    dumpData(run.state(dumped).pipes, pipeId, f.via, `the pipe of ${f.what}`);
    return id;
  },
  finishDump: (run) => writeData(run, IMG.pipesData, run.state(dumped).pipes),
  fown: (entry) => entry.pipe?.fown,
  // Both ends share the key: each is reopened from the given pipe with its own flags (criu's reopen_pipe); no data is written into it.
  inheritKey: (entry) => (entry.pipe ? { key: `pipe:[${entry.pipe.pipe_id}]`, reopen: entry.pipe.flags } : undefined),
  open: makePipe,
};

/** Records the data queued in a pipe or FIFO, once per pipe. */
function dumpData(into: Map<number, PipeDataInput>, pipeId: number, via: string, what: string): void {
  if (into.has(pipeId)) return;
  const { data, size } = peekPipe(via, what);
  into.set(pipeId, { entry: { pipe_id: pipeId, bytes: data.length, size }, data });
}

function writeData(run: DumpRun, image: DataImage, data: Map<number, PipeDataInput>): void {
  if (data.size) run.images.write(image, undefined, [...data.values()]);
}

/** Opens a FIFO in crest once per restore, with its data written back, and holds it until the end. */
function holdFifo(run: RestoreRun, pipeId: number, path: string): void {
  const s = run.state(restoring);
  if (s.held.has(pipeId)) return;
  // The tasks' FIFO: in their mount namespace.
  const fd = openSync(treePath(run, path), fsc.O_RDWR | fsc.O_NONBLOCK);
  s.held.set(pipeId, fd);
  run.cleanup.push(() => closeSync(fd));
  const d = s.fifos.get(pipeId);
  if (d?.size) check(native.syscall(SYS.fcntl, fd, F.SETPIPE_SZ, d.size), `set the size of FIFO ${path}`);
  if (d?.payload.length) writeAll(fd, d.payload);
}

export const fifoKind: FileKind = {
  name: "FIFO",
  type: fd_types.FIFO,
  claims: (f) => f.link.kind === "path" && f.st.isFIFO() && !(f.info.flags & O.PATH),
  dump(f, run) {
    // A deleted FIFO gets a ghost (no contents), recreated with mknod at restore.
    const deleted = f.link.kind === "path" && f.link.deleted ? f.link.path : undefined;
    const facts = { path: deleted ?? f.text, flags: f.info.flags, pos: 0n, mntId: f.info.mntId, fown: f.fown };
    const regfId = deleted !== undefined ? dumpDeletedFile(run, facts, f.via, f.what) : dumpRegFile(run, facts, f.st);
    const id = run.nextId("file");
    run.files.push({ type: fd_types.FIFO, id, fifo: { id, pipe_id: f.st.ino, regf_id: regfId } });
    dumpData(run.state(dumped).fifos, f.st.ino, f.via, `the FIFO of ${f.what}`);
    return id;
  },
  finishDump: (run) => writeData(run, IMG.fifoData, run.state(dumped).fifos),
  fown: (entry, run) => (entry.fifo?.regf_id !== undefined ? run.files.get(entry.fifo.regf_id)?.reg?.fown : undefined),
  open({ r, task, run }, entry) {
    const fifo = entry.fifo!;
    // A deleted FIFO's ghost path (created on first use) or its own.
    const reg = regFile(run, fifo.regf_id ?? -1);
    holdFifo(run, fifo.pipe_id, reg.name);
    // With crest's end open, opening for reading or writing alone does not block.
    const fd = openRegFile(r, reg, reg.flags | O.NONBLOCK);
    if (!(reg.flags & O.NONBLOCK)) r.call(`set the flags of FIFO ${reg.name} in task ${task.vpid}`, SYS.fcntl, fd, F.SETFL, reg.flags & (O.APPEND | O.ASYNC | O.DIRECT));
    return fd;
  },
};
