// IPv4 and IPv6 sockets: TCP and UDP (and UDP-Lite, ICMP datagram
// sockets), unbound, bound, listening, connected (file_entry.isk, as CRIU
// 4.x). crest takes the task's socket into itself with pidfd_getfd and reads
// it there (getsockname, getpeername, options; sock_diag for state, queues
// and shutdown, inet-diag.ts); on restore the task makes a new socket and
// crest does everything else on its own copy: bind, listen, connect,
// options, flags.
//
// Established TCP connections (--tcp-established) are taken with TCP repair
// mode (tcp-repair.ts) once every task is dumped: the network lock
// (netlock.ts) blocks their packets first, then each goes into repair mode
// and its state and queues are read into tcp-stream-INO.img. A tree that is
// killed keeps them in repair mode (its sockets close silently) and the
// lock stays until the restore; a tree that runs on gets them back running,
// the lock lifted. On restore each connection comes back in repair mode and
// stays so until the very end: the network is unlocked, then repair is
// turned off (TaskKind.resume), as criu does.
//
// Every socket of a port is bound with SO_REUSEADDR and SO_REUSEPORT on
// (a listener and its accepted connections share the port); each gets its
// own values back once all are bound.
//
// Queued UDP datagrams are dropped, as criu drops them (the log warns).
// Raw sockets are kept with their protocol, address and raw options (the
// header included, ICMP filters), read on crest's copy (no sock_diag), their
// queues dropped too. Not yet, refused by name: other protocols (SCTP,
// MPTCP), a corked UDP socket, connections a listener has not accepted yet
// (--skip-in-flight leaves them out).
import { inTreeNetns } from "./sock-diag.js";
import { closeSync } from "node:fs";
import type { FileKind, FdFacts, OpenContext } from "../files/file-kind.js";
import { dumpState, restoreState, UnsupportedError, type DumpRun, type RestoreRun } from "../context.js";
import { IMG, fd_types, type file_entry, type inet_sk_entry, type ip_opts_entry, type tcp_opts_entry } from "../../images/index.js";
import { F, O, SYS } from "../../sys/constants.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { AF_INET, AF_INET6, IPPROTO, listInetSockets, type InetDiag } from "./inet-diag.js";
import { imageWords, sockaddr, socketAddress } from "./inet-addr.js";
import { dumpOptions, getInt, getOpt, restoreOptions, restoreReuse, setInt, setOpt, SO } from "./options.js";
import { REPAIRABLE, repairOff, restoreConnection, resumeConnection, saveConnection, SOL_TCP, STATE_NAMES, TCP, TCP_STATE, tcpInfo, type SavedConnection } from "./tcp-repair.js";
import { dumpLock, lockConnections, lockMethodOf, LOCK_METHOD_IDS, unlockCommand, unlockConnections, type Connection } from "./netlock.js";
import { takeFd } from "./unix.js";
import { isCrestNetns, socketNetns, socketId } from "./socket-fd.js";
import { faultPoint } from "../../fault.js";
import { ownedAtRestore } from "../namespaces/owned.js";
import { inNamespaceOf } from "../../sys/namespace.js";
import { inSocketNetns } from "../namespaces/net.js";

const SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_RAW = 3;
const IPPROTO_ICMP = 1, IPPROTO_ICMPV6 = 58;
const SOL_IP = 0, SOL_IPV6 = 41, SOL_UDP = 17, SOL_RAW = 255, SOL_ICMPV6 = 58;
const IP = { TOS: 1, TTL: 2, HDRINCL: 3, PKTINFO: 8, FREEBIND: 15, NODEFRAG: 22 } as const;
const IPV6 = { V6ONLY: 26, HDRINCL: 36, RECVPKTINFO: 49, FREEBIND: 78 } as const;
/** ICMP_FILTER (SOL_RAW) and ICMPV6_FILTER (SOL_ICMPV6): a bitmap of 1 and 8 words. */
const ICMP_FILTER = 1;
const UDP_CORK = 1;
const POLLHUP = 0x10, POLLRDHUP = 0x2000;
const ENOTCONN = 107;

