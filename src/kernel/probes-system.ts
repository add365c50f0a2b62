// Probes of /proc, namespaces, file descriptors and mounts.
import { accessSync, constants, existsSync, openSync, readFileSync } from "node:fs";
import { AT_FDCWD, CLONE, KCMP, MAP, O, PR, PROT, SYS } from "../sys/constants.js";
import { EINVAL, ENOSYS } from "../sys/errno.js";
import type { Remote } from "../remote/remote.js";
import { parseMaps, parseStat } from "../proc/index.js";
import { closeFds, ENODEV, ENOTTY, missing, need, sys, withFd, XSYS, type Probe } from "./probe.js";
import { PROBE_TRACE, withStub } from "./stub.js";

const EFAULT = 14;
const LOCK_SH = 1;
const CLOCK_MONOTONIC = 1;
/** _IOW('T', 0, u64) */
const TFD_IOC_SET_TICKS = 0x40085400;
const EPOLL_CTL_ADD = 1, EPOLLIN = 1, EPOLLOUT = 4;
const PR_SET_MM_MAP_SIZE = 15;
const PR_TIMER_CREATE_RESTORE_IDS = 77, PR_TIMER_CREATE_RESTORE_IDS_GET = 2;
const MS_BIND = 0x1000, MS_REC = 0x4000, MS_PRIVATE = 1 << 18, MS_SHARED = 1 << 20;
const MOVE_MOUNT_SET_GROUP = 0x100;
const APPARMOR = "/sys/kernel/security/apparmor";
/** _IOW('I', 0, __s32): the wd the next inotify_add_watch hands out (CONFIG_CHECKPOINT_RESTORE). */
const INOTIFY_IOC_SETNEXTWD = 0x40044900;
const IN_ACCESS = 1;

function fileExists(path: string, what: string): void {
  try {
    accessSync(path);
  } catch {
    missing(`${what} (no ${path})`);
  }
}

/** A line of /proc/self/fdinfo/FD for an fd opened on `path`, held while `hold` runs. */
function fdinfoOf(path: string, hold: (fd: number) => void = () => {}): string {
  return withFd(openSync(path, "r"), (fd) => {
    hold(fd);
    return readFileSync(`/proc/self/fdinfo/${fd}`, "utf8");
  });
}

/** Runs a syscall in the remote task, strings passed as C strings in its scratch memory. */
function inject(r: Remote, nr: number, ...args: Array<number | bigint | string>): number {
  return r.syscall(nr, ...args.map((a) => (typeof a === "string" ? r.putString(a) : a)));
}

/**
 * A traced stub in a mount namespace of its own: everything made private,
 * a fresh tmpfs on /tmp. What the probe mounts there dies with the stub.
 */
function inOwnMounts(fn: (r: Remote, pid: number) => void): void {
  withStub({ flags: CLONE.NEWNS, trace: PROBE_TRACE, what: "creating a mount namespace" }, (s) => {
    const r = s.remote();
    need(inject(r, XSYS.mount, 0, "/", 0, MS_REC | MS_PRIVATE, 0), "making the probe's mounts private");
    need(inject(r, XSYS.mount, "crest", "/tmp", "tmpfs", 0, 0), "mounting a tmpfs");
    fn(r, s.pid);
  });
}

function mkdirs(r: Remote, ...dirs: string[]): void {
  for (const d of dirs) need(inject(r, XSYS.mkdir, d, 0o755), `mkdir ${d}`);
}

/** INOTIFY_IOC_SETNEXTWD on an inotify of crest's own: the next watch gets the wd asked for. */
function inotifySetNextWd(): void {
  const wanted = 4001;
  const fd = need(sys(SYS.inotify_init1, O.CLOEXEC), "inotify_init1");
  try {
    const r = sys(SYS.ioctl, fd, INOTIFY_IOC_SETNEXTWD, wanted);
    if (r === -ENOTTY) missing("INOTIFY_IOC_SETNEXTWD is not supported by this kernel (ENOTTY: no CONFIG_CHECKPOINT_RESTORE)");
    need(r, "INOTIFY_IOC_SETNEXTWD");
    const wd = need(sys(SYS.inotify_add_watch, fd, "/", IN_ACCESS), "inotify_add_watch");
    if (wd !== wanted) missing(`INOTIFY_IOC_SETNEXTWD ${wanted} was accepted, but the next watch got wd ${wd}`);
  } finally {
    closeFds(fd);
  }
}

