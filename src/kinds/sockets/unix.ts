// Unix sockets (file_entry.usk, queued data in sk-queues.img, as CRIU 4.x).
//
// Dump: the kernel lists every unix socket once per dump (unix-diag.ts);
// crest takes the task's socket into itself with pidfd_getfd, reads its
// options and peeks at its queue there, and writes the entry. Files passed
// in the queue (SCM_RIGHTS) come with the peek as fds of crest's: the fd
// table dumps them as it dumps a task's fds (sk_packet_entry.scm names them
// by files.img id). A socket's peer must be dumped too: one outside the
// tree fails the dump with criu's "External socket is used", unless the
// socket is named with --external unix[INO] (kept with its peer's inode, to
// be given back with --inherit-fd on restore) or --ext-unix-sk allows a
// datagram socket sending to a named one outside (connected to that name
// again on restore); the outside socket gets an entry of its own with
// USK_EXTERN, as criu writes it.
//
// Restore: a connected pair (each the other's peer: socketpair, or the two
// ends of an accepted connection) is made with socketpair in the first task
// that needs either end, and the other end is handed on like a pipe's; an
// unconnected socket with socket() (a datagram socket with data queued as
// one end of a pair, see filledDatagramSocket). crest takes both ends into
// itself, writes each end's queue back by sending it from the other end,
// shuts down what was shut down, sets the options and file flags. A queue
// with files in flight is written once every description is open (the fd
// table's settle step; files in flight that no fd refers to are opened by
// the fd table in this socket's task), each message sent with its files.
//
// A socket bound to a name is bound again by its task (unix-name.ts:
// relative and deleted names too), and a listener listens again with its
// backlog; the two ends of a stream connection are not bound (an accepted
// end shows its listener's name), as with criu.
//
// A socket connected to one that does not name it back (a connection not
// accepted yet: its image names the listener, as criu's; a datagram socket
// sending to a named one) waits for that one to be open and connects to its
// name.
//
// Not yet, refused by name: data sent on a connection not accepted yet,
// messages with their senders' credentials, a peek offset.
import { inTreeNetns } from "./sock-diag.js";
import { closeSync } from "node:fs";
import type { FileKind, FdFacts, HeldFiles, OpenContext } from "../files/file-kind.js";
import type { Waiting } from "../files/open-queue.js";
import { dumpState, restoreState, UnsupportedError, type DumpRun, type RestoreRun } from "../context.js";
import { IMG, criu_req_type, criu_resp, encode, fd_types, type file_entry, type SkQueuePacketInput, type unix_sk_entry } from "../../images/index.js";
import { F, O, SYS } from "../../sys/constants.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import type { Remote } from "../../remote/remote.js";
import { isExternalUnix } from "../../options.js";
import { AF_UNIX, listUnixSockets, type UnixDiag } from "./unix-diag.js";
import { dumpOptions, restoreOptions, restoreReuse, setInt, SO } from "./options.js";
import { peekQueue, sendQueue, type Packet } from "./queue.js";
import { bindName, connectName, connectNameFromCrest, dumpName } from "./unix-name.js";
import { taskPath, treePath } from "../namespaces/owned.js";
import { manyNetns, socketNetns } from "./socket-fd.js";
import { inSocketNetns } from "../namespaces/net.js";

const TCP_ESTABLISHED = 1, TCP_CLOSE = 7, TCP_LISTEN = 10, SOCK_DGRAM = 2, SCM_RIGHTS = 1;
/** criu's uflags: the entry of a socket outside the tree, that one of the tree is connected to. */
const USK_EXTERN = 1;
/** criu's uflags: a self-dumping RPC client's end of its connection to crest, which comes back holding the dump's answer. */
const USK_SERVICE = 2;
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

/** A dumped socket, for the peer check at the end. */
interface DumpedSocket {
  ino: number;
  type: number;
  peer: number;
  what: string;
}

/** Dump: every unix socket the kernel knows (listed on first use), and those dumped, for the peer check. */
const dumped = dumpState("unix sockets", () => ({
  diag: undefined as Map<number, UnixDiag> | undefined,
  sockets: [] as DumpedSocket[],
  listeners: [] as Array<{ icons: number[]; what: string }>,
  queues: [] as SkQueuePacketInput[],
}));