const familyName = (f: number) => (f === AF_INET ? "IPv4" : "IPv6");
const protoName = (p: number) => ({ 6: "TCP", 17: "UDP", 136: "UDP-Lite", 1: "ICMP", 58: "ICMPv6", 255: "IP" } as Record<number, string>)[p] ?? `protocol ${p}`;
/** "IPv4 TCP socket", "IPv6 raw UDP socket". */
const kindName = (family: number, type: number, proto: number) => `${familyName(family)} ${type === SOCK_RAW ? "raw " : ""}${protoName(proto)} socket`;
/** A raw socket's filter of ICMP types: the words of struct icmp_filter or icmp6_filter. */
const icmpFilterWords = (family: number) => (family === AF_INET ? 1 : 8);

/** A TCP socket with a peer: put back with repair mode (criu's tcp_connection). */
const isConnection = (e: { type: number; proto: number; dst_port: number; state: number }): boolean =>
  e.type === SOCK_STREAM && e.proto === IPPROTO.TCP && e.dst_port !== 0 && e.state !== TCP_STATE.LISTEN;

// --- dump -----------------------------------------------------------------------

/** A connection to put in repair mode once every task is dumped: its entry and crest's copy of the socket. */
interface Pending {
  entry: inet_sk_entry;
  fd: number;
  what: string;
  /** In crest's own network namespace: locked by itself (a namespace of the tree's is locked whole). */
  crestNs: boolean;
}

const dumped = dumpState("inet sockets", () => ({
  /** sock_diag's lists, by family and protocol, read when first needed. */
  diag: new Map<string, Map<number, InetDiag>>(),
  connections: [] as Pending[],
}));

function diagOf(run: DumpRun, family: number, proto: number, ino: number): InetDiag | undefined {
  if (proto !== IPPROTO.TCP && proto !== IPPROTO.UDP && proto !== IPPROTO.UDPLITE) return undefined;
  const s = run.state(dumped);
  const key = `${family}/${proto}`;
  let list = s.diag.get(key);
  if (!list) s.diag.set(key, (list = inTreeNetns(run, () => listInetSockets(family, proto))));
  return list.get(ino);
}

const SIOCGIFNAME = 0x8910, SIOCGIFINDEX = 0x8933, IFNAMSIZ = 16;

/**
 * The name of interface `index`, for a link-local IPv6 address's scope:
 * asked of the socket itself (the ioctl answers for the socket's network
 * namespace, the tree's, whatever crest's is). struct ifreq: name, then the index.
 */
function interfaceName(fd: number, index: number): string | undefined {
  const ifr = Buffer.alloc(40);
  ifr.writeInt32LE(index, IFNAMSIZ);
  if (native.syscall(SYS.ioctl, fd, SIOCGIFNAME, ifr) < 0) return undefined;
  return ifr.subarray(0, ifr.indexOf(0)).toString("latin1");
}

/** An unconnected socket's shutdown state: no direct way, but poll tells (as criu reads it). */
function polledShutdown(fd: number): number {
  const pfd = Buffer.alloc(8);
  pfd.writeInt32LE(fd, 0);
  pfd.writeInt16LE(POLLHUP | POLLRDHUP, 4);
  if (native.syscall(SYS.poll, pfd, 1, 0) !== 1) return 0;
  const revents = pfd.readInt16LE(6);
  return revents & POLLHUP && revents & POLLRDHUP ? 1 : 0;
}

function ipOptions(fd: number, family: number, type: number, proto: number, what: string): ip_opts_entry {
  const flag = (level: number, opt: number) => getOpt(fd, level, opt, what) !== 0;
  const o: ip_opts_entry = family === AF_INET6
    ? { freebind: flag(SOL_IPV6, IPV6.FREEBIND), pktinfo: flag(SOL_IPV6, IPV6.RECVPKTINFO) }
    : { freebind: flag(SOL_IP, IP.FREEBIND), pktinfo: flag(SOL_IP, IP.PKTINFO), tos: getOpt(fd, SOL_IP, IP.TOS, what), ttl: getOpt(fd, SOL_IP, IP.TTL, what) };
  if (type !== SOCK_RAW) return o;
  // A raw socket's own options, as criu keeps them.
  const icmp = family === AF_INET ? proto === IPPROTO_ICMP : proto === IPPROTO_ICMPV6;
  let filter: number[] = [];
  if (icmp) {
    const words = new Uint32Array(icmpFilterWords(family));
    check(native.syscall(SYS.getsockopt, fd, family === AF_INET ? SOL_RAW : SOL_ICMPV6, ICMP_FILTER, words, new Uint32Array([words.byteLength])), `read the ICMP filter of ${what}`);
    filter = [...words];
  }
  o.raw = family === AF_INET6
    ? { hdrincl: flag(SOL_IPV6, IPV6.HDRINCL), icmpv_filter: filter }
    : { hdrincl: flag(SOL_IP, IP.HDRINCL), nodefrag: flag(SOL_IP, IP.NODEFRAG), icmpv_filter: filter };
  return o;
}

