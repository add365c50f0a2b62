// The IPC namespace: its sysctls and SysV shared memory, semaphores and
// message queues, read and recreated by crest from inside the tree's
// namespace (setns on its own thread), each object with its id through
// /proc/sys/kernel/*_next_id. Segment contents go inline in ipcns-shm (not
// in pagemap-shmem), where crit reads them.
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { restoreState, type TaskKind } from "../context.js";
import {
  IMG, ImageError, type ImageKind, type ipc_var_entry, type ipc_desc_entry, type IpcShmSegmentInput, type IpcSemSetInput, type IpcMsgQueueInput,
} from "../../images/index.js";
import type { RestoreImages } from "../../images/store.js";
import { CLONE, IPC, MSG_COPY, PAGE_SIZE, SEM, SHM, SYS } from "../../sys/constants.js";
import { PE, pageCount } from "../memory/pages.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { inNamespaceOf } from "../../sys/namespace.js";
import { readMemory, writeMemory } from "../../remote/memory.js";
import { parseSysvipc, type SysvipcRow } from "../../proc/index.js";
import { ownedAtRestore } from "./owned.js";
import { hugePageSizeOf, hugeSizeFlag } from "../memory/hugetlb.js";
import { asUsernsRoot } from "./user.js";

/** sizeof(struct msqid64_ds) and friends: the ds buffers IPC_STAT and IPC_SET take. */
const DS_SIZE = 128;

/** The kinds whose kernel.KIND_next_id the namespace keeps (ipc_var_entry's *_next_id). */
const NEXT_ID_KINDS = ["msg", "sem", "shm"] as const;

interface IpcNamespaceDump {
  vars: ipc_var_entry;
  shm: IpcShmSegmentInput[];
  sem: IpcSemSetInput[];
  msg: IpcMsgQueueInput[];
}

// --- dump ---------------------------------------------------------------------

/** ipc_var_entry fields and the sysctls they are (besides kernel.sem); true: a 64-bit value. */
const IPC_SYSCTLS: ReadonlyArray<[keyof ipc_var_entry, string, boolean?]> = [
  ["msg_ctlmax", "kernel/msgmax"], ["msg_ctlmnb", "kernel/msgmnb"], ["msg_ctlmni", "kernel/msgmni"],
  ["auto_msgmni", "kernel/auto_msgmni"], ["shm_ctlmax", "kernel/shmmax", true], ["shm_ctlall", "kernel/shmall", true],
  ["shm_ctlmni", "kernel/shmmni"], ["shm_rmid_forced", "kernel/shm_rmid_forced"],
  ["mq_queues_max", "fs/mqueue/queues_max"], ["mq_msg_max", "fs/mqueue/msg_max"], ["mq_msgsize_max", "fs/mqueue/msgsize_max"],
  ["mq_msg_default", "fs/mqueue/msg_default"], ["mq_msgsize_default", "fs/mqueue/msgsize_default"],
];

const sysctl = (path: string): string => readFileSync(`/proc/sys/${path}`, "utf8").trim();
const sysctlNum = (path: string): number => (existsSync(`/proc/sys/${path}`) ? Number(sysctl(path)) : 0);

function desc(row: SysvipcRow, idCol: string): ipc_desc_entry {
  return {
    key: Number(BigInt.asUintN(32, row.key!)), uid: Number(row.uid), gid: Number(row.gid), cuid: Number(row.cuid),
    cgid: Number(row.cgid), mode: Number(row.perms), id: Number(row[idCol]),
  };
}

/**
 * Reads size bytes of a SysV segment by attaching it read-only in crest,
 * and its hugetlb_flag if it is hugetlb memory (SHM_HUGETLB): as criu, from
 * the attachment's file, whose block size hugetlbfs makes the page size.
 */
