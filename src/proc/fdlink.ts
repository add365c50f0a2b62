// What the link /proc/PID/fd/N names: a path, or one of the kernel's
// pseudo names for pipes, sockets and anonymous-inode objects.
export type FdLink =
  | { kind: "path"; path: string; deleted: boolean }
  | { kind: "pipe"; inode: number }
  | { kind: "socket"; inode: number }
  | { kind: "anon"; name: string }
  | { kind: "other"; text: string };

export function classifyFdLink(link: string): FdLink {
  let m = /^(pipe|socket):\[(\d+)\]$/.exec(link);
  if (m) return { kind: m[1] as "pipe" | "socket", inode: Number(m[2]) };
  m = /^anon_inode:\[?([^\]]*)\]?$/.exec(link);
  if (m) return { kind: "anon", name: m[1]! };
  if (link.startsWith("/")) {
    const deleted = link.endsWith(" (deleted)");
    return { kind: "path", path: deleted ? link.slice(0, -10) : link, deleted };
  }
  return { kind: "other", text: link };
}
