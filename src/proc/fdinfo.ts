// /proc/PID/fdinfo/N: position, open flags (octal; O_CLOEXEC here means the
// fd is close-on-exec), mount id and inode. Kind-specific lines (eventfd,
// epoll, inotify, ...) stay in `extra` for the kinds that need them.
import { ProcParseError } from "./error.js";

export interface Fdinfo {
  pos: bigint;
  flags: number;
  mntId: number;
  ino: bigint;
  /** Other "key: value" lines; repeated keys (tfd:, inotify wd:, lock:) keep every value in order. */
  extra: Map<string, string[]>;
}

export function parseFdinfo(text: string): Fdinfo {
  const extra = new Map<string, string[]>();
  let pos: bigint | undefined, flags: number | undefined, mntId = -1, ino = 0n;
  for (const line of text.split("\n")) {
    if (!line) continue;
    const m = /^([^:]+):\s*(.*)$/.exec(line);
    if (!m) throw new ProcParseError("fdinfo", line);
    const [, key, val] = m as unknown as [string, string, string];
    if (key === "pos") pos = BigInt(val);
    else if (key === "flags") flags = parseInt(val, 8);
    else if (key === "mnt_id") mntId = Number(val);
    else if (key === "ino") ino = BigInt(val);
    else extra.set(key, [...(extra.get(key) ?? []), val]);
  }
  if (pos === undefined || flags === undefined) throw new ProcParseError("fdinfo", text.slice(0, 80), "no pos or flags");
  return { pos, flags, mntId, ino, extra };
}