function shmContents(id: number, size: number): { data: Buffer; hugetlb_flag?: number } {
  const addr = check(native.syscall(SYS.shmat, id, 0, SHM.RDONLY), `attach shared memory segment ${id}`);
  try {
    // A hugetlb attach spans whole huge pages, past the segment's size: found by its start.
    const link = readdirSync("/proc/self/map_files").find((n) => n.startsWith(`${addr.toString(16)}-`));
    if (!link) throw new Error(`the attachment of SysV segment ${id} at 0x${addr.toString(16)} is not in crest's /proc/self/map_files`);
    const page = hugePageSizeOf(`/proc/self/map_files/${link}`);
    return { data: readMemory(process.pid, addr, size), ...(page > PAGE_SIZE ? { hugetlb_flag: SHM.HUGETLB + hugeSizeFlag(page) } : {}) };
  } finally {
    native.syscall(SYS.shmdt, addr);
  }
}

function dumpIpc(pid: number): IpcNamespaceDump {
  return inNamespaceOf(pid, "ipc", () => {
    const vars = { sem_ctls: sysctl("kernel/sem").split(/\s+/).map(Number) } as ipc_var_entry;
    for (const [field, path, big] of IPC_SYSCTLS) {
      (vars as unknown as Record<string, number | bigint>)[field] = big ? BigInt(sysctl(path)) : sysctlNum(path);
    }
    // The id the next object of a kind gets when asked for (-1: none asked for; left out, as criu does).
    for (const kind of NEXT_ID_KINDS) {
      const v = existsSync(`/proc/sys/kernel/${kind}_next_id`) ? Number(sysctl(`kernel/${kind}_next_id`)) : -1;
      if (v >= 0) (vars as unknown as Record<string, number>)[`${kind}_next_id`] = v;
    }
    // Contents inline after each entry (not in pagemap-shmem): crit reads them that way.
    const shm = parseSysvipc(readFileSync("/proc/sysvipc/shm", "utf8"), "sysvipc/shm").map((row) => {
      const { data, hugetlb_flag } = shmContents(Number(row.shmid), Number(row.size));
      return { entry: { desc: desc(row, "shmid"), size: row.size!, in_pagemaps: false, ...(hugetlb_flag ? { hugetlb_flag } : {}) }, data };
    });
    const semsets = parseSysvipc(readFileSync("/proc/sysvipc/sem", "utf8"), "sysvipc/sem").map((row) => {
      const n = Number(row.nsems);
      const vals = Buffer.alloc(n * 2);
      check(native.syscall(SYS.semctl, Number(row.semid), 0, SEM.GETALL, vals), `read semaphore set ${row.semid}`);
      return { entry: { desc: desc(row, "semid"), nsems: n }, values: Array.from({ length: n }, (_, i) => vals.readUInt16LE(i * 2)) };
    });
    const msgmax = Math.max(vars.msg_ctlmax, 8192);
    const msg = parseSysvipc(readFileSync("/proc/sysvipc/msg", "utf8"), "sysvipc/msg").map((row) => {
      const id = Number(row.msqid);
      const ds = Buffer.alloc(DS_SIZE);
      check(native.syscall(SYS.msgctl, id, IPC.STAT, ds), `read message queue ${id}`);
      const buf = Buffer.alloc(8 + msgmax);
      const messages = Array.from({ length: Number(row.qnum) }, (_, i) => {
        // MSG_COPY: the i-th message, left in the queue.
        const n = check(native.syscall(SYS.msgrcv, id, buf, msgmax, i, IPC.NOWAIT | MSG_COPY), `copy message ${i} of queue ${id}`);
        return { msg: { mtype: buf.readBigInt64LE(0), msize: n }, data: Buffer.from(buf.subarray(8, 8 + n)) };
      });
      return { entry: { desc: desc(row, "msqid"), qbytes: Number(ds.readBigUInt64LE(88)), qnum: messages.length }, messages };
    });
    return { vars, shm, sem: semsets, msg };
  });
}

// --- restore ------------------------------------------------------------------

