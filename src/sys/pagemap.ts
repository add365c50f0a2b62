// PAGEMAP_SCAN (ioctl on /proc/PID/pagemap, Linux 6.7+): which pages of a
// range are present, swapped, file-backed or the zero page, as merged
// regions instead of one 64-bit word per page.
import { closeSync, openSync } from "node:fs";
import { native } from "./native.js";
import { SYS } from "./constants.js";
import { check, EPERM } from "./errno.js";

/** The categories (all in the low 32 bits: numbers, which a scan's thousands of regions read without a BigInt each). */
export const PAGE_IS = {
  WPALLOWED: 1 << 0, WRITTEN: 1 << 1, FILE: 1 << 2, PRESENT: 1 << 3, SWAPPED: 1 << 4,
  PFNZERO: 1 << 5, HUGE: 1 << 6, SOFT_DIRTY: 1 << 7, GUARD: 1 << 8,
} as const;

// _IOWR('f', 16, struct pm_scan_arg), the struct being 12 u64s.
const PAGEMAP_SCAN = 0xc0606610;
const ARG_WORDS = 12;
const REGION_WORDS = 3;

export interface PageRegion {
  start: number;
  end: number;
  categories: number;
}

export interface ScanQuery {
  /** Pages must have all of these... */
  mask: number;
  /** ...with these bits of `mask` required to be clear instead of set. */
  inverted: number;
  /** and at least one of these. */
  anyof: number;
  /** Categories reported (regions merge pages that agree on them). */
  returned: number;
  /**
   * PM_SCAN_WP_MATCHING with PM_SCAN_CHECK_WPASYNC: the pages found are
   * write-protected again as they are found (userfaultfd-wp in async mode,
   * atomically with the finding), and a mapping not so registered stops the scan.
   */
  protect?: boolean;
}

const PM_SCAN_WP_MATCHING = 1n, PM_SCAN_CHECK_WPASYNC = 2n;

export class PagemapScanner {
  private readonly fd: number;
  private readonly arg = new BigUint64Array(ARG_WORDS);
  private readonly vec: BigUint64Array;
  /** The same regions as 32-bit halves, read as numbers. */
  private readonly halves: Uint32Array;

  constructor(readonly pid: number, private readonly maxRegions = 4096) {
    this.fd = openSync(`/proc/${pid}/pagemap`, "r");
    this.vec = new BigUint64Array(maxRegions * REGION_WORDS);
    this.halves = new Uint32Array(this.vec.buffer);
  }

  /**
   * Each region of [start, end) matching q, in address order, to `visit`:
   * thousands where memory was written here and there, none made an object.
   * Returns false where a `protect` scan stopped at a mapping not registered
   * for asynchronous write-protection (EPERM); the regions it had found (and
   * protected) before were visited all the same.
   */
  scan(start: number, end: number, q: ScanQuery, visit: (start: number, end: number, categories: number) => void): boolean {
    let from = start;
    while (from < end) {
      const a = this.arg;
      a.fill(0n);
      a[0] = BigInt(ARG_WORDS * 8);
      if (q.protect) {
        a[1] = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
        // A scan that fails half-way says nothing of the regions it wrote (and protected) first: the zeros tell where they end.
        this.vec.fill(0n);
      }
      a[2] = BigInt(from);
      a[3] = BigInt(end);
      a[5] = BigInt(native.address(this.vec));
      a[6] = BigInt(this.maxRegions);
      a[8] = BigInt(q.inverted);
      a[9] = BigInt(q.mask);
      a[10] = BigInt(q.anyof);
      a[11] = BigInt(q.returned);
      const ret = native.syscall(SYS.ioctl, this.fd, PAGEMAP_SCAN, a);
      const stopped = q.protect === true && ret === -EPERM;
      const n = stopped ? this.filledRegions() : check(ret, `scan pages of process ${this.pid}`);
      const h = this.halves;
      let last = from;
      for (let i = 0; i < n; i++) {
        const w = i * REGION_WORDS * 2;
        // A region may start before where the previous call ended (below).
        const start = Math.max(h[w]! + h[w + 1]! * 0x1_0000_0000, from), end = h[w + 2]! + h[w + 3]! * 0x1_0000_0000;
        if (start >= end) continue;
        visit(start, end, h[w + 4]!);
        last = end;
      }
      if (stopped) return false;
      // This kernel may report walk_end short of regions it has returned
      // (when more regions are found than its internal buffer holds): go
      // on after whichever is further, never scanning a page twice.
      const walkEnd = Math.max(Number(a[4]), last);
      if (walkEnd <= from) break;
      from = walkEnd;
    }
    return true;
  }

  /** How many regions a failed scan wrote: those before the first that is all zeros. */
  private filledRegions(): number {
    let n = 0;
    while (n < this.maxRegions && (this.vec[n * REGION_WORDS] !== 0n || this.vec[n * REGION_WORDS + 1] !== 0n)) n++;
    return n;
  }

  /**
   * The guard regions (madvise MADV_GUARD_INSTALL) of [start, end), or null
   * when this kernel's PAGEMAP_SCAN has no PAGE_IS_GUARD (before Linux 6.15;
   * guard regions cannot be told from swapped pages there).
   */
  guards(start: number, end: number): PageRegion[] | null {
    if (!reportsGuards()) return null;
    const out: PageRegion[] = [];
    this.scan(start, end, { mask: PAGE_IS.GUARD, inverted: 0, anyof: 0, returned: PAGE_IS.GUARD }, (s, e, categories) => out.push({ start: s, end: e, categories }));
    return out;
  }

  close(): void {
    closeSync(this.fd);
  }
}

let guardsKnown: boolean | undefined;
/**
 * Whether PAGEMAP_SCAN knows PAGE_IS_GUARD: the kernel checks the category
 * bits before anything else, so an empty range of our own answers it.
 */
export function reportsGuards(): boolean {
  if (guardsKnown === undefined) {
    const fd = openSync("/proc/self/pagemap", "r");
    try {
      const a = new BigUint64Array(ARG_WORDS);
      a[0] = BigInt(ARG_WORDS * 8);
      a[9] = BigInt(PAGE_IS.GUARD);
      a[11] = BigInt(PAGE_IS.GUARD);
      guardsKnown = native.syscall(SYS.ioctl, fd, PAGEMAP_SCAN, a) >= 0;
    } finally {
      closeSync(fd);
    }
  }
  return guardsKnown;
}
