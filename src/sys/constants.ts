// Kernel constants for x86_64 Linux: syscall numbers, ptrace, signals, mmap,
// open flags, prctl. Values from the kernel's uapi headers.

export const SYS = {
  read: 0, write: 1, open: 2, close: 3, stat: 4, fstat: 5, lseek: 8, mmap: 9, mprotect: 10,
  poll: 7, munmap: 11, brk: 12, rt_sigaction: 13, rt_sigprocmask: 14, ioctl: 16, pread64: 17, pwrite64: 18,
  readv: 19, writev: 20, mremap: 25, madvise: 28, dup: 32, dup2: 33, pause: 34, nanosleep: 35,
  getitimer: 36, setitimer: 38, getpid: 39, socketpair: 53, ftruncate: 77, chdir: 80, fchmod: 91, fchown: 93, exit: 60, wait4: 61, kill: 62, fcntl: 72, fchdir: 81,
  readlink: 89, umask: 95, ptrace: 101, setpgid: 109, getppid: 110, setsid: 112, setgroups: 116,
  setresuid: 117, getresuid: 118, setresgid: 119, getresgid: 120, getpgid: 121, setfsuid: 122,
  setfsgid: 123, getsid: 124, capget: 125, capset: 126, rt_sigtimedwait: 128, rt_sigqueueinfo: 129, sigaltstack: 131,
  personality: 135, setpriority: 141, sched_setscheduler: 144, prctl: 157, arch_prctl: 158, setrlimit: 160, chroot: 161, gettid: 186,
  tkill: 200, futex: 202, set_thread_area: 205, get_thread_area: 211, set_tid_address: 218,
  restart_syscall: 219, shmget: 29, shmat: 30, shmctl: 31, semget: 64, semop: 65, semctl: 66, shmdt: 67, msgget: 68, msgsnd: 69, msgrcv: 70, msgctl: 71, sethostname: 170, setdomainname: 171, uname: 63, timer_create: 222, timer_settime: 223, timer_gettime: 224,
  timer_getoverrun: 225, timer_delete: 226, clock_gettime: 228, exit_group: 231, tgkill: 234,
  waitid: 247, openat: 257, mknodat: 259, readlinkat: 267, utimensat: 280, dup3: 292,
  flock: 73, getpriority: 140, sched_getparam: 143, sched_getscheduler: 145, mlock: 149,
  epoll_wait: 232, epoll_ctl: 233, timerfd_create: 283, timerfd_settime: 286, signalfd4: 289,
  eventfd2: 290, epoll_create1: 291, membarrier: 324, inotify_add_watch: 254, inotify_rm_watch: 255, fanotify_init: 300, fanotify_mark: 301,
  inotify_init1: 294, open_by_handle_at: 304, pipe2: 293, set_robust_list: 273, get_robust_list: 274, tee: 276, preadv: 295, pwritev: 296,
  rt_tgsigqueueinfo: 297, prlimit64: 302, setns: 308, process_vm_readv: 310, process_vm_writev: 311,
  kcmp: 312, seccomp: 317, memfd_create: 319, userfaultfd: 323, rseq: 334, pidfd_send_signal: 424, pidfd_open: 434,
  unshare: 272, clone: 56, clone3: 435, close_range: 436, pidfd_getfd: 438, fsopen: 430, fsconfig: 431, fsmount: 432,
  pivot_root: 155, mount: 165, unlinkat: 263, umount2: 166, mkdirat: 258, linkat: 265, open_tree: 428, move_mount: 429, mount_setattr: 442, statx: 332, fallocate: 285,
  socket: 41, connect: 42, sendto: 44, recvfrom: 45, sendmsg: 46, recvmsg: 47, shutdown: 48, bind: 49, listen: 50,
  getsockname: 51, getpeername: 52, setsockopt: 54, getsockopt: 55, accept4: 288,
  statfs: 137, mq_open: 240, mq_unlink: 241, mq_timedsend: 242, mq_timedreceive: 243, mq_notify: 244, mq_getsetattr: 245,
} as const;

