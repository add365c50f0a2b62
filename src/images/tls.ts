// The page server's connection in TLS (--tls), a dump's and a lazy-pages
// daemon's to it (remote lazy pages too), as criu 4.x: X.509 on both
// sides (the server requires the client's certificate), each side checks the
// other's chain against the CA (--tls-cacert; else the system's CAs and
// /etc/pki/CA/cacert.pem if present) and the CRL (--tls-cacrl; else
// /etc/pki/CA/cacrl.pem if readable), and, unless --tls-no-cn-verify, the
// peer certificate's name against --address (criu checks it on both sides:
// a page server given no --address checks no name). The handshake runs right
// after connect/accept, before any page server message.
//
// crest's page server code is synchronous (a dump's main thread never yields
// to its event loop), and Node's TLS needs one: a worker thread holds the TLS
// socket and relays it to one end of a socketpair, whose other end the
// synchronous code reads and writes as it did the TCP socket. The main thread
// waits for the handshake with Atomics.
import { closeSync, existsSync, readFileSync } from "node:fs";
import type { MessagePort } from "node:worker_threads";
import type { TlsOptions } from "../options.js";
import { native } from "../sys/native.js";
import { SYS } from "../sys/constants.js";
import { check } from "../sys/errno.js";

/** criu's defaults (criu/tls.c, SYSCONFDIR "/pki"). */
export const TLS_DEFAULTS = {
  cacert: "/etc/pki/CA/cacert.pem",
  cacrl: "/etc/pki/CA/cacrl.pem",
  cert: "/etc/pki/criu/cert.pem",
  key: "/etc/pki/criu/private/key.pem",
} as const;

const HANDSHAKE_MS = 30_000;
/** state[0]: 0 handshaking, 1 secure, 2 failed, 3 closed; state[1]: 1 once the worker owns the relay's end. */
const PENDING = 0, SECURE = 1, FAILED = 2, CLOSED = 3;