/** A path as the task holding the fd sees it (a task of a nested mount namespace, its own). */
function pathOfHolder(run: DumpRun, f: FdFacts, path: string): string {
  const holder = run.tasks.find((t) => t.pid === (f.table ?? f.pid));
  return holder ? taskPath(run, holder, path) : treePath(run, path);
}

function diagOf(run: DumpRun, ino: number): UnixDiag | undefined {
  const s = run.state(dumped);
  s.diag ??= inTreeNetns(run, listUnixSockets);
  return s.diag.get(ino);
}

/** Queues the packets for sk-queues.img; the files passed with them are dumped by the fd table, their ids filled in as they are. */
function dumpPackets(run: DumpRun, id: number, packets: Packet[], held: HeldFiles, what: string): void {
  const { queues } = run.state(dumped);
  for (const p of packets) {
    const rights: number[] = [];
    queues.push({ entry: { id_for: id, length: p.data.length, ...(p.fds.length ? { scm: [{ type: SCM_RIGHTS, rights }] } : {}) }, data: p.data });
    p.fds.forEach((fd, i) => held.dumpHeld(fd, `a file in flight in the queue of ${what}`, (fileId) => { rights[i] = fileId; }));
  }
}

function dumpUnix(f: FdFacts, run: DumpRun, held: HeldFiles): number {
  const s = run.state(dumped);
  const d = diagOf(run, f.st.ino)!;
  const what = `${f.what} (unix ${typeName(d.type)} socket, inode ${d.ino})`;
  if (d.peer && d.peer === run.opts.dump.rpcSocket) return dumpServiceEnd(f, run, d);
  if (d.state === TCP_LISTEN) s.listeners.push({ icons: d.icons, what });
  // The socket it is connected to, by inode; a connection not accepted yet names its listener (as criu's image does).
  let peer = d.peer;
  if (peer) {
    const other = s.diag!.get(peer);
    if (other && other.peer !== d.ino && !other.name.length) throw new UnsupportedError(`${what} is connected to socket ${peer}, which has no name and is not connected back; crest cannot connect it again`);
  } else if (d.state === TCP_ESTABLISHED && d.type !== SOCK_DGRAM) {
    // (A datagram socket another one connected to shows ESTABLISHED too, with no peer of its own.)
    // Not waiting in a listener: its peer was closed (peer 0; the restore gives it a peer to fill it from, then closes that).
    const listener = [...s.diag!.values()].find((l) => l.icons.includes(d.ino));
    // What it sent sits in the connection's other end, which no fd holds: the kernel gives no way to read it.
    if (listener && d.wqlen) throw new UnsupportedError(`${what} sent ${d.wqlen} bytes on a connection the listening socket ${listener.ino} has not accepted yet; crest cannot read them`);
    if (listener) peer = listener.ino;
  }
  const id = run.nextId("file");
  const { opts, packets, name, ns } = withFd(takeFd(f.pid, f.fd, what), (fd) => ({
    // Its namespace (where an abstract name lives), looked up only where the tree has several.
    ns: manyNetns(run) ? socketNetns(fd, what, run) : run.root.ids.net_ns_id,
    name: d.name.length && d.name[0] !== 0 && bindsOnRestore(d) ? dumpName(fd, d.name, what, (p) => pathOfHolder(run, f, p)) : undefined,
    opts: dumpOptions(fd, what),
    packets: d.rqlen && d.state !== TCP_LISTEN ? peekQueue(fd, d.type, what, { shut: (d.shutdown & 1) !== 0, bytes: d.rqlen }) : [],
  }));
  const usk: unix_sk_entry = {
    id, ino: d.ino, type: d.type, state: d.state, flags: f.info.flags & ~O.CLOEXEC, uflags: 0,
    backlog: d.wqlen, peer, fown: f.fown, opts, name: imageName(d.name), ...name, ...(ns !== undefined ? { ns_id: ns } : {}),
    ...(d.shutdown ? { shutdown: d.shutdown as unix_sk_entry["shutdown"] } : {}),
  };
  run.files.push({ type: fd_types.UNIXSK, id, usk });
  s.sockets.push({ ino: d.ino, type: d.type, peer, what });
  dumpPackets(run, id, packets, held, what);
  return id;
}