export const PTRACE = {
  PEEKDATA: 2, POKEDATA: 5, CONT: 7, KILL: 8, SINGLESTEP: 9, DETACH: 17, SYSCALL: 24,
  GET_THREAD_AREA: 25, SET_THREAD_AREA: 26,
  SETOPTIONS: 0x4200, GETEVENTMSG: 0x4201, GETSIGINFO: 0x4202, SETSIGINFO: 0x4203,
  GETREGSET: 0x4204, SETREGSET: 0x4205, SEIZE: 0x4206, INTERRUPT: 0x4207, LISTEN: 0x4208,
  PEEKSIGINFO: 0x4209, GETSIGMASK: 0x420a, SETSIGMASK: 0x420b, SECCOMP_GET_FILTER: 0x420c,
  SECCOMP_GET_METADATA: 0x420d, GET_SYSCALL_INFO: 0x420e, GET_RSEQ_CONFIGURATION: 0x420f,
} as const;

export const PTRACE_O = {
  TRACESYSGOOD: 1, TRACEFORK: 2, TRACEVFORK: 4, TRACECLONE: 8, TRACEEXEC: 0x10,
  TRACEVFORKDONE: 0x20, TRACEEXIT: 0x40, TRACESECCOMP: 0x80, EXITKILL: 0x100000,
  SUSPEND_SECCOMP: 0x200000,
} as const;

export const PTRACE_EVENT = { FORK: 1, VFORK: 2, CLONE: 3, EXEC: 4, VFORK_DONE: 5, EXIT: 6, SECCOMP: 7, STOP: 128 } as const;

export const NT = { PRSTATUS: 1, PRFPREG: 2, X86_XSTATE: 0x202 } as const;

export const SIG = {
  HUP: 1, INT: 2, QUIT: 3, ILL: 4, TRAP: 5, ABRT: 6, BUS: 7, FPE: 8, KILL: 9, USR1: 10, SEGV: 11,
  USR2: 12, PIPE: 13, ALRM: 14, TERM: 15, STKFLT: 16, CHLD: 17, CONT: 18, STOP: 19, TSTP: 20,
  TTIN: 21, TTOU: 22, URG: 23, XCPU: 24, XFSZ: 25, VTALRM: 26, PROF: 27, WINCH: 28, IO: 29,
  PWR: 30, SYS: 31,
} as const;
export const NSIG = 64;

export const WNOHANG = 1, WUNTRACED = 2, WCONTINUED = 8, WALL = 0x40000000;

export const PROT = { NONE: 0, READ: 1, WRITE: 2, EXEC: 4 } as const;
export const MAP = {
  SHARED: 0x01, PRIVATE: 0x02, FIXED: 0x10, ANONYMOUS: 0x20, GROWSDOWN: 0x100, DENYWRITE: 0x800,
  EXECUTABLE: 0x1000, LOCKED: 0x2000, NORESERVE: 0x4000, POPULATE: 0x8000, STACK: 0x20000,
  HUGETLB: 0x40000, FIXED_NOREPLACE: 0x100000,
} as const;
export const MREMAP = { MAYMOVE: 1, FIXED: 2, DONTUNMAP: 4 } as const;
export const MADV = {
  NORMAL: 0, RANDOM: 1, SEQUENTIAL: 2, WILLNEED: 3, DONTNEED: 4, DONTFORK: 10, WIPEONFORK: 18,
  POPULATE_WRITE: 23, GUARD_INSTALL: 102,
} as const;

export const O = {
  RDONLY: 0, WRONLY: 1, RDWR: 2, ACCMODE: 3, CREAT: 0o100, EXCL: 0o200, NOCTTY: 0o400,
  TRUNC: 0o1000, APPEND: 0o2000, NONBLOCK: 0o4000, DSYNC: 0o10000, ASYNC: 0o20000,
  DIRECT: 0o40000, LARGEFILE: 0o100000, DIRECTORY: 0o200000, NOFOLLOW: 0o400000,
  NOATIME: 0o1000000, CLOEXEC: 0o2000000, PATH: 0o10000000, TMPFILE: 0o20000000,
} as const;
export const AT_FDCWD = -100;
export const F = {
  DUPFD: 0, GETFD: 1, SETFD: 2, GETFL: 3, SETFL: 4, SETOWN: 8, GETOWN: 9, SETSIG: 10, GETSIG: 11, SETOWN_EX: 15,
  GETOWN_EX: 16, DUPFD_CLOEXEC: 1030, SETPIPE_SZ: 1031, GETPIPE_SZ: 1032, ADD_SEALS: 1033, GET_SEALS: 1034,
} as const;
export const FD_CLOEXEC = 1;
export const SEEK = { SET: 0, CUR: 1, END: 2, DATA: 3, HOLE: 4 } as const;
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_SYMLINK_FOLLOW = 0x400;
/** Major number of the memory character devices (/dev/null, /dev/zero, /dev/full, /dev/random, ...). */
export const MEM_MAJOR = 1;

