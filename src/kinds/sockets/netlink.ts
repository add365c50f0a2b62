// Netlink sockets (file_entry.nlsk, as CRIU 4.x).
//
// Dump: the kernel lists every bound netlink socket, and every one with
// multicast groups, once per dump (netlink-diag.ts): port id, groups (all
// of them: those above 32 too, which criu refuses), destination, state,
// receive queue. One neither bound nor in a group is not listed: it has
// only its type and protocol. crest takes the socket into itself with
// pidfd_getfd and reads its options there: those every socket has
// (sk_opts_entry) and the NETLINK_* ones (SOL_NETLINK), which criu does not
// keep (crest's own fields of netlink_sk_entry, as is SOCK_DGRAM: criu
// always makes SOCK_RAW).
//
// Refused by name, as criu refuses them: a socket with messages queued it
// has not read (the kernel's replies and notifications cannot be sent to it
// again by anyone but their sender), or an error pending (messages the
// kernel dropped for it), or a dump the kernel is in the middle of.
//
// Restore: the task makes the socket (socket(AF_NETLINK, type, protocol));
// crest takes it and sets its options and filter first (nothing is let in
// unfiltered), then binds it to its port id and the first 32 groups,
// joins the groups above with NETLINK_ADD_MEMBERSHIP, connects it where it
// was connected, and sets its file flags. A port id someone else holds
// fails the restore naming the holder (criu binds another one instead; a
// peer that knew the old one would never reach it).
import { inTreeNetns } from "./sock-diag.js";
import { closeSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import type { FileKind, FdFacts, OpenContext } from "../files/file-kind.js";
import { dumpState, UnsupportedError, type DumpRun } from "../context.js";
import { fd_types, type file_entry, type netlink_sk_entry } from "../../images/index.js";
import { F, O, SYS } from "../../sys/constants.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { AF_NETLINK } from "../../kernel/netlink.js";
import { listNetlinkSockets, NDIAG_FLAG_CB_RUNNING, type NetlinkDiag } from "./netlink-diag.js";
import { dumpOptions, restoreOptions, restoreReuse } from "./options.js";
import { socketNetns, pendingInput, socketId, withSocket } from "./socket-fd.js";
import { takeFd } from "./unix.js";
import { inSocketNetns } from "../namespaces/net.js";

const SOL_NETLINK = 270, SOCK_RAW = 3, NETLINK_CONNECTED = 1;
const NETLINK_ADD_MEMBERSHIP = 1, EADDRINUSE = 98;

/** The NETLINK_* options crest keeps: option number, and its field in netlink_sk_entry. */
const NL_OPTIONS = [
  [3, "pktinfo"], [4, "broadcast_error"], [5, "no_enobufs"], [8, "listen_all_nsid"],
  [10, "cap_ack"], [11, "ext_ack"], [12, "get_strict_chk"],
] as const;
type NlOptionField = (typeof NL_OPTIONS)[number][1];

const PROTOCOLS: Record<number, string> = {
  0: "NETLINK_ROUTE", 2: "NETLINK_USERSOCK", 4: "NETLINK_SOCK_DIAG", 5: "NETLINK_NFLOG", 6: "NETLINK_XFRM",
  7: "NETLINK_SELINUX", 8: "NETLINK_ISCSI", 9: "NETLINK_AUDIT", 10: "NETLINK_FIB_LOOKUP", 11: "NETLINK_CONNECTOR",
  12: "NETLINK_NETFILTER", 13: "NETLINK_IP6_FW", 14: "NETLINK_DNRTMSG", 15: "NETLINK_KOBJECT_UEVENT",
  16: "NETLINK_GENERIC", 18: "NETLINK_SCSITRANSPORT", 19: "NETLINK_ECRYPTFS", 20: "NETLINK_RDMA", 21: "NETLINK_CRYPTO", 22: "NETLINK_SMC",
};
const protocolName = (p: number): string => PROTOCOLS[p] ?? `protocol ${p}`;
const typeName = (t: number): string => (t === SOCK_RAW ? "raw" : t === 2 ? "datagram" : `type ${t}`);

/** The group numbers (1-based) set in a bitmap of 32-bit words. */
export function groupNumbers(words: readonly number[]): number[] {
  const out: number[] = [];
  words.forEach((w, i) => {
    for (let b = 0; b < 32; b++) if ((w >>> b) & 1) out.push(i * 32 + b + 1);
  });
  return out;
}

// --- dump -----------------------------------------------------------------------

const dumped = dumpState("netlink sockets", () => ({ diag: undefined as Map<number, NetlinkDiag> | undefined }));

function diagOf(run: DumpRun, ino: number): NetlinkDiag | undefined {
  const s = run.state(dumped);
  s.diag ??= inTreeNetns(run, listNetlinkSockets);
  return s.diag.get(ino);
}

function getNlInt(fd: number, opt: number, what: string): number {
  const v = new Int32Array(1);
  check(native.syscall(SYS.getsockopt, fd, SOL_NETLINK, opt, v, new Uint32Array([4])), `read netlink option ${opt} of ${what}`);
  return v[0]!;
}

/** What must be refused before anything is kept: input queued, an error pending, a dump under way. */
function checkQuiet(fd: number, d: NetlinkDiag | undefined, what: string): void {
  if (d?.flags !== undefined && d.flags & NDIAG_FLAG_CB_RUNNING) {
    throw new UnsupportedError(`${what} is in the middle of a dump the kernel is sending it (a request's reply not read to its end); crest cannot restart the kernel's side. Let the program read the reply and dump again`);
  }
  const p = pendingInput(fd, what);
  if (p.input || d?.rmem) {
    throw new UnsupportedError(`${what} has messages queued that it has not read${d?.rmem ? ` (${d.rmem} bytes)` : ""}; crest cannot put them back (criu refuses it too: "The socket has data to read"). Let the program read them and dump again`);
  }
  if (p.error) {
    throw new UnsupportedError(`${what} has an error pending (the kernel dropped messages for it, ENOBUFS); crest cannot set it again`);
  }
}

function dumpNetlink(f: FdFacts, run: DumpRun): number {
  const sid = socketId(f, run)!;
  const d = diagOf(run, f.st.ino);
  const what = `${f.what} (netlink ${typeName(sid.type)} socket, ${protocolName(sid.protocol)}, inode ${f.st.ino})`;
  const id = run.nextId("file");
  const nlsk = withSocket(f, (fd): netlink_sk_entry => {
    const ns = socketNetns(fd, what, run);
    checkQuiet(fd, d, what);
    const opts = dumpOptions(fd, what);
    const nl: Partial<Record<NlOptionField, boolean>> = {};
    for (const [opt, field] of NL_OPTIONS) if (getNlInt(fd, opt, what)) nl[field] = true;
    return {
      id, ino: f.st.ino, protocol: sid.protocol, state: d?.state ?? 0, flags: f.info.flags & ~O.CLOEXEC,
      portid: d?.portid ?? 0, groups: d?.groups ?? [], dst_portid: d?.dstPortid ?? 0, dst_group: d?.dstGroup ?? 0,
      fown: f.fown, opts, ns_id: ns,
      ...(sid.type !== SOCK_RAW ? { sk_type: sid.type } : {}), ...nl,
    };
  });
  run.log.debug(`netlink socket ${f.st.ino}: ${protocolName(sid.protocol)} port id ${nlsk.portid} groups [${groupNumbers(nlsk.groups).join(",")}]${nlsk.state === NETLINK_CONNECTED ? ` connected to ${nlsk.dst_portid}/${nlsk.dst_group}` : ""}`);
  run.files.push({ type: fd_types.NETLINKSK, id, nlsk });
  return id;
}

// --- restore --------------------------------------------------------------------

/** struct sockaddr_nl. */
function sockaddrNl(portid: number, groups: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16LE(AF_NETLINK, 0);
  b.writeUInt32LE(portid >>> 0, 4);
  b.writeUInt32LE(groups >>> 0, 8);
  return b;
}

/** "fd 3 of process 42 (comm)" for every fd of any process holding socket `ino`; for the message of a port id taken. */
function holdersOf(ino: number): string[] {
  const out: string[] = [];
  for (const p of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${p}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${p}/fd/${fd}`) === `socket:[${ino}]`) out.push(`fd ${fd} of process ${p} (${readFileSync(`/proc/${p}/comm`, "utf8").trim()})`);
      } catch {
        // gone meanwhile
      }
    }
  }
  return out;
}

function portTaken(e: netlink_sk_entry, what: string): Error {
  const other = [...listNetlinkSockets().values()].find((s) => s.protocol === e.protocol && s.portid === e.portid);
  const holders = other ? holdersOf(other.ino) : [];
  const by = other ? `socket ${other.ino}${holders.length ? ` (${holders.join(", ")})` : ""}` : "another socket";
  return new Error(`${what} cannot have its port id back: ${protocolName(e.protocol)} port id ${e.portid} is taken by ${by} (EADDRINUSE); free it and restore again`);
}

/** Binds to the port id with the first 32 groups, joins the groups above (all of them for a socket without port id). */
function bindAndJoin(fd: number, e: netlink_sk_entry, what: string): void {
  const first = e.groups[0] ?? 0;
  if (e.portid) {
    const addr = sockaddrNl(e.portid, first);
    const r = native.syscall(SYS.bind, fd, addr, addr.length);
    if (r === -EADDRINUSE) throw portTaken(e, what);
    check(r, `bind ${what} to port id ${e.portid} and groups ${first.toString(16)}`);
  }
  for (const g of groupNumbers(e.portid ? [0, ...e.groups.slice(1)] : e.groups)) {
    check(native.syscall(SYS.setsockopt, fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, new Int32Array([g]), 4), `join ${what} to multicast group ${g}`);
  }
}

function openNetlink(c: OpenContext, entry: file_entry): number {
  const { r, task } = c;
  const e = entry.nlsk!;
  const type = e.sk_type ?? SOCK_RAW;
  const what = `netlink ${typeName(type)} socket ${e.ino} (${protocolName(e.protocol)}) in task ${task.vpid}`;
  const fd = r.call(`create ${what}`, SYS.socket, AF_NETLINK, type, e.protocol);
  const mine = takeFd(task.pid, fd, what);
  try {
    // Options and filter before the socket has an address: what reaches it is filtered as it was.
    restoreOptions(mine, e.opts, what);
    restoreReuse(mine, e.opts, what);
    for (const [opt, field] of NL_OPTIONS) {
      if (e[field]) check(native.syscall(SYS.setsockopt, mine, SOL_NETLINK, opt, new Int32Array([1]), 4), `set netlink option ${opt} (${field}) of ${what}`);
    }
    bindAndJoin(mine, e, what);
    if (e.state === NETLINK_CONNECTED) {
      const addr = sockaddrNl(e.dst_portid, e.dst_group ? 1 << (e.dst_group - 1) : 0);
      check(native.syscall(SYS.connect, mine, addr, addr.length), `connect ${what} to port id ${e.dst_portid}${e.dst_group ? ` group ${e.dst_group}` : ""}`);
    }
    const status = e.flags & (O.NONBLOCK | O.ASYNC);
    if (status) check(native.syscall(SYS.fcntl, mine, F.SETFL, status), `set the flags of ${what}`);
  } finally {
    closeSync(mine);
  }
  return fd;
}

export const netlinkSocketKind: FileKind = {
  name: "netlink socket",
  type: fd_types.NETLINKSK,
  claims: (f, run) => socketId(f, run)?.family === AF_NETLINK,
  dump: dumpNetlink,
  fown: (entry) => entry.nlsk?.fown,
  // Made in the socket's own network namespace, which may not be its holder's.
  open: (c, entry) => inSocketNetns(c.run, c.task, entry.nlsk?.ns_id, `socket ${entry.nlsk?.ino ?? entry.id} of task ${c.task.vpid}`, () => openNetlink(c, entry)),
};