function tcpOptions(fd: number, what: string): tcp_opts_entry {
  const v = (opt: number) => getOpt(fd, SOL_TCP, opt, what);
  return { nodelay: v(TCP.NODELAY) !== 0, cork: v(TCP.CORK) !== 0, keepcnt: v(TCP.KEEPCNT), keepidle: v(TCP.KEEPIDLE), keepintvl: v(TCP.KEEPINTVL) };
}

function dumpInet(f: FdFacts, run: DumpRun): number {
  const mine = takeFd(f.pid, f.fd, `the socket ${f.text}`);
  let keep = false;
  try {
    const family = getInt(mine, SO.DOMAIN, f.what), type = getInt(mine, SO.TYPE, f.what), proto = getInt(mine, SO.PROTOCOL, f.what);
    const what = `${f.what} (${kindName(family, type, proto)}, inode ${f.st.ino})`;
    const nsId = socketNetns(mine, what, run);
    if (type !== SOCK_STREAM && type !== SOCK_DGRAM && type !== SOCK_RAW) throw new UnsupportedError(`${what} is a socket of type ${type}; crest supports stream, datagram and raw inet sockets`);
    if (type === SOCK_STREAM && proto !== IPPROTO.TCP) throw new UnsupportedError(`${what} is a stream socket of ${protoName(proto)}; crest supports TCP streams only`);
    if (type === SOCK_DGRAM && ![IPPROTO.UDP, IPPROTO.UDPLITE, IPPROTO_ICMP, IPPROTO_ICMPV6].includes(proto as 17)) {
      throw new UnsupportedError(`${what} is a datagram socket of ${protoName(proto)}; crest does not support it`);
    }
    const d = type === SOCK_RAW ? undefined : diagOf(run, family, proto, f.st.ino);
    const own = socketAddress(mine, family, false), peer = socketAddress(mine, family, true);
    let state: number, shutdown: number;
    if (type === SOCK_RAW) {
      // A raw socket has no state of its own: criu keeps it as CLOSE (ESTABLISHED once connected).
      state = peer ? TCP_STATE.ESTABLISHED : TCP_STATE.CLOSE;
      shutdown = 0;
    } else if (proto === IPPROTO.TCP) {
      state = tcpInfo(mine, what).state;
      shutdown = d ? d.shutdown : polledShutdown(mine);
    } else {
      state = d?.state ?? (peer ? TCP_STATE.ESTABLISHED : TCP_STATE.CLOSE);
      shutdown = d?.shutdown ?? 0;
      if (proto !== IPPROTO_ICMP && proto !== IPPROTO_ICMPV6 && getOpt(mine, SOL_UDP, UDP_CORK, what)) {
        throw new UnsupportedError(`${what} is corked (UDP_CORK) with data not sent yet; crest cannot dump it, as criu cannot`);
      }
      if (d?.rqueue) run.log.warn(`Read queue is dropped for socket ${f.st.ino}: ${what} has ${d.rqueue} bytes of datagrams queued, which crest does not keep (as criu)`);
      if (d?.wqueue) run.log.warn(`Write queue of the ${f.st.ino} socket isn't empty (${what})`);
    }
    // A reset connection keeps its peer for sock_diag only.
    const dst = peer ?? (d && d.dstPort ? { port: d.dstPort, addr: d.dst, scopeId: 0 } : undefined);
    if (proto === IPPROTO.TCP && type === SOCK_STREAM) checkTcpState(run, what, state, d);
    const entry: inet_sk_entry = {
      id: run.nextId("file"), ino: f.st.ino, family, type, proto, state,
      src_port: own?.port ?? 0, dst_port: dst?.port ?? 0, flags: f.info.flags & ~O.CLOEXEC,
      backlog: state === TCP_STATE.LISTEN ? (d?.wqueue ?? tcpInfo(mine, what).sacked) : (d?.wqueue ?? 0),
      src_addr: imageWords(family, own?.addr ?? []), dst_addr: imageWords(family, dst?.addr ?? []),
      fown: f.fown, opts: dumpOptions(mine, what), ip_opts: ipOptions(mine, family, type, proto, what),
      ...(shutdown ? { shutdown: shutdown as inet_sk_entry["shutdown"] } : {}),
      ns_id: nsId,
    };
    if (family === AF_INET6) {
      entry.v6only = getOpt(mine, SOL_IPV6, IPV6.V6ONLY, what) !== 0;
      if (own?.port && own.scopeId) {
        const name = interfaceName(mine, own.scopeId);
        if (!name) throw new UnsupportedError(`${what} is bound to a link-local address on interface ${own.scopeId}, which has no name crest can find`);
        entry.ifname = name;
      }
    }
    if (proto === IPPROTO.TCP && type === SOCK_STREAM) entry.tcp_opts = tcpOptions(mine, what);
    run.files.push({ type: fd_types.INETSK, id: entry.id, isk: entry });
    if (isConnection(entry) && !run.opts.net.tcpClose) {
      run.state(dumped).connections.push({ entry, fd: mine, what, crestNs: isCrestNetns(run, nsId) });
      keep = true;
    }
    return entry.id;
  } finally {
    if (!keep) closeSync(mine);
  }
}

