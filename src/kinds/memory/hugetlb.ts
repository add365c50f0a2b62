// hugetlb memory: mappings backed by huge pages (mmap MAP_HUGETLB, SysV
// SHM_HUGETLB, memfd_create MFD_HUGETLB). As criu records them, a mapping
// keeps MAP_HUGETLB and its page size in the mmap flags (log2 of the size
// at MAP_HUGE_SHIFT, 26), the same encoding as memfd's MFD_HUGETLB and
// SysV's SHM_HUGETLB sizes; the pages themselves are listed in the image
// in 4 KiB units, always whole huge pages. Private anonymous hugetlb is
// anonymous private memory (VMA_ANON_PRIVATE), shared anonymous hugetlb is
// shared anonymous memory (VMA_ANON_SHARED, shmid its inode; where an fd
// reaches it too, a memfd named /anon_hugepage, shmem-reach.ts), restored
// with the same flags; memfds and SysV segments carry the size with them
// (hugetlb_flag). Nothing of it is tracked, pre-dumped or restored lazily.
import { readFileSync, statSync } from "node:fs";
import { UnsupportedError } from "../context.js";
import { MAP, MAP_HUGE_SHIFT, PAGE_SIZE } from "../../sys/constants.js";
import type { SmapsEntry } from "../../proc/index.js";

const HUGE_SIZE_MASK = 0x3f;
/** What the kernel names anonymous hugetlb memory (mmap MAP_HUGETLB|MAP_ANONYMOUS) in maps. */
export const ANON_HUGEPAGE = "/anon_hugepage";

/** The size bits for a huge page of `size` bytes (log2 at MAP_HUGE_SHIFT; a multiplication, they may pass bit 31). */
export function hugeSizeFlag(size: number): number {
  const log = Math.log2(size);
  if (!Number.isInteger(log) || size <= PAGE_SIZE) throw new Error(`${size} bytes is not a huge page size`);
  return log * 2 ** MAP_HUGE_SHIFT;
}

/** The huge page size flags (MAP_HUGE_*, MFD_HUGE_*, SHM_HUGE_*) say, or the system's default size for none. */
export function hugePageSize(flags: number): number {
  const log = Math.floor(flags / 2 ** MAP_HUGE_SHIFT) & HUGE_SIZE_MASK;
  return log ? 2 ** log : defaultHugePageSize();
}

/** Hugepagesize in /proc/meminfo: what MAP_HUGETLB without a size gets. */
export function defaultHugePageSize(): number {
  const m = /^Hugepagesize:\s+(\d+) kB$/m.exec(readFileSync("/proc/meminfo", "utf8"));
  if (!m) throw new Error("/proc/meminfo names no default huge page size (Hugepagesize): this kernel has no hugetlb support");
  return Number(m[1]) * 1024;
}

/**
 * The huge page size of the file behind `via` (a map_files or fd link):
 * hugetlbfs reports it as the block size.
 */
export const hugePageSizeOf = (via: string): number => statSync(via).blksize;

/** A hugetlb mapping as crest records it: its kind and the mmap flags it adds (MAP_HUGETLB and the size). */
export interface HugeMapping {
  kind: "anon" | "sysv" | "memfd" | "file";
  flags: number;
}

/**
 * Sorts a mapping with the VmFlag "ht": anonymous hugetlb memory, a SysV
 * segment, a memfd, or a file of a mounted hugetlbfs (a file mapping like
 * any other, as criu has it: its contents stay in the file). A deleted file
 * there is refused: its ghost copy could not be written back (hugetlbfs
 * files take no write()).
 */
export function hugeMapping(m: SmapsEntry, via: string, where: string): HugeMapping {
  const flags = MAP.HUGETLB + hugeSizeFlag(hugePageSizeOf(via));
  if (m.path === ANON_HUGEPAGE && m.deleted) return { kind: "anon", flags };
  if (m.shared && m.path.startsWith("/SYSV")) return { kind: "sysv", flags };
  if (m.path.startsWith("/memfd:") && m.deleted) return { kind: "memfd", flags };
  if (m.deleted) {
    throw new UnsupportedError(`${where} maps ${m.path} (deleted), a deleted file of a hugetlbfs mount; crest cannot bring its contents back (hugetlbfs files cannot be written to); keep the file linked while dumping`);
  }
  return { kind: "file", flags };
}

/** The hugetlb part of recorded mmap flags (MAP_HUGETLB and the size bits), 0 for other memory. */
export function hugeFlagsOf(flags: number): number {
  if (!(flags & MAP.HUGETLB)) return 0;
  return MAP.HUGETLB + (Math.floor(flags / 2 ** MAP_HUGE_SHIFT) & HUGE_SIZE_MASK) * 2 ** MAP_HUGE_SHIFT;
}
