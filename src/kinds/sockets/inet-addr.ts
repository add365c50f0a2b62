// IPv4 and IPv6 socket addresses as the kernel takes and gives them
// (struct sockaddr_in, sockaddr_in6) and as the images keep them (a port,
// and the address as 4 words in network order, IPv4 in the first).
import { SYS } from "../../sys/constants.js";
import { native } from "../../sys/native.js";
import { AF_INET, AF_INET6 } from "./inet-diag.js";

export interface InetAddress {
  port: number;
  /** 1 word for IPv4, 4 for IPv6, network order (as read little-endian from the kernel's bytes). */
  addr: number[];
  /** IPv6: the interface a link-local address is on (sin6_scope_id). */
  scopeId: number;
}

/** struct sockaddr_in or sockaddr_in6 (with the scope id an IPv6 link-local address needs). */
export function sockaddr(family: number, port: number, addr: readonly number[], scopeId = 0): Buffer {
  if (family === AF_INET) {
    const b = Buffer.alloc(16);
    b.writeUInt16LE(AF_INET, 0);
    b.writeUInt16BE(port, 2);
    b.writeUInt32LE((addr[0] ?? 0) >>> 0, 4);
    return b;
  }
  const b = Buffer.alloc(28);
  b.writeUInt16LE(AF_INET6, 0);
  b.writeUInt16BE(port, 2);
  for (let i = 0; i < 4; i++) b.writeUInt32LE((addr[i] ?? 0) >>> 0, 8 + i * 4);
  b.writeUInt32LE(scopeId, 24);
  return b;
}

/** Parses what getsockname/getpeername gave. */
export function parseSockaddr(b: Buffer): InetAddress {
  const family = b.readUInt16LE(0);
  const port = b.readUInt16BE(2);
  if (family === AF_INET) return { port, addr: [b.readUInt32LE(4)], scopeId: 0 };
  return { port, addr: [0, 1, 2, 3].map((i) => b.readUInt32LE(8 + i * 4)), scopeId: b.readUInt32LE(24) };
}

const ENOTCONN = 107, SOL_SOCKET = 1, SO_PEERNAME = 28;

/**
 * The socket's own address (getsockname) or its peer's; undefined if it has
 * none. The peer comes from SO_PEERNAME, as criu reads it: unlike
 * getpeername it still names the peer of a connection that has closed.
 */
export function socketAddress(fd: number, family: number, peer: boolean): InetAddress | undefined {
  // SO_PEERNAME wants room for exactly the family's address, no more.
  const b = Buffer.alloc(family === AF_INET ? 16 : 28);
  const len = new Uint32Array([b.length]);
  const r = peer ? native.syscall(SYS.getsockopt, fd, SOL_SOCKET, SO_PEERNAME, b, len) : native.syscall(SYS.getsockname, fd, b, len);
  if (r === -ENOTCONN) return undefined;
  if (r < 0) throw new Error(`${peer ? "SO_PEERNAME" : "getsockname"} failed: errno ${-r}`);
  return parseSockaddr(b);
}

/** The address words the image keeps: always 4, IPv4 in the first (as criu writes them). */
export const imageWords = (family: number, addr: readonly number[]): number[] =>
  family === AF_INET ? [addr[0] ?? 0] : [0, 1, 2, 3].map((i) => addr[i] ?? 0);
