// The namespaces a tree may own: UTS (host and domain name) and IPC (its
// sysctls and SysV shared memory, semaphores and message queues), read and
// recreated by crest from inside the namespace (setns on its own thread);
// and which of them, with the PID namespace, the root is created in.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import type { RestoreTask } from "../context.js";
import {
  IMG, readImage, writeImage, imageExists,
  type inventory_entry, type ipc_var_entry, type ipc_desc_entry, type utsns_entry, type IpcShmSegmentInput,
  type IpcSemSetInput, type IpcMsgQueueInput, type task_kobj_ids_entry,
} from "../../images/index.js";
import { CLONE, PAGE_SIZE, SYS } from "../../sys/constants.js";
import { PE, pageCount } from "../memory/pages.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { inNamespaceOf } from "../../sys/namespace.js";
import { readMemory, writeMemory } from "../../remote/memory.js";
import { parseSysvipc, type SysvipcRow } from "../../proc/index.js";

const IPC = { CREAT: 0o1000, EXCL: 0o2000, NOWAIT: 0o4000, RMID: 0, SET: 1, STAT: 2 } as const;
const SHM_RDONLY = 0o10000, SHM_DEST = 0o1000;
const GETALL = 13, SETALL = 17;
const MSG_COPY = 0o40000;
const DS_SIZE = 128;

export interface IpcNamespaceDump {
  vars: ipc_var_entry;
  shm: IpcShmSegmentInput[];
  sem: IpcSemSetInput[];
  msg: IpcMsgQueueInput[];
}

export interface NamespaceImages {
  ipc?: IpcNamespaceDump;
  uts?: utsns_entry;
}

/** What the restore pipeline needs to know about the tree's namespaces. */
export interface TreeNamespaceFlags {
  /** CLONE_NEW* flags for the root. */
  flags: number;
  /** The root is PID 1 of a new PID namespace. */
  ownPidNs: boolean;
}

// --- dump ---------------------------------------------------------------------

function uname(): { nodename: string; domainname: string } {
  const b = Buffer.alloc(6 * 65);
  check(native.syscall(SYS.uname, b), "uname");
  const field = (i: number) => b.subarray(i * 65, (i + 1) * 65).toString("utf8").replace(/\0.*$/s, "");
  return { nodename: field(1), domainname: field(5) };
}

export function dumpUtsNamespace(pid: number): utsns_entry {
  return inNamespaceOf(pid, "uts", uname);
}

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

/** Reads size bytes of a SysV segment by attaching it read-only in crest. */
function shmContents(id: number, size: number): Buffer {
  const addr = check(native.syscall(SYS.shmat, id, 0, SHM_RDONLY), `attach shared memory segment ${id}`);
  try {
    return readMemory(process.pid, addr, size);
  } finally {
    native.syscall(SYS.shmdt, addr);
  }
}

