// A pagemap as a dump (or a page server) builds it, run by run: numbers in
// typed arrays, no message object or BigInt per entry. A dump against parent
// images makes tens of thousands of entries where memory changed here and
// there, all while the tree is frozen; writePagemap encodes them from here.
import type { pagemap_entry } from "./gen/index.js";
import { PAGE_SIZE } from "../sys/constants.js";

export class PagemapRuns {
  private vaddrs = new Float64Array(64);
  private counts = new Float64Array(64);
  private flagBits = new Uint32Array(64);
  private n = 0;

  get length(): number {
    return this.n;
  }

  vaddr(i: number): number {
    return this.vaddrs[i]!;
  }

  /** Pages in entry i. */
  pages(i: number): number {
    return this.counts[i]!;
  }

  flags(i: number): number {
    return this.flagBits[i]!;
  }

  /** Adds `pages` pages at vaddr: to the last entry where they follow it with the same flags, as one run. */
  add(vaddr: number, pages: number, flags: number): void {
    const last = this.n - 1;
    if (last >= 0 && this.flagBits[last] === flags && this.vaddrs[last]! + this.counts[last]! * PAGE_SIZE === vaddr) {
      this.counts[last] += pages;
      return;
    }
    if (this.n === this.vaddrs.length) this.grow();
    this.vaddrs[this.n] = vaddr;
    this.counts[this.n] = pages;
    this.flagBits[this.n] = flags;
    this.n++;
  }

  private grow(): void {
    const size = this.n * 2;
    const v = new Float64Array(size), c = new Float64Array(size), f = new Uint32Array(size);
    v.set(this.vaddrs);
    c.set(this.counts);
    f.set(this.flagBits);
    this.vaddrs = v;
    this.counts = c;
    this.flagBits = f;
  }

  /** As messages, for readers that take them. */
  entries(): pagemap_entry[] {
    return Array.from({ length: this.n }, (_, i) => ({ vaddr: BigInt(this.vaddrs[i]!), ...pagemapCount(BigInt(this.counts[i]!)), flags: this.flagBits[i]! }));
  }
}

/** Writers put the count in both fields when it fits, so every reader agrees (CRIU 4.2 itself writes 0 in field 2). */
export function pagemapCount(nrPages: bigint): { compat_nr_pages: number; nr_pages: bigint } {
  return { compat_nr_pages: nrPages <= 0xffffffffn ? Number(nrPages) : 0, nr_pages: nrPages };
}