/** What criu refuses of a TCP socket's state, with its words and the options that allow it. */
function checkTcpState(run: DumpRun, what: string, state: number, d: InetDiag | undefined): void {
  if (state === TCP_STATE.LISTEN) {
    if (d?.rqueue && !run.opts.net.skipInFlight) {
      throw new UnsupportedError(`In-flight connection (l): ${what} has ${d.rqueue} connection(s) not accepted yet; ` +
        "crest does not keep them: dump with --skip-in-flight to leave them out");
    }
    return;
  }
  if (state === TCP_STATE.CLOSE) return;
  if (!REPAIRABLE.has(state)) throw new UnsupportedError(`${what} is in TCP state ${STATE_NAMES[state] ?? state}, which crest cannot dump`);
  if (!run.opts.net.tcpEstablished && !run.opts.net.tcpClose) {
    throw new UnsupportedError(`Connected TCP socket, consider using --tcp-established option: ${what} is ${STATE_NAMES[state]}`);
  }
}

const msSince = (t0: bigint): string => (Number(process.hrtime.bigint() - t0) / 1e6).toFixed(1);

/** An entry's connection, as the lock names it. */
const connectionOf = (e: inet_sk_entry): Connection => ({ family: e.family, src: e.src_addr, srcPort: e.src_port, dst: e.dst_addr, dstPort: e.dst_port });

/**
 * Once every task is dumped: every connection's packets blocked, then each
 * put in repair mode and read. Undone (repair off, the lock lifted) if the
 * tree runs on.
 */
function dumpConnections(run: DumpRun): void {
  // A restore of these images must be asked for --tcp-close too (criu records the option whatever the tree holds).
  if (run.opts.net.tcpClose) run.inventory.tcp_close = true;
  const { connections } = run.state(dumped);
  if (!connections.length) return;
  const { method, runId } = run.state(dumpLock);
  // Connections in a network namespace of the tree's own have the whole namespace locked already (kinds/namespaces/net.ts).
  const conns = connections.filter((c) => c.crestNs).map((c) => connectionOf(c.entry));
  if (conns.length) {
    const t0 = process.hrtime.bigint();
    lockConnections(method, runId, conns);
    run.log.info(`Locked the network of ${conns.length} TCP connection(s) with ${method} in ${msSince(t0)} ms`);
    run.undo.push(() => {
      unlockConnections(method, runId, conns);
      run.log.info(`Unlocked the network of ${conns.length} TCP connection(s)`);
    });
  }
  run.inventory.network_lock_method = LOCK_METHOD_IDS[method];
  run.inventory.dump_criu_run_id = runId;
  faultPoint("dump:tcp-locked");
  for (const c of connections) {
    setOpt(c.fd, SOL_TCP, TCP.REPAIR, 1, `${c.what} (TCP repair on)`);
    // Repair mode forces address reuse; turning it off clears it: SO_REUSEADDR goes back as it was.
    run.undo.push(() => {
      repairOff(c.fd, c.what);
      setInt(c.fd, SO.REUSEADDR, c.entry.opts.reuseaddr ? 1 : 0, c.what);
    });
    faultPoint("dump:tcp-repair");
    const saved = saveConnection(c.fd, c.what);
    c.entry.state = saved.state;
    run.images.write(IMG.tcpStream, c.entry.ino, [{ entry: saved.stream, inq: saved.inq, outq: saved.outq }]);
    run.log.debug(`${c.what}: ${STATE_NAMES[saved.state]}, ${saved.inq.length} bytes to read, ${saved.outq.length} to send`);
  }
}