/** A shared memory object's contents from pagemap-shmem-SHMID.img and its pages file. */
function shmemContents(images: RestoreImages, shmid: bigint, size: number): Buffer {
  const out = Buffer.alloc(size);
  if (!images.exists(IMG.shmemPagemap, shmid)) return out;
  const { head, entries } = images.read(IMG.shmemPagemap, shmid);
  const pages = images.read(IMG.pages, head.pages_id);
  let off = 0;
  for (const e of entries) {
    if (!((e.flags ?? PE.PRESENT) & PE.PRESENT)) continue;
    const len = pageCount(e) * PAGE_SIZE;
    pages.copy(out, Number(e.vaddr), off, off + Math.min(len, size - Number(e.vaddr)));
    off += len;
  }
  return out;
}

/** struct ipc64_perm with the fields IPC_SET takes, in a ds buffer. */
function permBuffer(d: ipc_desc_entry): Buffer {
  const b = Buffer.alloc(DS_SIZE);
  b.writeUInt32LE(d.uid, 4);
  b.writeUInt32LE(d.gid, 8);
  b.writeUInt32LE(d.mode & 0o777, 20);
  return b;
}

/** Writes the namespace's sysctls as their owner (fn runs as the root of a user namespace the tree has of its own). */
type AsOwner = (fn: () => void) => void;

/**
 * Makes the kernel hand out `id` to the next object of that kind
 * (CONFIG_CHECKPOINT_RESTORE). Not as the namespace's owner: the kernel
 * lets only a task capable in its user namespace write these (crest is).
 */
function nextId(kind: "shm" | "sem" | "msg", id: number): void {
  writeFileSync(`/proc/sys/kernel/${kind}_next_id`, String(id));
}

function created(kind: string, want: number, got: number): void {
  check(got, `create ${kind} ${want}`);
  if (got !== want) throw new Error(`${kind} ${want} was created with id ${got}`);
}

/** Runs fn, which makes the objects of one image: a failure names that image (the kernel's refusal names only the object). */
function fromImage<T>(images: RestoreImages, kind: ImageKind<unknown, never>, id: number, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ImageError) throw e;
    throw images.invalid(kind, id, (e as Error).message);
  }
}

