// Unix sockets (file_entry.usk, queued data in sk-queues.img, as CRIU 4.x).
//
// Dump: the kernel lists every unix socket once per dump (unix-diag.ts);
// crest takes the task's socket into itself with pidfd_getfd, reads its
// options and peeks at its queue there, and writes the entry. A socket's
// peer must be dumped too: one outside the tree fails the dump, as criu's
// "External socket is used".
//
// Restore: a connected pair (each the other's peer: socketpair, or the two
// ends of an accepted connection) is made with socketpair in the first task
// that needs either end, and the other end is handed on like a pipe's; an
// unconnected socket with socket() (a datagram socket with data queued as
// one end of a pair, see filledDatagramSocket). crest takes both ends into itself, writes
// each end's queue back by sending it from the other end, shuts down what was
// shut down, sets the options and file flags.
//
// A socket bound to a name is bound again by its task, and a listener
// listens again with its backlog; the two ends of a stream connection are
// not bound (an accepted end shows its listener's name), as with criu.
//
// A socket connected to one that does not name it back (a connection not
// accepted yet: its image names the listener, as criu's; a datagram socket
// sending to a named one) waits for that one to be open and connects to its
// name.
//
// Not yet, refused by name: relative and removed names, data sent on a
// connection not accepted yet, files in flight, a peek offset.
import { chmodSync, chownSync, closeSync, lstatSync, statSync, unlinkSync } from "node:fs";
import type { FileKind, FdFacts, OpenContext } from "../files/file-kind.js";
import type { Waiting } from "../files/open-queue.js";
import { dumpState, restoreState, UnsupportedError, type DumpRun, type RestoreRun } from "../context.js";
import { IMG, fd_types, type file_entry, type SkQueuePacketInput, type unix_sk_entry } from "../../images/index.js";
import { F, O, SYS } from "../../sys/constants.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import type { Remote } from "../../remote/remote.js";
import { AF_UNIX, listUnixSockets, type UnixDiag } from "./unix-diag.js";
import { dumpOptions, restoreOptions, restoreReuse, setInt, SO } from "./options.js";
import { peekQueue, sendQueue } from "./queue.js";

const TCP_ESTABLISHED = 1, TCP_LISTEN = 10, SOCK_DGRAM = 2;
const TYPE_NAMES: Record<number, string> = { 1: "stream", 2: "datagram", 5: "seqpacket" };
const typeName = (t: number): string => TYPE_NAMES[t] ?? `type ${t}`;

/** A copy of fd `fd` of process `pid` (crest's PID for it) in crest, by pidfd_getfd. */
export function takeFd(pid: number, fd: number, what: string): number {
  const pidfd = check(native.syscall(SYS.pidfd_open, pid, 0), `open a pidfd of process ${pid}`);
  try {
    return check(native.syscall(SYS.pidfd_getfd, pidfd, fd, 0), `take ${what} into crest`);
  } finally {
    closeSync(pidfd);
  }
}