// --- restore --------------------------------------------------------------------

/** A socket crest holds until the end: its reuse flags go back once every socket is bound; a connection leaves repair mode. */
interface Held {
  entry: inet_sk_entry;
  fd: number;
  what: string;
}

const restoring = restoreState("inet sockets", (run) => {
  const s = { held: [] as Held[], connections: [] as Held[], resumed: false };
  run.cleanup.push(() => {
    for (const h of [...s.held, ...s.connections]) closeSync(h.fd);
    if (!s.resumed) keptLockMessage(run);
  });
  return s;
});

/** The network lock of the images: how it was made, and which connections it holds. */
function imagesLock(run: RestoreRun): { method: ReturnType<typeof lockMethodOf>; runId: string; conns: Connection[] } {
  const inv = run.inventory;
  // Only those in crest's own namespace: one of the tree's own is locked whole, and unlocked inside (kinds/namespaces/net.ts).
  const crestNs = inv.root_ids?.net_ns_id;
  const conns = [...run.files.values()]
    .filter((f) => f.isk && isConnection(f.isk) && (f.isk.ns_id === undefined || crestNs === undefined || f.isk.ns_id === crestNs))
    .map((f) => connectionOf(f.isk!));
  // Images without a run id (older criu) named the table after the dumped root.
  return { method: lockMethodOf(inv.network_lock_method), runId: inv.dump_criu_run_id ?? String(run.tasks[0]?.vpid ?? 0), conns };
}

/** A restore that fails keeps the lock, so that another restore can still bring the connections back. */
function keptLockMessage(run: RestoreRun): void {
  // A namespace of the tree's own is dropped with its lock; the images still hold the lock for the next restore.
  if (ownedAtRestore(run, "net")) return;
  const { method, runId, conns } = imagesLock(run);
  if (!conns.length || method === "skip" || run.inventory.tcp_close) return;
  run.log.warn(`The network lock of ${conns.length} TCP connection(s) stays, so that another restore can bring them back; ` +
    `to drop the connections instead, remove it: ${unlockCommand(method, runId, conns)}`);
}

/** Checked before anything is created: connections need the options criu asks for. */
function planInet(run: RestoreRun): void {
  if (run.inventory.tcp_close && !run.opts.net.tcpClose) throw new Error("Need to set the --tcp-close options: the images were dumped with --tcp-close");
  if (run.opts.net.lock) run.log.warn("--network-lock will be ignored in restore command");
  const c = [...run.files.values()].find((f) => f.isk && isConnection(f.isk));
  if (!c) return;
  if (!run.opts.net.tcpEstablished && !run.opts.net.tcpClose) {
    throw new Error(`Connected TCP socket in image (inet socket ${c.isk!.ino}): restore with --tcp-established (or --tcp-close to restore it closed)`);
  }
  // Made now, so that a restore failing at any step says what became of the lock.
  run.state(restoring);
}

function readStream(run: RestoreRun, e: inet_sk_entry): SavedConnection {
  const items = run.images.read(IMG.tcpStream, e.ino);
  if (items.length !== 1) throw run.images.invalid(IMG.tcpStream, e.ino, `expected one entry, found ${items.length}`);
  const { entry, inq, outq } = items[0]!;
  if (entry.unsq_len === undefined) throw run.images.invalid(IMG.tcpStream, e.ino, "no unsq_len in the image");
  return { stream: entry, state: e.state, inq, outq };
}

/** The index of interface `name` in the socket's network namespace (the restored tree's). */
function ifindex(fd: number, name: string, what: string): number {
  const ifr = Buffer.alloc(40);
  ifr.write(name.slice(0, IFNAMSIZ - 1), 0, "latin1");
  if (native.syscall(SYS.ioctl, fd, SIOCGIFINDEX, ifr) < 0) {
    throw new Error(`${what} was bound to a link-local address on interface ${name}, which the restored tree's network namespace does not have`);
  }
  return ifr.readInt32LE(IFNAMSIZ);
}