export function dumpIpcNamespace(pid: number): IpcNamespaceDump {
  return inNamespaceOf(pid, "ipc", () => {
    const vars = { sem_ctls: sysctl("kernel/sem").split(/\s+/).map(Number) } as ipc_var_entry;
    for (const [field, path, big] of IPC_SYSCTLS) {
      (vars as unknown as Record<string, number | bigint>)[field] = big ? BigInt(sysctl(path)) : sysctlNum(path);
    }
    // Contents inline after each entry (not in pagemap-shmem): crit reads them that way.
    const shm = parseSysvipc(readFileSync("/proc/sysvipc/shm", "utf8"), "sysvipc/shm").map((row) => ({
      entry: { desc: desc(row, "shmid"), size: row.size!, in_pagemaps: false },
      data: shmContents(Number(row.shmid), Number(row.size)),
    }));
    const semsets = parseSysvipc(readFileSync("/proc/sysvipc/sem", "utf8"), "sysvipc/sem").map((row) => {
      const n = Number(row.nsems);
      const vals = Buffer.alloc(n * 2);
      check(native.syscall(SYS.semctl, Number(row.semid), 0, GETALL, vals), `read semaphore set ${row.semid}`);
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

export function writeNamespaceImages(dir: string, images: NamespaceImages, ids: task_kobj_ids_entry): void {
  if (images.uts) writeImage(dir, IMG.utsns, ids.uts_ns_id!, [images.uts]);
  const ipc = images.ipc;
  if (!ipc) return;
  const id = ids.ipc_ns_id!;
  writeImage(dir, IMG.ipcVar, id, [ipc.vars]);
  writeImage(dir, IMG.ipcShm, id, ipc.shm);
  writeImage(dir, IMG.ipcSem, id, ipc.sem);
  writeImage(dir, IMG.ipcMsg, id, ipc.msg);
}

// --- restore ------------------------------------------------------------------

/** A shared memory object's contents from pagemap-shmem-SHMID.img and its pages file. */
function shmemContents(dir: string, shmid: bigint, size: number): Buffer {
  const out = Buffer.alloc(size);
  if (!imageExists(dir, IMG.shmemPagemap, shmid)) return out;
  const { head, entries } = readImage(dir, IMG.shmemPagemap, shmid);
  const pages = readImage(dir, IMG.pages, head.pages_id);
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

/** Makes the kernel hand out `id` to the next object of that kind (CONFIG_CHECKPOINT_RESTORE). */
function nextId(kind: "shm" | "sem" | "msg", id: number): void {
  writeFileSync(`/proc/sys/kernel/${kind}_next_id`, String(id));
}

function created(kind: string, want: number, got: number): void {
  check(got, `create ${kind} ${want}`);
  if (got !== want) throw new Error(`${kind} ${want} was created with id ${got}`);
}

function restoreIpc(dir: string, id: number): { rmid: number[] } {
  const [vars] = readImage(dir, IMG.ipcVar, id);
  if (vars) {
    const set = (path: string, v: number | bigint | string | undefined) => {
      if (v !== undefined && existsSync(`/proc/sys/${path}`)) writeFileSync(`/proc/sys/${path}`, String(v));
    };
    set("kernel/sem", vars.sem_ctls.join(" "));
    for (const [field, path] of IPC_SYSCTLS) set(path, (vars as unknown as Record<string, number | bigint | undefined>)[field]);
  }
  const rmid: number[] = [];
  for (const { entry, data } of readImage(dir, IMG.ipcShm, id)) {
    const d = entry.desc;
    // CRIU 4.x keeps the contents in pagemap-shmem-ID.img instead.
    const contents = data ?? shmemContents(dir, BigInt(d.id), Number(entry.size));
    nextId("shm", d.id);
    created("shared memory segment", d.id, native.syscall(SYS.shmget, d.key | 0, Number(entry.size), (d.mode & 0o777) | IPC.CREAT | IPC.EXCL));
    check(native.syscall(SYS.shmctl, d.id, IPC.SET, permBuffer(d)), `set owner of segment ${d.id}`);
    const addr = check(native.syscall(SYS.shmat, d.id, 0, 0), `attach segment ${d.id}`);
    try {
      writeMemory(process.pid, addr, contents);
    } finally {
      native.syscall(SYS.shmdt, addr);
    }
    if (d.mode & SHM_DEST) rmid.push(d.id);
  }
  for (const { entry, values } of readImage(dir, IMG.ipcSem, id)) {
    const d = entry.desc;
    nextId("sem", d.id);
    created("semaphore set", d.id, native.syscall(SYS.semget, d.key | 0, entry.nsems, (d.mode & 0o777) | IPC.CREAT | IPC.EXCL));
    const vals = Buffer.alloc(values.length * 2);
    values.forEach((v, i) => vals.writeUInt16LE(v, i * 2));
    check(native.syscall(SYS.semctl, d.id, 0, SETALL, vals), `set values of semaphore set ${d.id}`);
    check(native.syscall(SYS.semctl, d.id, 0, IPC.SET, permBuffer(d)), `set owner of semaphore set ${d.id}`);
  }
  for (const { entry, messages } of readImage(dir, IMG.ipcMsg, id)) {
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
  }
  return { rmid };
}

export interface RestoredNamespaces {
  flags: TreeNamespaceFlags;
  /** Fills the new namespaces once the root exists (before tasks attach SysV memory). */
  populate(rootPid: number): void;
  /** Last steps once every task is in place: segments marked for removal are marked again. */
  finish(rootPid: number): void;
}

/**
 * Which namespaces the root gets of its own: those whose ids differ from
 * inventory.root_ids (the dumper's own namespaces), as CRIU decides it.
 */
export function restoreNamespaces(dir: string, inventory: inventory_entry, root: RestoreTask): RestoredNamespaces {
  const mine = inventory.root_ids;
  const own = (k: "pid" | "net" | "ipc" | "uts" | "mnt" | "user" | "cgroup" | "time") => {
    const field = `${k}_ns_id` as const;
    return mine !== undefined && root.ids[field] !== undefined && mine[field] !== undefined && root.ids[field] !== mine[field];
  };
  for (const k of ["net", "mnt", "user", "cgroup", "time"] as const) {
    if (own(k)) throw new Error(`the tree has its own ${k} namespace; crest restores trees with their own pid, ipc and uts namespaces only so far`);
  }
  const ownPid = own("pid"), ownIpc = own("ipc"), ownUts = own("uts");
  const flags = (ownPid ? CLONE.NEWPID : 0) | (ownIpc ? CLONE.NEWIPC : 0) | (ownUts ? CLONE.NEWUTS : 0);
  let rmid: number[] = [];
  return {
    flags: { flags, ownPidNs: ownPid },
    populate(rootPid) {
      if (ownUts) {
        const [uts] = readImage(dir, IMG.utsns, root.ids.uts_ns_id!);
        if (uts) {
          inNamespaceOf(rootPid, "uts", () => {
            check(native.syscall(SYS.sethostname, uts.nodename, Buffer.byteLength(uts.nodename)), "set the host name");
            check(native.syscall(SYS.setdomainname, uts.domainname, Buffer.byteLength(uts.domainname)), "set the domain name");
          });
        }
      }
      if (ownIpc && imageExists(dir, IMG.ipcVar, root.ids.ipc_ns_id!)) {
        rmid = inNamespaceOf(rootPid, "ipc", () => restoreIpc(dir, root.ids.ipc_ns_id!)).rmid;
      }
    },
    finish(rootPid) {
      if (!rmid.length) return;
      inNamespaceOf(rootPid, "ipc", () => {
        for (const id of rmid) check(native.syscall(SYS.shmctl, id, IPC.RMID, 0), `mark segment ${id} for removal`);
      });
    },
  };
}
