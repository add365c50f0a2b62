// Packet sockets (file_entry.psk, as CRIU 4.x): SOCK_RAW, SOCK_DGRAM and
// the old SOCK_PACKET.
//
// Dump: the kernel lists every packet socket once per dump (packet-diag.ts):
// protocol, bound device (by ifindex, as criu keeps it), TPACKET version,
// reserve, copy threshold, timestamp source, auxdata / origdev / vnet
// header / loss flags, multicast memberships (each as many times as it was
// added), ring geometries and fanout group. crest takes the socket into
// itself with pidfd_getfd and reads there what the diag does not say: the
// options every socket has (sk_opts_entry, with its filter), and options
// criu does not keep (crest's own fields): the vnet header size,
// PACKET_QDISC_BYPASS, PACKET_IGNORE_OUTGOING, PACKET_TX_HAS_OFF.
//
// Refused by name: packets queued and not read (criu dumps packet sockets
// without looking at their queues, and drops them; nobody can queue a
// received packet to a socket again), a ring that ever carried a packet
// (packet-ring.ts: criu keeps only a ring's geometry, so its frames and the
// kernel's place in it are lost), a fanout group steered by a BPF program
// (PACKET_FANOUT_DATA cannot be read back), a device gone. Rings that never
// carried a packet are kept, mapped or not: a task's mapping of them is
// kept as criu keeps it (VMA_AREA_SOCKET, shmid the socket's file id) and
// made again from the restored socket once every fd is in place.
//
// Restore: the task makes the socket with protocol 0, which receives
// nothing; crest takes it, sets its filter, options, memberships and rings,
// and only then binds it to its device and protocol (from then on packets
// come in, as they did), and joins its fanout group, which needs a bound
// socket. A SOCK_PACKET socket is bound by the device's name; what it took
// in from other devices before that is read out and dropped. Not kept,
// since no interface gives them: PACKET_STATISTICS (reading them resets
// them) and a fanout group's PACKET_FANOUT_DATA and max_num.
import { inTreeNetns } from "./sock-diag.js";
import { closeSync, readdirSync, readlinkSync } from "node:fs";
import type { FileKind, FdFacts, OpenContext } from "../files/file-kind.js";
import { dumpState, UnsupportedError, type DumpRun, type RestoreTask } from "../context.js";
import { fd_types, IMG, type file_entry, type packet_ring, type packet_sock_entry, type vma_entry } from "../../images/index.js";
import type { SmapsEntry } from "../../proc/index.js";
import { F, MAP, O, SYS } from "../../sys/constants.js";
import { is, VMA } from "../memory/vma.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { AF_PACKET, listPacketSockets, PDI, type PacketDiag, type PacketRingDiag } from "./packet-diag.js";
import { ringBytes, ringStates, type RingState } from "./packet-ring.js";
import { dumpOptions, restoreOptions, restoreReuse } from "./options.js";
import { socketNetns, pendingInput, socketId, withSocket } from "./socket-fd.js";
import { takeFd } from "./unix.js";
import { inSocketNetns } from "../namespaces/net.js";

const SOL_PACKET = 263, SOCK_PACKET = 10, ENOPROTOOPT = 92;
const PACKET = {
  ADD_MEMBERSHIP: 1, RX_RING: 5, AUXDATA: 8, VERSION: 10, RESERVE: 12, TX_RING: 13, LOSS: 14, VNET_HDR: 15,
  TIMESTAMP: 17, FANOUT: 18, TX_HAS_OFF: 19, QDISC_BYPASS: 20, ORIGDEV: 9, COPY_THRESH: 7, IGNORE_OUTGOING: 23, VNET_HDR_SZ: 24,
} as const;
/** The vnet header PACKET_VNET_HDR gives: struct virtio_net_hdr. */
const VNET_HDR_LEN = 10;
const FANOUT_CBPF = 6, FANOUT_EBPF = 7;
const NO_FANOUT = 0xffffffff;
const TYPES: Record<number, string> = { 2: "datagram", 3: "raw", 10: "SOCK_PACKET" };
const typeName = (t: number): string => TYPES[t] ?? `type ${t}`;
/** A u16 between host and network order. */
const swap16 = (v: number): number => ((v & 0xff) << 8) | ((v >> 8) & 0xff);
const hex = (v: number): string => `0x${v.toString(16).padStart(4, "0")}`;

// --- dump -----------------------------------------------------------------------

/**
 * Dump: every packet socket the kernel knows (listed on first use); the
 * file ids of those dumped, by inode; ring mappings whose socket has no id
 * yet (the memory kind runs before the fd table: the id comes with the fd).
 */