/** The worker: the TLS socket on the TCP fd, relayed to the socketpair end `plain` once secure. */
const THREAD = `
const net = require("node:net"), tls = require("node:tls");
const { workerData: w } = require("node:worker_threads");
const state = new Int32Array(w.state);
const server = w.side !== "client";
let said = false;
function set(v, msg) {
  if (msg !== undefined && !said) { said = true; w.port.postMessage(msg); }
  if (Atomics.load(state, 0) < v || v === 3) Atomics.store(state, 0, v);
  Atomics.notify(state, 0);
}
const raw = new net.Socket({ fd: w.tcp, readable: true, writable: true });
const opts = { ca: w.ca, cert: w.cert, key: w.key, ...(w.crl ? { crl: w.crl } : {}) };
let s;
if (server) {
  // TLS 1.2 at most: a TLS 1.3 server of OpenSSL's sends session tickets after the handshake, and criu's
  // GnuTLS client reports the record that holds them as EAGAIN to its blocking read ("The page server doesn't answer").
  s = new tls.TLSSocket(raw, { isServer: true, secureContext: tls.createSecureContext({ ...opts, maxVersion: "TLSv1.2" }), requestCert: true, rejectUnauthorized: false });
} else {
  s = tls.connect({ socket: raw, ...opts, rejectUnauthorized: false, checkServerIdentity: () => undefined });
}
let plain = null;
/** Whether anything came from the peer since the handshake (a peer that closes before refused this side, maybe). */
let heard = false;
function verify() {
  const cert = s.getPeerCertificate();
  if (!cert || !cert.raw) return "sent no certificate";
  // Checked here, not by rejectUnauthorized, to say which side refused what (a lone server TLSSocket sets no .authorized).
  const err = s._handle.verifyError();
  if (err) return "has a certificate that does not verify against " + w.caName + ": " + (err.code || err.message);
  if (w.name !== undefined) {
    const bad = tls.checkServerIdentity(w.name, cert);
    if (bad) return "has a certificate not made out to " + w.name + " (" + bad.message + "; --tls-no-cn-verify skips this check)";
  }
  return undefined;
}
s.once(server ? "secure" : "secureConnect", () => {
  const bad = verify();
  if (bad) { set(2, "the " + w.peer + " " + bad); s.destroy(); return; }
  plain = new net.Socket({ fd: w.plain, readable: true, writable: true });
  // The relay's end is this thread's now (the main thread must not close it).
  Atomics.store(state, 1, 1);
  plain.on("error", () => s.destroy());
  plain.on("close", () => { if (!s.destroyed) s.end(); });
  s.pipe(plain);
  s.on("data", () => (heard = true));
  if (w.side === "lazy server") s.on("data", countRequests);
  // One TLS write each, never merged (criu's receiver reads pages record by record: see frame()).
  s._writev = null;
  if (w.side === "server") plain.pipe(s);
  else {
    plain.on("data", frame);
    plain.on("end", () => s.end());
    // The sender waits for the peer: its stream is read on only as the TLS socket drains.
    s.on("drain", () => plain.resume());
  }
  set(1);
});
// A sender's stream cut at its messages: each 32-byte page_server_iov in a TLS record of its own,
// and the pages an ADD or an ADD_F with PE_PRESENT carries in writes of their own of 1 MiB (the
// last one the rest), which TLS cuts into full records of 16 KiB from the run's start. criu's page
// server takes pages record by record (gnutls_record_recv_packet) into a pipe of N x 16 KiB at a
// time, and counts every byte of a record against that: a record that held the next message, or
// crossed its pipe's size, would derail it. A lazy page server's answers (PS_IOV_ADD_F and its pages)
// are cut the same way: criu's lazy-pages daemon reads them as epoll says its socket is readable,
// and bytes of a record GnuTLS holds already would wait for the next event, which may never come.
const RECORD = 1 << 20;
let head = Buffer.alloc(0), pagesLeft = 0, pend = [], pendLen = 0;
// A lazy page server answers each PS_IOV_GET with a page_server_iov and PS_IOV_CLOSE with a 4-byte
// status, in the order asked: the daemon's requests (32-byte heads only), counted as they pass, say
// which comes next.
let asked = 0, answered = 0, closeAt = -1, req = Buffer.alloc(0);
function countRequests(d) {
  while (d.length) {
    const take = Math.min(32 - req.length, d.length);
    req = Buffer.concat([req, d.subarray(0, take)]);
    d = d.subarray(take);
    if (req.length < 32) return;
    const cmd = req.readUInt32LE(0) & 0xffff;
    if (cmd === 0x1023 || cmd === 0x1024) { if (closeAt < 0) closeAt = asked; } else asked++;
    req = Buffer.alloc(0);
  }
}
/** Writes to the TLS socket; a full one stops the reading of the sender's stream until it drains. */
function send(b) {
  if (!s.write(b)) plain.pause();
}
function flushPages() {
  if (pendLen) send(pend.length === 1 ? pend[0] : Buffer.concat(pend, pendLen));
  pend = [];
  pendLen = 0;
}
function frame(d) {
  while (d.length) {
    if (pagesLeft > 0) {
      const n = Math.min(pagesLeft, d.length, RECORD - pendLen);
      pend.push(d.subarray(0, n));
      pendLen += n;
      pagesLeft -= n;
      d = d.subarray(n);
      if (pendLen === RECORD || pagesLeft === 0) flushPages();
      continue;
    }
    const size = closeAt >= 0 && answered === closeAt ? 4 : 32;
    const take = Math.min(size - head.length, d.length);
    head = Buffer.concat([head, d.subarray(0, take)]);
    d = d.subarray(take);
    if (head.length < size) return;
    send(head);
    answered++;
    const raw = head.readUInt32LE(0), cmd = raw & 0xffff, flags = raw >>> 16;
    if (size === 32 && (cmd === 1 || (cmd === 6 && flags & 4))) pagesLeft = Number(head.readBigUInt64LE(8)) * 4096;
    head = Buffer.alloc(0);
  }
}
s.on("error", (e) => {
  const shaking = Atomics.load(state, 0) === 0;
  set(2, (shaking ? "TLS handshake with the " : "TLS connection with the ") + w.peer + " failed: " + e.message + (shaking && /ECONNRESET|EPIPE|disconnected|wrong version|packet length/i.test(e.message) ? " (does it use --tls, and take this side's certificate? its log says)" : ""));
  if (plain) plain.destroy();
});
s.on("close", () => {
  if (Atomics.load(state, 0) === 0) set(2, "the " + w.peer + " closed the connection during the TLS handshake (is it using TLS?)");
  // The relay's end is this thread's only once secure; else the main thread closes it.
  if (plain) plain.destroy();
  // Said only if nothing was: a peer that refuses this side's certificate after the handshake (TLS 1.3) just closes.
  set(3, "the " + w.peer + " ended the TLS connection" + (heard ? "" : " (did it refuse this side's certificate? its log says)"));
});
`;

/** One side's credentials, read here so that a missing file is named before anything else happens. */
export interface Creds {
  ca: string[];
  crl?: string;
  cert: string;
  key: string;
}

