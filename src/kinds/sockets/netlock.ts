// The network lock: from the moment established TCP connections are put in
// repair mode on dump until they are restored, their packets are dropped,
// so that a peer neither gets a reset nor sees the stream move. As criu does
// in a tree that shares crest's network namespace: with nftables, a table of
// its own (`inet CRIU-<run id>`) whose input and output chains drop the
// packets of a set of connections (4-tuples, both directions), and accept
// those crest itself sends with the mark SOCCR_MARK; with iptables, two DROP
// rules per connection in the filter table's INPUT and OUTPUT chains. The
// same table name and rules as criu, so that either tool unlocks what the
// other locked. The lock outlives the dump (the tree is dead, the
// connections are only in the images) and is removed by the restore once the
// connections are back.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dumpState } from "../context.js";
import { kernelHas } from "../../kernel/facts.js";
import { programOnPath } from "../../kernel/probe.js";
import type { NetworkLockMethod } from "../../options.js";
import { AF_INET, AF_INET6 } from "./inet-diag.js";

/** The mark crest's own packets carry (a FIN it sends to put a closing connection back), which the lock lets through. */
export const SOCCR_MARK = 0xc114;

/** One end of a connection as the images keep it: addresses as 4 words in network order. */
export interface Connection {
  family: number;
  src: readonly number[];
  srcPort: number;
  dst: readonly number[];
  dstPort: number;
}

/** inventory.network_lock_method, as criu numbers them. */
export const LOCK_METHOD_IDS: Record<NetworkLockMethod, number> = { iptables: 0, nftables: 1, skip: 2 };
export const lockMethodOf = (id: number | undefined): NetworkLockMethod =>
  (Object.entries(LOCK_METHOD_IDS).find(([, v]) => v === id)?.[0] as NetworkLockMethod | undefined) ?? "iptables";

/** criu's table: "inet CRIU-<run id>", cut to the 31 characters of criu's buffer. */
export function nftTable(runId: string): string {
  return `inet CRIU-${runId}`.slice(0, 31);
}

/** The method a dump uses: the one asked for, else nftables where the kernel and nft allow it, else iptables. */
export function chooseLockMethod(asked: NetworkLockMethod | undefined): NetworkLockMethod {
  if (asked) return asked;
  return kernelHas("network_lock_nftables") ? "nftables" : "iptables";
}

/**
 * The dump's lock: its method and criu's run id (the nftables table's name),
 * one per dump, shared by the connections' lock and a namespace's.
 */
export const dumpLock = dumpState("network lock", (run) => ({
  method: chooseLockMethod(run.opts.net.lock),
  runId: readFileSync("/proc/sys/kernel/random/uuid", "utf8").trim(),
}));

/** An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is locked as the IPv4 connection it is, as criu does. */
function unmapped(c: Connection): Connection {
  if (c.family !== AF_INET6 || c.dst[0] !== 0 || c.dst[1] !== 0 || c.dst[2] !== 0xffff0000) return c;
  return { family: AF_INET, src: [c.src[3]!], srcPort: c.srcPort, dst: [c.dst[3]!], dstPort: c.dstPort };
}

/** The text form of an address kept as words in network order. */
export function addressText(family: number, words: readonly number[]): string {
  const b = Buffer.alloc(16);
  words.slice(0, 4).forEach((w, i) => b.writeUInt32LE(w >>> 0, i * 4));
  if (family === AF_INET) return [...b.subarray(0, 4)].join(".");
  const groups = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2).toString(16));
  // The longest run of zero groups (two or more) becomes "::".
  let best = { at: -1, len: 1 };
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j === i ? i + 1 : j;
  }
  if (best.at < 0) return groups.join(":");
  return `${groups.slice(0, best.at).join(":")}::${groups.slice(best.at + best.len).join(":")}`;
}

interface Tuple {
  v6: boolean;
  from: string;
  fromPort: number;
  to: string;
  toPort: number;
  /** Coming from the peer (the INPUT chain's), else going to it (OUTPUT's). */
  inbound: boolean;
}

