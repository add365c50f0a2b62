// The table of image files: name pattern (CRIU's criu/image-desc.c), header,
// magic and what the file holds. `IMG.core` etc. are what the rest of crest
// passes to readImage / writeImage / ImageReader / ImageWriter.

import type { EncodeInput, MessageType } from "./pb.js";
import type { ImageHeader, ImageKind, ImageReader, ImageWriter } from "./file.js";
import { MAGIC, IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC, type MagicName } from "./magic.js";
import * as P from "./payloads.js";
import { cgroup_entry } from "./gen/cgroup.js";
import { core_entry, task_kobj_ids_entry } from "./gen/core.js";
import { cpuinfo_entry } from "./gen/cpuinfo.js";
import { creds_entry } from "./gen/creds.js";
import { eventfd_file_entry } from "./gen/eventfd.js";
import { eventpoll_file_entry, eventpoll_tfd_entry } from "./gen/eventpoll.js";
import { ext_file_entry } from "./gen/ext-file.js";
import { fdinfo_entry, file_entry } from "./gen/fdinfo.js";
import { fifo_entry } from "./gen/fifo.js";
import { file_lock_entry } from "./gen/file-lock.js";
import { irmap_cache_entry } from "./gen/fh.js";
import { fs_entry } from "./gen/fs.js";
import { fanotify_file_entry, fanotify_mark_entry, inotify_file_entry, inotify_wd_entry } from "./gen/fsnotify.js";
import { ghost_file_entry } from "./gen/ghost-file.js";
import { inventory_entry } from "./gen/inventory.js";
import { ipc_msg_entry } from "./gen/ipc-msg.js";
import { ipc_sem_entry } from "./gen/ipc-sem.js";
import { ipc_shm_entry } from "./gen/ipc-shm.js";
import { ipc_var_entry } from "./gen/ipc-var.js";
import { memfd_inode_entry } from "./gen/memfd.js";
import { mm_entry } from "./gen/mm.js";
import { mnt_entry } from "./gen/mnt.js";
import { net_device_entry, netns_entry } from "./gen/netdev.js";
import { ns_file_entry } from "./gen/ns.js";
import { packet_sock_entry } from "./gen/packet-sock.js";
import { pagemap_head } from "./gen/pagemap.js";
import { pidns_entry } from "./gen/pidns.js";
import { pipe_entry } from "./gen/pipe.js";
import { pipe_data_entry } from "./gen/pipe-data.js";
import { pstree_entry } from "./gen/pstree.js";
import { reg_file_entry } from "./gen/regfile.js";
import { remap_file_path_entry } from "./gen/remap-file-path.js";
import { rlimit_entry } from "./gen/rlimit.js";
import { sa_entry } from "./gen/sa.js";
import { seccomp_entry } from "./gen/seccomp.js";
import { signalfd_entry } from "./gen/signalfd.js";
import { netlink_sk_entry } from "./gen/sk-netlink.js";
import { inet_sk_entry } from "./gen/sk-inet.js";
import { sk_packet_entry } from "./gen/sk-packet.js";
import { unix_sk_entry } from "./gen/sk-unix.js";
import { stats_entry } from "./gen/stats.js";
import { tcp_stream_entry } from "./gen/tcp-stream.js";
import { itimer_entry, posix_timer_entry } from "./gen/timer.js";
import { timerfd_entry } from "./gen/timerfd.js";
import { timens_entry } from "./gen/timens.js";
import { tty_data_entry, tty_file_entry, tty_info_entry } from "./gen/tty.js";
import { tunfile_entry } from "./gen/tun.js";
import { userns_entry } from "./gen/userns.js";
import { utsns_entry } from "./gen/utsns.js";
import { vma_entry } from "./gen/vma.js";

/** A file of entries all of one message type. */
export type EntriesKind<T> = ImageKind<T[], readonly EncodeInput<T>[]> & { readonly type: MessageType<T> };

function headerOf(magic: MagicName): ImageHeader {
  return magic === "INVENTORY" ? "inventory" : magic === "STATS" || magic === "IRMAP_CACHE" ? "service" : "common";
}

function entries<T>(magic: MagicName, pattern: string, type: MessageType<T>): EntriesKind<T> {
  return {
    name: magic, pattern, header: headerOf(magic), magic: MAGIC[magic], type,
    read: P.readEntries(type), write: P.writeEntries(type),
  };
}