/**
 * Terminals: ioctls (asm-generic/ioctls.h, x86_64), the termios bits crest
 * changes for a moment, and the device numbers that say which tty driver a
 * character device belongs to (linux/major.h).
 */
export const TIOC = {
  TCGETS: 0x5401, TCSETS: 0x5402, EXCL: 0x540c, NXCL: 0x540d, SCTTY: 0x540e, GPGRP: 0x540f, SPGRP: 0x5410,
  STI: 0x5412, GWINSZ: 0x5413, SWINSZ: 0x5414, INQ: 0x541b, PKT: 0x5420, NOTTY: 0x5422, GSID: 0x5429,
  TCGETS2: 0x802c542a, TCSETS2: 0x402c542b, GPTN: 0x80045430, SPTLCK: 0x40045431, GPKT: 0x80045438,
  GPTLCK: 0x80045439, GEXCL: 0x80045440, GPTPEER: 0x5441, GLCKTRMIOS: 0x5456, SLCKTRMIOS: 0x5457,
} as const;
/** struct termios2 (and struct termios, its first 36 bytes): flags, line discipline, NCCS=19 control characters, speeds. */
export const TERMIOS = { NCCS: 19, SIZE: 36, SIZE2: 44 } as const;
export const TTY_LFLAG = {
  ISIG: 0o1, ICANON: 0o2, ECHO: 0o10, ECHOE: 0o20, ECHOK: 0o40, ECHONL: 0o100, ECHOCTL: 0o1000, ECHOPRT: 0o2000,
  ECHOKE: 0o4000, IEXTEN: 0o100000, EXTPROC: 0o200000,
} as const;
export const TTY_IFLAG = { ISTRIP: 0o40, INLCR: 0o100, IGNCR: 0o200, ICRNL: 0o400, IUCLC: 0o1000 } as const;
export const VTIME = 5, VMIN = 6;
export const TTY_MAJOR = {
  /** /dev/ttyN (virtual consoles, minors 1-63) and /dev/ttySN (serial, 64 and up). */
  TTY: 4,
  /** /dev/tty (0), /dev/console (1), /dev/ptmx (2). */
  AUX: 5,
  /** Unix98 pty masters and slaves (8 majors each). */
  PTM: 128, PTS: 136, PTY_COUNT: 8,
  USB_SERIAL: 188, LOW_DENSE_SERIAL: 204,
} as const;

/** SysV IPC: ipc flags and commands, shmat flags, semctl commands, msgrcv flags. */
export const IPC = { CREAT: 0o1000, EXCL: 0o2000, NOWAIT: 0o4000, RMID: 0, SET: 1, STAT: 2 } as const;
export const SHM = { RDONLY: 0o10000, EXEC: 0o100000, DEST: 0o1000, HUGETLB: 0o4000 } as const;
/** memfd_create's flag for hugetlb memory; with SHM_HUGETLB and MAP_HUGETLB, log2 of the page size goes at MAP_HUGE_SHIFT. */
export const MFD_HUGETLB = 4;
export const MAP_HUGE_SHIFT = 26;
export const SEM = { GETALL: 13, SETALL: 17 } as const;
export const MSG_COPY = 0o40000;

export const PR = {
  SET_PDEATHSIG: 1, GET_PDEATHSIG: 2, GET_DUMPABLE: 3, SET_DUMPABLE: 4, GET_KEEPCAPS: 7,
  SET_KEEPCAPS: 8, SET_NAME: 15, GET_NAME: 16, GET_SECCOMP: 21, SET_SECCOMP: 22, CAPBSET_READ: 23, CAPBSET_DROP: 24,
  GET_SECUREBITS: 27, SET_SECUREBITS: 28, SET_TIMERSLACK: 29, GET_TIMERSLACK: 30, SET_MM: 35,
  SET_CHILD_SUBREAPER: 36, GET_CHILD_SUBREAPER: 37, SET_NO_NEW_PRIVS: 38, GET_NO_NEW_PRIVS: 39,
  GET_TID_ADDRESS: 40, SET_THP_DISABLE: 41, GET_THP_DISABLE: 42, CAP_AMBIENT: 47,
} as const;
export const PR_SET_MM_MAP = 14;
export const PR_CAP_AMBIENT_RAISE = 2, PR_CAP_AMBIENT_CLEAR_ALL = 4;

