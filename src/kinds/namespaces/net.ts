// Network namespaces: the tree's own, and nested ones (a task that
// unshared its own, and its children), each kept as criu 4.x keeps one.
// Dump, from inside each namespace (crest's thread setns'ed into it):
//   netdev-N.img   one net_device_entry per link (loopback; veth, whose peer
//                  is in another namespace of the tree, peer_nsid, or
//                  outside it; bridge), with its per-device sysctls;
//   ifaddr-N.img, route-N.img, route6-N.img, rule-N.img
//                  raw `ip addr|route|-6 route|rule save` streams, as criu
//                  runs iproute2;
//   iptables-N.img, ip6tables-N.img
//                  `iptables-save` output, from a legacy iptables only (an
//                  nft-backed iptables shows in the nftables ruleset);
//   nftables-N.img `nft list ruleset`;
//   netns-N.img    the namespace's sysctls (all/default conf4 and conf6,
//                  net/unix, ping_group_range).
// N is the namespace's id (net_ns_id in each task's ids). A namespace is
// locked as its first task is dumped, before anything is read from it
// (every packet dropped but crest's own, criu's network-lock), so the
// firewall comes back locked, and the restore lifts the lock last.
//
// Restore: the root is cloned with CLONE_NEWNET; right after it exists crest
// makes every nested namespace (criu's order: namespaces before the tasks
// that need them; in a tree with its own user namespace, which must own
// them, the root makes each with unshare and goes back to its own, as
// criu's root task does, and crest holds each by an fd), then enters each
// in turn (crest's root is capable over the tree's user namespace) and
// sets the sysctls, makes the links (bridges first; a veth with its peer in
// crest's namespace, named by --external veth[IFNAME]:OUTSIDE, or in the
// namespace of the tree it was in, by whichever end comes first; ports into
// their bridges), and runs `ip ... restore` on the images, before any task
// runs. Every other task joins its namespace (setns) as it is born, before
// its children. Each namespace is held by a lock of crest's own until the
// connections are back, then `iptables-restore` / `nft -f` put its firewall
// back (its rules would drop the packets that put a closing connection
// back). A restore that fails removes the outside end of every veth it made
// (which removes the pair); nested namespaces go with crest's fds of them.
//
// A namespace the caller owns (a container runtime's) is external:
// `--external net[INO]:KEY` on dump writes only netns-N.img with ext_key KEY
// (its contents are the caller's); on restore the root joins the namespace
// `--inherit-fd fd[N]:KEY` passes. Only the root's may be external.
import { spawnSync } from "node:child_process";
import { closeSync, fstatSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { dumpState, restoreState, UnsupportedError, type DumpRun, type DumpTask, type RestoreRun, type RestoreTask, type TaskKind } from "../context.js";
import { IMG, nd_type, type net_device_entry, type netns_entry } from "../../images/index.js";
import { CLONE, SYS } from "../../sys/constants.js";
import { inNamespaceOf } from "../../sys/namespace.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { programOnPath } from "../../kernel/probe.js";
import { ownedAtRestore } from "./owned.js";
import { addBridge, addMacvlan, addVeth, delLink, IFF_LOOPBACK, IFF_UP, listLinks, nsidOf, setLink, setMaster, setUp, type Link } from "./net-links.js";
import { DEVCONFS4, DEVCONFS6, IPV4_SYSCTLS, readSysctls, UNIX_CONF, writeSysctls } from "./net-sysctl.js";
import { dumpLock, holdNamespace, LOCK_METHOD_IDS, lockMethodOf, lockNamespace, releaseNamespace, unlockNamespace } from "../sockets/netlock.js";
import { giveFd } from "../files/inherit.js";
import { clearKernelRouteState, type ClearedRoutes } from "./route-dump.js";

const SYSCTL = "/proc/sys/net";

// --- tools ----------------------------------------------------------------------

/** A seekable stdin for a tool (`ip ... restore` reads its input with ftell, as criu hands it a temporary file). */
function seekableInput(data: Uint8Array): number {
  const dir = mkdtempSync(join(tmpdir(), "crest-net-"));
  const path = join(dir, "input");
  writeFileSync(path, data);
  try {
    return openSync(path, "r");
  } finally {
    rmSync(dir, { recursive: true });
  }
}

/** Runs a tool in the calling thread's network namespace; returns its output. */
function tool(program: string, args: string[], what: string, input?: Uint8Array): Buffer {
  const path = programOnPath(program);
  if (!path) throw new Error(`${what}: ${program} is not installed (Debian's ${program === "nft" ? "nftables" : program === "ip" ? "iproute2" : "iptables"} package)`);
  const fd = input ? seekableInput(input) : -1;
  let r;
  try {
    r = spawnSync(path, args, { stdio: [fd >= 0 ? fd : "ignore", "pipe", "pipe"], maxBuffer: 256 << 20 });
  } finally {
    if (fd >= 0) closeSync(fd);
  }
  if (r.error || r.status !== 0) {
    const why = (r.stderr?.toString() || r.error?.message || `exit ${r.status}`).trim().split("\n").slice(0, 4).join("; ");
    throw new Error(`${what}: ${program} ${args.join(" ")} failed: ${why}`);
  }
  return r.stdout;
}

/** criu's choice: iptables-save if it is the legacy one, else iptables-legacy-save, else none (nft-backed rules are in the nftables ruleset). */
function legacyIptables(v6: boolean, restore: boolean): string | undefined {
  const base = `${v6 ? "ip6tables" : "iptables"}`;
  const verb = restore ? "restore" : "save";
  for (const name of [`${base}-${verb}`, `${base}-legacy-${verb}`]) {
    const path = programOnPath(name);
    if (!path) continue;
    const r = spawnSync(path, ["-V"], { encoding: "utf8" });
    if (r.status === 0 && !/nf_tables/.test(r.stdout + r.stderr)) return name;
  }
  return undefined;
}

// --- dump -----------------------------------------------------------------------

/** The tree's namespace named by `--external net[INO]:KEY`: its key, or undefined. */
function externalKey(run: { opts: { external: string[] } }, ino: number): string | undefined {
  for (const e of run.opts.external) {
    const m = /^net\[(\d+)\]:(.+)$/.exec(e);
    if (m && Number(m[1]) === ino) return m[2];
  }
  return undefined;
}

const nsIno = (pid: number | "self"): number => statSync(`/proc/${pid}/ns/net`).ino;

/**
 * A network namespace of the tree other than crest's: the root's own, or a
 * nested one (a task that unshared it, and its children), with the first
 * task found in it.
 */
interface TreeNetns {
  id: number;
  ino: number;
  pid: number;
  root: boolean;
  what: string;
}

const treeNamespaces = dumpState("net namespaces", () => new Map<number, TreeNetns>());

function linkEntry(l: Link, nsWhat: string, peerNsid?: number): net_device_entry {
  let type: nd_type;
  if (l.flags & IFF_LOOPBACK) type = nd_type.LOOPBACK;
  else if (l.kind === "veth") {
    // Its peer in another namespace (of the tree: peerNsid; else outside it): the kernel names the peer's namespace by an nsid.
    // A pair with both ends in one namespace is not kept yet.
    if (l.linkNetnsid === undefined) {
      throw new UnsupportedError(`veth ${l.name} (index ${l.index}) of ${nsWhat} has its peer (index ${l.link ?? "?"}) in the same namespace; ` +
        "crest keeps a veth whose peer is outside the tree only (--external veth[IFNAME]:OUTSIDE on restore)");
    }
    type = nd_type.VETH;
  } else if (l.kind === "bridge") {
    // Made again with its name, index, MTU and address; its members join it by their master index (criu keeps no more of it).
    type = nd_type.BRIDGE;
  } else if (l.kind === "macvlan" && l.macvlan && l.linkNetnsid !== undefined) {
    // On a parent outside the tree: the restore names it (--external macvlan[IFNAME]:PARENT), as criu's.
    type = nd_type.MACVLAN;
  } else if (l.kind === "macvlan") {
    throw new UnsupportedError(`macvlan ${l.name} (index ${l.index}) of ${nsWhat} has its parent link in the same namespace; crest keeps a macvlan on a parent outside the tree only (--external macvlan[IFNAME]:PARENT on restore)`);
  } else {
    throw new UnsupportedError(`network link ${l.name} (index ${l.index}, ${l.kind ? `kind ${l.kind}` : "no kind"}) of ${nsWhat} is not supported: ` +
      "crest keeps loopback, veth, bridge and macvlan links only; remove it before the dump, or give the tree the caller's namespace (--external net[INO]:KEY)");
  }
  return {
    type, ifindex: l.index, mtu: l.mtu, flags: l.flags, name: l.name, conf: [],
    conf4: readSysctls(`${SYSCTL}/ipv4/conf/${l.name}`, DEVCONFS4),
    conf6: readSysctls(`${SYSCTL}/ipv6/conf/${l.name}`, DEVCONFS6),
    ...(type !== nd_type.LOOPBACK && l.address ? { address: l.address } : {}),
    peer_ifindex: l.link ?? l.index,
    ...(peerNsid !== undefined ? { peer_nsid: peerNsid } : {}),
    ...(l.master !== undefined ? { master: l.master } : {}),
    ...(type === nd_type.MACVLAN ? { macvlan: l.macvlan! } : {}),
  };
}

/**
 * The namespace of the tree each veth's peer is in (criu's peer_nsid), by
 * namespace id and ifindex: the nsid the veth's namespace gives each other
 * namespace of the tree is compared with the veth's IFLA_LINK_NETNSID, and
 * the peer must be a veth there naming it back. A peer in none of them is
 * outside the tree (--external veth[] on restore).
 */
function vethPeers(run: DumpRun, links: Map<number, Link[]>): Map<number, Map<number, number>> {
  const all = [...run.state(treeNamespaces).values()];
  const out = new Map<number, Map<number, number>>();
  for (const a of all) {
    const found = new Map<number, number>();
    out.set(a.id, found);
    const veths = links.get(a.id)!.filter((l) => l.kind === "veth" && l.linkNetnsid !== undefined);
    if (!veths.length) continue;
    for (const b of all) {
      if (b === a) continue;
      const fd = openSync(`/proc/${b.pid}/ns/net`, "r");
      let nsid: number | undefined;
      try {
        nsid = inNamespaceOf(a.pid, "net", () => nsidOf(fd));
      } finally {
        closeSync(fd);
      }
      if (nsid === undefined) continue;
      for (const l of veths) {
        if (l.linkNetnsid !== nsid) continue;
        const peer = links.get(b.id)!.find((p) => p.kind === "veth" && p.index === l.link && p.link === l.index);
        if (!peer) throw new Error(`veth ${l.name} of ${a.what} names its peer index ${l.link} in ${b.what}, which has no veth of that index naming it back`);
        found.set(l.index, b.id);
        run.log.info(`veth ${l.name} of ${a.what} has its peer ${peer.name} in ${b.what}`);
      }
    }
  }
  return out;
}

function netnsConf(): netns_entry {
  return {
    def_conf: [], all_conf: [], nsids: [],
    def_conf4: readSysctls(`${SYSCTL}/ipv4/conf/default`, DEVCONFS4), all_conf4: readSysctls(`${SYSCTL}/ipv4/conf/all`, DEVCONFS4),
    def_conf6: readSysctls(`${SYSCTL}/ipv6/conf/default`, DEVCONFS6), all_conf6: readSysctls(`${SYSCTL}/ipv6/conf/all`, DEVCONFS6),
    unix_conf: readSysctls(`${SYSCTL}/unix`, UNIX_CONF), ipv4_sysctl: readSysctls(`${SYSCTL}/ipv4`, IPV4_SYSCTLS),
  };
}

function dumpNamespace(run: DumpRun, ns: TreeNetns, peers: Map<number, number>): void {
  const { id, ino, what: nsWhat } = ns;
  const key = ns.root ? externalKey(run, ino) : undefined;
  if (key !== undefined) {
    run.log.info(`Network namespace net:[${ino}] is external (${key}): its contents are not dumped`);
    run.images.write(IMG.netns, id, [{ def_conf: [], all_conf: [], def_conf4: [], all_conf4: [], def_conf6: [], all_conf6: [], nsids: [], unix_conf: [], ipv4_sysctl: [], ext_key: key }]);
    return;
  }
  // --empty-ns net: the caller makes the namespace's contents again (criu writes nothing of them).
  if (ns.root && run.opts.net.emptyNs) {
    run.log.info(`${nsWhat} is left empty (--empty-ns net): its contents are not dumped`);
    return;
  }
  inNamespaceOf(ns.pid, "net", () => {
    const links = listLinks().map((l) => linkEntry(l, nsWhat, peers.get(l.index)));
    run.images.write(IMG.netdev, id, links);
    run.images.write(IMG.ifaddr, id, tool("ip", ["addr", "save"], `dump the addresses of ${nsWhat}`));
    run.images.write(IMG.route, id, tool("ip", ["route", "save"], `dump the routes of ${nsWhat}`));
    run.images.write(IMG.route6, id, tool("ip", ["-6", "route", "save"], `dump the IPv6 routes of ${nsWhat}`));
    // As criu: an iproute2 without `ip rule save` leaves the rules out, with a warning.
    try {
      run.images.write(IMG.rule, id, tool("ip", ["rule", "save"], `dump the rules of ${nsWhat}`));
    } catch (e) {
      run.log.warn(`${(e as Error).message}; check if "ip rule save" is supported`);
    }
    for (const v6 of [false, true]) {
      const save = legacyIptables(v6, false);
      if (save) run.images.write(v6 ? IMG.ip6tables : IMG.iptables, id, tool(save, [], `dump the ${v6 ? "ip6tables" : "iptables"} rules of ${nsWhat}`));
    }
    run.images.write(IMG.nftables, id, tool("nft", ["list", "ruleset"], `dump the nftables ruleset of ${nsWhat}`));
    run.images.write(IMG.netns, id, [netnsConf()]);
    run.log.info(`Dumped ${nsWhat}: links ${links.map((l) => l.name).join(", ")}`);
  });
}

/**
 * A namespace that dies with its tree drops its firewall (the lock) before
 * its devices while the kernel tears it down: a peer's packet arriving in
 * between finds no socket and is answered with a reset. Its links are taken
 * down first (as dumped, they come back up); up again if the dump fails.
 */
function takeLinksDown(run: DumpRun, ns: TreeNetns): void {
  inNamespaceOf(ns.pid, "net", () => {
    for (const l of listLinks()) {
      if (l.flags & IFF_LOOPBACK || !(l.flags & IFF_UP)) continue;
      setLink(l.index, l.name, { mtu: l.mtu, flags: l.flags & ~IFF_UP });
      run.undo.push(() => inNamespaceOf(ns.pid, "net", () => setLink(l.index, l.name, { mtu: l.mtu, flags: l.flags })));
      run.log.debug(`Took link ${l.name} of ${ns.what} down until the tree is gone`);
    }
  });
}

/**
 * As criu's network_lock: the action scripts (once), then each namespace's
 * own lock, undone if the tree runs on.
 */
function lockTreeNamespace(run: DumpRun, ns: TreeNetns, first: boolean): void {
  const { method, runId } = run.state(dumpLock);
  if (first) {
    run.script("network-lock");
    run.inventory.network_lock_method = LOCK_METHOD_IDS[method];
    run.inventory.dump_criu_run_id = runId;
    run.undo.push(() => run.script("network-unlock"));
  }
  inNamespaceOf(ns.pid, "net", () => lockNamespace(method, runId));
  run.log.info(`Locked ${ns.root ? "the tree's network namespace" : ns.what} with ${method}`);
  run.undo.push(() => {
    inNamespaceOf(ns.pid, "net", () => unlockNamespace(method, runId));
    run.log.info(`Unlocked ${ns.root ? "the tree's network namespace" : ns.what}`);
  });
}

/** The first task of each network namespace of the tree (not crest's): the namespace is noted and locked. */
function dumpTaskNetns(task: DumpTask, run: DumpRun): void {
  if (task.zombie || task.ids.net_ns_id === undefined) return;
  const known = run.state(treeNamespaces);
  const id = task.ids.net_ns_id;
  if (known.has(id)) return;
  const ino = nsIno(task.pid);
  if (ino === nsIno("self")) return;
  const root = task === run.root;
  const what = root ? `the network namespace net:[${ino}] of process ${task.pid}` : `the nested network namespace net:[${ino}] of process ${task.pid}`;
  if (!root && externalKey(run, ino) !== undefined) {
    throw new UnsupportedError(`${what} is named external (--external net[${ino}]:...), but it is not the tree's root's; crest joins an external network namespace for the root only`);
  }
  const ns = { id, ino, pid: task.pid, root, what };
  known.set(id, ns);
  lockTreeNamespace(run, ns, known.size === 1);
}

function dumpNamespaces(run: DumpRun): void {
  const known = run.state(treeNamespaces);
  if (!known.size) return;
  const links = new Map([...known.values()].map((ns) => [ns.id, inNamespaceOf(ns.pid, "net", listLinks)]));
  const peers = vethPeers(run, links);
  for (const ns of known.values()) dumpNamespace(run, ns, peers.get(ns.id)!);
  // Only once every namespace is read: a link taken down takes the carrier from its veth peer in another namespace of the
  // tree, and the kernel then marks the routes through the peer linkdown (within a second, as its linkwatch runs), which a
  // later `ip route save` there would read as the namespace's state.
  if (run.opts.dump.leaveRunning || run.opts.dump.leaveStopped) return;
  for (const ns of known.values()) if (!(ns.root && externalKey(run, ns.ino) !== undefined)) takeLinksDown(run, ns);
}

// --- restore --------------------------------------------------------------------

/** The value of `--external KIND[NAME]:VALUE` for link NAME, if given. */
function externalLink(run: RestoreRun, kind: "veth" | "macvlan", name: string): string | undefined {
  const prefix = `${kind}[${name}]:`;
  return run.opts.external.find((e) => e.startsWith(prefix))?.slice(prefix.length);
}

/**
 * `--external veth[IFNAME]:OUTSIDE[@BRIDGE]`: the name of the peer outside,
 * and the bridge of crest's namespace criu puts it into (moveToBridges).
 */
function vethPeer(run: RestoreRun, name: string): { name: string; bridge?: string } | undefined {
  const v = externalLink(run, "veth", name);
  if (v === undefined) return undefined;
  const at = v.indexOf("@");
  return at < 0 ? { name: v } : { name: v.slice(0, at), bridge: v.slice(at + 1) };
}

/** `--external macvlan[IFNAME]:PARENT`: the link of crest's namespace a macvlan of the tree is made on. */
const macvlanParent = (run: RestoreRun, name: string): string | undefined => externalLink(run, "macvlan", name);

/**
 * As criu once the tree is restored: each outside peer given with @BRIDGE
 * joins that bridge of crest's namespace and is brought up.
 */
function moveToBridges(run: RestoreRun): void {
  const moves = run.state(restoring).bridged;
  if (!moves.length) return;
  const links = listLinks();
  for (const { out, bridge } of moves) {
    const o = links.find((l) => l.name === out), b = links.find((l) => l.name === bridge);
    if (!o || !b) throw new Error(`--external veth[...]:${out}@${bridge}: ${!o ? `the peer ${out}` : `the bridge ${bridge}`} is not in crest's network namespace`);
    setMaster(o.index, out, b.index);
    setUp(o.index, out);
    run.log.info(`Put ${out} into bridge ${bridge} and brought it up`);
  }
}

interface NetRestore {
  /** The outside ends of the veths made, removed if the restore fails. */
  outside: string[];
  /** Nested namespaces made, by id: crest's fd of each (the tasks in it join it; crest fills it through it). */
  made: Map<number, number>;
  /** Veth ends made as the peer of one made before (namespace id:ifindex): their own entry only sets them up. */
  madeAsPeer: Set<string>;
  /** Outside peers to put into a bridge of crest's namespace at the end (--external veth[...]:OUT@BRIDGE). */
  bridged: Array<{ out: string; bridge: string }>;
  done: boolean;
}

const restoring = restoreState("net namespace", (run): NetRestore => {
  const s: NetRestore = { outside: [], made: new Map(), madeAsPeer: new Set(), bridged: [], done: false };
  run.cleanup.push(() => {
    for (const fd of s.made.values()) closeSync(fd);
    if (s.done) return;
    for (const name of s.outside) {
      try {
        delLink(name);
        run.log.info(`Removed veth ${name}, made for the failed restore`);
      } catch (e) {
        run.log.error(`could not remove veth ${name}: ${(e as Error).message}`);
      }
    }
  });
  return s;
});

/** Runs fn in the network namespace crest holds `fd` of (setns moves only crest's calling thread). */
function inNetnsFd<T>(fd: number, what: string, fn: () => T): T {
  const mine = openSync("/proc/thread-self/ns/net", "r");
  try {
    check(native.syscall(SYS.setns, fd, CLONE.NEWNET), `enter ${what}`);
    try {
      return fn();
    } finally {
      check(native.syscall(SYS.setns, mine, CLONE.NEWNET), "return to crest's own network namespace");
    }
  } finally {
    closeSync(mine);
  }
}

function netnsEntry(run: RestoreRun, id = run.tasks[0]!.ids.net_ns_id!): netns_entry | undefined {
  return run.images.exists(IMG.netns, id) ? run.images.read(IMG.netns, id)[0] : undefined;
}

/** The caller's fd for an external namespace (--inherit-fd fd[N]:KEY). */
function inheritedNs(run: RestoreRun, key: string): number {
  const given = run.opts.inheritFd.find((i) => i.key === key);
  if (!given) throw new Error(`the tree's network namespace is external (${key}): restore with --inherit-fd fd[N]:${key} giving an fd of the namespace to join`);
  return given.fd;
}

/**
 * The network namespaces the restore makes for tasks other than the root
 * (ids other than the root's and crest's own), each with the first task in
 * it, in tree order.
 */
function nestedNamespaces(run: RestoreRun): Map<number, RestoreTask> {
  const out = new Map<number, RestoreTask>();
  const crest = run.inventory.root_ids?.net_ns_id, root = run.tasks[0]!.ids.net_ns_id;
  for (const t of run.tasks.slice(1)) {
    const id = t.ids.net_ns_id;
    if (id === undefined || id === crest || id === root || out.has(id)) continue;
    out.set(id, t);
  }
  return out;
}

/** The namespaces of the tree the restore fills from images: the root's own (unless external or --empty-ns), and the nested ones. */
function filledNamespaces(run: RestoreRun): Set<number> {
  const ids = new Set(nestedNamespaces(run).keys());
  if (ownedAtRestore(run, "net") && !run.opts.net.emptyNs && netnsEntry(run)?.ext_key === undefined) ids.add(run.tasks[0]!.ids.net_ns_id!);
  return ids;
}

/** Checks the images of namespace `id` and the names its veths' peers get, before anything is made (`here`: crest's links, name to kind). */
function checkNamespaceImages(run: RestoreRun, id: number, nsWhat: string, here: Map<string, string | undefined>, filled: Set<number>): void {
  if (!netnsEntry(run, id) || !run.images.exists(IMG.netdev, id)) throw new Error(`${nsWhat} is to be restored but netns-${id}.img or netdev-${id}.img is missing`);
  if (netnsEntry(run, id)!.ext_key !== undefined && id !== run.tasks[0]!.ids.net_ns_id) throw new Error(`${nsWhat}: netns-${id}.img names an external namespace; crest joins an external network namespace for the root only`);
  for (const l of run.images.read(IMG.netdev, id)) {
    if (l.type === nd_type.LOOPBACK) continue;
    if (l.type === nd_type.BRIDGE) continue;
    if (l.type === nd_type.MACVLAN) {
      const parent = macvlanParent(run, l.name);
      if (parent === undefined) throw new Error(`macvlan ${l.name} of ${nsWhat} has its parent link outside: restore with --external macvlan[${l.name}]:PARENT (a link of crest's namespace)`);
      if (!here.has(parent)) throw new Error(`--external macvlan[${l.name}]:${parent}: crest's network namespace has no link ${parent}`);
      if (!l.macvlan) throw run.images.invalid(IMG.netdev, id, `macvlan ${l.name} has no macvlan entry`);
      continue;
    }
    if (l.type !== nd_type.VETH) throw new Error(`link ${l.name} (index ${l.ifindex}) of ${nsWhat} is of type ${l.type}, which crest cannot restore (loopback, veth, bridge and macvlan only)`);
    if (l.peer_nsid !== undefined && filled.has(l.peer_nsid)) {
      const peer = run.images.exists(IMG.netdev, l.peer_nsid) ? run.images.read(IMG.netdev, l.peer_nsid).find((p) => p.ifindex === l.peer_ifindex && p.type === nd_type.VETH) : undefined;
      if (!peer) throw run.images.invalid(IMG.netdev, l.peer_nsid, `veth ${l.name} of ${nsWhat} has its peer (index ${l.peer_ifindex}) there, which has no veth of that index`);
      continue;
    }
    const peer = vethPeer(run, l.name);
    if (!peer) throw new Error(`veth ${l.name} of ${nsWhat} has its peer outside: restore with --external veth[${l.name}]:NAME (the name of the peer to make in crest's namespace)`);
    if (here.has(peer.name)) throw new Error(`the peer of veth ${l.name} is to be named ${peer.name} (--external veth[${l.name}]:${peer.name}), but crest's network namespace has a link of that name already: remove it, or choose another name`);
    if (peer.bridge !== undefined && here.get(peer.bridge) !== "bridge") {
      throw new Error(`--external veth[${l.name}]:${peer.name}@${peer.bridge}: crest's network namespace has no bridge ${peer.bridge}${here.has(peer.bridge) ? ` (a link of kind ${here.get(peer.bridge) ?? "none"} has that name)` : ""}`);
    }
    here.set(peer.name, "veth");
  }
}

function planNet(run: RestoreRun): number {
  const nested = nestedNamespaces(run);
  const filled = filledNamespaces(run);
  const here = new Map(listLinks().map((l) => [l.name, l.kind]));
  let flags = 0;
  if (ownedAtRestore(run, "net")) {
    // An external namespace is joined even with --empty-ns net, as criu does: runc asks both for
    // podman's container (empty_ns always, and the netns podman set up again passed as extRootNetNS).
    const ns = netnsEntry(run);
    if (ns?.ext_key !== undefined) inheritedNs(run, ns.ext_key);
    else if (run.opts.net.emptyNs) flags = CLONE.NEWNET;
    else {
      checkNamespaceImages(run, run.tasks[0]!.ids.net_ns_id!, "the tree's network namespace", here, filled);
      flags = CLONE.NEWNET;
    }
  }
  for (const [id, t] of nested) checkNamespaceImages(run, id, `the nested network namespace of process ${t.vpid}`, here, filled);
  if (flags || nested.size) {
    for (const p of ["ip", "nft"]) if (!programOnPath(p)) throw new Error(`restoring the tree's network namespace needs ${p} (Debian's ${p === "ip" ? "iproute2" : "nftables"} package)`);
    run.state(restoring);
  }
  return flags;
}

/** Runs `ip CMD restore` on an image, if it has anything. */
function ipRestore(run: RestoreRun, kind: typeof IMG.ifaddr, id: number, args: string[], what: string): void {
  if (!run.images.exists(kind, id)) return;
  const data = run.images.read(kind, id);
  if (data.length) tool("ip", [...args, "restore"], what, data);
}

/**
 * Runs `ip route restore` on route-N.img or route6-N.img with the kernel's
 * linkdown and dead state cleared (route-dump.ts): a route whose link had no
 * carrier at dump is made again, and the kernel marks it so again if its
 * link still has none. The image itself is left as the dump wrote it.
 */
function restoreRoutes(run: RestoreRun, kind: typeof IMG.route, id: number, what: string): void {
  if (!run.images.exists(kind, id)) return;
  const saved = run.images.read(kind, id);
  if (!saved.length) return;
  let routes: ClearedRoutes;
  try {
    routes = clearKernelRouteState(saved);
  } catch (e) {
    throw run.images.invalid(kind, id, (e as Error).message);
  }
  if (routes.cleared) {
    run.log.info(`${basename(run.images.name(kind, id))}: ${routes.cleared} of ${routes.routes} routes had the kernel's linkdown or dead state ` +
      "(their link had no carrier, or was down, at dump), cleared for ip route restore");
  }
  tool("ip", ["route", "restore"], what, routes.data);
}

/**
 * Whether two `ip ... save` streams (a 4-byte magic, then netlink
 * messages) hold the same messages, whatever the sequence numbers and port
 * ids of the sockets that read them.
 */
function sameDump(a: Buffer, b: Buffer): boolean {
  if (a.length !== b.length) return false;
  const norm = (x: Buffer) => {
    const c = Buffer.from(x);
    for (let off = 4; off + 16 <= c.length;) {
      const len = c.readUInt32LE(off);
      if (len < 16) break;
      c.fill(0, off + 8, off + 16); // nlmsg_seq, nlmsg_pid
      off += (len + 3) & ~3;
    }
    return c;
  };
  return norm(a).equals(norm(b));
}

/** crest's fd of namespace `id` of the tree (the root's, or a nested one made), for `fn`; undefined if it is not made yet. */
function withNamespaceFd<T>(run: RestoreRun, id: number, fn: (fd: number | undefined) => T): T {
  const made = run.state(restoring).made.get(id);
  if (made !== undefined || id !== run.tasks[0]!.ids.net_ns_id) return fn(made);
  const fd = openSync(`/proc/${run.tasks[0]!.pid}/ns/net`, "r");
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Fills namespace `id` (new, empty; crest's fd `nsFd`) from its images:
 * sysctls, links, addresses, routes, rules; held until its firewall is
 * back. A veth whose peer is in another namespace of the tree is made with
 * its peer there as both were, by whichever of the two is filled first.
 */
function fillNamespace(run: RestoreRun, nsFd: number, id: number, nsWhat: string): void {
  const ns = netnsEntry(run, id)!;
  const s = run.state(restoring);
  const filled = filledNamespaces(run);
  const mine = openSync("/proc/thread-self/ns/net", "r");
  try {
    // Macvlans from here, where their parents are, into the namespace (criu's order too: before its addresses and routes).
    const here = listLinks();
    for (const l of run.images.read(IMG.netdev, id)) {
      if (l.type !== nd_type.MACVLAN) continue;
      const parent = here.find((x) => x.name === macvlanParent(run, l.name))!;
      addMacvlan({ index: l.ifindex, name: l.name, mtu: l.mtu, ...(l.address ? { address: l.address } : {}), parent: parent.index, netnsFd: nsFd, mode: l.macvlan!.mode, ...(l.macvlan!.flags !== undefined ? { flags: l.macvlan!.flags } : {}) });
      run.log.info(`Made macvlan ${l.name} of ${nsWhat} on ${parent.name}`);
    }
    inNetnsFd(nsFd, nsWhat, () => {
      // The namespace's own settings first: links made after take "default".
      writeSysctls(`${SYSCTL}/ipv4/conf/all`, DEVCONFS4, ns.all_conf4, "net.ipv4.conf.all");
      writeSysctls(`${SYSCTL}/ipv4/conf/default`, DEVCONFS4, ns.def_conf4, "net.ipv4.conf.default");
      writeSysctls(`${SYSCTL}/ipv6/conf/all`, DEVCONFS6, ns.all_conf6, "net.ipv6.conf.all");
      writeSysctls(`${SYSCTL}/ipv6/conf/default`, DEVCONFS6, ns.def_conf6, "net.ipv6.conf.default");
      writeSysctls(`${SYSCTL}/unix`, UNIX_CONF, ns.unix_conf, "net.unix");
      writeSysctls(`${SYSCTL}/ipv4`, IPV4_SYSCTLS, ns.ipv4_sysctl, "net.ipv4");
      const links = run.images.read(IMG.netdev, id);
      // Bridges first, so their members can join them once made.
      for (const l of links) if (l.type === nd_type.BRIDGE) addBridge({ index: l.ifindex, name: l.name, mtu: l.mtu, ...(l.address ? { address: l.address } : {}) });
      for (const l of links) {
        if (l.type === nd_type.VETH && l.peer_nsid !== undefined && filled.has(l.peer_nsid)) {
          if (!s.madeAsPeer.has(`${id}:${l.ifindex}`)) {
            const p = run.images.read(IMG.netdev, l.peer_nsid).find((x) => x.ifindex === l.peer_ifindex && x.type === nd_type.VETH)!;
            withNamespaceFd(run, l.peer_nsid, (peerFd) => {
              if (peerFd === undefined) throw new Error(`veth ${l.name} of ${nsWhat}: the namespace ${l.peer_nsid} of its peer ${p.name} is not made yet`);
              addVeth({
                index: l.ifindex, name: l.name, mtu: l.mtu, ...(l.address ? { address: l.address } : {}),
                peerName: p.name, peerNetnsFd: peerFd, peer: { index: p.ifindex, mtu: p.mtu, ...(p.address ? { address: p.address } : {}) },
              });
            });
            s.madeAsPeer.add(`${l.peer_nsid}:${p.ifindex}`);
            run.log.info(`Made veth ${l.name} of ${nsWhat} with its peer ${p.name} in network namespace ${l.peer_nsid}`);
          }
        } else if (l.type === nd_type.VETH) {
          const peer = vethPeer(run, l.name)!;
          addVeth({ index: l.ifindex, name: l.name, mtu: l.mtu, ...(l.address ? { address: l.address } : {}), peerName: peer.name, peerNetnsFd: mine });
          s.outside.push(peer.name);
          if (peer.bridge !== undefined) s.bridged.push({ out: peer.name, bridge: peer.bridge });
        }
        const index = l.type === nd_type.LOOPBACK ? (listLinks().find((x) => x.name === l.name)?.index ?? 1) : l.ifindex;
        // Up first, as criu: bringing a link up resets its IPv6 mtu to the link's.
        setLink(index, l.name, { mtu: l.mtu, flags: l.flags });
        writeSysctls(`${SYSCTL}/ipv4/conf/${l.name}`, DEVCONFS4, l.conf4, `net.ipv4.conf.${l.name}`);
        writeSysctls(`${SYSCTL}/ipv6/conf/${l.name}`, DEVCONFS6, l.conf6, `net.ipv6.conf.${l.name}`);
      }
      for (const l of links) if (l.master !== undefined) setMaster(l.ifindex, l.name, l.master);
      ipRestore(run, IMG.ifaddr, id, ["addr"], `restore the addresses of ${nsWhat}`);
      restoreRoutes(run, IMG.route, id, `restore the routes of ${nsWhat}`);
      restoreRoutes(run, IMG.route6, id, `restore the IPv6 routes of ${nsWhat}`);
      const rules = run.images.exists(IMG.rule, id) ? run.images.read(IMG.rule, id) : Buffer.alloc(0);
      // A namespace with its default rules keeps them untouched: rules changed at all make the kernel stop merging the local
      // and main tables, and a local prefix (an address on lo) would then win over a longer route of the main table.
      if (rules.length && !sameDump(rules, tool("ip", ["rule", "save"], `read the default rules of ${nsWhat}`))) {
        // As criu: the default rules go first, the image has them all.
        tool("ip", ["rule", "flush"], `flush the rules of ${nsWhat}`);
        tool("ip", ["rule", "delete", "table", "local"], `flush the rules of ${nsWhat}`);
        ipRestore(run, IMG.rule, id, ["rule"], `restore the rules of ${nsWhat}`);
      }
      // Its firewall comes back after its connections (restoreFirewall).
      holdNamespace();
    });
  } finally {
    closeSync(mine);
  }
  run.log.info(`Restored ${nsWhat}: ${run.images.read(IMG.netdev, id).map((l) => l.name).join(", ")}`);
}

/** The namespace's iptables and nftables rules (with the dump's lock), once its connections are back. */
function restoreFirewall(run: RestoreRun, nsFd: number, id: number, nsWhat: string): void {
  inNetnsFd(nsFd, nsWhat, () => {
    for (const v6 of [false, true]) {
      const kind = v6 ? IMG.ip6tables : IMG.iptables;
      if (!run.images.exists(kind, id)) continue;
      const rules = run.images.read(kind, id);
      if (!rules.length) continue;
      const restore = legacyIptables(v6, true);
      if (!restore) throw new Error(`${v6 ? "ip6tables" : "iptables"}-${id}.img holds legacy iptables rules, and this machine has no legacy ${v6 ? "ip6tables" : "iptables"}-restore`);
      tool(restore, [], `restore the ${v6 ? "ip6tables" : "iptables"} rules of ${nsWhat}`, rules);
    }
    if (run.images.exists(IMG.nftables, id)) {
      const ruleset = run.images.read(IMG.nftables, id);
      if (ruleset.toString().trim()) tool("nft", ["-f", "-"], `restore the nftables ruleset of ${nsWhat}`, ruleset);
    }
    releaseNamespace();
  });
}

/**
 * --empty-ns net: the new namespace stays empty for the caller to set up,
 * but its connections stay locked until the resume, as criu puts the lock
 * back by hand (no firewall image brings it).
 */
function relock(run: RestoreRun, task: RestoreTask): void {
  const inv = run.inventory;
  if (inv.dump_criu_run_id === undefined) return;
  const method = lockMethodOf(inv.network_lock_method);
  inNamespaceOf(task.pid, "net", () => lockNamespace(method, inv.dump_criu_run_id!));
  run.log.info(`The tree's network namespace is left empty (--empty-ns net), locked with ${method} until the resume`);
}

/** Moves a task into the namespace crest holds `fd` of. */
function enterNamespace(task: RestoreTask, fd: number, what: string): void {
  const r = task.remotes[0]!;
  r.needScratch();
  const theirs = giveFd({ r, task }, fd, what);
  r.call(`make process ${task.vpid} join ${what}`, SYS.setns, theirs, CLONE.NEWNET);
  r.call(`close the fd of ${what} in process ${task.vpid}`, SYS.close, theirs);
}

/**
 * Runs fn (a socket kind's open, which makes the socket in `task`) with the
 * task in network namespace `nsId`, the socket's, when it is not the task's
 * own: a socket made before its holder entered another namespace comes back
 * in the one it was made in, as criu's set_netns does. The task goes back to
 * its own namespace right after; what fn queued in it runs before that.
 */
export function inSocketNetns<T>(run: RestoreRun, task: RestoreTask, nsId: number | undefined, what: string, fn: () => T): T {
  if (nsId === undefined || nsId === task.ids.net_ns_id) return fn();
  const holder = run.tasks.find((t) => t.ids.net_ns_id === nsId);
  const path = holder ? `/proc/${holder.pid}/ns/net` : nsId === run.inventory.root_ids?.net_ns_id ? "/proc/thread-self/ns/net" : undefined;
  if (!path) throw run.images.invalid(IMG.files, undefined, `${what} belongs to network namespace ${nsId}, which no task of the images is in`);
  const there = openSync(path, "r");
  try {
    const home = openSync(`/proc/${task.pid}/ns/net`, "r");
    try {
      enterNamespace(task, there, `network namespace ${nsId} to make ${what}`);
      try {
        return fn();
      } finally {
        enterNamespace(task, home, `its own network namespace ${task.ids.net_ns_id} again`);
      }
    } finally {
      closeSync(home);
    }
  } finally {
    closeSync(there);
  }
}

/** The root leaves the namespace it was born in for the caller's (an fd crest holds). */
function joinExternal(run: RestoreRun, task: RestoreTask, key: string): void {
  enterNamespace(task, inheritedNs(run, key), `the network namespace ${key} (--inherit-fd)`);
  run.log.info(`The root joined the external network namespace ${key}`);
}

/** A new, empty network namespace, made by crest's own thread and held by an fd. */
function newNamespace(): number {
  const mine = openSync("/proc/thread-self/ns/net", "r");
  try {
    check(native.syscall(SYS.unshare, CLONE.NEWNET), "make a network namespace");
    try {
      return openSync("/proc/thread-self/ns/net", "r");
    } finally {
      check(native.syscall(SYS.setns, mine, CLONE.NEWNET), "return to crest's own network namespace");
    }
  } finally {
    closeSync(mine);
  }
}

/**
 * New, empty network namespaces for a tree with a user namespace of its
 * own, which must own them: made by the root (in it, with its capabilities
 * there; criu makes them from a child of its root task), which unshares one
 * and goes back to its own each time; crest holds each by an fd of it.
 */
function newNamespacesByRoot(run: RestoreRun, root: RestoreTask, count: number): number[] {
  const r = root.remotes[0]!;
  r.needScratch();
  const mine = openSync(`/proc/${root.pid}/ns/net`, "r");
  const out: number[] = [];
  try {
    // The root's way back, given to it before it leaves (the fd passing makes a socket where the root is).
    const back = giveFd({ r, task: root }, mine, "its own network namespace");
    try {
      for (let i = 0; i < count; i++) {
        r.call(`make a network namespace of the tree's user namespace in process ${root.vpid} (unshare)`, SYS.unshare, CLONE.NEWNET);
        try {
          out.push(openSync(`/proc/${root.pid}/ns/net`, "r"));
        } finally {
          r.call(`bring process ${root.vpid} back to its own network namespace`, SYS.setns, back, CLONE.NEWNET);
        }
      }
    } finally {
      r.call(`close the fd of its own network namespace in process ${root.vpid}`, SYS.close, back);
    }
  } catch (e) {
    for (const fd of out) closeSync(fd);
    throw e;
  } finally {
    closeSync(mine);
  }
  run.log.info(`Process ${root.vpid} made ${count} network namespace(s) of the tree's user namespace for crest`);
  return out;
}

/**
 * The root is born: every nested namespace is made first (criu's order:
 * namespaces before the tasks that need them, so a veth pair between two
 * of them is made whole), then crest fills the root's and them.
 */
function bornRoot(run: RestoreRun, task: RestoreTask): void {
  const nested = nestedNamespaces(run);
  const s = nested.size ? run.state(restoring) : undefined;
  if (s && ownedAtRestore(run, "user")) {
    const fds = newNamespacesByRoot(run, task, nested.size);
    [...nested.keys()].forEach((id, i) => s.made.set(id, fds[i]!));
  } else if (s) for (const id of nested.keys()) s.made.set(id, newNamespace());
  if (ownedAtRestore(run, "net")) {
    const ns = netnsEntry(run);
    if (ns?.ext_key !== undefined) joinExternal(run, task, ns.ext_key);
    if (run.opts.net.emptyNs) relock(run, task);
    else if (ns?.ext_key === undefined) withNamespaceFd(run, task.ids.net_ns_id!, (fd) => fillNamespace(run, fd!, task.ids.net_ns_id!, "the tree's network namespace"));
  }
  if (s) for (const [id, t] of nested) fillNamespace(run, s.made.get(id)!, id, `the nested network namespace ${id} of process ${t.vpid}`);
}

/**
 * A task other than the root, right after it is born (in its parent's
 * namespace, before its children): into the namespace its ids name,
 * which the root's birth made already (bornRoot).
 */
function placeTask(run: RestoreRun, task: RestoreTask): void {
  const id = task.ids.net_ns_id;
  if (id === undefined) return;
  const s = nestedNamespaces(run).size ? run.state(restoring) : undefined;
  const crest = run.inventory.root_ids?.net_ns_id, root = run.tasks[0]!;
  const now = nsIno(task.pid);
  const join = (fd: number) => {
    if (fstatSync(fd).ino === now) return;
    enterNamespace(task, fd, `network namespace ${id}`);
    run.log.info(`Process ${task.vpid} joined network namespace ${id}`);
  };
  if (s?.made.has(id)) return join(s.made.get(id)!);
  if (id === root.ids.net_ns_id || id === crest) {
    // The root's where it is the root's (crest's, or one --join-ns named).
    const fd = openSync(id === root.ids.net_ns_id ? `/proc/${root.pid}/ns/net` : "/proc/thread-self/ns/net", "r");
    try {
      return join(fd);
    } finally {
      closeSync(fd);
    }
  }
  throw new Error(`process ${task.vpid} is in network namespace ${id}, which the restore did not plan to make`);
}

function unlockIn(run: RestoreRun, nsFd: number, what: string): void {
  const inv = run.inventory;
  const method = lockMethodOf(inv.network_lock_method);
  // A lock that is not there (lifted by hand, or the caller's namespace unlocked by it) is no reason to fail, as with criu.
  try {
    inNetnsFd(nsFd, what, () => unlockNamespace(method, inv.dump_criu_run_id!));
    run.log.info(`Unlocked ${what} (${method})`);
  } catch (e) {
    run.log.warn((e as Error).message);
  }
}

export const netNamespaceKind: TaskKind = {
  name: "net namespace",
  // Each namespace is locked as its first task is dumped (the root first), before any task's sockets are put in repair mode.
  dump: dumpTaskNetns,
  finishDump: dumpNamespaces,
  plan: planNet,
  born(task, run) {
    if (task === run.tasks[0]) bornRoot(run, task);
    else placeTask(run, task);
  },
  finishRestore(run) {
    moveToBridges(run);
    const ns = netnsEntry(run);
    const root = run.tasks[0]!;
    if (ownedAtRestore(run, "net") && !run.opts.net.emptyNs && ns?.ext_key === undefined) {
      withNamespaceFd(run, root.ids.net_ns_id!, (fd) => restoreFirewall(run, fd!, root.ids.net_ns_id!, "the tree's network namespace"));
    }
    if (!nestedNamespaces(run).size) return;
    for (const [id, fd] of run.state(restoring).made) restoreFirewall(run, fd, id, `the nested network namespace ${id}`);
  },
  // Before the connections leave repair mode (the inet kind's resume): the lock the firewall came back with is lifted.
  resume(run) {
    const owned = ownedAtRestore(run, "net"), nested = nestedNamespaces(run).size > 0;
    if (!owned && !nested) return;
    const s = run.state(restoring);
    s.done = true;
    if (run.inventory.dump_criu_run_id === undefined) return;
    run.script("network-unlock");
    if (owned) withNamespaceFd(run, run.tasks[0]!.ids.net_ns_id!, (fd) => unlockIn(run, fd!, "the tree's network namespace"));
    for (const [id, fd] of s.made) unlockIn(run, fd, `the nested network namespace ${id}`);
  },
};
