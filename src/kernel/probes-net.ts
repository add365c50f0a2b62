// Probes of the network interfaces criu uses for sockets and network
// namespaces: sock_diag, TCP repair, socket options, rtnetlink. crest does
// not checkpoint sockets or network namespaces yet: these say what the
// kernel offers for when it does (and for zdtm, which asks criu's names).
import { closeSync, existsSync, openSync } from "node:fs";
import { CLONE, SYS } from "../sys/constants.js";
import { EINVAL, EPERM } from "../sys/errno.js";
import { inNamespaceOf } from "../sys/namespace.js";
import {
  closeFds, ENODEV, ENOPROTOOPT, ENOTTY, ERANGE, errname, missing, need, sys, SOCK_CLOEXEC, type Probe,
} from "./probe.js";
import {
  AF_NETLINK, NETLINK_NETFILTER, NETLINK_ROUTE, NETLINK_SOCK_DIAG, netlinkSocket, NLM_F, nlBatch, nlRequest, parseAttrs, rtattr,
} from "./netlink.js";
import { withStub } from "./stub.js";
import { programOnPath } from "./probe.js";

const AF_UNIX = 1, AF_INET = 2, AF_INET6 = 10, AF_PACKET = 17;
const SOCK_STREAM = 1, SOCK_DGRAM = 2;
const IPPROTO_TCP = 6, IPPROTO_UDP = 17, IPPROTO_RAW = 255;
const SOL_SOCKET = 1, SOL_TCP = 6, SOL_IPV6 = 41;
const TCP_REPAIR = 19, TCP_TIMESTAMP = 24, TCP_REPAIR_WINDOW = 29, SO_BUF_LOCK = 72, IPV6_FREEBIND = 78;
const SHUT_WR = 1;
const EOPNOTSUPP = 95;
const SIOCGSKNS = 0x894c, SIOCUNIXFILE = 0x89e0;
/** _IOW('T', 218, unsigned int) */
const TUNSETIFINDEX = 0x400454da;
const SOCK_DIAG_BY_FAMILY = 20;
const RTM_NEWLINK = 16, RTM_GETLINK = 18, RTM_SETLINK = 19, RTM_NEWNSID = 88, RTM_GETNSID = 90;
const IFLA_IFNAME = 3, IFLA_LINKINFO = 18, IFLA_NET_NS_FD = 28, IFLA_LINK_NETNSID = 37, IFLA_NEW_IFINDEX = 49;
const IFLA_INFO_KIND = 1, IFLA_INFO_DATA = 2, VETH_INFO_PEER = 1;
const NETNSA_PID = 2;
const IFINFOMSG = 16;

function socket(family: number, type: number, proto: number, what: string): number {
  return need(sys(SYS.socket, family, type | SOCK_CLOEXEC, proto), what, [97 /* EAFNOSUPPORT */, 93 /* EPROTONOSUPPORT */]);
}

function withSocket<T>(family: number, type: number, proto: number, what: string, fn: (fd: number) => T): T {
  const fd = socket(family, type, proto, what);
  try {
    return fn(fd);
  } finally {
    closeFds(fd);
  }
}

function setInt(fd: number, level: number, opt: number, v: number): number {
  return sys(SYS.setsockopt, fd, level, opt, new Int32Array([v]), 4);
}

function getOpt(fd: number, level: number, opt: number, size: number): number {
  return sys(SYS.getsockopt, fd, level, opt, Buffer.alloc(size), new Uint32Array([size]));
}

