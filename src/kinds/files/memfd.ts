// memfd: anonymous files (memfd_create) behind fds and mappings. The file
// itself (name, size, mode, seals) goes to memfd.img as memfd_inode_entry,
// its contents to pagemap-shmem-INO.img like shared anonymous memory; each
// open description is a memfd_file_entry in files.img. Restore creates the
// file once, in the first task that needs it, lets that task read the
// contents in through a temporary mapping, and every other user reopens it
// through /proc (a new description of the same file) or takes a shared
// description with pidfd_getfd. Shared anonymous memory reached through an
// fd or a private mapping is recorded as a memfd named /dev/zero, as criu
// 4.2 does (an fd of shared anonymous hugetlb memory, a hugetlb memfd named
// /anon_hugepage), and restored as shared anonymous memory again, the same
// object as its shared mappings (memory.ts). A hugetlb memfd keeps its page size in
// hugetlb_flag (MFD_HUGETLB and log2 of the size at bit 26, as criu).
import { closeSync, fstatSync, openSync, statSync, type Stats } from "node:fs";
import type { FileKind, OpenContext } from "./file-kind.js";
import type { DumpRun } from "../context.js";
import { dumpState, restoreState } from "../context.js";
import { IMG, fd_types, type fown_entry, type memfd_inode_entry } from "../../images/index.js";
import { F, MAP, MFD_HUGETLB, O, PAGE_SIZE, PROT, SYS } from "../../sys/constants.js";
import { openCrestProcPath } from "./inherit.js";
import { native } from "../../sys/native.js";
import { PagesWriter, fillFromPages } from "../memory/pages.js";
import type { Remote } from "../../remote/remote.js";
import { ANON_HUGEPAGE, hugePageSize, hugeSizeFlag } from "../memory/hugetlb.js";
import { dumpShmemObject, shmemObject } from "../memory/memory.js";

const PREFIX = "/memfd:";
const F_SEAL_SEAL = 1;
const MFD_CLOEXEC = 1, MFD_ALLOW_SEALING = 2;

/** The memfd's name as memfd_create got it, from "/memfd:NAME (deleted)"; shared anonymous memory is "/dev/zero". */
export const isMemfdPath = (path: string): boolean => path.startsWith(PREFIX);
const nameOf = (path: string): string => (isMemfdPath(path) ? path.slice(PREFIX.length) : path).replace(/ \(deleted\)$/, "");

/**
 * Shared anonymous memory (mmap MAP_SHARED|MAP_ANONYMOUS) shows as a
 * deleted regular file /dev/zero on the kernel's shmem mount; criu 4.2
 * records an fd of it, or a private mapping of it, as a memfd of that name.
 */
const SHMEM_NAME = "/dev/zero";
export function isShmemFile(path: string, via: string): boolean {
  if (path !== SHMEM_NAME) return false;
  try {
    return statSync(via).isFile();
  } catch {
    return false;
  }
}

/** An fd of shared anonymous hugetlb memory (its link "/anon_hugepage (deleted)"), a hugetlb memfd to criu 4.2. */
const isHugeAnonFd = (path: string, st: Stats): boolean => path === ANON_HUGEPAGE && st.isFile() && st.blksize > PAGE_SIZE;

/** The inode is shared anonymous memory (plain or hugetlb), not a memfd of its own. */
const isShmemInode = (e: { name: string; hugetlb_flag?: number }): boolean =>
  e.hugetlb_flag ? e.name === ANON_HUGEPAGE : e.name === SHMEM_NAME;

/**
 * Adds the memfd behind `via` (a /proc/PID/fd/N or map_files link) to
 * memfd.img once, with its contents, and returns its inode_id.
 */
function dumpInode(run: DumpRun, via: string, path: string, st: Stats, pid: number): number {
  const s = run.state(dumped);
  const known = s.ids.get(st.ino);
  if (known !== undefined) return known;
  const fd = openSync(via, "r");
  try {
    const inodeId = run.nextId("kobj");
    s.ids.set(st.ino, inodeId);
    const seals = native.syscall(SYS.fcntl, fd, F.GET_SEALS);
    const inode: memfd_inode_entry = {
      name: nameOf(path), uid: st.uid, gid: st.gid, size: BigInt(st.size), shmid: st.ino, seals: seals < 0 ? F_SEAL_SEAL : seals,
      inode_id: BigInt(inodeId), mode: st.mode,
      // A hugetlb memfd: hugetlbfs gives the huge page size as the block size.
      ...(st.blksize > PAGE_SIZE ? { hugetlb_flag: MFD_HUGETLB + hugeSizeFlag(st.blksize) } : {}),
    };
    // Shared anonymous memory: its contents go once, with its shared mappings' (memory.ts).
    if (isShmemInode(inode)) {
      dumpShmemObject(run, pid, BigInt(st.ino), via);
      s.inodes.push(inode);
      return inodeId;
    }
    const pagesId = run.nextId("pages");
    const w = new PagesWriter(pid, run.images.pages(pagesId, { shmem: true, id: st.ino }), run.stats);
    try {
      run.stats.shpagesScanned += Math.ceil(st.size / PAGE_SIZE);
      run.stats.shpagesWritten += w.dumpShmem(fd, st.size);
    } finally {
      w.close();
    }
    run.images.write(IMG.shmemPagemap, st.ino, { head: { pages_id: pagesId }, entries: w.entries });
    s.inodes.push(inode);
    return inodeId;
  } finally {
    closeSync(fd);
  }
}