/** Recreates the namespace's objects (crest is inside it); returns the segments to mark for removal once attached. */
function restoreIpc(images: RestoreImages, id: number, asOwner: AsOwner): number[] {
  const [vars] = images.read(IMG.ipcVar, id);
  if (vars) {
    const set = (path: string, v: number | bigint | string | undefined) => {
      if (v !== undefined && existsSync(`/proc/sys/${path}`)) fromImage(images, IMG.ipcVar, id, () => asOwner(() => writeFileSync(`/proc/sys/${path}`, String(v))));
    };
    set("kernel/sem", vars.sem_ctls.join(" "));
    for (const [field, path] of IPC_SYSCTLS) set(path, (vars as unknown as Record<string, number | bigint | undefined>)[field]);
  }
  const rmid: number[] = [];
  // criu leaves out an empty image (a namespace without segments, sets or queues).
  for (const { entry, data } of images.readOr(IMG.ipcShm, id, [])) fromImage(images, IMG.ipcShm, id, () => {
    const d = entry.desc;
    // CRIU 4.x keeps the contents in pagemap-shmem-ID.img instead.
    const contents = data ?? shmemContents(images, BigInt(d.id), Number(entry.size));
    nextId("shm", d.id);
    // hugetlb_flag: SHM_HUGETLB and the page size (hugetlb.ts).
    created("shared memory segment", d.id, native.syscall(SYS.shmget, d.key | 0, Number(entry.size), ((d.mode & 0o777) | IPC.CREAT | IPC.EXCL) + (entry.hugetlb_flag ?? 0)));
    check(native.syscall(SYS.shmctl, d.id, IPC.SET, permBuffer(d)), `set owner of segment ${d.id}`);
    const addr = check(native.syscall(SYS.shmat, d.id, 0, 0), `attach segment ${d.id}`);
    try {
      writeMemory(process.pid, addr, contents);
    } finally {
      native.syscall(SYS.shmdt, addr);
    }
    if (d.mode & SHM.DEST) rmid.push(d.id);
  });
  for (const { entry, values } of images.readOr(IMG.ipcSem, id, [])) fromImage(images, IMG.ipcSem, id, () => {
    const d = entry.desc;
    nextId("sem", d.id);
    created("semaphore set", d.id, native.syscall(SYS.semget, d.key | 0, entry.nsems, (d.mode & 0o777) | IPC.CREAT | IPC.EXCL));
    const vals = Buffer.alloc(values.length * 2);
    values.forEach((v, i) => vals.writeUInt16LE(v, i * 2));
    check(native.syscall(SYS.semctl, d.id, 0, SEM.SETALL, vals), `set values of semaphore set ${d.id}`);
    check(native.syscall(SYS.semctl, d.id, 0, IPC.SET, permBuffer(d)), `set owner of semaphore set ${d.id}`);
  });
  for (const { entry, messages } of images.readOr(IMG.ipcMsg, id, [])) fromImage(images, IMG.ipcMsg, id, () => {
    const d = entry.desc;
    nextId("msg", d.id);
    created("message queue", d.id, native.syscall(SYS.msgget, d.key | 0, (d.mode & 0o777) | IPC.CREAT | IPC.EXCL));
    const ds = permBuffer(d);
    ds.writeBigUInt64LE(BigInt(entry.qbytes), 88);
    check(native.syscall(SYS.msgctl, d.id, IPC.SET, ds), `set owner and size of message queue ${d.id}`);
    for (const { msg, data } of messages) {
      const b = Buffer.alloc(8 + data.length);
      b.writeBigInt64LE(msg.mtype, 0);
      data.copy(b, 8);
      check(native.syscall(SYS.msgsnd, d.id, b, data.length, IPC.NOWAIT), `queue a message on message queue ${d.id}`);
    }
  });
  // Last: making the objects above used the ids it set.
  for (const kind of NEXT_ID_KINDS) {
    const v = vars?.[`${kind}_next_id`];
    if (v !== undefined) nextId(kind, v);
  }
  return rmid;
}

/** Restore: segments marked for removal (IPC_RMID) at dump, marked again once every task has attached them. */
const removed = restoreState("sysv removed", (): number[] => []);

export const ipcNamespaceKind: TaskKind = {
  name: "ipc namespace",
  // Once every task is dumped (the tree is still frozen): the root's namespace, if the tree owns it.
  finishDump(run) {
    if (!run.ownNamespaces.has("ipc")) return;
    const id = run.root.ids.ipc_ns_id!;
    const ipc = dumpIpc(run.root.pid);
    run.images.write(IMG.ipcVar, id, [ipc.vars]);
    run.images.write(IMG.ipcShm, id, ipc.shm);
    run.images.write(IMG.ipcSem, id, ipc.sem);
    run.images.write(IMG.ipcMsg, id, ipc.msg);
  },
  plan: (run) => (ownedAtRestore(run, "ipc") ? CLONE.NEWIPC : 0),
  // SysV segments must exist before the root's memory attaches them.
  born(task, run) {
    const id = task.ids.ipc_ns_id!;
    if (task !== run.tasks[0] || !ownedAtRestore(run, "ipc") || !run.images.exists(IMG.ipcVar, id)) return;
    // In a user namespace of the tree's own, its root owns the namespace's sysctls.
    run.state(removed).push(...inNamespaceOf(task.pid, "ipc", () => restoreIpc(run.images, id, (fn) => asUsernsRoot(run, fn))));
  },
  finishRestore(run) {
    const rmid = run.state(removed);
    if (!rmid.length) return;
    inNamespaceOf(run.tasks[0]!.pid, "ipc", () => {
      for (const id of rmid) check(native.syscall(SYS.shmctl, id, IPC.RMID, 0), `mark segment ${id} for removal`);
    });
  },
};