/**
 * A name as the images keep it: a path with the NUL that ends it, as the
 * kernel reports it and criu writes it (criu's restore reads it as a C
 * string); an abstract name as it is.
 */
function imageName(name: Buffer): Buffer {
  return name.length && name[0] !== 0 ? Buffer.concat([name, Buffer.alloc(1)]) : name;
}

/**
 * A self-dumping RPC client's end of its connection to crest: dumped closed
 * and unconnected, marked USK_SERVICE as criu marks it; the restore gives it
 * back holding crest's answer to the dump (restored = true), then EOF.
 */
function dumpServiceEnd(f: FdFacts, run: DumpRun, d: UnixDiag): number {
  const id = run.nextId("file");
  const opts = withFd(takeFd(f.pid, f.fd, f.what), (fd) => dumpOptions(fd, f.what));
  run.files.push({
    type: fd_types.UNIXSK, id, usk: {
      id, ino: d.ino, type: d.type, state: TCP_CLOSE, flags: f.info.flags & ~O.CLOEXEC, uflags: USK_SERVICE,
      backlog: 0, peer: 0, fown: f.fown, opts, name: imageName(d.name),
    },
  });
  return id;
}

/** The restore of a USK_SERVICE end: one end of a new pair, the other end's last words the dump's answer. */
function openServiceEnd({ r, task }: OpenContext, e: unix_sk_entry, what: string): number {
  const [mine, theirs] = socketpair(r, e.type, what);
  withFd(takeFd(task.pid, theirs, what), (fd) => {
    const answer = encode(criu_resp, { type: criu_req_type.DUMP, success: true, dump: { restored: true } });
    check(native.syscall(SYS.sendto, fd, answer, answer.length, 0, null, 0), `write the dump's answer into ${what}`);
  });
  r.later({ what: `close the other end of ${what}`, nr: SYS.close, args: [theirs] });
  withFd(takeFd(task.pid, mine, what), (fd) => finishSocket(fd, e, what));
  return mine;
}

/**
 * Whether the restore binds the socket to its name: not the two ends of a
 * stream or seqpacket connection (an accepted end shows its listener's name,
 * which the listener holds), as criu.
 */
const bindsOnRestore = (s: { type: number; state: number }): boolean => s.type === SOCK_DGRAM || s.state !== TCP_ESTABLISHED;

/**
 * Every dumped socket's peer was dumped too. A peer outside the tree is
 * criu's "external socket": allowed for a socket named by --external
 * unix[INO] (or --ext-unix-sk=INO), and by --ext-unix-sk for a datagram
 * socket sending to a named one; the outside one then gets an entry
 * (USK_EXTERN: its inode and name), as criu writes it.
 */
function checkPeers(run: DumpRun): void {
  const s = run.state(dumped);
  const inTree = new Set(s.sockets.map((k) => k.ino));
  for (const l of s.listeners) {
    const outside = l.icons.filter((ino) => !inTree.has(ino));
    if (outside.length) throw new UnsupportedError(`${l.what} has connections from outside the dumped tree waiting to be accepted (sockets ${outside.join(", ")}); crest cannot restore them`);
  }
  const outside = new Map<number, UnixDiag | undefined>();
  for (const k of s.sockets) {
    if (!k.peer || inTree.has(k.peer)) continue;
    const other = s.diag!.get(k.peer);
    if (!isExternalUnix(run.opts, k.ino)) {
      if (!run.opts.extUnixSk) {
        throw new UnsupportedError(`External socket is used: ${k.what} is connected to socket ${k.peer} outside the dumped tree. ` +
          `Consider using --ext-unix-sk (a datagram socket sending to a named one), or --external unix[${k.ino}] (the restore then needs the socket given with --inherit-fd fd[N]:socket:[${k.ino}])`);
      }
      if (k.type !== SOCK_DGRAM) {
        throw new UnsupportedError(`${k.what} is one end of a ${typeName(k.type)} connection whose other end (socket ${k.peer}) is outside the dumped tree; ` +
          `--ext-unix-sk keeps only datagram sockets: use --external unix[${k.ino}] and give the socket back on restore with --inherit-fd fd[N]:socket:[${k.ino}]`);
      }
      if (!other?.name.length) throw new UnsupportedError(`${k.what} is connected to socket ${k.peer} outside the dumped tree, which has no name; crest cannot connect it again`);
    }
    outside.set(k.peer, other);
  }
  for (const [ino, other] of outside) {
    const id = run.nextId("file");
    const usk: unix_sk_entry = {
      id, ino, type: SOCK_DGRAM, state: TCP_LISTEN, flags: 0, uflags: USK_EXTERN, backlog: 0, peer: 0,
      fown: { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 },
      opts: { so_sndbuf: 0, so_rcvbuf: 0, so_snd_tmo_sec: 0n, so_snd_tmo_usec: 0n, so_rcv_tmo_sec: 0n, so_rcv_tmo_usec: 0n, so_filter: [] },
      name: imageName(other?.name ?? Buffer.alloc(0)),
    };
    run.files.push({ type: fd_types.UNIXSK, id, usk });
  }
}