export const CLONE = {
  VM: 0x100, FS: 0x200, FILES: 0x400, SIGHAND: 0x800, PIDFD: 0x1000, PTRACE: 0x2000,
  VFORK: 0x4000, PARENT: 0x8000, THREAD: 0x10000, NEWNS: 0x20000, SYSVSEM: 0x40000,
  SETTLS: 0x80000, PARENT_SETTID: 0x100000, CHILD_CLEARTID: 0x200000, UNTRACED: 0x800000,
  CHILD_SETTID: 0x1000000, NEWCGROUP: 0x2000000, NEWUTS: 0x4000000, NEWIPC: 0x8000000,
  NEWUSER: 0x10000000, NEWPID: 0x20000000, NEWNET: 0x40000000, IO: 0x80000000,
  // clone3 and unshare only (clone() has this bit as part of CSIGNAL).
  NEWTIME: 0x80,
} as const;

/** The CLONE_NEW* flag of each namespace kind (as /proc/PID/ns names them). */
export const NS_CLONE_FLAG = {
  cgroup: CLONE.NEWCGROUP, ipc: CLONE.NEWIPC, mnt: CLONE.NEWNS, net: CLONE.NEWNET, pid: CLONE.NEWPID, time: CLONE.NEWTIME, user: CLONE.NEWUSER, uts: CLONE.NEWUTS,
} as const;

/** The clocks a time namespace offsets. */
export const CLOCK = { MONOTONIC: 1, BOOTTIME: 7 } as const;

export const KCMP = { FILE: 0, VM: 1, FILES: 2, FS: 3, SIGHAND: 4, IO: 5, SYSVSEM: 6, EPOLL_TFD: 7 } as const;

export const ITIMER = { REAL: 0, VIRTUAL: 1, PROF: 2 } as const;
export const SS_ONSTACK = 1;
export const SECCOMP_SET_MODE_FILTER = 1;

export const PAGE_SIZE = 4096;

/** mount(2) flags (MS_*), as criu records them in mnt_entry.flags and sb_flags. */
export const MS = {
  RDONLY: 1, NOSUID: 2, NODEV: 4, NOEXEC: 8, SYNCHRONOUS: 16, REMOUNT: 32, MANDLOCK: 64, DIRSYNC: 128,
  NOSYMFOLLOW: 256, NOATIME: 1024, NODIRATIME: 2048, BIND: 4096, MOVE: 8192, REC: 16384, SILENT: 32768,
  UNBINDABLE: 1 << 17, PRIVATE: 1 << 18, SLAVE: 1 << 19, SHARED: 1 << 20, RELATIME: 1 << 21, STRICTATIME: 1 << 24, LAZYTIME: 1 << 25,
} as const;
/** move_mount(2) flags. */
export const MOVE_MOUNT = { F_EMPTY_PATH: 0x4, T_EMPTY_PATH: 0x40, SET_GROUP: 0x100 } as const;
export const MNT_DETACH = 2;
export const AT_REMOVEDIR = 0x200;
export const AT_EMPTY_PATH = 0x1000;
/** open_tree: a detached copy of the mount, not the mount itself. */
export const OPEN_TREE_CLONE = 1;
/** struct mount_attr's read-only attribute. */
export const MOUNT_ATTR_RDONLY = 1n;
/** fsconfig(2) commands and the CLOEXEC flags of fsopen/fsmount (the new mount API: a file system mounted nowhere, reached by its fd). */
export const FSCONFIG = { SET_FLAG: 0, SET_STRING: 1, CMD_CREATE: 6 } as const;
export const FSOPEN_CLOEXEC = 1, FSMOUNT_CLOEXEC = 1;
/** statfs f_type of the mqueue file system (POSIX message queues). */
export const MQUEUE_MAGIC = 0x19800202;