/** Dump: the memfds written to memfd.img, their inode_ids by inode number. */
const dumped = dumpState("memfd", () => ({ ids: new Map<number, number>(), inodes: [] as memfd_inode_entry[] }));

/** Adds a memfd description to files.img and returns its id (also used for mappings: vma.shmid). */
export function dumpMemfd(run: DumpRun, f: { via: string; path: string; pid: number; flags: number; pos: bigint; fown: fown_entry }): number {
  const st = fstatOf(f.via);
  const inodeId = dumpInode(run, f.via, f.path, st, f.pid);
  const id = run.nextId("file");
  run.files.push({ type: fd_types.MEMFD, id, memfd: { id, flags: f.flags & ~O.CLOEXEC, pos: f.pos, fown: f.fown, inode_id: inodeId } });
  return id;
}

function fstatOf(path: string): Stats {
  const fd = openSync(path, "r");
  try {
    return fstatSync(fd);
  } finally {
    closeSync(fd);
  }
}

// --- restore ------------------------------------------------------------------

interface Created {
  /** A task and fd holding the file. */
  vpid: number;
  pid: number;
  fd: number;
  entry: memfd_inode_entry;
  /** memfd_create's own description went to a read-write fd already. */
  rwTaken: boolean;
  /** The task that made it, which seals it at the end. */
  r: Remote;
  /** Shared anonymous memory (memory.ts holds it): sealed for good by the kernel already. */
  shmem: boolean;
}

/** Restore: memfd.img by inode_id, and the memfds made so far. */
const restoring = restoreState("memfd", (run) => ({
  inodes: new Map(run.images.readOr(IMG.memfdInode, undefined, []).map((e) => [Number(e.inode_id), e])),
  created: new Map<number, Created>(),
}));

/**
 * Shared anonymous memory reached through an fd or a private mapping: the
 * object its shared mappings have too (made as they make it, with its
 * contents), cut to its size by whoever reaches it first through an fd.
 */
function shmemFile({ r, task, run }: OpenContext, e: memfd_inode_entry): Created {
  const obj = shmemObject(task, run, BigInt(e.shmid), e.size, e.hugetlb_flag ? MAP.HUGETLB + (e.hugetlb_flag - MFD_HUGETLB) : 0);
  if (obj.created) r.call(`size shared memory ${e.shmid} in task ${task.vpid}`, SYS.ftruncate, obj.fd, e.size);
  const c = { vpid: obj.vpid, pid: obj.pid, fd: obj.fd, entry: e, rwTaken: false, r, shmem: true };
  run.state(restoring).created.set(Number(e.inode_id), c);
  return c;
}

/** Creates the memfd in the task, fills it, and keeps it (parked) for everyone that needs it. */
function create(ctx: OpenContext, e: memfd_inode_entry): Created {
  const { r, task, run, park } = ctx;
  if (isShmemInode(e)) return shmemFile(ctx, e);
  const what = `memfd ${e.name} in task ${task.vpid}`;
  r.resetScratch();
  // hugetlb_flag: MFD_HUGETLB and the page size (sealing hugetlb memfds needs Linux 4.16).
  const fd = park(r.call(`create ${what}`, SYS.memfd_create, r.putString(e.name), MFD_CLOEXEC + MFD_ALLOW_SEALING + (e.hugetlb_flag ?? 0)));
  r.call(`size ${what}`, SYS.ftruncate, fd, e.size);
  if (e.mode !== undefined) r.call(`set the mode of ${what}`, SYS.fchmod, fd, e.mode & 0o7777);
  const size = Number(e.size);
  if (size) {
    // The task reads the contents in through a mapping of its own, removed after.
    const page = e.hugetlb_flag ? hugePageSize(e.hugetlb_flag) : PAGE_SIZE;
    const len = Math.ceil(size / page) * page;
    const addr = r.call(`map ${what}`, SYS.mmap, 0, len, PROT.READ | PROT.WRITE, MAP.SHARED, fd, 0);
    const { head, entries } = run.images.read(IMG.shmemPagemap, e.shmid);
    const pages = run.images.pages(head.pages_id, { what });
    try {
      fillFromPages(r, pages, entries, run.stats, (off) => BigInt(addr) + off);
    } finally {
      pages.close();
    }
    r.call(`unmap ${what}`, SYS.munmap, addr, len);
  }
  const c = { vpid: task.vpid, pid: task.pid, fd, entry: e, rwTaken: false, r, shmem: false };
  run.state(restoring).created.set(Number(e.inode_id), c);
  run.transient.push({ task, fd });
  return c;
}

