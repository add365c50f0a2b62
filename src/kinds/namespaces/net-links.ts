// A network namespace's links over rtnetlink, as criu reads and makes them:
// one RTM_GETLINK dump (parsed here, pure, so that captured replies can be
// tested) and RTM_NEWLINK requests to make a veth pair with one end in
// another namespace, or to set a link's MTU, address and flags.
import { closeSync } from "node:fs";
import { NETLINK_ROUTE, netlinkSocket, nlRequest, NLM_F, parseAttrs, rtattr } from "../../kernel/netlink.js";

export const RTM_NEWLINK = 16, RTM_GETLINK = 18;
const AF_UNSPEC = 0;
export const IFLA = {
  ADDRESS: 1, IFNAME: 3, MTU: 4, LINK: 5, MASTER: 10, LINKINFO: 18, NET_NS_FD: 28, LINK_NETNSID: 37,
} as const;
const IFLA_INFO = { KIND: 1, DATA: 2 } as const;
const VETH_INFO_PEER = 1;
const IFLA_MACVLAN = { MODE: 1, FLAGS: 2 } as const;
export const IFF_UP = 0x1, IFF_LOOPBACK = 0x8;
/**
 * The flags a link's owner sets (dev_change_flags): up, debug, notrailers,
 * noarp, promisc, allmulti, multicast, portsel, automedia, dynamic. The
 * others (running, lower_up, ...) are the kernel's to say.
 */
export const IFF_SETTABLE = 0x1 | 0x4 | 0x20 | 0x80 | 0x100 | 0x200 | 0x1000 | 0x2000 | 0x4000 | 0x8000;

/** One link of an RTM_NEWLINK reply. */
export interface Link {
  index: number;
  flags: number;
  name: string;
  mtu: number;
  /** The hardware address (none on a link without one). */
  address?: Buffer;
  /** IFLA_INFO_KIND: "veth", "bridge", ...; undefined for loopback and other links without one. */
  kind?: string;
  /** IFLA_LINK: the peer's index (a veth's peer). */
  link?: number;
  /** IFLA_LINK_NETNSID: the peer is in another namespace, which this one names so. */
  linkNetnsid?: number;
  master?: number;
  /** A macvlan's mode and flags (IFLA_MACVLAN_MODE, _FLAGS). */
  macvlan?: { mode: number; flags?: number };
}

/** struct ifinfomsg: family, pad, type, index, flags, change. */
export function ifinfomsg(index: number, flags = 0, change = 0): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(AF_UNSPEC, 0);
  b.writeInt32LE(index, 4);
  b.writeUInt32LE(flags >>> 0, 8);
  b.writeUInt32LE(change >>> 0, 12);
  return b;
}

/** The link an RTM_NEWLINK message body describes. */
export function parseLink(body: Buffer): Link {
  const a = parseAttrs(body, 16);
  const str = (b: Buffer | undefined) => b?.toString("utf8").replace(/\0.*$/s, "");
  const info = a.get(IFLA.LINKINFO) ? parseAttrs(a.get(IFLA.LINKINFO)!, 0) : undefined;
  const link: Link = {
    index: body.readInt32LE(4),
    flags: body.readUInt32LE(8),
    name: str(a.get(IFLA.IFNAME)) ?? "",
    mtu: a.get(IFLA.MTU)?.readUInt32LE(0) ?? 0,
  };
  const address = a.get(IFLA.ADDRESS);
  if (address?.length) link.address = Buffer.from(address);
  const kind = str(info?.get(IFLA_INFO.KIND));
  if (kind) link.kind = kind;
  if (a.get(IFLA.LINK)) link.link = a.get(IFLA.LINK)!.readUInt32LE(0);
  if (a.get(IFLA.LINK_NETNSID)) link.linkNetnsid = a.get(IFLA.LINK_NETNSID)!.readInt32LE(0);
  if (a.get(IFLA.MASTER)) link.master = a.get(IFLA.MASTER)!.readUInt32LE(0);
  const data = info?.get(IFLA_INFO.DATA);
  if (kind === "macvlan" && data) {
    const m = parseAttrs(data, 0);
    const mode = m.get(IFLA_MACVLAN.MODE), flags = m.get(IFLA_MACVLAN.FLAGS);
    if (mode) link.macvlan = { mode: mode.readUInt32LE(0), ...(flags ? { flags: flags.readUInt16LE(0) } : {}) };
  }
  return link;
}