const dumped = dumpState("packet sockets", () => ({
  diag: undefined as Map<number, PacketDiag> | undefined,
  ids: new Map<number, number>(),
  mappings: [] as Array<{ vma: vma_entry; ino: number; where: string }>,
}));

function diagOf(run: DumpRun, ino: number): PacketDiag | undefined {
  const s = run.state(dumped);
  s.diag ??= inTreeNetns(run, listPacketSockets);
  return s.diag.get(ino);
}

function getPacketInt(fd: number, opt: number, what: string): number | undefined {
  const v = new Int32Array(1);
  const r = native.syscall(SYS.getsockopt, fd, SOL_PACKET, opt, v, new Uint32Array([4]));
  if (r === -ENOPROTOOPT) return undefined; // an option this kernel does not have
  check(r, `read packet option ${opt} of ${what}`);
  return v[0]!;
}

function ringEntry(r: PacketRingDiag | undefined): packet_ring | undefined {
  return r && {
    block_size: r.blockSize, block_nr: r.blockNr, frame_size: r.frameSize, frame_nr: r.frameNr,
    retire_tmo: r.retireTmo, sizeof_priv: r.sizeofPriv, features: r.features,
  };
}

/** A ring that ever carried a packet is in use: crest keeps only its geometry, not its frames or the kernel's place in it. */
function checkRings(fd: number, d: PacketDiag, what: string): void {
  if (!d.rxRing && !d.txRing) return;
  const s = ringStates(fd, d.version, d.rxRing, d.txRing, what);
  const refuse = (state: RingState | undefined, name: string, held: string) => {
    if (state?.held) throw new UnsupportedError(`${what} has ${state.held} ${held}; crest does not keep the contents of rings`);
    if (state?.used) throw new UnsupportedError(`${what} has a ${name} that has carried packets: a ring in use, where crest cannot give the kernel its place back; crest keeps only rings that never carried one`);
  };
  refuse(s.rx, "receive ring (PACKET_RX_RING)", "packet(s) in its receive ring (PACKET_RX_RING) not handed back to the kernel");
  refuse(s.tx, "send ring (PACKET_TX_RING)", "frame(s) in its send ring (PACKET_TX_RING) not sent yet or not taken back");
}

/** What crest refuses before keeping anything: a device gone, a BPF fanout, packets in a ring or in the queue, an error. */
function checkKeepable(fd: number, d: PacketDiag, what: string): void {
  if (d.ifindex === 0xffffffff) throw new UnsupportedError(`${what} was bound to a network device that has been removed since; crest cannot bind it again`);
  if (d.fanout !== undefined) {
    const type = (d.fanout >>> 16) & 0xff;
    if (type === FANOUT_CBPF || type === FANOUT_EBPF) {
      throw new UnsupportedError(`${what} is in fanout group ${d.fanout & 0xffff}, which ${type === FANOUT_CBPF ? "a classic BPF" : "an eBPF"} program steers (PACKET_FANOUT_DATA); the kernel cannot give the program back, so crest cannot restore the group`);
    }
  }
  checkRings(fd, d, what);
  const p = pendingInput(fd, what);
  if (d.rmem || p.input) {
    throw new UnsupportedError(`${what} has packets queued that it has not read${d.rmem ? ` (${d.rmem} bytes)` : ""}; nobody can queue a received packet to a socket again, so crest refuses it (criu drops them). Let the program read them and dump again`);
  }
  if (p.error) throw new UnsupportedError(`${what} has an error pending (its device went down?); crest cannot set it again`);
}

/** The options criu does not keep, each only where it differs from a new socket. */
function extraOptions(fd: number, what: string): Partial<packet_sock_entry> {
  const out: Partial<packet_sock_entry> = {};
  // Before 6.2 there is no PACKET_VNET_HDR_SZ: the size is the one PACKET_VNET_HDR gives.
  const sz = getPacketInt(fd, PACKET.VNET_HDR_SZ, what);
  if (sz !== undefined && sz !== 0 && sz !== VNET_HDR_LEN) out.vnet_hdr_sz = sz;
  if (getPacketInt(fd, PACKET.QDISC_BYPASS, what)) out.qdisc_bypass = true;
  if (getPacketInt(fd, PACKET.IGNORE_OUTGOING, what)) out.ignore_outgoing = true;
  if (getPacketInt(fd, PACKET.TX_HAS_OFF, what)) out.tx_has_off = true;
  return out;
}