/** Both directions of each connection, each once (a loopback pair dumped from both ends names each direction twice). */
function tuples(conns: readonly Connection[], byChain: boolean): Tuple[] {
  const seen = new Map<string, Tuple>();
  for (const raw of conns) {
    const c = unmapped(raw);
    const src = addressText(c.family, c.src), dst = addressText(c.family, c.dst);
    const v6 = c.family === AF_INET6;
    for (const t of [
      { v6, from: dst, fromPort: c.dstPort, to: src, toPort: c.srcPort, inbound: true },
      { v6, from: src, fromPort: c.srcPort, to: dst, toPort: c.dstPort, inbound: false },
    ]) {
      seen.set(`${v6}|${t.from}|${t.fromPort}|${t.to}|${t.toPort}${byChain ? `|${t.inbound}` : ""}`, t);
    }
  }
  return [...seen.values()];
}

function run(program: string, args: string[], input: string, what: string): void {
  const path = programOnPath(program);
  if (!path) throw new Error(`${what}: ${program} is not installed (install Debian's ${program === "nft" ? "nftables" : "iptables"} package, or choose another --network-lock method)`);
  const r = spawnSync(path, args, { input, encoding: "utf8" });
  if (r.error || r.status !== 0) {
    throw new Error(`${what}: ${program} ${args.join(" ")} failed: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim().split("\n").slice(0, 3).join("; ")}`);
  }
}

/** nftables: the table, its chains, sets and rules, and the connections' elements, in one nft run. */
export function nftLockScript(table: string, conns: readonly Connection[]): string {
  const lines = [
    `add table ${table}`,
    `add chain ${table} output { type filter hook output priority 0; }`,
    `add rule ${table} output meta mark ${SOCCR_MARK} accept`,
    `add chain ${table} input { type filter hook input priority 0; }`,
    `add rule ${table} input meta mark ${SOCCR_MARK} accept`,
    `add set ${table} conns4 { type ipv4_addr . inet_service . ipv4_addr . inet_service; }`,
    `add rule ${table} output ip saddr . tcp sport . ip daddr . tcp dport @conns4 drop`,
    `add rule ${table} input ip saddr . tcp sport . ip daddr . tcp dport @conns4 drop`,
    `add set ${table} conns6 { type ipv6_addr . inet_service . ipv6_addr . inet_service; }`,
    `add rule ${table} output ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop`,
    `add rule ${table} input ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop`,
  ];
  const all = tuples(conns, false);
  for (const v6 of [false, true]) {
    const els = all.filter((t) => t.v6 === v6).map((t) => `${t.from} . ${t.fromPort} . ${t.to} . ${t.toPort}`);
    if (els.length) lines.push(`add element ${table} conns${v6 ? 6 : 4} { ${els.join(", ")} }`);
  }
  return `${lines.join("\n")}\n`;
}

/** iptables: criu's rules, for iptables-restore (or ip6tables-restore) with --noflush; `op` -I to lock, -D to unlock. */
export function iptablesRules(conns: readonly Connection[], v6: boolean, op: "-I" | "-D"): string[] {
  // Per connection end: INPUT drops what comes from the peer, OUTPUT what goes to it.
  return tuples(conns, true).filter((t) => t.v6 === v6).map((t) => {
    return `${op} ${t.inbound ? "INPUT" : "OUTPUT"} --protocol tcp -m mark ! --mark 0x${SOCCR_MARK.toString(16).toUpperCase()} --source ${t.from} --sport ${t.fromPort} --destination ${t.to} --dport ${t.toPort} -j DROP`;
  });
}

function iptablesRestore(conns: readonly Connection[], op: "-I" | "-D", what: string): void {
  for (const v6 of [false, true]) {
    const rules = iptablesRules(conns, v6, op);
    if (rules.length) run(v6 ? "ip6tables-restore" : "iptables-restore", ["-w", "--noflush"], `*filter\n${rules.join("\n")}\nCOMMIT\n`, what);
  }
}

/** Blocks the connections' packets. Throws, naming the method, if it cannot. */
export function lockConnections(method: NetworkLockMethod, runId: string, conns: readonly Connection[]): void {
  if (method === "skip" || !conns.length) return;
  const what = `cannot lock the network of ${conns.length} TCP connection(s) with ${method}`;
  if (method === "nftables") run("nft", ["-f", "-"], nftLockScript(nftTable(runId), conns), what);
  else iptablesRestore(conns, "-I", what);
}

