// The text of a /proc/PID/ns/* link (and of an fd opened on one): "pid:[4026531836]".
import { ProcParseError } from "./error.js";
import { decimal } from "./numbers.js";

/** Namespace kinds as the links name them (pid_for_children reads "pid:", time_for_children "time:"). */
export type NsKind = "cgroup" | "ipc" | "mnt" | "net" | "pid" | "time" | "user" | "uts";
export const NS_KINDS: readonly NsKind[] = ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];

export interface NsLink {
  kind: NsKind;
  /** The namespace's inode on nsfs: equal inodes, same namespace. */
  inode: number;
}

const LINK = /^([a-z]+):\[(\d+)\]$/;

/** undefined if the text is not a namespace link. */
export function matchNsLink(text: string): NsLink | undefined {
  const m = LINK.exec(text);
  if (!m || !(NS_KINDS as readonly string[]).includes(m[1]!)) return undefined;
  return { kind: m[1] as NsKind, inode: decimal("ns", text, m[2], "an inode number") };
}

export function parseNsLink(text: string): NsLink {
  const ns = matchNsLink(text.trimEnd());
  if (!ns) throw new ProcParseError("ns", text, "expected KIND:[INODE]");
  return ns;
}
