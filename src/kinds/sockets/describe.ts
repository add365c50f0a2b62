// What a socket is, in words, for the message that refuses it: its family,
// type and protocol, read by crest from its own copy of the socket.
import { closeSync } from "node:fs";
import { getInt, SO } from "./options.js";
import { takeFd } from "./unix.js";

const FAMILIES: Record<number, string> = { 1: "unix", 2: "inet (IPv4)", 10: "inet6 (IPv6)", 16: "netlink", 17: "packet" };
const TYPES: Record<number, string> = { 1: "stream", 2: "datagram", 3: "raw", 5: "seqpacket" };
const PROTOCOLS: Record<number, string> = { 6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMPv6", 132: "SCTP" };

/** "an inet (IPv4) stream socket, protocol TCP (socket:[123])". */
export function describeSocket(pid: number, fd: number, text: string): string {
  const mine = takeFd(pid, fd, `the socket ${text}`);
  try {
    const what = `the socket ${text}`;
    const family = getInt(mine, SO.DOMAIN, what);
    const type = getInt(mine, SO.TYPE, what);
    const proto = getInt(mine, SO.PROTOCOL, what);
    const name = (m: Record<number, string>, v: number, dflt: string) => m[v] ?? `${dflt} ${v}`;
    const protoText = proto && family !== 1 ? `, protocol ${family === 16 ? proto : name(PROTOCOLS, proto, "")}` : "";
    const fam = name(FAMILIES, family, "family");
    return `${/^[aeiou]/.test(fam) ? "an" : "a"} ${fam} ${name(TYPES, type, "type")} socket${protoText} (${text})`;
  } finally {
    closeSync(mine);
  }
}
