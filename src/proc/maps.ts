// /proc/PID/maps and /proc/PID/smaps: the mappings of an address space.
import { ProcParseError } from "./error.js";

export interface MapEntry {
  start: number;
  end: number;
  prot: { read: boolean; write: boolean; exec: boolean };
  /** "s" in the flags column (MAP_SHARED), as opposed to "p". */
  shared: boolean;
  /** The file offset (bytes) or, for anonymous memory, the page offset the kernel keeps. */
  offset: bigint;
  major: number;
  minor: number;
  inode: number;
  /** File path, pseudo name ([heap], [stack], [vdso], [anon:x]...) or "" for anonymous memory. */
  path: string;
  /** The path ended in " (deleted)" (stripped from path). */
  deleted: boolean;
}

export interface SmapsEntry extends MapEntry {
  /** Size fields in kB: Size, Rss, Pss, Private_Dirty, Swap, ... */
  sizes: Record<string, number>;
  /** Two-letter VmFlags (rd wr ex sh mr mw me ms gd pf dw lo io sr rr dc de ac nr ht sf nl ar wf dd sd mm hg nh mg um uw ss ...). */
  vmFlags: string[];
}

// start-end perms offset major:minor inode [path]
const LINE = /^([0-9a-f]+)-([0-9a-f]+) ([r-])([w-])([x-])([sp]) ([0-9a-f]+) ([0-9a-f]+):([0-9a-f]+) (\d+)(?: +(.*))?$/;
const DELETED = " (deleted)";

function parseLine(line: string, file: string): MapEntry {
  const m = LINE.exec(line);
  if (!m) throw new ProcParseError(file, line);
  let path = m[11] ?? "";
  const deleted = path.endsWith(DELETED);
  if (deleted) path = path.slice(0, -DELETED.length);
  return {
    start: parseInt(m[1]!, 16), end: parseInt(m[2]!, 16),
    prot: { read: m[3] === "r", write: m[4] === "w", exec: m[5] === "x" },
    shared: m[6] === "s", offset: BigInt(`0x${m[7]}`),
    major: parseInt(m[8]!, 16), minor: parseInt(m[9]!, 16), inode: Number(m[10]), path, deleted,
  };
}

export function parseMaps(text: string): MapEntry[] {
  return text.split("\n").filter((l) => l.length > 0).map((l) => parseLine(l, "maps"));
}

const HEADER = /^[0-9a-f]+-[0-9a-f]+ /;

export function parseSmaps(text: string): SmapsEntry[] {
  const out: SmapsEntry[] = [];
  let cur: SmapsEntry | undefined;
  for (const line of text.split("\n")) {
    if (!line) continue;
    if (HEADER.test(line)) {
      cur = { ...parseLine(line, "smaps"), sizes: {}, vmFlags: [] };
      out.push(cur);
      continue;
    }
    if (!cur) throw new ProcParseError("smaps", line, "field before the first mapping");
    const colon = line.indexOf(":");
    if (colon < 0) throw new ProcParseError("smaps", line);
    const key = line.slice(0, colon);
    const value = line.slice(colon + 1).trim();
    if (key === "VmFlags") cur.vmFlags = value ? value.split(/\s+/) : [];
    else {
      const n = parseInt(value, 10);
      if (!Number.isNaN(n)) cur.sizes[key] = n;
    }
  }
  return out;
}

/** madvise() advice numbers CRIU records in vma_entry.madv, by VmFlag. */
const MADV_BY_FLAG: Record<string, number> = {
  sr: 2 /* SEQUENTIAL */, rr: 1 /* RANDOM */, dc: 10 /* DONTFORK */, dd: 16 /* DONTDUMP */,
  mg: 12 /* MERGEABLE */, hg: 14 /* HUGEPAGE */, nh: 15 /* NOHUGEPAGE */, wf: 18 /* WIPEONFORK */,
};

/** The madv bitmask (1 << advice) CRIU derives from a mapping's VmFlags. */
export function vmFlagsToMadvise(flags: string[]): bigint {
  let m = 0n;
  for (const f of flags) {
    const adv = MADV_BY_FLAG[f];
    if (adv !== undefined) m |= 1n << BigInt(adv);
  }
  return m;
}