/** Does a file mapped from overlayfs show the file's own device and inode in /proc/PID/maps? */
function overlayfsMaps(): void {
  inOwnMounts((r, pid) => {
    mkdirs(r, "/tmp/l", "/tmp/u", "/tmp/w", "/tmp/m");
    need(inject(r, XSYS.mount, "overlay", "/tmp/m", "overlay", 0, "lowerdir=/tmp/l,upperdir=/tmp/u,workdir=/tmp/w"), "mounting an overlayfs", [ENODEV]);
    const fd = need(inject(r, SYS.openat, AT_FDCWD, "/tmp/m/f", O.RDWR | O.CREAT, 0o644), "creating a file on overlayfs");
    const addr = need(inject(r, SYS.mmap, 0, 4096, PROT.READ, MAP.SHARED, fd, 0), "mapping a file on overlayfs");
    const st = r.alloc(144); // struct stat
    need(inject(r, SYS.fstat, fd, st), "fstat");
    const b = r.read(st, 16);
    const dev = b.readBigUInt64LE(0), ino = b.readBigUInt64LE(8);
    const major = Number(((dev >> 32n) & 0xfffff000n) | ((dev >> 8n) & 0xfffn));
    const minor = Number(((dev >> 12n) & 0xffffff00n) | (dev & 0xffn));
    const m = parseMaps(readFileSync(`/proc/${pid}/maps`, "utf8")).find((x) => x.start === addr);
    if (!m) missing("the overlayfs mapping is not in /proc/PID/maps");
    if (m.major !== major || m.minor !== minor || BigInt(m.inode) !== ino) {
      missing(`/proc/PID/maps shows an overlayfs file as ${m.major}:${m.minor} ${m.inode}, stat as ${major}:${minor} ${ino}`);
    }
  });
}

function autofs(): void {
  inOwnMounts((r, pid) => {
    const fds = r.alloc(8);
    need(inject(r, SYS.pipe2, fds, O.CLOEXEC), "pipe2");
    const w = r.read(fds, 8).readInt32LE(4);
    const pgrp = parseStat(readFileSync(`/proc/${pid}/stat`, "utf8")).pgrp;
    need(inject(r, XSYS.mount, "crest", "/tmp", "autofs", 0, `fd=${w},pgrp=${pgrp},minproto=5,maxproto=5,direct`), "mounting autofs", [ENODEV]);
    const line = readFileSync(`/proc/${pid}/mountinfo`, "utf8").split("\n").find((l) => l.includes(" autofs "));
    if (!line) missing("the autofs mount is not in /proc/PID/mountinfo");
    if (!line.includes("pipe_ino=")) missing("autofs mounts do not show pipe_ino in /proc/PID/mountinfo");
  });
}

function apparmorStacking(): string | void {
  if (!existsSync(APPARMOR)) return "AppArmor is not in use on this system";
  const read = (f: string) => {
    try {
      return readFileSync(`${APPARMOR}/features/domain/${f}`, "utf8").trim();
    } catch {
      return "";
    }
  };
  if (read("stack") !== "yes") missing("AppArmor has no profile stacking");
  const [major = 0, minor = 0] = read("version").split(".").map(Number);
  if (major < 1 || (major === 1 && minor < 2)) missing(`AppArmor domain version ${read("version")} is older than 1.2`);
}