function withRoute<T>(what: string, fn: (fd: number) => T): T {
  const fd = netlinkSocket(NETLINK_ROUTE, what);
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

/** Every link of the calling thread's network namespace. */
export function listLinks(): Link[] {
  return withRoute("listing network links", (fd) => {
    const r = nlRequest(fd, RTM_GETLINK, NLM_F.DUMP, ifinfomsg(0));
    if (r.errno) throw new Error(`cannot list the network links: errno ${r.errno}`);
    return r.messages.filter((m) => m.type === RTM_NEWLINK).map((m) => parseLink(m.body));
  });
}

function request(what: string, flags: number, body: Buffer): void {
  withRoute(what, (fd) => {
    const r = nlRequest(fd, RTM_NEWLINK, flags, body);
    if (r.errno) throw new Error(`cannot ${what}: errno ${r.errno}`);
  });
}

export interface VethRequest {
  index: number;
  name: string;
  mtu: number;
  address?: Buffer;
  /** The peer's name and the namespace it goes to (an fd of it, in crest). */
  peerName: string;
  peerNetnsFd: number;
  /** A peer in another namespace of the tree is made as it was: its index, MTU and address (one outside gets the kernel's). */
  peer?: { index: number; mtu: number; address?: Buffer };
}

/** The RTM_NEWLINK body that makes a veth pair, this end with its index, name, MTU and address; the peer in another namespace. */
export function vethBody(v: VethRequest): Buffer {
  const p = v.peer;
  const peer = Buffer.concat([
    ifinfomsg(p?.index ?? 0), rtattr(IFLA.IFNAME, v.peerName), rtattr(IFLA.NET_NS_FD, v.peerNetnsFd),
    ...(p ? [rtattr(IFLA.MTU, p.mtu)] : []), ...(p?.address ? [rtattr(IFLA.ADDRESS, p.address)] : []),
  ]);
  const info = Buffer.concat([rtattr(IFLA_INFO.KIND, Buffer.from("veth")), rtattr(IFLA_INFO.DATA, rtattr(VETH_INFO_PEER, peer))]);
  return Buffer.concat([
    ifinfomsg(v.index), rtattr(IFLA.IFNAME, v.name), rtattr(IFLA.MTU, v.mtu),
    ...(v.address ? [rtattr(IFLA.ADDRESS, v.address)] : []), rtattr(IFLA.LINKINFO, info),
  ]);
}

export interface MacvlanRequest {
  index: number;
  name: string;
  mtu: number;
  address?: Buffer;
  /** Its parent link (index) in the calling thread's namespace, and the namespace it goes to (an fd of it). */
  parent: number;
  netnsFd: number;
  mode: number;
  flags?: number;
}

/** The RTM_NEWLINK body that makes a macvlan on a parent here, with its index, name, MTU and address, in another namespace (as criu makes it). */
export function macvlanBody(m: MacvlanRequest): Buffer {
  const flags = Buffer.alloc(2);
  flags.writeUInt16LE(m.flags ?? 0);
  const data = Buffer.concat([rtattr(IFLA_MACVLAN.MODE, m.mode), ...(m.flags !== undefined ? [rtattr(IFLA_MACVLAN.FLAGS, flags)] : [])]);
  return Buffer.concat([
    ifinfomsg(m.index), rtattr(IFLA.IFNAME, m.name), rtattr(IFLA.MTU, m.mtu), ...(m.address ? [rtattr(IFLA.ADDRESS, m.address)] : []),
    rtattr(IFLA.LINK, m.parent), rtattr(IFLA.NET_NS_FD, m.netnsFd),
    rtattr(IFLA.LINKINFO, Buffer.concat([rtattr(IFLA_INFO.KIND, Buffer.from("macvlan")), rtattr(IFLA_INFO.DATA, data)])),
  ]);
}

/** Makes a macvlan from the calling thread's namespace, where its parent is, into another. */
export function addMacvlan(m: MacvlanRequest): void {
  request(`create macvlan ${m.name} (index ${m.index}) on link ${m.parent} into another namespace`, NLM_F.CREATE | NLM_F.EXCL, macvlanBody(m));
}

/** Makes a veth pair in the calling thread's namespace. */
export function addVeth(v: VethRequest): void {
  request(`create veth ${v.name} (index ${v.index}) with its peer ${v.peerName}${v.peer ? ` (index ${v.peer.index})` : ""} in another namespace`, NLM_F.CREATE | NLM_F.EXCL, vethBody(v));
}

/** Makes a bridge in the calling thread's namespace with its index, name, MTU and address (criu keeps no bridge attributes either). */
export function addBridge(b: { index: number; name: string; mtu: number; address?: Buffer }): void {
  const body = Buffer.concat([
    ifinfomsg(b.index), rtattr(IFLA.IFNAME, b.name), rtattr(IFLA.MTU, b.mtu), ...(b.address ? [rtattr(IFLA.ADDRESS, b.address)] : []),
    rtattr(IFLA.LINKINFO, rtattr(IFLA_INFO.KIND, Buffer.from("bridge"))),
  ]);
  request(`create bridge ${b.name} (index ${b.index})`, NLM_F.CREATE | NLM_F.EXCL, body);
}

/** Puts a link into its master (a bridge), by index. */
export function setMaster(index: number, name: string, master: number): void {
  request(`put link ${name} (index ${index}) into its master (index ${master})`, 0, Buffer.concat([ifinfomsg(index), rtattr(IFLA.MASTER, master)]));
}

/** Brings a link up. */
export function setUp(index: number, name: string): void {
  request(`bring link ${name} (index ${index}) up`, 0, ifinfomsg(index, IFF_UP, IFF_UP));
}

/** Sets a link's MTU, hardware address and the flags its owner sets. */
export function setLink(index: number, name: string, l: { mtu: number; flags: number; address?: Buffer }): void {
  const body = Buffer.concat([
    ifinfomsg(index, l.flags & IFF_SETTABLE, IFF_SETTABLE), rtattr(IFLA.MTU, l.mtu), ...(l.address ? [rtattr(IFLA.ADDRESS, l.address)] : []),
  ]);
  request(`set MTU ${l.mtu}, flags 0x${l.flags.toString(16)} of link ${name} (index ${index})`, 0, body);
}

const RTM_DELLINK = 17;

/** Removes a link of the calling thread's namespace by name (a veth's end removes the pair). */
export function delLink(name: string): void {
  withRoute(`remove link ${name}`, (fd) => {
    const r = nlRequest(fd, RTM_DELLINK, 0, Buffer.concat([ifinfomsg(0), rtattr(IFLA.IFNAME, name)]));
    if (r.errno) throw new Error(`cannot remove link ${name}: errno ${r.errno}`);
  });
}

const RTM_NEWNSID = 88, RTM_GETNSID = 90;
const NETNSA = { NSID: 1, FD: 3 } as const;

/**
 * The id the calling thread's namespace gives namespace `nsFd` (an fd of
 * it, in crest): the IFLA_LINK_NETNSID its links name a peer's namespace
 * by. Undefined where it gives none (NETNSA_NSID_NOT_ASSIGNED, -1).
 */
export function nsidOf(nsFd: number): number | undefined {
  return withRoute("ask for a namespace's nsid", (fd) => {
    // struct rtgenmsg: the family, padded to 4 bytes.
    const r = nlRequest(fd, RTM_GETNSID, 0, Buffer.concat([Buffer.alloc(4), rtattr(NETNSA.FD, nsFd)]));
    if (r.errno) throw new Error(`cannot ask for the nsid of a network namespace: errno ${r.errno}`);
    const m = r.messages.find((x) => x.type === RTM_NEWNSID);
    const id = m ? parseAttrs(m.body, 4).get(NETNSA.NSID)?.readInt32LE(0) : undefined;
    return id === undefined || id < 0 ? undefined : id;
  });
}
