// /proc/PID/smaps: each maps line followed by "Key: N kB" size lines, a few
// unitless counters (THPeligible, ProtectionKey) and the VmFlags line.
import { ProcParseError } from "./error.js";
import { parseMapsLine, type MapEntry } from "./maps.js";

export interface SmapsEntry extends MapEntry {
  /** Two-letter VmFlags mnemonics in kernel order (rd wr ex sh mr mw me ms gd pf dw lo io sr rr
   * dc de ac nr ht sf nl ar wf dd sd mm hg nh mg um uw ss dp ...). */
  vmFlags: string[];
  /**
   * kB of its pages that other mappings map too (Shared_Clean + Shared_Dirty):
   * in private memory, pages shared copy-on-write with a parent or child,
   * which the kernel copies before it lets anyone pin them (pages.ts).
   */
  sharedKb: number;
}

const HEADER = /^[0-9a-f]+-[0-9a-f]+ /;
const VMFLAG = /^[a-z0-9?]{2}$/;

/** A mapping's line starts with its hex start address; a field's with its capitalised name. */
const isHexDigit = (c: number): boolean => (c >= 48 && c <= 57) || (c >= 97 && c <= 102);
const isFieldStart = (c: number): boolean => (c >= 65 && c <= 90) || c === 95;

/**
 * The mappings with their VmFlags and how much of them is shared, which is
 * all crest takes from smaps (the other sizes and counters are the kernel's
 * accounting, not state to restore): the other lines are only checked to be
 * "Key: value" fields. Scanned by
 * hand, a line at a time: a dump reads every task's smaps, some thousands of
 * lines each.
 */
export function parseSmaps(text: string): SmapsEntry[] {
  const out: SmapsEntry[] = [];
  let cur: SmapsEntry | undefined;
  for (let at = 0; at < text.length;) {
    let nl = text.indexOf("\n", at);
    if (nl < 0) nl = text.length;
    const c = text.charCodeAt(at);
    if (isHexDigit(c)) {
      const line = text.slice(at, nl);
      if (!HEADER.test(line)) throw new ProcParseError("smaps", line);
      cur = { ...parseMapsLine(line, "smaps"), vmFlags: [], sharedKb: 0 };
      out.push(cur);
    } else {
      const colon = text.indexOf(":", at);
      if (!isFieldStart(c) || colon < 0 || colon > nl) throw new ProcParseError("smaps", text.slice(at, nl));
      if (!cur) throw new ProcParseError("smaps", text.slice(at, nl), "field before the first mapping");
      if (colon - at === 7 && text.startsWith("VmFlags", at)) {
        const flags = text.slice(colon + 1, nl).trim();
        cur.vmFlags = flags ? flags.split(/\s+/) : [];
        const bad = cur.vmFlags.find((f) => !VMFLAG.test(f));
        if (bad !== undefined) throw new ProcParseError("smaps", text.slice(at, nl), `bad VmFlags mnemonic ${JSON.stringify(bad)}`);
      } else if (colon - at === 12 && (text.startsWith("Shared_Clean", at) || text.startsWith("Shared_Dirty", at))) {
        const kb = /^\s*(\d+) kB$/.exec(text.slice(colon + 1, nl));
        if (!kb) throw new ProcParseError("smaps", text.slice(at, nl));
        cur.sharedKb += Number(kb[1]);
      }
    }
    at = nl + 1;
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

/** Whether two lists show the same mappings, line for line (addresses, protections, offset, file), whatever their flags. */
export function sameMappings(a: readonly MapEntry[], b: readonly MapEntry[]): boolean {
  return a.length === b.length && a.every((m, i) => {
    const n = b[i]!;
    return m.start === n.start && m.end === n.end && m.prot.read === n.prot.read && m.prot.write === n.prot.write && m.prot.exec === n.prot.exec &&
      m.shared === n.shared && m.offset === n.offset && m.major === n.major && m.minor === n.minor && m.inode === n.inode &&
      m.path === n.path && m.deleted === n.deleted;
  });
}

/** kB of the mappings locked in memory (VmFlags lo): what /proc/PID/status shows as VmLck. */
export const lockedKb = (maps: readonly SmapsEntry[]): number => maps.reduce((kb, m) => kb + (m.vmFlags.includes("lo") ? (m.end - m.start) / 1024 : 0), 0);

/** Where a mapping's start is in its file, as a difference that stays the same when the mapping reaches further down (0 for plain anonymous memory, whose offset the kernel shows as 0). */
const fileBase = (e: SmapsEntry): bigint => (e.inode === 0 ? e.offset : e.offset - BigInt(e.start));

/** VmFlags a child does not get from its parent at fork: mlock (lo, lf), userfaultfd registrations (um, uw, ui). */
const NOT_INHERITED = new Set(["lo", "lf", "um", "uw", "ui"]);

/**
 * How a process's mappings (`now`) differ from what they were said to be
 * (`before`): the first difference, described, or null. Each mapping of
 * `before` must be in one of `now` with the same file, offset, protections
 * and VmFlags; `now` may have more, and a mapping of it may reach further
 * (crest's own, mapped in the process since, which the kernel may have
 * merged with a neighbour). `fork`: `now` is a fork child's, which has none
 * of the mappings with dc (MADV_DONTFORK) and drops the flags above.
 */
export function mappingDifference(before: readonly SmapsEntry[], now: readonly SmapsEntry[], fork: boolean): string | null {
  const flags = (m: SmapsEntry) => (fork ? m.vmFlags.filter((f) => !NOT_INHERITED.has(f)) : m.vmFlags).join(" ");
  let j = 0;
  for (const m of before) {
    if (fork && m.vmFlags.includes("dc")) continue;
    while (j < now.length && now[j]!.end <= m.start) j++;
    const c = now[j];
    const range = `0x${m.start.toString(16)}-0x${m.end.toString(16)}`;
    const same = c !== undefined && c.start <= m.start && m.end <= c.end && fileBase(c) === fileBase(m) &&
      sameMappings([{ ...m, start: 0, end: 0, offset: 0n }], [{ ...c, start: 0, end: 0, offset: 0n }]);
    if (!same) return `${range} is not the mapping it was`;
    if (flags(m) !== flags(c)) return `${range} has VmFlags ${flags(c)}, not ${flags(m)}`;
  }
  return null;
}