/** Binds to the dumped address; an IPv6 address may still be tentative, hence IP_FREEBIND while binding (as criu). */
function bindInet(fd: number, e: inet_sk_entry, what: string): void {
  const scope = e.ifname ? ifindex(fd, e.ifname, what) : 0;
  const addr = sockaddr(e.family, e.src_port, e.src_addr, scope);
  const freebind = e.family === AF_INET6 && e.type !== SOCK_RAW;
  const freebindOff = freebind && !e.ip_opts?.freebind;
  if (freebind) setOpt(fd, SOL_IP, IP.FREEBIND, 1, what);
  check(native.syscall(SYS.bind, fd, addr, addr.length), `bind ${what} to port ${e.src_port}`);
  if (freebindOff) setOpt(fd, SOL_IP, IP.FREEBIND, 0, what);
}

function restoreIpOptions(fd: number, e: inet_sk_entry, what: string): void {
  const o = e.ip_opts;
  if (!o) return;
  if (e.family === AF_INET6) {
    if (o.freebind) setOpt(fd, SOL_IPV6, IPV6.FREEBIND, 1, what);
    if (o.pktinfo) setOpt(fd, SOL_IPV6, IPV6.RECVPKTINFO, 1, what);
    restoreRawOptions(fd, e, what);
    return;
  }
  if (o.freebind) setOpt(fd, SOL_IP, IP.FREEBIND, 1, what);
  if (o.pktinfo) setOpt(fd, SOL_IP, IP.PKTINFO, 1, what);
  if (o.tos) setOpt(fd, SOL_IP, IP.TOS, o.tos, what);
  if (o.ttl) setOpt(fd, SOL_IP, IP.TTL, o.ttl, what);
  restoreRawOptions(fd, e, what);
}

function restoreRawOptions(fd: number, e: inet_sk_entry, what: string): void {
  const raw = e.ip_opts?.raw;
  if (!raw) return;
  if (raw.icmpv_filter.length && (e.proto === IPPROTO_ICMP || e.proto === IPPROTO_ICMPV6)) {
    const words = new Uint32Array(raw.icmpv_filter);
    check(native.syscall(SYS.setsockopt, fd, e.family === AF_INET6 ? SOL_ICMPV6 : SOL_RAW, ICMP_FILTER, words, words.byteLength), `set the ICMP filter of ${what}`);
  }
  if (raw.nodefrag) setOpt(fd, SOL_IP, IP.NODEFRAG, 1, what);
  if (raw.hdrincl) setOpt(fd, e.family === AF_INET6 ? SOL_IPV6 : SOL_IP, e.family === AF_INET6 ? IPV6.HDRINCL : IP.HDRINCL, 1, what);
}

function restoreTcpOptions(fd: number, t: tcp_opts_entry | undefined, what: string): void {
  if (!t) return;
  if (t.nodelay) setOpt(fd, SOL_TCP, TCP.NODELAY, 1, what);
  if (t.cork) setOpt(fd, SOL_TCP, TCP.CORK, 1, what);
  if (t.keepcnt) setOpt(fd, SOL_TCP, TCP.KEEPCNT, t.keepcnt, what);
  if (t.keepidle) setOpt(fd, SOL_TCP, TCP.KEEPIDLE, t.keepidle, what);
  if (t.keepintvl) setOpt(fd, SOL_TCP, TCP.KEEPINTVL, t.keepintvl, what);
}

