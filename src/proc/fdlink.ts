// What the link /proc/PID/fd/N names: a path, or one of the kernel's pseudo
// names for pipes, sockets, anonymous-inode objects and namespaces.
import { matchNsLink, type NsKind } from "./nslink.js";
import { decimal } from "./numbers.js";

/** Names of anonymous-inode files seen in links (anon_inode:[NAME], or anon_inode:NAME for inotify). */
export type AnonInodeName =
  | "eventfd" | "eventpoll" | "signalfd" | "timerfd" | "inotify" | "fanotify" | "pidfd"
  | "userfaultfd" | "io_uring" | "perf_event" | "bpf-map" | "bpf-prog" | "bpf_link" | "memfd_secret"
  | (string & {});

export type FdLink =
  | {
      kind: "path";
      /** Without the " (deleted)" suffix. */
      path: string;
      deleted: boolean;
      /** For "/memfd:NAME (deleted)": the memfd's name. */
      memfd?: string;
      /** For "/dev/pts/N": N. */
      pts?: number;
    }
  | { kind: "pipe"; inode: number }
  | { kind: "socket"; inode: number }
  | { kind: "anon"; name: AnonInodeName }
  /** An fd opened on /proc/PID/ns/* (e.g. to setns later). */
  | { kind: "ns"; ns: NsKind; inode: number }
  | { kind: "other"; text: string };

const DELETED = " (deleted)";

export function classifyFdLink(link: string): FdLink {
  let m = /^(pipe|socket):\[(\d+)\]$/.exec(link);
  if (m) return { kind: m[1] as "pipe" | "socket", inode: decimal("fd", link, m[2], "an inode number") };
  m = /^anon_inode:(?:\[([^\]]*)\]|([^[\]]+))$/.exec(link);
  if (m) return { kind: "anon", name: m[1] ?? m[2]! };
  const ns = matchNsLink(link);
  if (ns) return { kind: "ns", ns: ns.kind, inode: ns.inode };
  if (link.startsWith("/")) {
    const deleted = link.endsWith(DELETED);
    const path = deleted ? link.slice(0, -DELETED.length) : link;
    const out: FdLink = { kind: "path", path, deleted };
    if (deleted && path.startsWith("/memfd:")) out.memfd = path.slice(7);
    const pts = /^\/dev\/pts\/(\d+)$/.exec(path);
    if (pts) out.pts = Number(pts[1]);
    return out;
  }
  return { kind: "other", text: link };
}