export const SYSTEM_PROBES = [
  {
    id: "proc",
    category: "basic",
    breaks: "crest cannot read the state of the tasks it dumps",
    run: () => {
      for (const f of ["stat", "status", "smaps", "auxv", "limits", "timers", "personality", "oom_score_adj", "comm", `task/${process.pid}/children`]) {
        fileExists(`/proc/self/${f}`, `/proc/PID/${f.replace(/^task\/\d+/, "task/TID")} is missing`);
      }
      parseStat(readFileSync("/proc/self/stat", "utf8"));
    },
  },
  {
    id: "kcmp",
    category: "basic",
    breaks: "crest cannot tell which tasks share files, memory, fd tables or signal handlers",
    run: () => {
      const r = need(sys(SYS.kcmp, process.pid, process.pid, KCMP.VM, 0, 0), "kcmp");
      if (r !== 0) missing(`kcmp says a process does not share its own memory (${r})`);
    },
  },
  {
    id: "pidfd_getfd",
    category: "basic",
    breaks: "crest cannot give restored tasks the files they shared (pidfd_open, pidfd_getfd)",
    run: () => {
      const pidfd = need(sys(SYS.pidfd_open, process.pid, 0), "pidfd_open");
      try {
        const got = need(sys(SYS.pidfd_getfd, pidfd, pidfd, 0), "pidfd_getfd");
        try {
          if (sys(SYS.kcmp, process.pid, process.pid, KCMP.FILE, pidfd, got) !== 0) missing("pidfd_getfd did not return the same file");
        } finally {
          closeFds(got);
        }
      } finally {
        closeFds(pidfd);
      }
    },
  },
  {
    id: "sysv_next_id",
    category: "basic",
    breaks: "crest cannot restore SysV IPC objects with their ids",
    run: () => {
      for (const k of ["sem", "msg", "shm"]) {
        const p = `/proc/sys/kernel/${k}_next_id`;
        try {
          accessSync(p, constants.R_OK | constants.W_OK);
        } catch (e) {
          missing(`${p} is not writable (${(e as NodeJS.ErrnoException).code})`);
        }
      }
    },
  },
  {
    id: "mnt_id",
    category: "extra",
    breaks: "criu finds the mount of an open file with it; crest records it when present and reopens files by path",
    run: () => {
      if (!/^mnt_id:\s*\d+$/m.test(fdinfoOf("/proc/self/comm"))) missing("/proc/PID/fdinfo has no mnt_id field");
    },
  },
  {
    id: "fdinfo_lock",
    category: "extra",
    breaks: "crest cannot find the file locks a task holds (--file-locks)",
    run: () => {
      const info = fdinfoOf("/proc/locks", (fd) => need(sys(SYS.flock, fd, LOCK_SH), "flock"));
      if (!/^lock:/m.test(info)) missing("/proc/PID/fdinfo does not show file locks");
    },
  },
  {
    id: "timerfd",
    category: "extra",
    breaks: "crest cannot restore a timerfd's count of expirations not read yet",
    run: () => {
      const fd = need(sys(SYS.timerfd_create, CLOCK_MONOTONIC, O.CLOEXEC), "timerfd_create");
      try {
        // A NULL argument: EFAULT from a kernel that has the ioctl.
        const r = sys(SYS.ioctl, fd, TFD_IOC_SET_TICKS, 0);
        if (r === -EFAULT) return;
        need(r, "TFD_IOC_SET_TICKS", [ENOTTY, EINVAL]);
        missing("TFD_IOC_SET_TICKS accepted a NULL argument");
      } finally {
        closeFds(fd);
      }
    },
  },
  {
    id: "kcmp_epoll",
    category: "extra",
    breaks: "an epoll target added under an fd number since closed cannot be found",
    run: () => {
      const efd = need(sys(SYS.epoll_create1, O.CLOEXEC), "epoll_create1");
      const p = new Int32Array([-1, -1]);
      try {
        need(sys(SYS.pipe2, p, O.CLOEXEC), "pipe2");
        const ev = Buffer.alloc(12); // struct epoll_event, packed on x86_64
        ev.writeUInt32LE(EPOLLIN | EPOLLOUT, 0);
        need(sys(SYS.epoll_ctl, efd, EPOLL_CTL_ADD, p[0]!, ev), "epoll_ctl");
        const slot = new Uint32Array([efd, p[0]!, 0]);
        need(sys(SYS.kcmp, process.pid, process.pid, KCMP.EPOLL_TFD, p[0]!, slot), "kcmp with KCMP_EPOLL_TFD", [EINVAL]);
      } finally {
        closeFds(efd, p[0]!, p[1]!);
      }
    },
  },
  {
    id: "inotify_setnextwd",
    category: "extra",
    breaks: "crest restores the number of each inotify watch by adding and removing watches until the kernel hands it out (slow for high numbers)",
    run: inotifySetNextWd,
  },
  {
    id: "cgroupns",
    category: "extra",
    breaks: "cgroup namespaces cannot be checkpointed",
    run: () => fileExists("/proc/self/ns/cgroup", "cgroup namespaces are not supported by this kernel"),
  },
  {
    id: "userns",
    category: "extra",
    breaks: "user namespaces cannot be checkpointed",
    run: () => {
      fileExists("/proc/self/ns/user", "user namespaces are not supported by this kernel");
      need(sys(SYS.prctl, PR.SET_MM, PR_SET_MM_MAP_SIZE, new Uint32Array(1), 0, 0), "prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE)", [EINVAL]);
    },
  },
  {
    id: "timens",
    category: "extra",
    breaks: "time namespaces cannot be checkpointed; crest refuses them so far",
    run: () => fileExists("/proc/self/timens_offsets", "time namespaces are not supported by this kernel"),
  },
  {
    id: "ns_pid",
    category: "basic",
    breaks: "crest cannot read the PIDs tasks have inside their PID namespace (every dump reads NSpid)",
    run: () => {
      if (!/^NSpid:/m.test(readFileSync("/proc/self/status", "utf8"))) missing("/proc/PID/status has no NSpid field");
    },
  },
  {
    id: "openat2",
    category: "extra",
    breaks: "criu resolves paths with it; crest does not use it",
    run: () => {
      const r = sys(XSYS.openat2, AT_FDCWD, ".", 0, 0);
      if (r >= 0) closeFds(r);
      else if (r === -ENOSYS) need(r, "openat2");
    },
  },
  {
    id: "timer_cr_ids",
    category: "extra",
    breaks: "crest cannot restore POSIX timers with their ids (Linux 6.16 or later)",
    run: () => void need(sys(SYS.prctl, PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_GET, 0, 0, 0), "prctl(PR_TIMER_CREATE_RESTORE_IDS)", [EINVAL]),
  },
  {
    id: "move_mount_set_group",
    category: "extra",
    breaks: "criu restores mount propagation groups with it; crest does not checkpoint mount namespaces",
    run: () => inOwnMounts((r) => {
      need(inject(r, XSYS.mount, 0, "/tmp", 0, MS_PRIVATE, 0), "making a mount private");
      mkdirs(r, "/tmp/sub");
      need(inject(r, XSYS.mount, "/tmp/sub", "/tmp/sub", 0, MS_BIND, 0), "a bind mount");
      need(inject(r, XSYS.mount, 0, "/tmp", 0, MS_SHARED, 0), "making a mount shared");
      need(inject(r, XSYS.move_mount, AT_FDCWD, "/tmp", AT_FDCWD, "/tmp/sub", MOVE_MOUNT_SET_GROUP), "move_mount with MOVE_MOUNT_SET_GROUP", [EINVAL, ENOSYS]);
    }),
  },
  {
    id: "overlayfs_maps",
    category: "extra",
    breaks: "criu matches files mapped from overlayfs by the device and inode in /proc/PID/maps; crest opens mapped files through map_files and does not need it",
    run: overlayfsMaps,
  },
  {
    id: "apparmor_stacking",
    category: "extra",
    breaks: "criu checkpoints AppArmor namespaces with it; crest does not handle AppArmor yet",
    run: apparmorStacking,
  },
  {
    id: "autofs",
    category: "experimental",
    breaks: "criu needs it for autofs mounts; crest does not checkpoint mount namespaces",
    run: autofs,
  },
] as const satisfies readonly Probe[];