/** The request body of a sock_diag dump of every socket of a family (and protocol). */
function diagRequest(family: number, proto: number): Buffer {
  switch (family) {
    case AF_UNIX: { // unix_diag_req: all states; name, vfs, peer, icons, rqlen
      const b = Buffer.alloc(24);
      b.writeUInt8(family, 0);
      b.writeUInt32LE(0xffffffff, 4);
      b.writeUInt32LE(0x1f, 12);
      return b;
    }
    case AF_INET: case AF_INET6: { // inet_diag_req_v2: all states
      const b = Buffer.alloc(56);
      b.writeUInt8(family, 0);
      b.writeUInt8(proto, 1);
      b.writeUInt32LE(0xffffffff, 4);
      return b;
    }
    default: { // packet_diag_req / netlink_diag_req: info, mclist, ring, fanout / groups
      const b = Buffer.alloc(20);
      b.writeUInt8(family, 0);
      b.writeUInt8(proto, 1);
      b.writeUInt32LE(family === AF_NETLINK ? 4 : 0xf, 8);
      return b;
    }
  }
}

/** Runs sock_diag dumps; returns "name (ERRNO)" for each that the kernel refused. */
function sockDiag(targets: ReadonlyArray<[string, number, number]>): string[] {
  const fd = netlinkSocket(NETLINK_SOCK_DIAG, "sock_diag");
  try {
    return targets.flatMap(([name, family, proto]) => {
      const r = nlRequest(fd, SOCK_DIAG_BY_FAMILY, NLM_F.DUMP, diagRequest(family, proto));
      return r.errno ? [`${name} (${errname(r.errno)})`] : [];
    });
  } finally {
    closeFds(fd);
  }
}

const DIAG_TARGETS: ReadonlyArray<[string, number, number]> = [
  ["unix", AF_UNIX, 0], ["tcp", AF_INET, IPPROTO_TCP], ["udp", AF_INET, IPPROTO_UDP],
  ["tcp6", AF_INET6, IPPROTO_TCP], ["udp6", AF_INET6, IPPROTO_UDP], ["packet", AF_PACKET, 0], ["netlink", AF_NETLINK, 255],
];

/** A client socket connected over loopback and shut for writing. */
function halfClosed(fn: (fd: number) => void): void {
  withSocket(AF_INET, SOCK_STREAM, IPPROTO_TCP, "a TCP socket", (srv) => {
    const addr = Buffer.alloc(16);
    addr.writeUInt16LE(AF_INET, 0);
    Buffer.from([127, 0, 0, 1]).copy(addr, 4);
    need(sys(SYS.bind, srv, addr, 16), "binding a TCP socket to 127.0.0.1");
    need(sys(SYS.getsockname, srv, addr, new Uint32Array([16])), "getsockname");
    need(sys(SYS.listen, srv, 1), "listen");
    withSocket(AF_INET, SOCK_STREAM, IPPROTO_TCP, "a TCP socket", (cli) => {
      need(sys(SYS.connect, cli, addr, 16), "connecting over loopback");
      need(sys(SYS.shutdown, cli, SHUT_WR), "shutdown(SHUT_WR)");
      fn(cli);
    });
  });
}

function tun(): string | void {
  let fd: number;
  try {
    fd = openSync("/dev/net/tun", "r+");
  } catch (e) {
    // As criu's extra check: no tun at all is not a problem for a dump.
    return `/dev/net/tun cannot be opened (${(e as NodeJS.ErrnoException).code})`;
  }
  try {
    need(sys(SYS.ioctl, fd, TUNSETIFINDEX, new Int32Array([13])), "TUNSETIFINDEX", [EINVAL, ENOTTY]);
  } finally {
    closeSync(fd);
  }
}

