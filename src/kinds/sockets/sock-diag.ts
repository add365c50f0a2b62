// One sock_diag dump (SOCK_DIAG_BY_FAMILY with NLM_F_DUMP) of the calling
// thread's network namespace (the tree's: inTreeNetns): the reply bodies, one per socket, for the family's
// own parser (netlink-diag.ts, packet-diag.ts).
import { closeSync } from "node:fs";
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
 * Runs fn in the tree's network namespace: sock_diag lists the sockets of
 * the namespace its netlink socket was made in. Crest's own when the tree
 * shares it.
 */
export function inTreeNetns<T>(run: DumpRun, fn: () => T): T {
  return run.ownNamespaces.has("net") ? inNamespaceOf(run.root.pid, "net", fn) : fn();
}
