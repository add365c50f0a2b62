// What the kernel says of every unix socket of crest's network namespace,
// through one sock_diag dump (UNIX_DIAG): type, state, name, the inode of
// the file it is bound to, its peer, connections waiting to be accepted,
// queue lengths and shutdown state. The parser is pure; the query is one
// netlink request.
import { parseAttrs } from "../../kernel/netlink.js";
import { sockDiagDump } from "./sock-diag.js";

export const AF_UNIX = 1;
const UNIX_DIAG = { NAME: 0, VFS: 1, PEER: 2, ICONS: 3, RQLEN: 4, SHUTDOWN: 6 } as const;
/** UDIAG_SHOW_NAME | VFS | PEER | ICONS | RQLEN. */
const SHOW = 0x1f;

export interface UnixDiag {
  ino: number;
  type: number;
  state: number;
  /** The bound name as bytes (abstract names start with a NUL); empty if unbound. A path comes without the NUL the kernel keeps after it. */
  name: Buffer;
  /** The socket file's inode and device, for a name bound in the file system. */
  vfs?: { ino: number; dev: number };
  /** The peer's inode, 0 if none. */
  peer: number;
  /** A listener's connections not accepted yet: their inodes. */
  icons: number[];
  /** Bytes (stream) or packets queued to be read; for a listener, connections waiting. */
  rqlen: number;
  /** Bytes sent and not read by the peer yet; for a listener, its backlog. */
  wqlen: number;
  /** The kernel's sk_shutdown bits: 1 receive, 2 send. */
  shutdown: number;
}

/** The request body: unix_diag_req for every state, with the attributes above. */
export function unixDiagRequest(): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt8(AF_UNIX, 0);
  b.writeUInt32LE(0xffffffff, 4);
  b.writeUInt32LE(SHOW, 12);
  return b;
}

/** One SOCK_DIAG_BY_FAMILY reply: unix_diag_msg (16 bytes) and its attributes. */
export function parseUnixDiag(body: Buffer): UnixDiag {
  const a = parseAttrs(body, 16);
  const u32 = (t: number): number | undefined => a.get(t)?.readUInt32LE(0);
  const vfs = a.get(UNIX_DIAG.VFS);
  const rq = a.get(UNIX_DIAG.RQLEN);
  const icons = a.get(UNIX_DIAG.ICONS);
  let name = a.get(UNIX_DIAG.NAME) ?? Buffer.alloc(0);
  if (name.length && name[0] !== 0 && name[name.length - 1] === 0) name = name.subarray(0, name.indexOf(0));
  return {
    type: body.readUInt8(1),
    state: body.readUInt8(2),
    ino: body.readUInt32LE(4),
    name: Buffer.from(name),
    vfs: vfs ? { ino: vfs.readUInt32LE(0), dev: vfs.readUInt32LE(4) } : undefined,
    peer: u32(UNIX_DIAG.PEER) ?? 0,
    icons: icons ? Array.from({ length: icons.length >> 2 }, (_, i) => icons.readUInt32LE(i * 4)) : [],
    rqlen: rq?.readUInt32LE(0) ?? 0,
    wqlen: rq?.readUInt32LE(4) ?? 0,
    shutdown: a.get(UNIX_DIAG.SHUTDOWN)?.readUInt8(0) ?? 0,
  };
}

/** Every unix socket of crest's network namespace, by inode. */
export function listUnixSockets(): Map<number, UnixDiag> {
  return new Map(sockDiagDump(unixDiagRequest(), "unix sockets").map((body) => {
    const d = parseUnixDiag(body);
    return [d.ino, d];
  }));
}
