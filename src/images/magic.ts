// Magic numbers of CRIU image files (criu/include/magic.h). Every image
// except inventory.img and the raw ones starts with a head magic (common or
// service) followed by the magic of its type, both u32 in host (little-endian)
// order. Names are CRIU's (crit prints them as "magic").

/** Image format version 2, "v1.1": the two-magic header. inventory_entry.img_version. */
export const IMAGES_V1_1 = 2;

export const IMG_COMMON_MAGIC = 0x54564319;
export const IMG_SERVICE_MAGIC = 0x55105940;

export const MAGIC = {
  INVENTORY: 0x58313116,
  PSTREE: 0x50273030,
  FDINFO: 0x56213732,
  PAGEMAP: 0x56084025,
  SHMEM_PAGEMAP: 0x56084025, // same as PAGEMAP
  CORE: 0x55053847,
  IDS: 0x54432030,
  VMAS: 0x54123737,
  PIPES: 0x56513555,
  PIPES_DATA: 0x56453709,
  FIFO: 0x58364939,
  FIFO_DATA: 0x59333054,
  SIGACT: 0x55344201,
  UNIXSK: 0x54373943,
  INETSK: 0x56443851,
  PACKETSK: 0x60454618,
  ITIMERS: 0x57464056,
  POSIX_TIMERS: 0x52603957,
  SK_QUEUES: 0x56264026,
  UTSNS: 0x54473203,
  CREDS: 0x54023547,
  IPC_VAR: 0x53115007,
  IPCNS_SHM: 0x46283044,
  IPCNS_MSG: 0x55453737,
  IPCNS_SEM: 0x59573019,
  REG_FILES: 0x50363636,
  EXT_FILES: 0x59255641,
  FS: 0x51403912,
  MM: 0x57492820,
  REMAP_FPATH: 0x59133954,
  GHOST_FILE: 0x52583605,
  TCP_STREAM: 0x51465506,
  EVENTFD_FILE: 0x44523722,
  EVENTPOLL_FILE: 0x45023858,
  EVENTPOLL_TFD: 0x44433746,
  SIGNALFD: 0x57323820,
  INOTIFY_FILE: 0x48424431,
  INOTIFY_WD: 0x54562009,
  MNTS: 0x55563928,
  NETDEV: 0x57373951,
  NETNS: 0x55933752,
  TTY_FILES: 0x59433025,
  TTY_INFO: 0x59453036,
  TTY_DATA: 0x59413026,
  FILE_LOCKS: 0x54323616,
  RLIMIT: 0x57113925,
  FANOTIFY_FILE: 0x55096122,
  FANOTIFY_MARK: 0x56506035,
  SIGNAL: 0x59255647,
  PSIGNAL: 0x59255647, // same as SIGNAL
  NETLINK_SK: 0x58005614,
  NS_FILES: 0x61394011,
  TUNFILE: 0x57143751,
  CGROUP: 0x59383330,
  TIMERFD: 0x50493712,
  CPUINFO: 0x61404013,
  USERNS: 0x55474906,
  SECCOMP: 0x64413049,
  BINFMT_MISC: 0x67343323,
  AUTOFS: 0x49353943,
  FILES: 0x56303138,
  MEMFD_INODE: 0x48453499,
  TIMENS: 0x43114433,
  PIDNS: 0x61157326,
  BPFMAP_FILE: 0x57506142,
  BPFMAP_DATA: 0x64324033,
  APPARMOR: 0x59423047,
  PIDFD: 0x54435556,
  // Service files (IMG_SERVICE_MAGIC head).
  STATS: 0x57093306,
  IRMAP_CACHE: 0x57004059,
} as const;

export type MagicName = keyof typeof MAGIC;

const NAMES = new Map<number, string>([
  [IMG_COMMON_MAGIC, "IMG_COMMON"],
  [IMG_SERVICE_MAGIC, "IMG_SERVICE"],
]);
for (const [name, value] of Object.entries(MAGIC)) {
  // Aliases share a value; keep the first (canonical) name.
  if (!NAMES.has(value)) NAMES.set(value, name);
}

/** "CORE (0x55053847)", or just the hex for an unknown value. */
export function describeMagic(value: number): string {
  const hex = `0x${(value >>> 0).toString(16).padStart(8, "0")}`;
  const name = NAMES.get(value >>> 0);
  return name ? `${name} (${hex})` : hex;
}