// --- restore --------------------------------------------------------------------

/** One queued message as the images have it: its bytes, and the files passed with it (files.img ids). */
interface QueuedMessage {
  data: Buffer;
  rights: number[];
}

/**
 * Restore: unix sockets by inode, the messages queued to each (by file id),
 * and, by the id of the file whose open made them, the queues to fill and
 * sockets to finish once every description is open (files in flight).
 */
const restoring = restoreState("unix sockets", (run) => {
  const byIno = new Map<number, file_entry>();
  for (const f of run.files.values()) if (f.usk) byIno.set(f.usk.ino, f);
  const queues = new Map<number, QueuedMessage[]>();
  for (const p of run.images.readOr(IMG.skQueues, undefined, [])) {
    const rights = p.entry.scm.flatMap((scm) => {
      if (scm.type !== SCM_RIGHTS) throw run.images.invalid(IMG.skQueues, undefined, `a message queued to file ${p.entry.id_for} has control message type ${scm.type}; crest restores only SCM_RIGHTS`);
      return scm.rights;
    });
    queues.set(p.entry.id_for, [...(queues.get(p.entry.id_for) ?? []), { data: p.data, rights }]);
  }
  return { byIno, queues, pending: new Map<number, Array<() => void>>() };
});

/** The files passed in `e`'s queue, by files.img id. */
const filesInFlight = (run: RestoreRun, e: unix_sk_entry): number[] => (run.state(restoring).queues.get(e.id) ?? []).flatMap((m) => m.rights);

/**
 * Writes `to`'s queue from `from` (its peer), both held by crest, with the
 * files passed in it (each taken into crest from the task holding it, all
 * open by now). The sender's buffer is raised so everything fits; its own
 * size comes back with its options.
 */
function refill(run: RestoreRun, from: number, to: unix_sk_entry, what: string): void {
  const messages = run.state(restoring).queues.get(to.id);
  if (!messages?.length) return;
  const taken = new Map<number, number>();
  try {
    const fdOf = (id: number): number => {
      let fd = taken.get(id);
      if (fd === undefined) {
        const held = run.opened.get(id);
        if (!held) throw new Error(`file ${id}, in flight to ${what}, is not open`);
        // Its fd there may still be a queued dup3 of that task's.
        held.task.remotes[0]!.flush();
        fd = takeFd(held.task.pid, held.fd, `file ${id} (in flight to ${what})`);
        taken.set(id, fd);
      }
      return fd;
    };
    const packets: Packet[] = messages.map((m) => ({ data: m.data, fds: m.rights.map(fdOf) }));
    const bytes = packets.reduce((n, p) => n + p.data.length, 0);
    setInt(from, SO.SNDBUFFORCE, bytes + 64 * packets.length + (1 << 16), what);
    sendQueue(from, packets, what);
  } finally {
    for (const fd of taken.values()) closeSync(fd);
  }
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
 * Runs `work` (queues, then options) on crest's copies `fds` of new sockets,
 * then closes them: now, or, when a queue carries files in flight
 * (`inFlight`), once every description is open (settle of file `opener`).
 */
function complete(run: RestoreRun, opener: number, fds: number[], inFlight: boolean, work: () => void): void {
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    for (const fd of fds) closeSync(fd);
  };
  const go = (): void => {
    try {
      work();
    } finally {
      close();
    }
  };
  if (!inFlight) return go();
  run.cleanup.push(close);
  const { pending } = run.state(restoring);
  pending.set(opener, [...(pending.get(opener) ?? []), go]);
}