function readPem(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new Error(`TLS: cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** Reads and checks the credentials --tls will use (a page server calls it before it listens, to fail at once). */
export function loadCreds(o: TlsOptions): Creds {
  const tls = process.getBuiltinModule("node:tls");
  let ca: string[];
  if (o.cacert !== undefined) {
    ca = [readPem(o.cacert, "the CA certificate (--tls-cacert)")];
  } else {
    ca = [...tls.rootCertificates];
    if (existsSync(TLS_DEFAULTS.cacert)) ca.push(readPem(TLS_DEFAULTS.cacert, "the CA certificate"));
  }
  let crl: string | undefined;
  if (o.cacrl !== undefined) crl = readPem(o.cacrl, "the certificate revocation list (--tls-cacrl)");
  else if (existsSync(TLS_DEFAULTS.cacrl)) crl = readPem(TLS_DEFAULTS.cacrl, "the certificate revocation list");
  const certPath = o.cert ?? TLS_DEFAULTS.cert, keyPath = o.key ?? TLS_DEFAULTS.key;
  const creds: Creds = {
    ca,
    ...(crl !== undefined ? { crl } : {}),
    cert: readPem(certPath, `the certificate${o.cert ? " (--tls-cert)" : ""}`),
    key: readPem(keyPath, `the private key${o.key ? " (--tls-key)" : ""}`),
  };
  // Made once here for its errors: a key that does not match the certificate, a file that is not PEM.
  try {
    tls.createSecureContext(creds);
  } catch (e) {
    throw new Error(`TLS: the certificate ${certPath}, its key ${keyPath}, CA or CRL cannot be used: ${(e as Error).message}`);
  }
  return creds;
}

/** A connection to or from a page server: the fd its messages go through, and how it ends. */
export interface PageLink {
  /** Read and written synchronously: the TCP socket, or with TLS the relay's end. */
  readonly fd: number;
  /** A failure of the connection turned into one that names the peer and what failed (TLS's own reason, if it had one). */
  explain(e: unknown): Error;
  /** TLS's own reason for the connection's failure or end, naming the peer, if it has one (plain TCP: none). */
  reason(): string | undefined;
  /** Closes this side (with TLS, sends its close and waits for the relay to end). */
  close(): void;
}

/** A plain TCP link. */
export function plainLink(fd: number, peer: string): PageLink {
  return {
    fd,
    explain: (e) => new Error(`the ${peer}: ${(e as Error).message}`),
    reason: () => undefined,
    close: () => closeSync(fd),
  };
}

/**
 * The relay's side: a client (a dump's sender, a lazy-pages daemon), a page
 * server, or a lazy page server (whose answers carry pages, and are cut at
 * its messages as a sender's stream is).
 */
export type TlsSide = "client" | "server" | "lazy server";

/**
 * Wraps the connected TCP socket `tcp` in TLS (taking it over), as the
 * client or a server side; `peer` names the other side in messages
 * ("page server at 10.0.0.1:1234"), `address` is the name its certificate
 * must carry (criu's opts.addr). Returns once the handshake and the peer's
 * certificate checks are done; throws, naming what failed, otherwise.
 */
export function tlsLink(tcp: number, o: TlsOptions, side: TlsSide, peer: string, address: string | undefined): PageLink {
  let creds: Creds;
  try {
    creds = loadCreds(o);
  } catch (e) {
    closeSync(tcp);
    throw e;
  }
  const pair = new Int32Array(2);
  // AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC
  check(native.syscall(SYS.socketpair, 1, 1 | 0o2000000, 0, pair), "make the TLS relay's socketpair");
  const mine = pair[0]!, theirs = pair[1]!;
  const threads = process.getBuiltinModule("node:worker_threads");
  const state = new Int32Array(new SharedArrayBuffer(8));
  const { port1, port2 } = new threads.MessageChannel();
  const worker = new threads.Worker(THREAD, {
    eval: true,
    workerData: { tcp, plain: theirs, caName: o.cacert !== undefined ? `the CA of ${o.cacert}` : `the system's CAs and ${TLS_DEFAULTS.cacert}`, side, peer, name: o.noCnVerify ? undefined : address, state: state.buffer, port: port2, ...creds },
    transferList: [port2],
  });
  worker.unref();
  port1.unref();
  const reason = (): string | undefined => {
    const m = threads.receiveMessageOnPort(port1 as MessagePort);
    return m ? (m.message as string) : undefined;
  };
  let said: string | undefined;
  const why = () => (said ??= reason());
  Atomics.wait(state, 0, PENDING, HANDSHAKE_MS);
  const now = Atomics.load(state, 0);
  // Failed, or secure and already failed again (a server that refused this side's certificate after the handshake).
  if (now !== SECURE) {
    closeSync(mine);
    if (Atomics.load(state, 1) === 0) closeSync(theirs);
    if (now === PENDING) {
      void worker.terminate();
      throw new Error(`TLS handshake with the ${peer}: no answer in ${HANDSHAKE_MS / 1000} s`);
    }
    throw new Error(why() ?? `TLS handshake with the ${peer} failed`);
  }
  const afterFailure = (): string | undefined => {
    // The relay's reason comes a moment after the socketpair shows the failure.
    if (Atomics.load(state, 0) < FAILED) Atomics.wait(state, 0, SECURE, 1000);
    return why();
  };
  return {
    fd: mine,
    explain: (e) => {
      const tlsWhy = afterFailure();
      return new Error(tlsWhy ? `${tlsWhy} (${(e as Error).message})` : `the ${peer}: ${(e as Error).message}`);
    },
    reason: afterFailure,
    close: () => {
      closeSync(mine);
      // The relay sends TLS's close and ends; not waited for long (the peer may be gone).
      for (let s = Atomics.load(state, 0), until = Date.now() + 5000; s !== CLOSED && Date.now() < until; s = Atomics.load(state, 0)) {
        Atomics.wait(state, 0, s, 100);
      }
    },
  };
}
