// A task's socket seen from crest, for the kinds that claim sockets by
// family (netlink, packet): its family, type and protocol (read once per
// inode from crest's own copy), whether it lives in crest's network
// namespace, and whether input or an error waits in it.
import { closeSync, fstatSync, statSync } from "node:fs";
import { dumpState, UnsupportedError, type DumpRun } from "../context.js";
import type { FdFacts } from "../files/file-kind.js";
import { SYS } from "../../sys/constants.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { getInt, SO } from "./options.js";
import { takeFd } from "./unix.js";

export interface SocketId {
  family: number;
  type: number;
  protocol: number;
}

const seen = dumpState("socket families", () => new Map<number, SocketId>());

/** Family, type and protocol of the socket fd `f` refers to; undefined for anything else. */
export function socketId(f: FdFacts, run: DumpRun): SocketId | undefined {
  if (f.link.kind !== "socket") return undefined;
  const known = run.state(seen);
  let id = known.get(f.st.ino);
  if (!id) {
    id = withSocket(f, (fd, what) => ({ family: getInt(fd, SO.DOMAIN, what), type: getInt(fd, SO.TYPE, what), protocol: getInt(fd, SO.PROTOCOL, what) }));
    known.set(f.st.ino, id);
  }
  return id;
}

/** Runs fn on crest's own copy of the task's socket (pidfd_getfd), closed after. */
export function withSocket<T>(f: FdFacts, fn: (fd: number, what: string) => T): T {
  const what = `${f.what} (${f.text})`;
  const fd = takeFd(f.pid, f.fd, what);
  try {
    return fn(fd, what);
  } finally {
    closeSync(fd);
  }
}

const SIOCGSKNS = 0x894c;

/** The tree's network namespaces: inode -> net_ns_id, from its live tasks (crest's own among them where a task shares it). */
const treeNetns = dumpState("tree net namespaces", (run) => {
  const byIno = new Map<number, number>();
  for (const t of run.tasks) {
    if (t.zombie || t.ids.net_ns_id === undefined) continue;
    const ino = statSync(`/proc/${t.pid}/ns/net`).ino;
    if (!byIno.has(ino)) byIno.set(ino, t.ids.net_ns_id);
  }
  return byIno;
});

/** Whether the tree's tasks are in more than one network namespace (a socket's may then differ from its holder's). */
export const manyNetns = (run: DumpRun): boolean => run.state(treeNetns).size > 1;

/** Whether namespace `id` of the tree is crest's own. */
export const isCrestNetns = (run: DumpRun, id: number): boolean => run.state(treeNetns).get(statSync("/proc/self/ns/net").ino) === id;

/**
 * The id (net_ns_id) of the network namespace a socket belongs to (crest's
 * copy `fd`): one of the tree's, where the restore makes it again (not
 * necessarily its holder's: a socket made before the task entered another
 * namespace stays in the one it was made in). Any other is refused.
 */
export function socketNetns(fd: number, what: string, run: DumpRun): number {
  const ns = check(native.syscall(SYS.ioctl, fd, SIOCGSKNS, 0), `find the network namespace of ${what}`);
  let ino: number;
  try {
    ino = fstatSync(ns).ino;
  } finally {
    closeSync(ns);
  }
  const id = run.state(treeNetns).get(ino);
  if (id === undefined) {
    throw new UnsupportedError(`${what} belongs to network namespace net:[${ino}], which no task of the tree is in; ` +
      "crest makes a socket again only in a namespace of the tree: close it before the dump, or dump the tree together with a task of that namespace");
  }
  return id;
}

const POLLIN = 1, POLLERR = 8;

/** What poll says waits in the socket: input to read, an error to report. */
export function pendingInput(fd: number, what: string): { input: boolean; error: boolean } {
  // struct pollfd: int fd, short events, short revents (the high half of the second int).
  const p = new Int32Array([fd, POLLIN]);
  check(native.syscall(SYS.poll, p, 1, 0), `poll ${what}`);
  const revents = p[1]! >>> 16;
  return { input: (revents & POLLIN) !== 0, error: (revents & POLLERR) !== 0 };
}
