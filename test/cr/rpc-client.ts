// A raw RPC client for the tests: criu_req / criu_resp over a SOCK_SEQPACKET
// socket, to `crest swrk` (a socketpair end passed as its fd 3, as go-criu
// and libcriu start it) or to `crest service` (a connection to its address).
// It also sends what no well-behaved client would (garbage, oversized or
// truncated messages) to see the server answer it.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync } from "node:fs";
import { criu_req, criu_resp, decode, encode, type EncodeInput } from "../../src/images/index.js";
import { native } from "../../src/sys/native.js";
import { sockaddr } from "../../src/kinds/sockets/unix-name.js";
import { SYS } from "../../src/sys/constants.js";
import { CREST } from "./harness.js";

const AF_UNIX = 1, SOCK_SEQPACKET = 5, SOCK_CLOEXEC = 0o2000000, MSG_PEEK = 2, MSG_TRUNC = 0x20;

/** struct sockaddr_un of a path, with its closing NUL. */
const pathAddr = (path: string): Buffer => sockaddr(Buffer.from(`${path}\0`));

export class RawClient {
  /** Files the server passed with its responses (SCM_RIGHTS: the orphan pts master), oldest first. */
  readonly passed: number[] = [];

  private constructor(readonly fd: number, readonly child?: ChildProcess) {}

  /** A `crest swrk 3` of its own, on a socketpair. */
  static swrk(env: Record<string, string> = {}): RawClient {
    const fds = new Int32Array(2);
    // Close-on-exec: the server's end reaches it as its fd 3 only (with ours too, it would never see us leave).
    if (native.syscall(SYS.socketpair, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) < 0) throw new Error("socketpair failed");
    const child = spawn(CREST, ["swrk", "3"], { stdio: ["ignore", "ignore", "pipe", fds[1]!], env: { ...process.env, ...env } });
    closeSync(fds[1]!);
    return new RawClient(fds[0]!, child);
  }

  /** A connection to a service listening at path. */
  static connect(path: string): RawClient {
    const fd = native.syscall(SYS.socket, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) throw new Error("socket failed");
    const addr = pathAddr(path);
    const r = native.syscall(SYS.connect, fd, addr, addr.length);
    if (r < 0) throw new Error(`connect to ${path} failed: errno ${-r}`);
    return new RawClient(fd);
  }

  /** A listening SEQPACKET socket at path (as systemd would make it), to pass to a service; returns its fd. */
  static listen(path: string): number {
    const fd = native.syscall(SYS.socket, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    const addr = pathAddr(path);
    const r = native.syscall(SYS.bind, fd, addr, addr.length);
    if (fd < 0 || r < 0 || native.syscall(SYS.listen, fd, 16) < 0) throw new Error(`cannot listen at ${path}`);
    return fd;
  }

  sendRaw(bytes: Buffer): void {
    const n = native.syscall(SYS.sendto, this.fd, bytes, bytes.length, 0, null, 0);
    if (n !== bytes.length) throw new Error(`send failed: ${n}`);
  }

  send(req: EncodeInput<criu_req>): void {
    this.sendRaw(encode(criu_req, req));
  }

  /** The next response; null once the server has closed the connection. */
  recv(): criu_resp | null {
    const len = native.syscall(SYS.recvfrom, this.fd, null, 0, MSG_PEEK | MSG_TRUNC, null, null);
    if (len < 0) throw new Error(`recv failed: errno ${-len}`);
    const buf = Buffer.alloc(Math.max(len, 1));
    const control = Buffer.alloc(64);
    const iov = new BigUint64Array([BigInt(native.address(buf)), BigInt(buf.length)]);
    // struct msghdr: name, namelen, iov, iovlen, control, controllen, flags.
    const msg = new BigUint64Array([0n, 0n, BigInt(native.address(iov)), 1n, BigInt(native.address(control)), 64n, 0n]);
    const n = native.syscall(SYS.recvmsg, this.fd, msg, 0);
    if (n <= 0) return null;
    // One cmsghdr at most (len, level, type): SOL_SOCKET 1, SCM_RIGHTS 1.
    if (msg[5]! >= 20n && control.readInt32LE(8) === 1 && control.readInt32LE(12) === 1) {
      for (let at = 16; at + 4 <= Number(control.readBigUInt64LE(0)); at += 4) this.passed.push(control.readInt32LE(at));
    }
    return decode(criu_resp, buf.subarray(0, n));
  }

  /** One request, one response. */
  call(req: EncodeInput<criu_req>): criu_resp {
    this.send(req);
    const r = this.recv();
    if (!r) throw new Error("the server closed the connection without answering");
    return r;
  }

  close(): void {
    closeSync(this.fd);
  }
}