/** Binds the socket to its name if it has one and is bound on restore (bindsOnRestore). */
function bindIfNamed(c: OpenContext, fd: number, e: unix_sk_entry, what: string): void {
  if (e.name.length && bindsOnRestore(e)) bindName(c, fd, e, what);
}

/** A pair of connected unix sockets of `type`, made by the task. */
function socketpair(r: Remote, type: number, what: string): [number, number] {
  r.resetScratch();
  const pair = r.alloc(8);
  r.call(`create ${what}`, SYS.socketpair, AF_UNIX, type, 0, pair);
  const fds = r.read(pair, 8);
  return [fds.readInt32LE(0), fds.readInt32LE(4)];
}

/** A socket the task made, and crest's copy of the socket that fills its queue (a datagram socket with data queued), if any. */
interface NewSocket {
  fd: number;
  filler?: number;
}

/**
 * A datagram socket with datagrams from senders not connected to it: made as
 * one end of a pair, disconnected (connect to AF_UNSPEC, which leaves the
 * other end's peer alone); crest keeps the other end to fill it from, the
 * task closes it.
 */
function filledDatagramSocket({ r, task }: OpenContext, e: unix_sk_entry, what: string): NewSocket {
  const [mine, spare] = socketpair(r, e.type, what);
  r.call(`disconnect ${what} from its filler`, SYS.connect, mine, r.put(Buffer.alloc(2)), 2);
  const filler = takeFd(task.pid, spare, `the filler of ${what}`);
  r.later({ what: `close the filler of ${what}`, nr: SYS.close, args: [spare] });
  return { fd: mine, filler };
}

/**
 * A stream or seqpacket socket whose peer was closed: made as one end of a
 * pair, filled from the other, which crest and the task then close (the
 * socket reads its data, then end of file).
 */
function peerClosedSocket({ r, task }: OpenContext, e: unix_sk_entry, what: string): NewSocket {
  const [mine, spare] = socketpair(r, e.type, what);
  const filler = takeFd(task.pid, spare, `the closed peer of ${what}`);
  r.call(`close the peer of ${what}`, SYS.close, spare);
  return { fd: mine, filler };
}

/** A socket not made as one end of a pair: a datagram socket with data queued gets a filler, so does a connected one whose peer was closed. */
function newSocket(c: OpenContext, e: unix_sk_entry, what: string): NewSocket {
  if (e.type === SOCK_DGRAM && c.run.state(restoring).queues.has(e.id)) return filledDatagramSocket(c, e, what);
  if (e.type !== SOCK_DGRAM && e.state === TCP_ESTABLISHED && !e.peer) return peerClosedSocket(c, e, what);
  return { fd: c.r.call(`create ${what}`, SYS.socket, AF_UNIX, e.type, 0) };
}

/**
 * Fills a lone socket's queue from its filler and finishes it (now or at
 * settle). A datagram socket to be connected (`to`) is connected by crest
 * after its queue is filled: once connected it takes datagrams from its
 * peer only.
 */
function completeLone(c: OpenContext, entry: file_entry, s: NewSocket, what: string, to?: unix_sk_entry): void {
  const e = entry.usk!;
  if (to && s.filler === undefined) connectName(c, s.fd, to, what);
  const mine = takeFd(c.task.pid, s.fd, what);
  const fds = s.filler !== undefined ? [mine, s.filler] : [mine];
  complete(c.run, entry.id, fds, filesInFlight(c.run, e).length > 0, () => {
    if (s.filler !== undefined) refill(c.run, s.filler, e, what);
    if (to && s.filler !== undefined) connectNameFromCrest(c, mine, to, what);
    finishSocket(mine, e, what);
  });
}

/**
 * A socket connected to one that does not name it back: a connection its
 * listener has not accepted yet, or a datagram socket sending to a named
 * one (in the tree, or outside it: USK_EXTERN). Made once the other is open
 * (bound, listening), and connected to its name: the listener has the
 * connection waiting again.
 */