/** memfd_create's description, from the task that holds it (pidfd_getfd sets FD_CLOEXEC). */
function takeFrom(r: Remote, c: Created, name: string): number {
  const pidfd = r.call(`open a pidfd of task ${c.vpid} for ${name}`, SYS.pidfd_open, c.vpid, 0);
  try {
    return r.call(`take ${name} from task ${c.vpid}`, SYS.pidfd_getfd, pidfd, c.fd, 0);
  } finally {
    r.call(`close a pidfd in task ${r.pid}`, SYS.close, pidfd);
  }
}

/**
 * Opens memfd `inodeId` in the task with `flags`: creating the file if no
 * task has it yet. A read-write open gets memfd_create's own description
 * (every mapping, and the first fd; another task takes it with pidfd_getfd):
 * a read-write reopen through /proc counts as a writer, after which
 * execveat() of the memfd fails with ETXTBSY, as criu notes. Anything else
 * is a new description opened through /proc.
 */
export function openMemfd(ctx: OpenContext, inodeId: number, flags: number, mapping = false): number {
  const { r, task, run } = ctx;
  const s = run.state(restoring);
  let c = s.created.get(inodeId);
  if (!c) {
    const e = s.inodes.get(inodeId);
    if (!e) throw run.images.invalid(IMG.memfdInode, undefined, `no memfd with inode_id ${inodeId}`);
    c = create(ctx, e);
  }
  const name = `memfd ${c.entry.name} in task ${task.vpid}`;
  if ((flags & O.ACCMODE) === O.RDWR && (mapping || !c.rwTaken)) {
    const fd = c.pid === task.pid ? r.call(`duplicate ${name}`, SYS.fcntl, c.fd, F.DUPFD_CLOEXEC, 0) : takeFrom(r, c, name);
    if (!mapping) {
      c.rwTaken = true;
      r.call(`set the flags of ${name}`, SYS.fcntl, fd, F.SETFL, flags & ~O.CLOEXEC);
    }
    return fd;
  }
  return openCrestProcPath(run, r, task.vpid, `/proc/${c.pid}/fd/${c.fd}`, flags & ~O.CLOEXEC, name);
}

export const memfdKind: FileKind = {
  name: "memfd",
  type: fd_types.MEMFD,
  // O_PATH fds too: crest reads the memfd through its own reopen of the link
  // (the task's fd is never used: fcntl on it would say EBADF), files.ts
  // keeps no owner for them, and the restore reopens with O_PATH (position 0).
  claims: (f) => f.link.kind === "path" && f.link.deleted && (isMemfdPath(f.link.path) || (f.link.path === SHMEM_NAME && f.st.isFile()) || isHugeAnonFd(f.link.path, f.st)),
  dump: (f, run) => dumpMemfd(run, { via: f.via, path: f.text, pid: f.pid, flags: f.info.flags, pos: f.info.pos, fown: f.fown }),
  finishDump(run) {
    const { inodes } = run.state(dumped);
    if (inodes.length) run.images.write(IMG.memfdInode, undefined, inodes);
  },
  fown: (entry) => entry.memfd?.fown,
  open(c, entry) {
    const m = entry.memfd!;
    const fd = openMemfd(c, m.inode_id, m.flags);
    if (m.pos) c.r.call(`seek memfd in task ${c.task.vpid}`, SYS.lseek, fd, m.pos, 0);
    return fd;
  },
  // Seals once every task has its mappings and fds (a seal can forbid writable mappings).
  finishRestore(run) {
    for (const c of run.state(restoring).created.values()) {
      if (c.entry.seals && !c.shmem) c.r.call(`seal memfd ${c.entry.name} in task ${c.vpid}`, SYS.fcntl, c.fd, F.ADD_SEALS, c.entry.seals);
    }
  },
};