function withFd<T>(fd: number, fn: (fd: number) => T): T {
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

// --- dump -----------------------------------------------------------------------

/** Dump: every unix socket the kernel knows (listed on first use), and those dumped, for the peer check. */
const dumped = dumpState("unix sockets", () => ({
  diag: undefined as Map<number, UnixDiag> | undefined,
  sockets: [] as Array<{ ino: number; peer: number; what: string }>,
  listeners: [] as Array<{ icons: number[]; what: string }>,
  queues: [] as SkQueuePacketInput[],
}));

function diagOf(run: DumpRun, ino: number): UnixDiag | undefined {
  const s = run.state(dumped);
  s.diag ??= listUnixSockets();
  return s.diag.get(ino);
}

function dumpUnix(f: FdFacts, run: DumpRun): number {
  const s = run.state(dumped);
  const d = diagOf(run, f.st.ino)!;
  const what = `${f.what} (unix ${typeName(d.type)} socket, inode ${d.ino})`;
  const perms = d.name.length && bindsOnRestore(d) ? boundName(d, what) : undefined;
  if (d.state === TCP_LISTEN) s.listeners.push({ icons: d.icons, what });
  // The socket it is connected to, by inode; a connection not accepted yet names its listener (as criu's image does).
  let peer = d.peer;
  if (peer) {
    const other = s.diag!.get(peer);
    if (other && other.peer !== d.ino && !other.name.length) throw new UnsupportedError(`${what} is connected to socket ${peer}, which has no name and is not connected back; crest cannot connect it again`);
  } else if (d.state === TCP_ESTABLISHED && d.type !== SOCK_DGRAM) {
    // (A datagram socket another one connected to shows ESTABLISHED too, with no peer of its own.)
    const listener = [...s.diag!.values()].find((l) => l.icons.includes(d.ino));
    if (!listener) throw new UnsupportedError(`${what} is connected, and its peer is closed; crest does not support it yet`);
    // What it sent sits in the connection's other end, which no fd holds: the kernel gives no way to read it.
    if (d.wqlen) throw new UnsupportedError(`${what} sent ${d.wqlen} bytes on a connection the listening socket ${listener.ino} has not accepted yet; crest cannot read them`);
    peer = listener.ino;
  }
  const id = run.nextId("file");
  const { opts, packets } = withFd(takeFd(f.pid, f.fd, what), (fd) => ({ opts: dumpOptions(fd, what), packets: d.rqlen && d.state !== TCP_LISTEN ? peekQueue(fd, d.type, what) : [] }));
  for (const data of packets) s.queues.push({ entry: { id_for: id, length: data.length }, data });
  const usk: unix_sk_entry = {
    id, ino: d.ino, type: d.type, state: d.state, flags: f.info.flags & ~O.CLOEXEC, uflags: 0,
    backlog: d.wqlen, peer, fown: f.fown, opts, name: d.name, ...(perms ? { file_perms: perms } : {}),
    ...(d.shutdown ? { shutdown: d.shutdown as unix_sk_entry["shutdown"] } : {}),
  };
  run.files.push({ type: fd_types.UNIXSK, id, usk });
  s.sockets.push({ ino: d.ino, peer, what });
  return id;
}

/**
 * Whether the restore binds the socket to its name: not the two ends of a
 * stream or seqpacket connection (an accepted end shows its listener's name,
 * which the listener holds), as criu.
 */
const bindsOnRestore = (s: { type: number; state: number }): boolean => s.type === SOCK_DGRAM || s.state !== TCP_ESTABLISHED;

/** A name in the file system must still be the socket's file: its mode and owner, for the restore. */
function boundName(d: UnixDiag, what: string): { mode: number; uid: number; gid: number } | undefined {
  const name = d.name.toString("latin1");
  if (d.name[0] === 0) return undefined;
  if (!name.startsWith("/")) throw new UnsupportedError(`${what} is bound to the relative name ${JSON.stringify(name)}; crest does not support relative names yet`);
  const st = statSync(name, { throwIfNoEntry: false });
  if (!st || st.ino !== d.vfs?.ino) throw new UnsupportedError(`${what} is bound to ${name}, which was removed or replaced since; crest does not support it yet`);
  return { mode: st.mode, uid: st.uid, gid: st.gid };
}

/** Every dumped socket's peer was dumped too; a peer outside the tree is criu's "external socket". */
function checkPeers(run: DumpRun): void {
  const { sockets } = run.state(dumped);
  const inTree = new Set(sockets.map((s) => s.ino));
  for (const l of run.state(dumped).listeners) {
    const outside = l.icons.filter((ino) => !inTree.has(ino));
    if (outside.length) throw new UnsupportedError(`${l.what} has connections from outside the dumped tree waiting to be accepted (sockets ${outside.join(", ")}); crest cannot restore them`);
  }
  for (const s of sockets) {
    if (s.peer && !inTree.has(s.peer)) {
      throw new UnsupportedError(`External socket is used: ${s.what} is connected to socket ${s.peer} outside the dumped tree. ` +
        "criu would need --ext-unix-sk; crest does not support external unix sockets yet");
    }
  }
}

// --- restore --------------------------------------------------------------------

/** Restore: unix sockets by inode, and the packets queued to each (by file id). */
const restoring = restoreState("unix sockets", (run) => {
  const byIno = new Map<number, file_entry>();
  for (const f of run.files.values()) if (f.usk) byIno.set(f.usk.ino, f);
  const queues = new Map<number, Buffer[]>();
  for (const p of run.images.readOr(IMG.skQueues, undefined, [])) queues.set(p.entry.id_for, [...(queues.get(p.entry.id_for) ?? []), p.data]);
  return { byIno, queues };
});

/** Writes `to`'s queue from `from` (its peer), both held by crest. The sender's buffer is raised so everything fits; its own size comes back with its options. */
function refill(run: RestoreRun, from: number, to: unix_sk_entry, what: string): void {
  const packets = run.state(restoring).queues.get(to.id);
  if (!packets?.length) return;
  const bytes = packets.reduce((n, p) => n + p.length, 0);
  setInt(from, SO.SNDBUFFORCE, bytes + 64 * packets.length + (1 << 16), what);
  sendQueue(from, packets, what);
}

/** What crest sets on a socket it holds once its queue is in: shutdown, options, status flags. */
function finishSocket(fd: number, e: unix_sk_entry, what: string): void {
  // sk_shutdown READ 1, WRITE 2, BOTH 3 are shutdown(2)'s SHUT_RD, SHUT_WR, SHUT_RDWR plus one.
  if (e.shutdown) check(native.syscall(SYS.shutdown, fd, e.shutdown - 1), `shut down ${what}`);
  restoreOptions(fd, e.opts, what);
  restoreReuse(fd, e.opts, what);
  const status = e.flags & (O.NONBLOCK | O.ASYNC);
  if (status) check(native.syscall(SYS.fcntl, fd, F.SETFL, status), `set the flags of ${what}`);
}

/**
 * Binds the socket the task made to its name, as its task (the file is
 * created with the task's credentials, then given its mode and owner). A
 * stale socket file at the path (the dumped socket's, left behind) goes first.
 */
function bindName(c: OpenContext, fd: number, e: unix_sk_entry, what: string): void {
  if (!e.name.length || !bindsOnRestore(e)) return;
  const path = e.name[0] !== 0 ? e.name.toString("latin1") : undefined;
  if (path) {
    if (lstatSync(path, { throwIfNoEntry: false })?.isSocket()) unlinkSync(path);
  }
  c.r.resetScratch();
  const addr = sockaddr(e.name);
  c.r.call(`bind ${what} to ${JSON.stringify(e.name.toString("latin1"))}`, SYS.bind, fd, c.r.put(addr), addr.length);
  if (path && e.file_perms) {
    chownSync(path, e.file_perms.uid, e.file_perms.gid);
    chmodSync(path, e.file_perms.mode & 0o7777);
  }
}

/** struct sockaddr_un of a name, as long as the name. */
function sockaddr(name: Buffer): Buffer {
  const addr = Buffer.alloc(2 + name.length);
  addr.writeUInt16LE(AF_UNIX, 0);
  name.copy(addr, 2);
  return addr;
}

/** A pair of connected unix sockets of `type`, made by the task. */
function socketpair(r: Remote, type: number, what: string): [number, number] {
  r.resetScratch();
  const pair = r.alloc(8);
  r.call(`create ${what}`, SYS.socketpair, AF_UNIX, type, 0, pair);
  const fds = r.read(pair, 8);
  return [fds.readInt32LE(0), fds.readInt32LE(4)];
}

/**
 * A datagram socket with datagrams from senders not connected to it: made as
 * one end of a pair, disconnected (connect to AF_UNSPEC, which leaves the
 * other end's peer alone), filled from the other end, which then goes.
 */
function filledDatagramSocket({ r, task, run }: OpenContext, e: unix_sk_entry, what: string): number {
  const [mine, spare] = socketpair(r, e.type, what);
  r.call(`disconnect ${what} from its filler`, SYS.connect, mine, r.put(Buffer.alloc(2)), 2);
  withFd(takeFd(task.pid, spare, `the filler of ${what}`), (b) => refill(run, b, e, what));
  r.later({ what: `close the filler of ${what}`, nr: SYS.close, args: [spare] });
  return mine;
}

/** A socket not made as one end of a pair: a datagram socket with data queued is filled as it is made. */
function newSocket(c: OpenContext, e: unix_sk_entry, what: string): number {
  if (e.type === SOCK_DGRAM && c.run.state(restoring).queues.has(e.id)) return filledDatagramSocket(c, e, what);
  return c.r.call(`create ${what}`, SYS.socket, AF_UNIX, e.type, 0);
}

/**
 * A socket connected to one that does not name it back: a connection its
 * listener has not accepted yet, or a datagram socket sending to a named
 * one. Made once the other is open (bound, listening), and connected to its
 * name: the listener has the connection waiting again.
 */
function connectByName(c: OpenContext, e: unix_sk_entry, to: file_entry, what: string): number | Waiting {
  const { r, task, run } = c;
  if (!run.opened.has(to.id)) return { waitFor: to.id, why: `it connects to unix socket ${to.usk!.ino}` };
  if (!to.usk!.name.length) throw run.images.invalid(IMG.files, undefined, `${what} connects to unix socket ${to.usk!.ino}, which has no name`);
  const fd = newSocket(c, e, what);
  bindName(c, fd, e, what);
  r.resetScratch();
  const addr = sockaddr(to.usk!.name);
  r.call(`connect ${what} to ${JSON.stringify(to.usk!.name.toString("latin1"))}`, SYS.connect, fd, r.put(addr), addr.length);
  withFd(takeFd(task.pid, fd, what), (mine) => finishSocket(mine, e, what));
  return fd;
}

function openUnix(c: OpenContext, entry: file_entry): number | Waiting {
  const { r, task, run, park } = c;
  const e = entry.usk!;
  const what = `unix socket ${e.ino} in task ${task.vpid}`;
  if (!e.peer) {
    const fd = newSocket(c, e, what);
    bindName(c, fd, e, what);
    if (e.state === TCP_LISTEN) r.call(`listen on ${what}`, SYS.listen, fd, e.backlog);
    withFd(takeFd(task.pid, fd, what), (mine) => finishSocket(mine, e, what));
    return fd;
  }
  const peerEntry = run.state(restoring).byIno.get(e.peer);
  if (!peerEntry?.usk) throw run.images.invalid(IMG.files, undefined, `${what} is connected to socket ${e.peer}, which is not in the images`);
  const p = peerEntry.usk;
  if (p.peer !== e.ino) return connectByName(c, e, peerEntry, what);
  const peerWhat = `unix socket ${p.ino} in task ${task.vpid}`;
  const [mine, theirs] = socketpair(r, e.type, `${what} and its peer`);
  bindName(c, mine, e, what);
  bindName(c, theirs, p, peerWhat);
  withFd(takeFd(task.pid, mine, what), (a) => withFd(takeFd(task.pid, theirs, peerWhat), (b) => {
    refill(run, b, e, what);
    refill(run, a, p, peerWhat);
    finishSocket(a, e, what);
    finishSocket(b, p, peerWhat);
  }));
  const kept = park(theirs);
  run.opened.set(peerEntry.id, { task, fd: kept });
  run.transient.push({ task, fd: kept });
  return mine;
}

export const unixSocketKind: FileKind = {
  name: "unix socket",
  type: fd_types.UNIXSK,
  claims: (f, run) => f.link.kind === "socket" && diagOf(run, f.st.ino) !== undefined,
  dump: dumpUnix,
  finishDump(run) {
    checkPeers(run);
    const { queues } = run.state(dumped);
    if (queues.length) run.images.write(IMG.skQueues, undefined, queues);
  },
  fown: (entry) => entry.usk?.fown,
  open: openUnix,
};
