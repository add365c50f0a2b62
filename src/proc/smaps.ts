// /proc/PID/smaps: each maps line followed by "Key: N kB" size lines, a few
// unitless counters (THPeligible, ProtectionKey) and the VmFlags line.
import { ProcParseError } from "./error.js";
import { parseMapsLine, type MapEntry } from "./maps.js";
import { decimal, lines } from "./numbers.js";

export interface SmapsEntry extends MapEntry {
  /** Fields given in kB: Size, KernelPageSize, Rss, Pss, Pss_Dirty, Shared_Clean, Shared_Dirty,
   * Private_Clean, Private_Dirty, Referenced, Anonymous, KSM, LazyFree, AnonHugePages, Swap,
   * SwapPss, Locked, ... (whatever the kernel prints). */
  sizes: Record<string, number>;
  /** Unitless numeric fields: THPeligible (0/1), ProtectionKey. */
  counters: Record<string, number>;
  /** Two-letter VmFlags mnemonics in kernel order (rd wr ex sh mr mw me ms gd pf dw lo io sr rr
   * dc de ac nr ht sf nl ar wf dd sd mm hg nh mg um uw ss dp ...). */
  vmFlags: string[];
}

const HEADER = /^[0-9a-f]+-[0-9a-f]+ /;
const FIELD = /^([A-Za-z_][A-Za-z0-9_]*):\s+(-?\d+)( kB)?$/;
const VMFLAG = /^[a-z0-9?]{2}$/;

export function parseSmaps(text: string): SmapsEntry[] {
  const out: SmapsEntry[] = [];
  let cur: SmapsEntry | undefined;
  for (const line of lines(text)) {
    if (HEADER.test(line)) {
      cur = { ...parseMapsLine(line, "smaps"), sizes: {}, counters: {}, vmFlags: [] };
      out.push(cur);
      continue;
    }
    if (!cur) throw new ProcParseError("smaps", line, "field before the first mapping");
    if (line.startsWith("VmFlags:")) {
      const flags = line.slice(8).trim();
      cur.vmFlags = flags ? flags.split(/\s+/) : [];
      const bad = cur.vmFlags.find((f) => !VMFLAG.test(f));
      if (bad !== undefined) throw new ProcParseError("smaps", line, `bad VmFlags mnemonic ${JSON.stringify(bad)}`);
      continue;
    }
    const m = FIELD.exec(line);
    if (!m) throw new ProcParseError("smaps", line);
    const value = decimal("smaps", line, m[2]);
    if (m[3]) cur.sizes[m[1]!] = value;
    else cur.counters[m[1]!] = value;
  }
  return out;
}

// madvise() advice numbers (asm-generic/mman-common.h) CRIU records in
// vma_entry.madv as a bitmask 1 << advice, keyed by the VmFlag that shows it.
const MADV_BY_FLAG: Readonly<Record<string, number>> = {
  sr: 2 /* MADV_SEQUENTIAL */, rr: 1 /* MADV_RANDOM */, dc: 10 /* MADV_DONTFORK */,
  dd: 16 /* MADV_DONTDUMP */, mg: 12 /* MADV_MERGEABLE */, hg: 14 /* MADV_HUGEPAGE */,
  nh: 15 /* MADV_NOHUGEPAGE */, wf: 18 /* MADV_WIPEONFORK */,
};

/** The madv bitmask (1 << MADV_*) CRIU's smaps parser derives from a mapping's VmFlags. */
export function vmFlagsToMadvise(flags: readonly string[]): bigint {
  let m = 0n;
  for (const f of flags) {
    const adv = MADV_BY_FLAG[f];
    if (adv !== undefined) m |= 1n << BigInt(adv);
  }
  return m;
}

// mmap() flags CRIU adds to vma_entry.flags from VmFlags (x86_64 values).
const MAP_BY_FLAG: Readonly<Record<string, number>> = {
  gd: 0x0100 /* MAP_GROWSDOWN */, lo: 0x2000 /* MAP_LOCKED */, nr: 0x4000 /* MAP_NORESERVE */,
  ht: 0x40000 /* MAP_HUGETLB */, dp: 0x08 /* MAP_DROPPABLE */,
};

/** The MAP_* bits CRIU's smaps parser ORs into vma_entry.flags for these VmFlags. */
export function vmFlagsToMapFlags(flags: readonly string[]): number {
  let m = 0;
  for (const f of flags) m |= MAP_BY_FLAG[f] ?? 0;
  return m;
}
