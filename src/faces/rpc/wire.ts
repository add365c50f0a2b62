// CRIU's RPC on the wire: one criu_req or criu_resp per SOCK_SEQPACKET
// packet, no length prefix (a file descriptor may ride along a response as
// SCM_RIGHTS: the orphan pts master). And who is on the other end
// (SO_PEERCRED), which the service trusts rather than anything a client says.
import { SYS } from "../../sys/constants.js";
import { check, SysError } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { criu_req, criu_resp, decode, encode, ImageFormatError, type EncodeInput } from "../../images/index.js";
import { sendWithFiles } from "../../kinds/sockets/queue.js";

const MSG_PEEK = 2, MSG_TRUNC = 0x20;
const SOL_SOCKET = 1, SO_PEERCRED = 17;
const EINTR = 4;
/** The largest request crest reads: criu's requests are a few hundred bytes (a long external list a few KiB). */
export const MAX_REQUEST = 64 << 10;

/** A request that cannot be read: answered with type EMPTY, success false, and this message. */
export class BadRequest extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BadRequest";
  }
}

/** The next packet, whole; null when the client has closed the connection. */
export function recvPacket(fd: number): Buffer | null {
  let len: number;
  for (;;) {
    len = native.syscall(SYS.recvfrom, fd, null, 0, MSG_PEEK | MSG_TRUNC, null, null);
    if (len !== -EINTR) break;
  }
  check(len, "read a request");
  if (len === 0) {
    // An empty packet, or the end of the connection: take it either way.
    native.syscall(SYS.recvfrom, fd, Buffer.alloc(1), 1, 0, null, null);
    return null;
  }
  if (len > MAX_REQUEST) {
    native.syscall(SYS.recvfrom, fd, null, 0, MSG_TRUNC, null, null);
    throw new BadRequest(`a request of ${len} bytes, more than crest reads (${MAX_REQUEST})`);
  }
  const buf = Buffer.alloc(len);
  const n = check(native.syscall(SYS.recvfrom, fd, buf, len, 0, null, null), "read a request");
  return buf.subarray(0, n);
}

/** Reads and decodes the next request; null when the client has gone. */
export function recvRequest(fd: number): criu_req | null {
  const p = recvPacket(fd);
  if (!p) return null;
  try {
    return decode(criu_req, p);
  } catch (e) {
    if (e instanceof ImageFormatError || e instanceof RangeError) throw new BadRequest(`a request that is not a criu_req message: ${(e as Error).message}`);
    throw e;
  }
}

/** Sends one response, with a file descriptor if given. */
export function sendResponse(fd: number, resp: EncodeInput<criu_resp>, passFd?: number): void {
  const bytes = encode(criu_resp, resp);
  const n = sendWithFiles(fd, bytes, passFd === undefined ? [] : [passFd], 0);
  if (n !== bytes.length) throw new SysError("send a response", n < 0 ? -n : 0);
}

export interface Peer {
  pid: number;
  uid: number;
  gid: number;
}

/** The client's process and credentials, as the kernel recorded them when it connected. */
export function peerOf(fd: number): Peer {
  const cred = new Int32Array(3);
  check(native.syscall(SYS.getsockopt, fd, SOL_SOCKET, SO_PEERCRED, cred, new Uint32Array([12])), "read the client's credentials");
  return { pid: cred[0]!, uid: cred[1]! >>> 0, gid: cred[2]! >>> 0 };
}