function openInet(c: OpenContext, entry: file_entry): number {
  const { r, task, run } = c;
  const e = entry.isk!;
  const what = `${kindName(e.family, e.type, e.proto)} ${e.ino} in task ${task.vpid}`;
  if (e.family !== AF_INET && e.family !== AF_INET6) throw run.images.invalid(IMG.files, undefined, `${what} has family ${e.family}`);
  const fd = r.call(`create ${what}`, SYS.socket, e.family, e.type, e.proto);
  const mine = takeFd(task.pid, fd, what);
  const s = run.state(restoring);
  const held = { entry: e, fd: mine, what };
  const connection = isConnection(e);
  if (connection && !run.opts.net.tcpClose) s.connections.push(held);
  else s.held.push(held);
  if (e.v6only) setOpt(mine, SOL_IPV6, IPV6.V6ONLY, 1, what);
  setInt(mine, SO.REUSEADDR, 1, what);
  setInt(mine, SO.REUSEPORT, 1, what);
  if (connection) {
    if (run.opts.net.tcpClose) {
      const sh = native.syscall(SYS.shutdown, mine, 2 /* SHUT_RDWR */);
      if (sh !== -ENOTCONN) check(sh, `shut ${what} down`);
    } else {
      // Non-blocking while it is put back (a connection still sending its SYN connects for real), with buffers
      // that take its queues whole; its own sizes and flags come back below (criu's restore_prepare_socket).
      check(native.syscall(SYS.fcntl, mine, F.SETFL, O.NONBLOCK), `set the flags of ${what}`);
      setInt(mine, SO.SNDBUFFORCE, 0x3fffffff, what);
      setInt(mine, SO.RCVBUFFORCE, 0x3fffffff, what);
      const scope = e.ifname ? ifindex(mine, e.ifname, what) : 0;
      // In the tree's own network namespace, where a FIN crest puts back is sent from.
      const put = () => restoreConnection(mine, {
        family: e.family, src: { port: e.src_port, addr: e.src_addr, scopeId: scope }, dst: { port: e.dst_port, addr: e.dst_addr },
      }, readStream(run, e), what);
      // (The task is in the socket's namespace while it is made: inSocketNetns.)
      if ((e.ns_id ?? task.ids.net_ns_id) !== run.inventory.root_ids?.net_ns_id) inNamespaceOf(task.pid, "net", put);
      else put();
      faultPoint("restore:tcp-repair");
    }
  } else {
    if (e.src_port && e.proto !== IPPROTO_ICMP && e.proto !== IPPROTO_ICMPV6) bindInet(mine, e, what);
    if (e.state === TCP_STATE.LISTEN) check(native.syscall(SYS.listen, mine, e.backlog), `listen on ${what}`);
    if (e.dst_port) {
      const addr = sockaddr(e.family, e.dst_port, e.dst_addr);
      check(native.syscall(SYS.connect, mine, addr, addr.length), `connect ${what} again`);
    }
  }
  restoreIpOptions(mine, e, what);
  restoreOptions(mine, e.opts, what);
  if (e.proto === IPPROTO.TCP) restoreTcpOptions(mine, e.tcp_opts, what);
  if (e.shutdown && !(connection && !run.opts.net.tcpClose)) {
    const sh = native.syscall(SYS.shutdown, mine, e.shutdown - 1);
    if (sh < 0 && !(sh === -ENOTCONN)) check(sh, `shut down ${what}`);
  }
  check(native.syscall(SYS.fcntl, mine, F.SETFL, e.flags & (O.NONBLOCK | O.ASYNC)), `set the flags of ${what}`);
  return fd;
}

export const inetSocketKind: FileKind = {
  name: "inet socket",
  type: fd_types.INETSK,
  claims: (f, run) => [AF_INET, AF_INET6].includes(socketId(f, run)?.family ?? -1),
  dump: dumpInet,
  finishDump: dumpConnections,
  plan: planInet,
  fown: (entry) => entry.isk?.fown,
  inheritKey: (entry) => (entry.isk ? { key: `socket:[${entry.isk.ino}]` } : undefined),
  // Made in the socket's own network namespace, which may not be its holder's.
  open: (c, entry) => inSocketNetns(c.run, c.task, entry.isk?.ns_id, `socket ${entry.isk?.ino ?? entry.id} of task ${c.task.vpid}`, () => openInet(c, entry)),
  finishRestore(run) {
    // Every socket of every port is bound: each gets its own reuse flags back (connections once out of repair mode).
    for (const h of run.state(restoring).held) restoreReuse(h.fd, h.entry.opts, h.what);
  },
  resume(run) {
    faultPoint("restore:tcp-unlock");
    const s = run.state(restoring);
    const { method, runId, conns } = imagesLock(run);
    // Unlocked before repair goes off, as criu does; with --tcp-close the connections are gone and only the lock is left.
    // A tree with its own network namespace: the namespace's lock was lifted inside it (kinds/namespaces/net.ts).
    if (conns.length && method !== "skip" && !run.inventory.tcp_close && !ownedAtRestore(run, "net")) {
      // A lock that is not there (images moved to another machine, or lifted by hand) is no reason to fail, as with criu.
      try {
        const t0 = process.hrtime.bigint();
        unlockConnections(method, runId, conns);
        run.log.info(`Unlocked the network of ${conns.length} TCP connection(s) (${method}) in ${msSince(t0)} ms`);
      } catch (e) {
        run.log.warn((e as Error).message);
      }
    }
    s.resumed = true;
    for (const h of s.connections) {
      resumeConnection(h.fd, h.what);
      restoreReuse(h.fd, h.entry.opts, h.what);
    }
  },
};