function dumpPacket(f: FdFacts, run: DumpRun): number {
  const sid = socketId(f, run)!;
  const id = run.nextId("file");
  const psk = withSocket(f, (fd): packet_sock_entry => {
    let what = `${f.what} (packet ${typeName(sid.type)} socket, inode ${f.st.ino})`;
    const ns = socketNetns(fd, what, run);
    const d = diagOf(run, f.st.ino);
    if (!d) throw new Error(`${what} is not in the kernel's list of packet sockets (PACKET_DIAG)`);
    what = `${f.what} (packet ${typeName(d.type)} socket, protocol ${hex(d.num)}, inode ${f.st.ino})`;
    checkKeepable(fd, d, what);
    const spkt = d.type === SOCK_PACKET;
    return {
      id, type: d.type, protocol: swap16(d.num), flags: f.info.flags & ~O.CLOEXEC, ifindex: d.ifindex,
      fown: f.fown, opts: dumpOptions(fd, what),
      version: d.version, reserve: d.reserve, aux_data: (d.flags & PDI.AUXDATA) !== 0, orig_dev: (d.flags & PDI.ORIGDEV) !== 0,
      vnet_hdr: (d.flags & PDI.VNETHDR) !== 0, loss: (d.flags & PDI.LOSS) !== 0, timestamp: d.tstamp, copy_thresh: d.copyThresh,
      mclist: d.mclist.flatMap((m) => Array.from({ length: m.count }, () => ({ index: m.ifindex, type: m.type, addr: m.addr }))),
      // PACKET_FANOUT as the socket reads it: the diag leaves out the group's flags (rollover, defrag...).
      ...(d.fanout !== undefined ? { fanout: getPacketInt(fd, PACKET.FANOUT, what)! >>> 0 } : {}),
      ...(d.rxRing ? { rx_ring: ringEntry(d.rxRing) } : {}),
      ...(d.txRing ? { tx_ring: ringEntry(d.txRing) } : {}),
      ns_id: ns,
      ...(spkt ? {} : extraOptions(fd, what)),
    };
  });
  run.files.push({ type: fd_types.PACKETSK, id, psk });
  const s = run.state(dumped);
  s.ids.set(f.st.ino, id);
  for (const m of s.mappings) if (m.ino === f.st.ino) m.vma.shmid = BigInt(id);
  return id;
}

