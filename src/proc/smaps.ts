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
const KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
const VMFLAG = /^[a-z0-9?]{2}$/;

/** A mapping's line starts with its hex start address; a field's with its capitalised name. */
const isHexDigit = (c: number): boolean => (c >= 48 && c <= 57) || (c >= 97 && c <= 102);

/** "Key:   123 kB" or "Key:   1": the key, the number and whether it is in kB; null if the line is not that. */
function field(line: string): { key: string; value: string; kb: boolean } | null {
  const colon = line.indexOf(":");
  if (colon <= 0) return null;
  const key = line.slice(0, colon);
  let value = line.slice(colon + 1);
  if (value.charCodeAt(0) !== 32 && value.charCodeAt(0) !== 9) return null;
  value = value.trim();
  const kb = value.endsWith(" kB");
  if (kb) value = value.slice(0, -3).trimEnd();
  return KEY.test(key) ? { key, value, kb } : null;
}

// Hand-split rather than one regex a line: a dump parses every task's smaps,
// some thousands of lines each.
export function parseSmaps(text: string): SmapsEntry[] {
  const out: SmapsEntry[] = [];
  let cur: SmapsEntry | undefined;
  for (const line of lines(text)) {
    if (isHexDigit(line.charCodeAt(0)) && HEADER.test(line)) {
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
    const f = field(line);
    if (!f) throw new ProcParseError("smaps", line);
    const value = decimal("smaps", line, f.value);
    if (f.kb) cur.sizes[f.key] = value;
    else cur.counters[f.key] = value;
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
