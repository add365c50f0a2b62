// One sock_diag dump (SOCK_DIAG_BY_FAMILY with NLM_F_DUMP) of the calling
// thread's network namespace (each of the tree's: inTreeNetns): the reply bodies, one per socket, for the family's
// own parser (netlink-diag.ts, packet-diag.ts).
import { closeSync, statSync } from "node:fs";
import { NETLINK_SOCK_DIAG, netlinkSocket, nlRequest, NLM_F } from "../../kernel/netlink.js";
import { inNamespaceOf } from "../../sys/namespace.js";
import type { DumpRun } from "../context.js";

export const SOCK_DIAG_BY_FAMILY = 20;

const ENOENT = 2;

/**
 * The bodies of every reply to one dump request; `what` names the sockets
 * for errors ("netlink sockets"). A protocol the kernel has no diag module
 * for (ENOENT) has no sockets to list.
 */
export function sockDiagDump(request: Buffer, what: string): Buffer[] {
  const fd = netlinkSocket(NETLINK_SOCK_DIAG, `listing ${what}`);
  try {
    const reply = nlRequest(fd, SOCK_DIAG_BY_FAMILY, NLM_F.DUMP, request);
    if (reply.errno === ENOENT) return [];
    if (reply.errno) throw new Error(`sock_diag cannot list ${what}: errno ${reply.errno}`);
    return reply.messages.filter((m) => m.type === SOCK_DIAG_BY_FAMILY).map((m) => m.body);
  } finally {
    closeSync(fd);
  }
}

/** SK_MEMINFO_RMEM_ALLOC, the first u32 of a *_DIAG_MEMINFO attribute: bytes held by the receive queue. */
export const rmemAlloc = (meminfo: Buffer | undefined): number => meminfo?.readUInt32LE(0) ?? 0;

/**
 * A sock_diag list of every network namespace of the tree, merged (inodes
 * are unique): sock_diag lists the sockets of the namespace its netlink
 * socket was made in, so fn runs once in each (crest's own where a task
 * shares it; a nested one entered through its first task).
 */
export function inTreeNetns<K, V>(run: DumpRun, fn: () => Map<K, V>): Map<K, V> {
  const mine = statSync("/proc/self/ns/net").ino;
  const seen = new Set<number>();
  const out = new Map<K, V>();
  for (const t of run.tasks) {
    if (t.zombie) continue;
    const ino = statSync(`/proc/${t.pid}/ns/net`).ino;
    if (seen.has(ino)) continue;
    seen.add(ino);
    for (const [k, v] of ino === mine ? fn() : inNamespaceOf(t.pid, "net", fn)) out.set(k, v);
  }
  return out;
}