/** The first fd of process `pid` that holds socket `ino`. */
function fdOf(pid: number, ino: number): number | undefined {
  const fd = readdirSync(`/proc/${pid}/fd`).find((n) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${n}`) === `socket:[${ino}]`;
    } catch {
      return false;
    }
  });
  return fd === undefined ? undefined : Number(fd);
}

/**
 * A task's mapping of socket `ino` (`base`: its vma_entry as a shared file
 * mapping would be): kept, as criu keeps it (VMA_AREA_SOCKET, shmid the
 * socket's file id), when it maps the whole of rings that never carried a
 * packet, of a packet socket the task holds an fd of (the restore maps the
 * new rings from it). Anything else is refused.
 */
export function dumpSocketMapping(pid: number, run: DumpRun, m: SmapsEntry, base: Omit<vma_entry, "status">, where: string): vma_entry {
  const ino = m.inode;
  const d = diagOf(run, ino);
  if (!d || !(d.rxRing || d.txRing)) throw new UnsupportedError(`${where} maps socket ${ino}; crest cannot restore a mapped socket other than a packet socket's rings`);
  const what = `packet socket ${ino} (rings mapped at 0x${m.start.toString(16)} by process ${pid})`;
  const size = ringBytes(d.rxRing) + ringBytes(d.txRing);
  if (m.offset !== 0n || m.end - m.start !== size) throw new UnsupportedError(`${where} maps part of the rings of ${what} (${m.end - m.start} bytes at offset ${m.offset}, of ${size}); crest maps only whole rings again`);
  const fd = fdOf(pid, ino);
  if (fd === undefined) throw new UnsupportedError(`${where} maps the rings of ${what}, of which it holds no fd; crest maps rings again from an fd of the task`);
  const mine = takeFd(pid, fd, what);
  try {
    checkRings(mine, d, what);
  } finally {
    closeSync(mine);
  }
  const s = run.state(dumped);
  const vma: vma_entry = { ...base, status: VMA.REGULAR | VMA.SOCKET, shmid: BigInt(s.ids.get(ino) ?? 0) };
  if (!s.ids.has(ino)) s.mappings.push({ vma, ino, where });
  return vma;
}

// --- restore --------------------------------------------------------------------

function setPacketInt(fd: number, opt: number, value: number, what: string, name: string): void {
  check(native.syscall(SYS.setsockopt, fd, SOL_PACKET, opt, new Int32Array([value]), 4), `set ${name} of ${what}`);
}

/** struct tpacket_req3 (the kernel reads its first 16 bytes, tpacket_req, below TPACKET_V3). */
function setRing(fd: number, opt: number, r: packet_ring, what: string, name: string): void {
  const req = new Uint32Array([r.block_size, r.block_nr, r.frame_size, r.frame_nr, r.retire_tmo, r.sizeof_priv, r.features]);
  check(native.syscall(SYS.setsockopt, fd, SOL_PACKET, opt, req, req.byteLength), `set up the ${name} of ${what}`);
}

/** Everything set before the socket is bound: PACKET_VERSION and PACKET_RESERVE before the rings, which make them EBUSY. */
function setPacketOptions(fd: number, e: packet_sock_entry, what: string): void {
  if (e.version) setPacketInt(fd, PACKET.VERSION, e.version, what, "PACKET_VERSION");
  if (e.reserve) setPacketInt(fd, PACKET.RESERVE, e.reserve, what, "PACKET_RESERVE");
  if (e.tx_has_off) setPacketInt(fd, PACKET.TX_HAS_OFF, 1, what, "PACKET_TX_HAS_OFF");
  if (e.vnet_hdr_sz) setPacketInt(fd, PACKET.VNET_HDR_SZ, e.vnet_hdr_sz, what, "PACKET_VNET_HDR_SZ");
  else if (e.vnet_hdr) setPacketInt(fd, PACKET.VNET_HDR, 1, what, "PACKET_VNET_HDR");
  if (e.loss) setPacketInt(fd, PACKET.LOSS, 1, what, "PACKET_LOSS");
  if (e.timestamp) setPacketInt(fd, PACKET.TIMESTAMP, e.timestamp, what, "PACKET_TIMESTAMP");
  if (e.copy_thresh) setPacketInt(fd, PACKET.COPY_THRESH, e.copy_thresh, what, "PACKET_COPY_THRESH");
  if (e.aux_data) setPacketInt(fd, PACKET.AUXDATA, 1, what, "PACKET_AUXDATA");
  if (e.orig_dev) setPacketInt(fd, PACKET.ORIGDEV, 1, what, "PACKET_ORIGDEV");
  if (e.qdisc_bypass) setPacketInt(fd, PACKET.QDISC_BYPASS, 1, what, "PACKET_QDISC_BYPASS");
  if (e.ignore_outgoing) setPacketInt(fd, PACKET.IGNORE_OUTGOING, 1, what, "PACKET_IGNORE_OUTGOING");
  for (const m of e.mclist) {
    // struct packet_mreq with a MAX_ADDR_LEN address: ifindex, type, alen, address.
    const mreq = Buffer.alloc(40);
    mreq.writeInt32LE(m.index, 0);
    mreq.writeUInt16LE(m.type, 4);
    mreq.writeUInt16LE(m.addr.length, 6);
    m.addr.copy(mreq, 8, 0, 32);
    check(native.syscall(SYS.setsockopt, fd, SOL_PACKET, PACKET.ADD_MEMBERSHIP, mreq, mreq.length), `add membership type ${m.type} on device ${m.index} to ${what}`);
  }
  if (e.rx_ring) setRing(fd, PACKET.RX_RING, e.rx_ring, what, "receive ring");
  if (e.tx_ring) setRing(fd, PACKET.TX_RING, e.tx_ring, what, "send ring");
}

/** bind() with a struct sockaddr_ll: device and protocol (network order, as the image keeps it). */
function bindDevice(fd: number, e: packet_sock_entry, what: string): void {
  const sll = Buffer.alloc(20);
  sll.writeUInt16LE(AF_PACKET, 0);
  sll.writeUInt16LE(e.protocol & 0xffff, 2);
  sll.writeInt32LE(e.ifindex | 0, 4);
  check(native.syscall(SYS.bind, fd, sll, sll.length), `bind ${what} to device ${e.ifindex} and protocol ${hex(swap16(e.protocol))}`);
}

const SIOCGIFNAME = 0x8910, IFNAMSIZ = 16, MSG_DONTWAIT = 0x40;

/** A SOCK_PACKET socket binds by the device's name (struct sockaddr: family, 14 bytes of name). */
function bindSpkt(fd: number, e: packet_sock_entry, what: string): void {
  const ifr = Buffer.alloc(40);
  ifr.writeInt32LE(e.ifindex | 0, IFNAMSIZ);
  check(native.syscall(SYS.ioctl, fd, SIOCGIFNAME, ifr), `find the name of network device ${e.ifindex} for ${what}`);
  const addr = Buffer.alloc(16);
  addr.writeUInt16LE(AF_PACKET, 0);
  ifr.copy(addr, 2, 0, 13);
  const name = ifr.subarray(0, ifr.indexOf(0)).toString("latin1");
  check(native.syscall(SYS.bind, fd, addr, addr.length), `bind ${what} to device ${name}`);
  // Made with its protocol, it took in packets of every device until now.
  const buf = Buffer.alloc(1);
  while (native.syscall(SYS.recvfrom, fd, buf, 1, MSG_DONTWAIT, null, null) >= 0);
}

/** The task whose fd table a task uses (its own, or its parent's for CLONE_FILES). */
function tableOwner(t: RestoreTask): RestoreTask {
  while (t.sharesFiles && t.parent) t = t.parent;
  return t;
}

/**
 * Once every fd is in place: each task mapping the socket's rings maps the
 * new ones over the placeholder the memory kind left there, from its own
 * fd of the socket, with the mapping's madvise hints.
 */
function mapRings(c: OpenContext, entry: file_entry): void {
  const { run } = c;
  for (const t of run.tasks) {
    for (const v of t.mm.vmas) {
      if (!is(v, VMA.SOCKET) || Number(v.shmid) !== entry.id) continue;
      const fd = tableOwner(t).fdinfo.find((e) => e.id === entry.id)?.fd;
      const at = `0x${v.start.toString(16)}`;
      if (fd === undefined) throw run.images.invalid(IMG.mm, t.vpid, `the mapping at ${at} names packet socket file ${entry.id}, which task ${t.vpid} holds no fd of`);
      const r = t.remotes[0]!;
      const len = v.end - v.start;
      r.call(`map the rings of packet socket file ${entry.id} at ${at} in task ${t.vpid}`, SYS.mmap, v.start, len, v.prot, (v.flags & (MAP.SHARED | MAP.PRIVATE)) | MAP.FIXED, fd, 0);
      const madv = v.madv ?? 0n;
      for (let bit = 0n; madv >> bit; bit++) {
        if (madv & (1n << bit)) r.call(`advise ${at} (${bit}) in task ${t.vpid}`, SYS.madvise, v.start, len, bit);
      }
    }
  }
}

function openPacket(c: OpenContext, entry: file_entry): number {
  const { r, task } = c;
  const e = entry.psk!;
  const spkt = e.type === SOCK_PACKET;
  const what = `packet ${typeName(e.type)} socket (file ${e.id}, protocol ${hex(swap16(e.protocol))}) in task ${task.vpid}`;
  // Protocol 0 receives nothing until bound; SOCK_PACKET can get its protocol only here.
  const fd = r.call(`create ${what}`, SYS.socket, AF_PACKET, e.type, spkt ? e.protocol : 0);
  const mine = takeFd(task.pid, fd, what);
  try {
    restoreOptions(mine, e.opts, what);
    restoreReuse(mine, e.opts, what);
    if (spkt) {
      if (e.ifindex) bindSpkt(mine, e, what);
    } else {
      setPacketOptions(mine, e, what);
      if (e.ifindex || e.protocol) bindDevice(mine, e, what);
      if (e.fanout !== undefined && e.fanout !== NO_FANOUT) setPacketInt(mine, PACKET.FANOUT, e.fanout, what, `fanout group ${e.fanout & 0xffff}`);
    }
    const status = e.flags & (O.NONBLOCK | O.ASYNC);
    if (status) check(native.syscall(SYS.fcntl, mine, F.SETFL, status), `set the flags of ${what}`);
  } finally {
    closeSync(mine);
  }
  return fd;
}

export const packetSocketKind: FileKind = {
  name: "packet socket",
  type: fd_types.PACKETSK,
  claims: (f, run) => socketId(f, run)?.family === AF_PACKET,
  dump: dumpPacket,
  fown: (entry) => entry.psk?.fown,
  // Made in the socket's own network namespace, which may not be its holder's.
  open: (c, entry) => inSocketNetns(c.run, c.task, entry.psk?.ns_id, `packet socket ${entry.id} of task ${c.task.vpid}`, () => openPacket(c, entry)),
  settle: mapRings,
  finishDump(run) {
    const lost = run.state(dumped).mappings.find((m) => !m.vma.shmid);
    if (lost) throw new Error(`${lost.where}: its packet socket ${lost.ino} was not dumped with any fd table`);
  },
};