function connectByName(c: OpenContext, entry: file_entry, to: file_entry, what: string): number | Waiting {
  const { run } = c;
  const e = entry.usk!;
  const toUsk = to.usk!;
  if (toUsk.uflags & USK_EXTERN) {
    if (e.type !== SOCK_DGRAM) {
      throw new Error(`${what} was connected to socket ${e.peer} outside the tree (dumped with --external unix[${e.ino}]): ` +
        `give the socket to use instead with --inherit-fd fd[N]:socket:[${e.ino}]`);
    }
    if (!run.opts.extUnixSk) {
      throw new Error(`External socket found in image: ${what} was connected to socket ${e.peer} outside the tree. ` +
        "Consider using the --ext-unix-sk option to allow restoring it");
    }
  } else if (!run.opened.has(to.id)) {
    return { waitFor: to.id, why: `it connects to unix socket ${toUsk.ino}` };
  }
  if (!toUsk.name.length) throw run.images.invalid(IMG.files, undefined, `${what} connects to unix socket ${toUsk.ino}, which has no name`);
  const s = newSocket(c, e, what);
  bindIfNamed(c, s.fd, e, what);
  completeLone(c, entry, s, what, toUsk);
  return s.fd;
}

function openUnix(c: OpenContext, entry: file_entry): number | Waiting {
  const { r, task, run, park } = c;
  const e = entry.usk!;
  const what = `unix socket ${e.ino} in task ${task.vpid}`;
  if (e.uflags & USK_EXTERN) throw run.images.invalid(IMG.files, undefined, `${what} is marked as outside the tree (USK_EXTERN), yet a task holds it`);
  if (e.uflags & USK_SERVICE) return openServiceEnd(c, e, what);
  if (!e.peer) {
    const s = newSocket(c, e, what);
    bindIfNamed(c, s.fd, e, what);
    if (e.state === TCP_LISTEN) r.call(`listen on ${what}`, SYS.listen, s.fd, e.backlog);
    completeLone(c, entry, s, what);
    return s.fd;
  }
  const peerEntry = run.state(restoring).byIno.get(e.peer);
  if (!peerEntry?.usk) throw run.images.invalid(IMG.files, undefined, `${what} is connected to socket ${e.peer}, which is not in the images`);
  const p = peerEntry.usk;
  if (p === e) {
    // A datagram socket connected to its own name.
    const s = newSocket(c, e, what);
    bindIfNamed(c, s.fd, e, what);
    completeLone(c, entry, s, what, e);
    return s.fd;
  }
  if (p.peer !== e.ino) return connectByName(c, entry, peerEntry, what);
  const peerWhat = `unix socket ${p.ino} in task ${task.vpid}`;
  const [mine, theirs] = socketpair(r, e.type, `${what} and its peer`);
  bindIfNamed(c, mine, e, what);
  bindIfNamed(c, theirs, p, peerWhat);
  const a = takeFd(task.pid, mine, what);
  const b = takeFd(task.pid, theirs, peerWhat);
  complete(run, entry.id, [a, b], filesInFlight(run, e).length + filesInFlight(run, p).length > 0, () => {
    refill(run, b, e, what);
    refill(run, a, p, peerWhat);
    finishSocket(a, e, what);
    finishSocket(b, p, peerWhat);
  });
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
  plan(run) {
    // The images keep a path name with the NUL that ends it: the name is what comes before.
    for (const f of run.files.values()) {
      const n = f.usk?.name;
      if (n?.length && n[0] !== 0 && n.includes(0)) f.usk!.name = n.subarray(0, n.indexOf(0));
    }
  },
  fown: (entry) => entry.usk?.fown,
  inheritKey: (entry) => (entry.usk ? { key: `socket:[${entry.usk.ino}]` } : undefined),
  carries: (entry, run) => (entry.usk ? filesInFlight(run, entry.usk) : []),
  // Made in the socket's own network namespace, which may not be its holder's.
  open: (c, entry) => inSocketNetns(c.run, c.task, entry.usk?.ns_id, `socket ${entry.usk?.ino ?? entry.id} of task ${c.task.vpid}`, () => openUnix(c, entry)),
  settle(_c, entry) {
    const { pending } = _c.run.state(restoring);
    const work = pending.get(entry.id);
    pending.delete(entry.id);
    for (const w of work ?? []) w();
  },
};
