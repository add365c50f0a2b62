// PAGEMAP_SCAN (ioctl on /proc/PID/pagemap, Linux 6.7+): which pages of a
// range are present, swapped, file-backed or the zero page, as merged
// regions instead of one 64-bit word per page.
import { closeSync, openSync } from "node:fs";
import { native } from "./native.js";
import { SYS } from "./constants.js";
import { check } from "./errno.js";

export const PAGE_IS = {
  WPALLOWED: 1n << 0n, WRITTEN: 1n << 1n, FILE: 1n << 2n, PRESENT: 1n << 3n, SWAPPED: 1n << 4n,
  PFNZERO: 1n << 5n, HUGE: 1n << 6n, SOFT_DIRTY: 1n << 7n, GUARD: 1n << 8n,
} as const;

// _IOWR('f', 16, struct pm_scan_arg), the struct being 12 u64s.
const PAGEMAP_SCAN = 0xc0606610;
const ARG_WORDS = 12;
const REGION_WORDS = 3;

export interface PageRegion {
  start: number;
  end: number;
  categories: bigint;
}

export interface ScanQuery {
  /** Pages must have all of these... */
  mask: bigint;
  /** ...with these bits of `mask` required to be clear instead of set. */
  inverted: bigint;
  /** and at least one of these. */
  anyof: bigint;
  /** Categories reported (regions merge pages that agree on them). */
  returned: bigint;
}

export class PagemapScanner {
  private readonly fd: number;
  private readonly arg = new BigUint64Array(ARG_WORDS);
  private readonly vec: BigUint64Array;

  constructor(readonly pid: number, private readonly maxRegions = 4096) {
    this.fd = openSync(`/proc/${pid}/pagemap`, "r");
    this.vec = new BigUint64Array(maxRegions * REGION_WORDS);
  }

  /** The regions of [start, end) matching q, in address order. */
  scan(start: number, end: number, q: ScanQuery): PageRegion[] {
    const out: PageRegion[] = [];
    let from = start;
    while (from < end) {
      const a = this.arg;
      a.fill(0n);
      a[0] = BigInt(ARG_WORDS * 8);
      a[2] = BigInt(from);
      a[3] = BigInt(end);
      a[5] = BigInt(native.address(this.vec));
      a[6] = BigInt(this.maxRegions);
      a[8] = q.inverted;
      a[9] = q.mask;
      a[10] = q.anyof;
      a[11] = q.returned;
      const n = check(native.syscall(SYS.ioctl, this.fd, PAGEMAP_SCAN, a), `scan pages of process ${this.pid}`);
      let last = from;
      for (let i = 0; i < n; i++) {
        // A region may start before where the previous call ended (below).
        const r = { start: Math.max(Number(this.vec[i * 3]), from), end: Number(this.vec[i * 3 + 1]), categories: this.vec[i * 3 + 2]! };
        if (r.start >= r.end) continue;
        out.push(r);
        last = r.end;
      }
      // This kernel may report walk_end short of regions it has returned
      // (when more regions are found than its internal buffer holds): go
      // on after whichever is further, never scanning a page twice.
      const walkEnd = Math.max(Number(a[4]), last);
      if (walkEnd <= from) break;
      from = walkEnd;
    }
    return out;
  }

  /**
   * The guard regions (madvise MADV_GUARD_INSTALL) of [start, end), or null
   * when this kernel's PAGEMAP_SCAN has no PAGE_IS_GUARD (before Linux 6.15;
   * guard regions cannot be told from swapped pages there).
   */
  guards(start: number, end: number): PageRegion[] | null {
    if (!reportsGuards()) return null;
    return this.scan(start, end, { mask: PAGE_IS.GUARD, inverted: 0n, anyof: 0n, returned: PAGE_IS.GUARD });
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
      a[9] = PAGE_IS.GUARD;
      a[11] = PAGE_IS.GUARD;
      guardsKnown = native.syscall(SYS.ioctl, fd, PAGEMAP_SCAN, a) >= 0;
    } finally {
      closeSync(fd);
    }
  }
  return guardsKnown;
}
