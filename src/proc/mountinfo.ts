// /proc/PID/mountinfo (proc(5)):
//   ID PARENT MAJ:MIN ROOT MOUNT_POINT MOUNT_OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTS
// Space, tab, newline and backslash in paths (and source, super options) are
// written as octal escapes \040 \011 \012 \134; they are decoded here.
import { ProcParseError } from "./error.js";
import { decimal, lines } from "./numbers.js";

export type MountOptionalField =
  | { tag: "shared"; id: number }
  | { tag: "master"; id: number }
  | { tag: "propagate_from"; id: number }
  | { tag: "unbindable" }
  | { tag: "other"; text: string };

export interface MountInfo {
  mntId: number;
  parentId: number;
  major: number;
  minor: number;
  /** The directory of the filesystem mounted here ("/" unless a bind of a subtree). */
  root: string;
  /** Relative to the reader's root. */
  mountPoint: string;
  /** Per-mount options, comma-separated as printed (rw,nosuid,relatime...). */
  mountOptions: string;
  optionalFields: MountOptionalField[];
  /** Shortcuts into optionalFields: peer group, master group, propagate_from, unbindable. */
  shared?: number;
  master?: number;
  propagateFrom?: number;
  unbindable: boolean;
  fsType: string;
  source: string;
  superOptions: string;
}

/** Decodes the kernel's \ooo octal escapes (mangle() / seq_escape). */
export function decodeOctalEscapes(s: string): string {
  if (!s.includes("\\")) return s;
  // Escapes stand for bytes; rebuild through a Buffer so non-ASCII UTF-8 names survive.
  const bytes: number[] = [];
  const raw = Buffer.from(s, "utf8");
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === 0x5c && i + 3 < raw.length && /^[0-7]{3}$/.test(raw.subarray(i + 1, i + 4).toString("latin1"))) {
      bytes.push(parseInt(raw.subarray(i + 1, i + 4).toString("latin1"), 8));
      i += 3;
    } else bytes.push(c);
  }
  return Buffer.from(bytes).toString("utf8");
}

function optional(line: string, word: string): MountOptionalField {
  const m = /^(shared|master|propagate_from):(.*)$/.exec(word);
  if (m) return { tag: m[1] as "shared" | "master" | "propagate_from", id: decimal("mountinfo", line, m[2], `a peer group id in ${word}`) };
  if (word === "unbindable") return { tag: "unbindable" };
  return { tag: "other", text: word };
}

export function parseMountinfoLine(line: string): MountInfo {
  const words = line.split(" ");
  const dash = words.indexOf("-", 6);
  if (dash < 0 || words.length !== dash + 4) throw new ProcParseError("mountinfo", line, "expected six fields, optional fields, \"-\" and three more");
  const dev = /^(\d+):(\d+)$/.exec(words[2]!);
  if (!dev) throw new ProcParseError("mountinfo", line, "bad major:minor");
  const optionalFields = words.slice(6, dash).map((w) => optional(line, w));
  const info: MountInfo = {
    mntId: decimal("mountinfo", line, words[0], "a mount id"),
    parentId: decimal("mountinfo", line, words[1], "a parent mount id"),
    major: decimal("mountinfo", line, dev[1]), minor: decimal("mountinfo", line, dev[2]),
    root: decodeOctalEscapes(words[3]!),
    mountPoint: decodeOctalEscapes(words[4]!),
    mountOptions: words[5]!,
    optionalFields,
    unbindable: false,
    fsType: decodeOctalEscapes(words[dash + 1]!),
    source: decodeOctalEscapes(words[dash + 2]!),
    superOptions: decodeOctalEscapes(words[dash + 3]!),
  };
  for (const f of optionalFields) {
    if (f.tag === "shared") info.shared = f.id;
    else if (f.tag === "master") info.master = f.id;
    else if (f.tag === "propagate_from") info.propagateFrom = f.id;
    else if (f.tag === "unbindable") info.unbindable = true;
  }
  return info;
}

export function parseMountinfo(text: string): MountInfo[] {
  return lines(text).map(parseMountinfoLine);
}