/** A veth pair across two new network namespaces: does the kernel report the peer's namespace id? */
function linkNsid(): void {
  withStub({ flags: CLONE.NEWNET, what: "creating a network namespace" }, (a) => withStub({ flags: CLONE.NEWNET, what: "creating a network namespace" }, (b) => {
    const peerNs = openSync(`/proc/${a.pid}/ns/net`, "r");
    try {
      const fd = inNamespaceOf(b.pid, "net", () => netlinkSocket(NETLINK_ROUTE, "rtnetlink"));
      try {
        const ifi = Buffer.alloc(IFINFOMSG);
        const peer = Buffer.concat([ifi, rtattr(IFLA_IFNAME, "crest-veth1"), rtattr(IFLA_NET_NS_FD, peerNs)]);
        const info = Buffer.concat([rtattr(IFLA_INFO_KIND, "veth"), rtattr(IFLA_INFO_DATA, rtattr(VETH_INFO_PEER, peer))]);
        const made = nlRequest(fd, RTM_NEWLINK, NLM_F.CREATE | NLM_F.EXCL,
          Buffer.concat([ifi, rtattr(IFLA_IFNAME, "crest-veth0"), rtattr(IFLA_LINKINFO, info)]));
        if (made.errno) missing(`creating a veth pair across two network namespaces failed: ${errname(made.errno)}`);
        const links = nlRequest(fd, RTM_GETLINK, NLM_F.DUMP, Buffer.alloc(IFINFOMSG)).messages
          .filter((m) => m.type === RTM_NEWLINK).map((m) => parseAttrs(m.body, IFINFOMSG));
        const veth = links.find((l) => l.get(IFLA_IFNAME)?.toString().replace(/\0.*$/s, "") === "crest-veth0");
        if (!veth) missing("a veth just made is not listed by RTM_GETLINK");
        if (!veth.has(IFLA_LINK_NETNSID)) missing("links do not report their peer's network namespace (IFLA_LINK_NETNSID)");
      } finally {
        closeFds(fd);
      }
    } finally {
      closeSync(peerNs);
    }
  }));
}

// nfnetlink and nf_tables (linux/netfilter/nfnetlink.h, nf_tables.h).
const NFNL_SUBSYS_NFTABLES = 10, NFNL_MSG_BATCH_BEGIN = 0x10, NFNL_MSG_BATCH_END = 0x11;
const NFT_MSG_NEWTABLE = 0, NFT_MSG_GETTABLE = 1, NFTA_TABLE_NAME = 1, NFPROTO_INET = 1;
const nft = (msg: number) => (NFNL_SUBSYS_NFTABLES << 8) | msg;

/** struct nfgenmsg: family, version 0, res_id (big-endian). */
function nfgenmsg(family: number, resId = 0): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt8(family, 0);
  b.writeUInt16BE(resId, 2);
  return b;
}

/** nf_tables in a new network namespace: a table made in one batch, then read back. */
function nftables(): void {
  withStub({ flags: CLONE.NEWNET, what: "creating a network namespace" }, (s) => {
    const fd = inNamespaceOf(s.pid, "net", () => netlinkSocket(NETLINK_NETFILTER, "nfnetlink"));
    try {
      const name = rtattr(NFTA_TABLE_NAME, "crest-probe");
      const err = nlBatch(fd,
        { type: NFNL_MSG_BATCH_BEGIN, flags: 0, body: nfgenmsg(0, NFNL_SUBSYS_NFTABLES) },
        [{ type: nft(NFT_MSG_NEWTABLE), flags: NLM_F.CREATE | NLM_F.EXCL, body: Buffer.concat([nfgenmsg(NFPROTO_INET), name]) }],
        { type: NFNL_MSG_BATCH_END, flags: 0, body: nfgenmsg(0, NFNL_SUBSYS_NFTABLES) });
      if (err === EOPNOTSUPP || err === EINVAL) missing(`nf_tables is not supported by this kernel (${errname(err)})`);
      if (err) missing(`creating an nftables table failed: ${errname(err)}`);
      const got = nlRequest(fd, nft(NFT_MSG_GETTABLE), 0, Buffer.concat([nfgenmsg(NFPROTO_INET), name]));
      if (got.errno || !got.messages.some((m) => m.type === nft(NFT_MSG_NEWTABLE))) {
        missing(`an nftables table just made cannot be read back (${got.errno ? errname(got.errno) : "no answer"})`);
      }
    } finally {
      closeFds(fd);
    }
  });
}