function special<V, W>(magic: MagicName, pattern: string, type: MessageType<unknown>,
  read: (r: ImageReader) => V, write: (w: ImageWriter, v: W) => void): ImageKind<V, W> {
  return { name: magic, pattern, header: headerOf(magic), magic: MAGIC[magic], type, read, write };
}

function raw(name: string, pattern: string): ImageKind<Buffer, Uint8Array> {
  return { name, pattern, header: "raw", magic: 0, read: P.readRaw, write: P.writeRaw };
}

export const IMG = {
  // --- the image set as a whole
  inventory: entries("INVENTORY", "inventory.img", inventory_entry),
  /** key "dump" or "restore" */
  stats: entries("STATS", "stats-%s", stats_entry),
  irmapCache: entries("IRMAP_CACHE", "irmap-cache", irmap_cache_entry),
  pstree: entries("PSTREE", "pstree.img", pstree_entry),
  cpuinfo: entries("CPUINFO", "cpuinfo.img", cpuinfo_entry),

  // --- per task (key: pid) or per thread (core: tid)
  core: entries("CORE", "core-%u.img", core_entry),
  ids: entries("IDS", "ids-%u.img", task_kobj_ids_entry),
  mm: entries("MM", "mm-%u.img", mm_entry),
  fs: entries("FS", "fs-%u.img", fs_entry),
  /** key: pid for private memory, pages_id from pagemap_head goes to `pages` */
  pagemap: special("PAGEMAP", "pagemap-%lu.img", pagemap_head, P.readPagemap, P.writePagemap),
  /** key: shmid */
  shmemPagemap: special("SHMEM_PAGEMAP", "pagemap-shmem-%lu.img", pagemap_head, P.readPagemap, P.writePagemap),
  /** key: pagemap_head.pages_id; the PE_PRESENT pages, concatenated, no header */
  pages: raw("pages", "pages-%u.img"),

  // --- open files (fdinfo key: task_kobj_ids_entry.files_id)
  fdinfo: entries("FDINFO", "fdinfo-%u.img", fdinfo_entry),
  files: entries("FILES", "files.img", file_entry),
  remapFpath: entries("REMAP_FPATH", "remap-fpath.img", remap_file_path_entry),
  /** key: remap_id, printed in hex */
  ghostFile: special("GHOST_FILE", "ghost-file-%x.img", ghost_file_entry, P.readGhostFile, P.writeGhostFile),
  memfdInode: entries("MEMFD_INODE", "memfd.img", memfd_inode_entry),
  pipesData: special("PIPES_DATA", "pipes-data.img", pipe_data_entry, P.readPipeData, P.writePipeData),
  fifoData: special("FIFO_DATA", "fifo-data.img", pipe_data_entry, P.readPipeData, P.writePipeData),
  skQueues: special("SK_QUEUES", "sk-queues.img", sk_packet_entry, P.readSkQueues, P.writeSkQueues),
  /** key: socket inode, printed in hex */
  tcpStream: special("TCP_STREAM", "tcp-stream-%x.img", tcp_stream_entry, P.readTcpStreams, P.writeTcpStreams),
  ttyInfo: entries("TTY_INFO", "tty-info.img", tty_info_entry),
  ttyData: entries("TTY_DATA", "tty-data.img", tty_data_entry),
  fileLocks: entries("FILE_LOCKS", "filelocks.img", file_lock_entry),
  seccomp: entries("SECCOMP", "seccomp.img", seccomp_entry),
  cgroup: entries("CGROUP", "cgroup.img", cgroup_entry),

  // --- namespaces (key: namespace id)
  utsns: entries("UTSNS", "utsns-%u.img", utsns_entry),
  ipcVar: entries("IPC_VAR", "ipcns-var-%u.img", ipc_var_entry),
  ipcShm: special("IPCNS_SHM", "ipcns-shm-%u.img", ipc_shm_entry, P.readIpcShm, P.writeIpcShm),
  ipcSem: special("IPCNS_SEM", "ipcns-sem-%u.img", ipc_sem_entry, P.readIpcSem, P.writeIpcSem),
  ipcMsg: special("IPCNS_MSG", "ipcns-msg-%u.img", ipc_msg_entry, P.readIpcMsg, P.writeIpcMsg),
  mnts: entries("MNTS", "mountpoints-%u.img", mnt_entry),
  userns: entries("USERNS", "userns-%u.img", userns_entry),
  timens: entries("TIMENS", "timens-%u.img", timens_entry),
  pidns: entries("PIDNS", "pidns-%u.img", pidns_entry),
  netdev: entries("NETDEV", "netdev-%u.img", net_device_entry),
  netns: entries("NETNS", "netns-%u.img", netns_entry),
  ifaddr: raw("ifaddr", "ifaddr-%u.img"),
  route: raw("route", "route-%u.img"),
  route6: raw("route6", "route6-%u.img"),
  rule: raw("rule", "rule-%u.img"),
  iptables: raw("iptables", "iptables-%u.img"),
  ip6tables: raw("ip6tables", "ip6tables-%u.img"),
  nftables: raw("nftables", "nftables-%u.img"),
  tmpfsImg: raw("tmpfs", "tmpfs-%u.tar.gz.img"),
  tmpfsDev: raw("tmpfs-dev", "tmpfs-dev-%u.tar.gz.img"),

  // --- layouts of older CRIU versions, still read by CRIU (one file per
  // object type instead of files.img; per-task files instead of core fields)
  regFiles: entries("REG_FILES", "reg-files.img", reg_file_entry),
  extFiles: entries("EXT_FILES", "ext-files.img", ext_file_entry),
  nsFiles: entries("NS_FILES", "ns-files.img", ns_file_entry),
  eventfd: entries("EVENTFD_FILE", "eventfd.img", eventfd_file_entry),
  eventpoll: entries("EVENTPOLL_FILE", "eventpoll.img", eventpoll_file_entry),
  eventpollTfd: entries("EVENTPOLL_TFD", "eventpoll-tfd.img", eventpoll_tfd_entry),
  signalfd: entries("SIGNALFD", "signalfd.img", signalfd_entry),
  inotify: entries("INOTIFY_FILE", "inotify.img", inotify_file_entry),
  inotifyWd: entries("INOTIFY_WD", "inotify-wd.img", inotify_wd_entry),
  fanotify: entries("FANOTIFY_FILE", "fanotify.img", fanotify_file_entry),
  fanotifyMark: entries("FANOTIFY_MARK", "fanotify-mark.img", fanotify_mark_entry),
  pipes: entries("PIPES", "pipes.img", pipe_entry),
  fifo: entries("FIFO", "fifo.img", fifo_entry),
  unixsk: entries("UNIXSK", "unixsk.img", unix_sk_entry),
  inetsk: entries("INETSK", "inetsk.img", inet_sk_entry),
  packetsk: entries("PACKETSK", "packetsk.img", packet_sock_entry),
  netlinksk: entries("NETLINK_SK", "netlinksk.img", netlink_sk_entry),
  tunfile: entries("TUNFILE", "tunfile.img", tunfile_entry),
  timerfd: entries("TIMERFD", "timerfd.img", timerfd_entry),
  tty: entries("TTY_FILES", "tty.img", tty_file_entry),
  creds: entries("CREDS", "creds-%u.img", creds_entry),
  sigacts: entries("SIGACT", "sigacts-%u.img", sa_entry),
  vmas: entries("VMAS", "vmas-%u.img", vma_entry),
  rlimit: entries("RLIMIT", "rlimit-%u.img", rlimit_entry),
  itimers: entries("ITIMERS", "itimers-%u.img", itimer_entry),
  posixTimers: entries("POSIX_TIMERS", "posix-timers-%u.img", posix_timer_entry),
} as const;

export type ImageKindId = keyof typeof IMG;

/**
 * The kind a file's header announces (what crit does to pick a decoder).
 * `head` is the first u32, `type` the second (ignored for inventory).
 * pagemap and pagemap-shmem share a magic; this returns `pagemap`.
 */
export function kindByMagic(head: number, type?: number): ImageKind<unknown, never> | undefined {
  if (head === MAGIC.INVENTORY) return IMG.inventory;
  const header: ImageHeader | undefined = head === IMG_COMMON_MAGIC ? "common" : head === IMG_SERVICE_MAGIC ? "service" : undefined;
  if (header === undefined || type === undefined) return undefined;
  for (const kind of Object.values(IMG) as ImageKind<unknown, never>[]) {
    if (kind.header === header && kind.magic === type) return kind;
  }
  return undefined;
}

// The file API next to the table, for callers that import both from here
// (index.ts is the main entry point and exports everything).
export { readImage, writeImage, readSingle, imageExists, imagePath, ImageError, ImageReader, ImageWriter } from "./file.js";
