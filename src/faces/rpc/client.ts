// The client side of criu's RPC, for crest's library API: a `crest swrk`
// of its own on a SEQPACKET socketpair (as go-criu and libcriu start criu),
// one request at a time, the server's notifications answered as they come.
// Asynchronous without threads: Node cannot wait on a SEQPACKET socket, so
// the client polls its non-blocking end between turns of the event loop.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync } from "node:fs";
import { join } from "node:path";
import { criu_req, criu_req_type, criu_resp, decode, encode, type criu_notify, type EncodeInput } from "../../images/index.js";
import { SYS } from "../../sys/constants.js";
import { native, projectRoot } from "../../sys/native.js";

const AF_UNIX = 1, SOCK_SEQPACKET = 5, SOCK_CLOEXEC = 0o2000000;
const MSG_PEEK = 2, MSG_TRUNC = 0x20, MSG_DONTWAIT = 0x40, EAGAIN = 11;

/** Answers one notification: true to go on, false to make the server fail the request. */
export type OnNotify = (n: criu_notify) => boolean;

export class SwrkClient {
  private constructor(private readonly fd: number, private readonly child: ChildProcess) {}

  /** Starts `crest swrk` on one end of a new socketpair. */
  static start(): SwrkClient {
    const fds = new Int32Array(2);
    const r = native.syscall(SYS.socketpair, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds);
    if (r < 0) throw new Error(`cannot make a socketpair for crest swrk: errno ${-r}`);
    const child = spawn(join(projectRoot(), "bin", "crest"), ["swrk", "3"], { stdio: ["ignore", "ignore", "inherit", fds[1]!] });
    closeSync(fds[1]!);
    return new SwrkClient(fds[0]!, child);
  }

  /** Sends a request; answers notifications with onNotify; resolves with the final response. */
  async request(req: EncodeInput<criu_req>, onNotify: OnNotify = () => true): Promise<criu_resp> {
    this.send(req);
    for (;;) {
      const resp = await this.recv();
      if (resp.type !== criu_req_type.NOTIFY) return resp;
      this.send({ type: criu_req_type.NOTIFY, notify_success: onNotify(resp.notify ?? {}) });
    }
  }

  private send(req: EncodeInput<criu_req>): void {
    const bytes = encode(criu_req, req);
    const n = native.syscall(SYS.sendto, this.fd, bytes, bytes.length, 0, null, 0);
    if (n !== bytes.length) throw new Error(`cannot send a request to crest swrk: errno ${-n}`);
  }

  private async recv(): Promise<criu_resp> {
    for (let pause = 1; ; pause = Math.min(pause * 2, 20)) {
      const len = native.syscall(SYS.recvfrom, this.fd, null, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT, null, null);
      if (len === -EAGAIN) {
        await new Promise((resolve) => setTimeout(resolve, pause));
        continue;
      }
      if (len <= 0) throw new Error(len === 0 ? "crest swrk ended without an answer" : `cannot read crest swrk's answer: errno ${-len}`);
      const buf = Buffer.alloc(len);
      native.syscall(SYS.recvfrom, this.fd, buf, len, MSG_DONTWAIT, null, null);
      return decode(criu_resp, buf);
    }
  }

  /** Closes the connection and waits for crest swrk to end. */
  async close(): Promise<void> {
    closeSync(this.fd);
    if (this.child.exitCode === null && this.child.signalCode === null) await new Promise((resolve) => this.child.on("exit", resolve));
  }
}
