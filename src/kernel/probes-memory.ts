// Probes of the memory interfaces: PAGEMAP_SCAN, userfaultfd write-protect
// (crest's dirty tracking: this kernel may lack soft-dirty bits),
// process_vm_readv, map_files, memfd, AIO rings. They run in crest's own
// process, on memory they map for the purpose.
import { openSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { native } from "../sys/native.js";
import { MAP, MREMAP, PAGE_SIZE, PROT, SYS } from "../sys/constants.js";
import { EINVAL, ENOENT, ENOSYS, EPERM } from "../sys/errno.js";
import { iovecs } from "../sys/syscalls.js";
import { PAGE_IS } from "../sys/pagemap.js";
import { UFFD_API, UFFD_FEATURE, UFFDIO_API, UFFDIO_REGISTER, UFFDIO_REGISTER_MODE_WP, UFFDIO_WRITEPROTECT, UFFDIO_WRITEPROTECT_MODE_WP } from "../sys/uffd.js";
import { parseMaps } from "../proc/index.js";
import { closeFds, ENOTTY, Missing, missing, need, openOrMissing, sys, withFd, XSYS, type Probe } from "./probe.js";

// _IOWR('f', 16, struct pm_scan_arg) and its flags.
const PAGEMAP_SCAN = 0xc0606610;
const PM_SCAN_WP_MATCHING = 1n, PM_SCAN_CHECK_WPASYNC = 2n;

// /dev/userfaultfd's ioctl (linux/userfaultfd.h).
const USERFAULTFD_IOC_NEW = 0xaa00;
/** What criu's lazy restore needs (NEED_UFFD_API_FEATURES). */
const UFFD_NONCOOP = UFFD_FEATURE.EVENT_FORK | UFFD_FEATURE.EVENT_REMAP | UFFD_FEATURE.EVENT_UNMAP | UFFD_FEATURE.EVENT_REMOVE;

const MFD_CLOEXEC = 1, MFD_ALLOW_SEALING = 2, MFD_HUGETLB = 4;
const F_ADD_SEALS = 1033, F_GET_SEALS = 1034, F_SEAL_SHRINK = 2;
const CLOCK_MONOTONIC = 1;

interface Scan {
  flags?: bigint;
  mask?: number;
  inverted?: number;
  anyof?: number;
  returned: number;
}

/** One PAGEMAP_SCAN call: -errno, or the [start, end) regions found. */
function pagemapScan(fd: number, start: number, end: number, q: Scan): number | Array<[number, number]> {
  const vec = new BigUint64Array(16 * 3);
  const a = new BigUint64Array([
    96n, q.flags ?? 0n, BigInt(start), BigInt(end), 0n, BigInt(native.address(vec)), 16n, 0n,
    BigInt(q.inverted ?? 0), BigInt(q.mask ?? 0), BigInt(q.anyof ?? 0), BigInt(q.returned),
  ]);
  const n = sys(SYS.ioctl, fd, PAGEMAP_SCAN, a);
  if (n < 0) return n;
  return Array.from({ length: n }, (_, i) => [Number(vec[i * 3]), Number(vec[i * 3 + 1])] as [number, number]);
}

const PRESENT_DATA: Scan = {
  mask: PAGE_IS.PFNZERO | PAGE_IS.FILE, inverted: PAGE_IS.PFNZERO | PAGE_IS.FILE,
  anyof: PAGE_IS.PRESENT | PAGE_IS.SWAPPED, returned: PAGE_IS.PRESENT | PAGE_IS.SWAPPED,
};

/** Scans a page crest has just written in its own memory: it must be found. */
function scanOwnPage(extraReturned: number, what: string, absent: number[]): void {
  const page = Buffer.from(native.aligned(PAGE_SIZE));
  page.fill(1);
  const addr = native.address(page);
  withFd(openOrMissing("/proc/self/pagemap", "r", what), (fd) => {
    const got = pagemapScan(fd, addr, addr + PAGE_SIZE, { ...PRESENT_DATA, returned: PRESENT_DATA.returned | extraReturned });
    if (typeof got === "number") need(got, what, absent);
    else if (got.length !== 1 || got[0]![0] !== addr) missing(`${what} does not report a page crest has just written`);
  });
}

/** A userfaultfd, through the syscall or /dev/userfaultfd (which root may use when the syscall is restricted). */
function openUffd(): number {
  const flags = 0o2000000 | 0o4000; // O_CLOEXEC | O_NONBLOCK
  const fd = sys(XSYS.userfaultfd, flags);
  if (fd >= 0 || fd === -ENOSYS) return need(fd, "userfaultfd");
  let dev: number;
  try {
    dev = openSync("/dev/userfaultfd", "r+");
  } catch {
    return need(fd, "userfaultfd");
  }
  return withFd(dev, (d) => need(sys(SYS.ioctl, d, USERFAULTFD_IOC_NEW, flags), "USERFAULTFD_IOC_NEW on /dev/userfaultfd"));
}

/** UFFDIO_API on a new userfaultfd asking for `features`; returns the fd and every feature the kernel has. */
function uffdWith(features: bigint): { fd: number; available: bigint } {
  const fd = openUffd();
  const api = new BigUint64Array([UFFD_API, features, 0n]);
  const r = sys(SYS.ioctl, fd, UFFDIO_API, api);
  if (r < 0) {
    closeFds(fd);
    need(r, features ? `UFFDIO_API with features 0x${features.toString(16)}` : "UFFDIO_API", [EINVAL]);
  }
  return { fd, available: api[1]! };
}

function uffdFeatures(): bigint {
  const u = uffdWith(0n);
  closeFds(u.fd);
  return u.available;
}

/**
 * crest's dirty-page tracking, end to end on two pages of its own: register
 * them for asynchronous userfaultfd write-protection, protect them, write
 * one, and let PAGEMAP_SCAN (PM_SCAN_WP_MATCHING) report exactly it and
 * protect it again.
 */
function dirtyTracking(): void {
  const u = uffdWith(UFFD_FEATURE.WP_ASYNC | UFFD_FEATURE.WP_UNPOPULATED);
  const len = 2 * PAGE_SIZE;
  const addr = sys(SYS.mmap, 0, len, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS, -1, 0);
  try {
    need(addr, "mmap");
    need(sys(SYS.ioctl, u.fd, UFFDIO_REGISTER, new BigUint64Array([BigInt(addr), BigInt(len), UFFDIO_REGISTER_MODE_WP, 0n])),
      "UFFDIO_REGISTER in write-protect mode", [EINVAL]);
    need(sys(SYS.ioctl, u.fd, UFFDIO_WRITEPROTECT, new BigUint64Array([BigInt(addr), BigInt(len), UFFDIO_WRITEPROTECT_MODE_WP])),
      "UFFDIO_WRITEPROTECT", [EINVAL]);
    withFd(openOrMissing("/proc/self/pagemap", "r", "PAGEMAP_SCAN"), (pm) => {
      const written = (): string => {
        const got = pagemapScan(pm, addr, addr + len, {
          flags: PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC, mask: PAGE_IS.WRITTEN, returned: PAGE_IS.WRITTEN,
        });
        if (typeof got === "number") need(got, "PAGEMAP_SCAN with PM_SCAN_WP_MATCHING", [EINVAL, ENOTTY, EPERM]);
        return (got as Array<[number, number]>).map(([s, e]) => `${(s - addr) / PAGE_SIZE}-${(e - addr) / PAGE_SIZE}`).join(",");
      };
      // The kernel writes the result into the page: a write crest makes without touching it from JS.
      const touch = (page: number) => need(sys(SYS.clock_gettime, CLOCK_MONOTONIC, addr + page * PAGE_SIZE), "clock_gettime");
      touch(0);
      const first = written();
      const again = written();
      touch(1);
      const second = written();
      if (first !== "0-1" || again !== "" || second !== "1-2") {
        missing(`PAGEMAP_SCAN with userfaultfd write-protection reported written pages "${first}", "${again}", "${second}" instead of "0-1", "", "1-2"`);
      }
    });
  } finally {
    if (addr > 0) sys(SYS.munmap, addr, len);
    closeFds(u.fd);
  }
}

/** io_setup, move the ring with mremap, and the ring still works at its new place. */
function aioRemap(): void {
  const ctxBuf = new BigUint64Array(1);
  need(sys(XSYS.io_setup, 16, ctxBuf), "io_setup");
  let ctx = Number(ctxBuf[0]);
  try {
    const ring = parseMaps(readFileSync("/proc/self/maps", "utf8")).find((m) => m.start === ctx);
    if (!ring || ring.path !== "/[aio]") missing("the AIO ring is not where io_setup said it is");
    const len = ring.end - ring.start;
    const to = need(sys(SYS.mmap, 0, len, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS, -1, 0), "mmap");
    const moved = sys(SYS.mremap, ctx, len, len, MREMAP.MAYMOVE | MREMAP.FIXED, to);
    if (moved < 0) sys(SYS.munmap, to, len);
    ctx = need(moved, "mremap of an AIO ring");
    need(sys(XSYS.io_getevents, ctx, 0, 1, 0, 0), "io_getevents on an AIO ring moved by mremap");
  } finally {
    sys(XSYS.io_destroy, ctx);
  }
}

export const MEMORY_PROBES = [
  {
    id: "pagemap_scan",
    category: "basic",
    breaks: "crest cannot find the pages to dump",
    run: () => scanOwnPage(0, "PAGEMAP_SCAN", [EINVAL, ENOTTY]),
  },
  {
    id: "process_vm_readv",
    category: "basic",
    breaks: "crest cannot read the memory of the tasks it dumps",
    run: () => {
      const src = Buffer.from("crest check");
      const dst = Buffer.alloc(src.length);
      const n = need(sys(SYS.process_vm_readv, process.pid, iovecs([[native.address(dst), dst.length]]), 1,
        iovecs([[native.address(src), src.length]]), 1, 0), "process_vm_readv");
      if (n !== src.length || !dst.equals(src)) missing("process_vm_readv did not copy what was asked");
    },
  },
  {
    id: "map_files",
    category: "basic",
    breaks: "crest cannot dump or restore shared memory and memfd mappings, nor check mapped files",
    run: () => {
      try {
        const first = readdirSync("/proc/self/map_files")[0];
        if (first === undefined) missing("/proc/self/map_files is empty");
        readlinkSync(`/proc/self/map_files/${first}`);
      } catch (e) {
        if (e instanceof Missing) throw e;
        missing(`/proc/PID/map_files is not usable (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      }
    },
  },
  {
    id: "pagemap_scan_guard_pages",
    category: "extra",
    breaks: "guard regions (MADV_GUARD_INSTALL) cannot be told from swapped pages: the dump of a process that has them fails",
    run: () => scanOwnPage(PAGE_IS.GUARD, "PAGEMAP_SCAN reporting PAGE_IS_GUARD", [EINVAL, ENOTTY]),
  },
  {
    id: "uffd-wp",
    category: "extra",
    breaks: "memory changes cannot be tracked between pre-dumps (crest's pre-dump and dump --track-mem copy every page every time)",
    run: dirtyTracking,
  },
  {
    id: "uffd",
    category: "extra",
    breaks: "restore --lazy-pages (with crest lazy-pages) needs it",
    run: () => void uffdFeatures(),
  },
  {
    id: "uffd-noncoop",
    category: "extra",
    breaks: "restore --lazy-pages needs them: the lazy-pages daemon follows the tasks' fork, mremap, munmap and MADV_DONTNEED with them",
    run: () => {
      const lacking = UFFD_NONCOOP & ~uffdFeatures();
      if (lacking) missing(`userfaultfd lacks the non-cooperative events (features 0x${lacking.toString(16)})`);
    },
  },
  {
    id: "memfd",
    category: "extra",
    breaks: "crest cannot restore memfd files and mappings, nor their seals",
    run: () => {
      const fd = need(sys(SYS.memfd_create, "crest-check", MFD_CLOEXEC | MFD_ALLOW_SEALING), "memfd_create");
      try {
        need(sys(SYS.fcntl, fd, F_ADD_SEALS, F_SEAL_SHRINK), "F_ADD_SEALS on a memfd", [EINVAL]);
        if (sys(SYS.fcntl, fd, F_GET_SEALS) !== F_SEAL_SHRINK) missing("F_GET_SEALS does not return the seal just added");
      } finally {
        closeFds(fd);
      }
    },
  },
  {
    id: "memfd_hugetlb",
    category: "extra",
    breaks: "crest restores hugetlb memfds with it (memfd_create MFD_HUGETLB)",
    run: () => closeFds(need(sys(SYS.memfd_create, "crest-check", MFD_CLOEXEC | MFD_HUGETLB), "memfd_create with MFD_HUGETLB", [EINVAL, ENOENT, ENOSYS])),
  },
  {
    id: "aio_remap",
    category: "extra",
    breaks: "criu needs it for processes with AIO rings; crest does not dump AIO rings yet",
    run: aioRemap,
  },
] as const satisfies readonly Probe[];