/** Lets the connections' packets through again: the whole table for nftables, each rule for iptables. */
export function unlockConnections(method: NetworkLockMethod, runId: string, conns: readonly Connection[]): void {
  if (method === "skip" || !conns.length) return;
  const what = `cannot unlock the network of ${conns.length} TCP connection(s) with ${method}`;
  if (method === "nftables") run("nft", ["-f", "-"], `delete table ${nftTable(runId)}\n`, what);
  else iptablesRestore(conns, "-D", what);
}

/** The shell command that removes the lock by hand, for a message. */
export function unlockCommand(method: NetworkLockMethod, runId: string, conns: readonly Connection[]): string {
  if (method === "nftables") return `nft delete table ${nftTable(runId)}`;
  return [false, true].flatMap((v6) => iptablesRules(conns, v6, "-D").map((r) => `${v6 ? "ip6tables" : "iptables"} -w ${r}`)).join("; ");
}

// --- a tree with a network namespace of its own ------------------------------
// As criu does it there: the whole namespace is locked, not each connection.
// Its input and output chains drop every packet but crest's own (marked);
// the firewall is dumped after the lock, so a restored namespace comes back
// locked, and the restore lifts the lock inside it once the tasks are ready.
// These run in the calling thread's network namespace (inNamespaceOf).

/** nftables: criu's table, its chains dropping by default. */
export function nftNamespaceLockScript(table: string): string {
  return [
    `add table ${table}`,
    `add chain ${table} output { type filter hook output priority 0; policy drop; }`,
    `add rule ${table} output meta mark ${SOCCR_MARK} accept`,
    `add chain ${table} input { type filter hook input priority 0; policy drop; }`,
    `add rule ${table} input meta mark ${SOCCR_MARK} accept`,
  ].join("\n") + "\n";
}

/** iptables: criu's CRIU chain, jumped to from INPUT and OUTPUT. */
const IPT_NS_LOCK = `*filter\n:CRIU - [0:0]\n-I INPUT -j CRIU\n-I OUTPUT -j CRIU\n-A CRIU -m mark --mark ${SOCCR_MARK} -j ACCEPT\n-A CRIU -j DROP\nCOMMIT\n`;
const IPT_NS_UNJUMP = "*filter\n:CRIU - [0:0]\n-D INPUT -j CRIU\n-D OUTPUT -j CRIU\nCOMMIT\n";
const IPT_NS_DROP_CHAIN = "*filter\n:CRIU - [0:0]\n-X CRIU\nCOMMIT\n";

/** Locks the calling thread's network namespace. */
export function lockNamespace(method: NetworkLockMethod, runId: string): void {
  if (method === "skip") return;
  const what = `cannot lock the tree's network namespace with ${method}`;
  if (method === "nftables") run("nft", ["-f", "-"], nftNamespaceLockScript(nftTable(runId)), what);
  else for (const p of ["iptables-restore", "ip6tables-restore"]) run(p, ["-w", "--noflush"], IPT_NS_LOCK, what);
}

/**
 * A namespace under restore is held by a table of crest's own until its
 * firewall comes back (with the dump's lock in it): the firewall is put back
 * only once the connections are, so that none of its rules drops the
 * packets crest sends them (criu's iptables lock, first in the tree's own
 * chains, lets them through; a table of its own would not).
 */
const RESTORE_TABLE = "inet CREST-RESTORE";

export function holdNamespace(): void {
  run("nft", ["-f", "-"], nftNamespaceLockScript(RESTORE_TABLE), "cannot lock the tree's network namespace while it is restored");
}

export function releaseNamespace(): void {
  run("nft", ["-f", "-"], `delete table ${RESTORE_TABLE}\n`, "cannot lift crest's lock of the tree's network namespace after its firewall");
}

/** Lifts the lock of the calling thread's network namespace. */
export function unlockNamespace(method: NetworkLockMethod, runId: string): void {
  if (method === "skip") return;
  const what = `cannot unlock the tree's network namespace with ${method}`;
  if (method === "nftables") run("nft", ["-f", "-"], `delete table ${nftTable(runId)}\n`, what);
  else {
    for (const p of ["iptables-restore", "ip6tables-restore"]) run(p, ["-w", "--noflush"], IPT_NS_UNJUMP, what);
    for (const p of ["iptables-restore", "ip6tables-restore"]) run(p, ["-w", "--noflush"], IPT_NS_DROP_CHAIN, what);
  }
}