export const NET_PROBES = [
  {
    id: "sock_diag",
    category: "extra",
    breaks: `sockets of those kinds cannot be identified for a dump (crest dumps unix, inet, netlink and packet sockets from what it lists)`,
    run: () => {
      const bad = sockDiag(DIAG_TARGETS);
      if (bad.length) missing(`sock_diag cannot list ${bad.join(", ")} sockets (*_DIAG kernel options or modules missing)`);
    },
  },
  {
    // crest reads raw sockets from its own copies of them: it needs no sock_diag for them, so only --feature asks.
    id: "net_diag_raw",
    category: "feature",
    breaks: "criu identifies raw sockets with it (crest does not need it)",
    run: () => {
      const bad = sockDiag([["raw", AF_INET, IPPROTO_RAW], ["raw6", AF_INET6, IPPROTO_RAW]]);
      if (bad.length) missing(`sock_diag cannot list ${bad.join(", ")} sockets (no CONFIG_INET_RAW_DIAG)`);
    },
  },
  {
    id: "tcp_repair",
    category: "extra",
    breaks: "established TCP connections cannot be checkpointed (--tcp-established)",
    run: () => withSocket(AF_INET, SOCK_STREAM, IPPROTO_TCP, "a TCP socket", (fd) => {
      need(setInt(fd, SOL_TCP, TCP_REPAIR, 1), "TCP_REPAIR", [ENOPROTOOPT]);
      need(getOpt(fd, SOL_TCP, TCP_REPAIR_WINDOW, 20), "TCP_REPAIR_WINDOW", [ENOPROTOOPT]);
      need(getOpt(fd, SOL_TCP, TCP_TIMESTAMP, 4), "TCP_TIMESTAMP", [ENOPROTOOPT]);
    }),
  },
  {
    id: "tcp_half_closed",
    category: "extra",
    breaks: "half-closed TCP connections cannot be checkpointed",
    run: () => halfClosed((fd) => need(setInt(fd, SOL_TCP, TCP_REPAIR, 1), "TCP_REPAIR on a half-closed connection", [EPERM])),
  },
  {
    id: "sockopt_buf_lock",
    category: "extra",
    breaks: "the SO_BUF_LOCK setting of sockets is not kept (dumped as unlocked)",
    run: () => withSocket(AF_INET, SOCK_STREAM, IPPROTO_TCP, "a TCP socket", (fd) => {
      need(getOpt(fd, SOL_SOCKET, SO_BUF_LOCK, 4), "SO_BUF_LOCK", [ENOPROTOOPT]);
    }),
  },
  {
    id: "ipv6_freebind",
    category: "extra",
    breaks: "IPV6_FREEBIND of IPv6 sockets cannot be kept",
    run: () => {
      if (!existsSync("/proc/sys/net/ipv6")) missing("IPv6 is disabled on this system");
      withSocket(AF_INET6, SOCK_DGRAM, IPPROTO_UDP, "a UDP6 socket", (fd) => {
        need(setInt(fd, SOL_IPV6, IPV6_FREEBIND, 1), "IPV6_FREEBIND", [ENOPROTOOPT]);
      });
    },
  },
  {
    id: "sk_ns",
    category: "extra",
    breaks: "the network namespace of a socket cannot be found: crest cannot check that a netlink or packet socket is the tree's, and refuses to dump them",
    run: () => withSocket(AF_UNIX, SOCK_DGRAM, 0, "a unix socket", (fd) => {
      closeFds(need(sys(SYS.ioctl, fd, SIOCGSKNS), "SIOCGSKNS on a socket", [ENOTTY, EINVAL]));
    }),
  },
  {
    id: "sk_unix_file",
    category: "feature",
    breaks: "bound unix sockets in other mount namespaces cannot be dumped (crest does not checkpoint mount namespaces yet)",
    run: () => withSocket(AF_UNIX, SOCK_DGRAM, 0, "a unix socket", (fd) => {
      const r = sys(SYS.ioctl, fd, SIOCUNIXFILE);
      if (r !== -2 /* ENOENT: not bound, but the ioctl exists */) closeFds(need(r, "SIOCUNIXFILE", [ENOTTY, EINVAL]));
    }),
  },
  {
    id: "tun",
    category: "extra",
    breaks: "criu needs it for tun/tap devices; crest does not checkpoint them",
    run: tun,
  },
  {
    id: "tun_ns",
    category: "feature",
    breaks: "criu needs it for tun devices in other network namespaces; crest does not checkpoint them",
    run: () => {
      let fd: number;
      try {
        fd = openSync("/dev/net/tun", "r");
      } catch (e) {
        missing(`/dev/net/tun cannot be opened (${(e as NodeJS.ErrnoException).code})`);
      }
      try {
        closeFds(need(sys(SYS.ioctl, fd, SIOCGSKNS), "SIOCGSKNS on a tun device", [ENOTTY, EINVAL]));
      } finally {
        closeSync(fd);
      }
    },
  },
  {
    id: "nsid",
    category: "feature",
    breaks: "peer network namespaces cannot be told apart",
    run: () => {
      const fd = netlinkSocket(NETLINK_ROUTE, "rtnetlink");
      try {
        const body = Buffer.concat([Buffer.alloc(4), rtattr(NETNSA_PID, process.pid)]);
        const r = nlRequest(fd, RTM_GETNSID, 0, body);
        if (r.errno) missing(`RTM_GETNSID is not supported by this kernel (${errname(r.errno)})`);
        if (!r.messages.some((m) => m.type === RTM_NEWNSID)) missing("RTM_GETNSID gave no answer");
      } finally {
        closeFds(fd);
      }
    },
  },
  {
    id: "link_nsid",
    category: "feature",
    breaks: "a veth of a tree's network namespace whose peer is outside it cannot be recognized, so it cannot be dumped",
    run: linkNsid,
  },
  {
    id: "nftables",
    category: "extra",
    breaks: "nftables rules of a tree's network namespace and nftables network locking cannot be checkpointed or used",
    run: nftables,
  },
  {
    id: "has_ipt_legacy",
    category: "feature",
    breaks: "iptables rules of the legacy backend cannot be saved or used (criu's has_ipt_legacy)",
    run: () => {
      for (const p of ["iptables-legacy-save", "iptables-legacy-restore", "ip6tables-legacy-save", "ip6tables-legacy-restore"]) {
        if (!programOnPath(p)) missing(`${p} is not installed (Debian's iptables package)`);
      }
    },
  },
  {
    id: "network_lock_nftables",
    category: "feature",
    breaks: "TCP connections cannot be locked with nftables while they are dumped (--network-lock nftables; iptables is used instead)",
    run: () => {
      nftables();
      if (!programOnPath("nft")) missing("the nft program is not installed (Debian's nftables package)");
    },
  },
  {
    id: "newifindex",
    category: "extra",
    breaks: "network devices cannot be moved to a given ifindex (crest makes a veth with its index instead)",
    run: () => {
      // criu's test: a negative IFLA_NEW_IFINDEX for a device that does not exist.
      const fd = netlinkSocket(NETLINK_ROUTE, "rtnetlink");
      try {
        const body = Buffer.concat([Buffer.alloc(IFINFOMSG), rtattr(IFLA_NEW_IFINDEX, -1), rtattr(IFLA_IFNAME, "crest-probe0")]);
        const r = nlRequest(fd, RTM_SETLINK, NLM_F.CREATE, body);
        if (r.errno === ENODEV) missing("IFLA_NEW_IFINDEX is not supported by this kernel");
        if (r.errno !== ERANGE) missing(`RTM_SETLINK with IFLA_NEW_IFINDEX answered ${r.errno ? errname(r.errno) : "success"}, not ERANGE`);
      } finally {
        closeFds(fd);
      }
    },
  },
] as const satisfies readonly Probe[];
