// What the images say of a mapping (vma_entry, CRIU's VMA_* status bits) and
// small helpers on address ranges, shared by the memory kind and by what a
// child keeps of its parent's memory (inherit.ts).
import type { vma_entry } from "../../images/index.js";
import { PROT } from "../../sys/constants.js";
import type { MapEntry, SmapsEntry } from "../../proc/index.js";

/** vma_entry.status bits (CRIU's VMA_*). */
export const VMA = {
  REGULAR: 1 << 0, STACK: 1 << 1, VSYSCALL: 1 << 2, VDSO: 1 << 3, HEAP: 1 << 5,
  FILE_PRIVATE: 1 << 6, FILE_SHARED: 1 << 7, ANON_SHARED: 1 << 8, ANON_PRIVATE: 1 << 9,
  SYSVIPC: 1 << 10, SOCKET: 1 << 11, VVAR: 1 << 12, AIORING: 1 << 13, MEMFD: 1 << 14,
  /** Not a VMA: a range of guard pages (madvise MADV_GUARD_INSTALL), listed after every real VMA. */
  GUARD: 1 << 16,
} as const;

export const is = (v: vma_entry, bit: number): boolean => (v.status & bit) !== 0;
export const isSpecial = (v: vma_entry): boolean => is(v, VMA.VDSO) || is(v, VMA.VVAR) || is(v, VMA.VSYSCALL);
export const isGuard = (v: vma_entry): boolean => is(v, VMA.GUARD);
export const protOf = (m: MapEntry): number => (m.prot.read ? PROT.READ : 0) | (m.prot.write ? PROT.WRITE : 0) | (m.prot.exec ? PROT.EXEC : 0);

/** MAP_DROPPABLE (Linux 6.11+): a mapping type of its own, private memory the kernel may drop. */
export const MAP_DROPPABLE = 0x08;
/** The mapping-type bits of mmap flags. */
export const MAP_TYPE = 0x0f;

/** A VMA as numbers. */
export function range(v: vma_entry): { start: number; end: number } {
  return { start: Number(v.start), end: Number(v.end) };
}

/** Address ranges minus others (both sorted by start; the others disjoint). */
export function subtract(from: Array<{ start: number; end: number }>, minus: Array<{ start: number; end: number }>): Array<{ start: number; end: number }> {
  const out: Array<{ start: number; end: number }> = [];
  let i = 0;
  for (const f of from) {
    let at = f.start;
    while (i < minus.length && minus[i]!.end <= at) i++;
    for (let j = i; j < minus.length && minus[j]!.start < f.end; j++) {
      const m = minus[j]!;
      if (m.start > at) out.push({ start: at, end: m.start });
      at = Math.max(at, m.end);
    }
    if (at < f.end) out.push({ start: at, end: f.end });
  }
  return out;
}

/**
 * A mapping whose pages a dump copies through pagemap-PID.img, as
 * dumpMemory sorts them: private, not the kernel's own areas, not a packet
 * socket's rings, not droppable nor hugetlb (shared memory lives in its object).
 */
export function privatePages(m: Pick<SmapsEntry, "shared" | "path"> & { vmFlags?: readonly string[] }): boolean {
  // hugetlb memory is neither tracked nor pre-dumped (as criu): each dump copies it whole.
  if (m.shared || m.vmFlags?.includes("dp") || m.vmFlags?.includes("ht")) return false;
  return !["[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]"].includes(m.path) && !m.path.startsWith("socket:[");
}
