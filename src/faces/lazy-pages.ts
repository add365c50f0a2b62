// `crest lazy-pages -D DIR`: criu's lazy-pages daemon, from local images
// (kinds/memory/lazy.ts has the protocol and the serving), or with
// --page-server --address A --port P from the page server there (a dump
// --lazy-pages, or a page-server --lazy-pages) for the pages the images
// mark lazy, in TLS with --tls (images/tls.ts's relay, as a dump's
// --page-server). It listens on
// lazy-pages.socket in the work directory, takes one restore (run with
// --lazy-pages), serves its tasks' page faults and pushes their other pages
// once the restore has finished, and exits when every page is in place.
// -d/--daemon runs it detached; --pidfile names its PID; --status-fd is told
// when it listens.
//
// A guard process (this command again, CREST_LAZY_GUARD set) holds every
// userfaultfd the daemon serves, and pidfds of the restored tasks: if the
// daemon dies, or fails to fetch a page, before every page is in, the
// tasks' faults wait on (rather than read zeros) and the guard kills the
// restored tree (each task and its descendants). Told the daemon is done,
// it exits without a word.
import { closeSync, existsSync, readFileSync, readdirSync, unlinkSync, writeFileSync, writeSync } from "node:fs";
import { statusReady } from "../pipelines/actions.js";
import { join } from "node:path";
import type { Logger } from "../log.js";
import { workPath, type Options } from "../options.js";
import { IMG } from "../images/index.js";
import { RestoreImages } from "../images/store.js";
import { verifyImages, type PagesCheck } from "../images/manifest.js";
import { native, projectRoot } from "../sys/native.js";
import { SIG, SYS } from "../sys/constants.js";
import { check, errnoName } from "../sys/errno.js";
import { sendWithFiles } from "../kinds/sockets/queue.js";
import { AF_UNIX, lazySocketPath, LazyServer, type LazyTask, pidOfPidfd, RemotePages, RESTORE_FINISHED, SOCK_CLOEXEC, SOCK_STREAM, unixAddress } from "../kinds/memory/lazy.js";
import { DEFAULT_PORT } from "../kinds/memory/lazy-server.js";
import { checkTlsFiles, connectPageServer, stallingAfter, tlsFiles } from "../images/page-server.js";
import { plainLink, tlsLink, type PageLink } from "../images/tls.js";
import { daemonize } from "./rpc/service.js";

const SOCK_SEQPACKET = 5, MSG_WAITALL = 0x100, MSG_CMSG_CLOEXEC = 0x40000000, SOL_SOCKET = 1, SCM_RIGHTS = 1;
const POLLIN = 1, POLLERR = 8, POLLHUP = 0x10;
const EINTR = 4;
/** The guard's end of its socket with the daemon. */
const GUARD_FD = 3;
export const GUARD_ENV = "CREST_LAZY_GUARD";
/** How long a page server that refuses the connection is tried again. */
const CONNECT_WAIT_MS = 10_000;

export function lazyPagesMain(opts: Options, argv: readonly string[], refused: readonly string[], log: Logger): number {
  if (process.env[GUARD_ENV]) return guardMain(log);
  const why = [...refused];
  if (opts.service.pageServer && !opts.service.address) why.push("--page-server needs --address (and --port, 1234 by default): where the dump --lazy-pages, or the page-server --lazy-pages, serves the pages");
  if (why.length) {
    for (const w of why) log.error(w);
    return 1;
  }
  if (opts.restore.detached) return daemonize(argv, log);
  let listener = -1, client = -1, guard = -1;
  let server: LazyServer | null = null;
  let pagesCheck: PagesCheck | null = null;
  let remote: { link: PageLink; pages: RemotePages } | null = null;
  const path = lazySocketPath(opts);
  try {
    if (opts.service.pageServer) checkTlsFiles(opts);
    const images = new RestoreImages(opts.images.dir);
    if (!images.exists(IMG.inventory)) throw new Error(`${opts.images.dir} holds no images (no inventory.img): nothing to serve lazily`);
    // The restore leaves the pages files' sums to the daemon: summed on a second thread while it serves, asked before it is done.
    pagesCheck = opts.restore.noVerify ? null : verifyImages(opts.images.dir, (m) => log.info(m));
    if (opts.service.pageServer) remote = connectRemote(opts, log);
    guard = startGuard(log);
    listener = listen(path);
    log.info(`Lazy-pages daemon listening on ${path}, images in ${opts.images.dir}`);
    if (opts.restore.pidfile) writeFileSync(workPath(opts, opts.restore.pidfile), `${process.pid}`);
    statusReady(opts, log);
    client = check(native.syscall(SYS.accept4, listener, 0, 0, SOCK_CLOEXEC), `accept a restore on ${path}`);
    closeSync(listener);
    listener = -1;
    unlinkQuietly(path);
    const g = guard;
    // Each userfaultfd the guard holds, by the order it was handed over: a task gone lets the guard close its copy.
    const slots = new WeakMap<LazyTask, number>();
    let handed = 0;
    server = new LazyServer(images, log, {
      forked: (t) => {
        tellGuard(g, "F", [t.uffd]);
        slots.set(t, handed++);
      },
      gone: (t) => {
        const slot = slots.get(t);
        if (slot !== undefined) tellGuard(g, "G", [], slot);
      },
    }, remote?.pages ?? null);
    serve(server, client, g, log, (t) => slots.set(t, handed++));
    const tasks = server.tasks;
    for (const t of tasks) log.info(`${t.forked ? `a child process ${t.vpid} forked` : `process ${t.vpid}`}: ${t.copied} of ${t.total} page(s) copied in${t.gone ? " (its memory went away first)" : ""}`);
    const left = server.left;
    if (left.children) log.info(`${left.children} forked child process(es) whose memory went away first: ${left.copied} of ${left.total} page(s) copied in`);
    const served = server.served;
    server.close();
    server = null;
    if (remote) {
      remote.pages.close();
      log.info(`Lazy pages: ${remote.pages.fetched} page(s) came from the page server, which closed the session`);
    }
    // Pages that are not the dump's: the guard, left without a word, ends the tree.
    pagesCheck?.wait();
    tellGuard(guard, "D", []);
    log.info(`Lazy pages: every page of ${served} userfaultfd(s) is in place`);
    return 0;
  } catch (e) {
    // The guard, left without a word, ends the tree: its pages cannot all come.
    log.error((e as Error).message);
    return 1;
  } finally {
    pagesCheck?.stop();
    server?.close();
    if (listener >= 0) {
      closeSync(listener);
      unlinkQuietly(path);
    }
    if (client >= 0) closeSync(client);
    if (guard >= 0) closeSync(guard);
    // Closed without PS_IOV_CLOSE if the daemon failed: the server side then fails too.
    remote?.link.close();
  }
}

/**
 * Connects to the page server holding the lazy pages (criu's lazy-pages
 * --page-server), with --tls once the handshake and the certificate checks
 * are done (criu's connect_to_page_server). It may be starting at the same
 * moment (zdtm starts both at once): a refused connection is tried again
 * for a few seconds.
 */
function connectRemote(opts: Options, log: Logger): { link: PageLink; pages: RemotePages } {
  const address = opts.service.address!, port = opts.service.port ?? DEFAULT_PORT;
  const where = `${address}:${port}`, peer = `page server at ${where}`;
  const tls = opts.service.tls?.on ? tlsFiles(opts) : null;
  const tcp = connectRetrying(address, port);
  // A page server stopped or stuck: the restored tree is ended after --timeout without an answer, not left waiting.
  const link = stallingAfter(tls ? tlsLink(tcp, tls, "client", peer, address) : plainLink(tcp, peer), opts);
  log.info(`Connected to the page server at ${where}${tls ? " (TLS handshake completed)" : ""}: the lazy pages come from there`);
  return { link, pages: new RemotePages(link, where) };
}

function connectRetrying(address: string, port: number): number {
  const deadline = Date.now() + CONNECT_WAIT_MS;
  for (;;) {
    try {
      return connectPageServer(address, port);
    } catch (e) {
      if (!/ECONNREFUSED/.test((e as Error).message) || Date.now() > deadline) {
        throw new Error(`--page-server: ${(e as Error).message}; start the dump --lazy-pages (or page-server --lazy-pages) there first`);
      }
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
    }
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // gone already
  }
}

/** Binds and listens on the socket path (a stale socket file there is replaced, as criu does). */
function listen(path: string): number {
  const sk = check(native.syscall(SYS.socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "make the lazy-pages socket");
  try {
    const addr = unixAddress(path);
    if (existsSync(path)) unlinkSync(path);
    check(native.syscall(SYS.bind, sk, addr, addr.length), `bind the lazy-pages socket to ${path}`);
    check(native.syscall(SYS.listen, sk, 1), `listen on ${path}`);
    return sk;
  } catch (e) {
    closeSync(sk);
    throw e;
  }
}

/** Reads exactly len bytes (0 at once: the peer closed). */
function recvAll(sk: number, len: number, what: string): Buffer | null {
  const b = Buffer.alloc(len);
  for (;;) {
    const n = native.syscall(SYS.recvfrom, sk, b, len, MSG_WAITALL, 0, 0);
    if (n === -EINTR) continue;
    check(n, what);
    if (n === 0) return null;
    if (n !== len) throw new Error(`${what}: the restore sent ${n} of ${len} bytes and closed`);
    return b;
  }
}

/** One message and the fds passed with it (SCM_RIGHTS); null at the end of the stream. */
function recvFds(sk: number, what: string, size = 1): { data: Buffer; fds: number[] } | null {
  const data = Buffer.alloc(size);
  const control = Buffer.alloc(64);
  const iov = new BigUint64Array([BigInt(native.address(data)), BigInt(size)]);
  const msg = new BigUint64Array([0n, 0n, BigInt(native.address(iov)), 1n, BigInt(native.address(control)), BigInt(control.length), 0n]);
  let n: number;
  do n = native.syscall(SYS.recvmsg, sk, msg, MSG_CMSG_CLOEXEC);
  while (n === -EINTR);
  check(n, what);
  if (n === 0) return null;
  const fds: number[] = [];
  const len = Number(msg[5]);
  for (let at = 0; at + 16 <= len;) {
    const clen = Number(control.readBigUInt64LE(at));
    if (clen < 16) break;
    if (control.readInt32LE(at + 8) === SOL_SOCKET && control.readInt32LE(at + 12) === SCM_RIGHTS) {
      for (let p = at + 16; p + 4 <= at + clen; p += 4) fds.push(control.readInt32LE(p));
    }
    at += (clen + 7) & ~7;
  }
  return { data, fds };
}

/**
 * The daemon's loop: the restore's messages (tasks and their userfaultfds,
 * then "restore finished"), every userfaultfd's events, and once the
 * restore has finished the background push, until every page is in.
 */
function serve(server: LazyServer, client: number, guard: number, log: Logger, handed: (t: LazyTask) => void): void {
  let finished = false, open = true;
  const killedForTests = process.env.CREST_FAULT === "lazy-pages:killed";
  for (;;) {
    if (finished && server.done) return;
    const live = server.tasks.filter((t) => !t.gone);
    const first = open ? 1 : 0;
    const fds = [...(open ? [client] : []), ...live.map((t) => t.uffd)];
    const pfd = Buffer.alloc(8 * fds.length);
    fds.forEach((fd, i) => {
      pfd.writeInt32LE(fd, i * 8);
      pfd.writeInt16LE(POLLIN, i * 8 + 4);
    });
    const timeout = finished && !killedForTests ? 0 : -1;
    const n = native.syscall(SYS.poll, pfd, fds.length, timeout);
    if (n < 0 && n !== -EINTR) throw new Error(`poll: ${errnoName(-n)}`);
    if (n > 0) {
      if (first && pfd.readInt16LE(6) & (POLLIN | POLLHUP | POLLERR)) {
        const got = fromRestore(server, client, guard, log, handed);
        if (got === "finished") {
          finished = true;
          log.info("The restore has finished: pushing the pages not touched yet");
        } else if (got === "closed") {
          if (!finished) throw new Error("the restore closed its connection before it finished (it failed, or was killed): the tasks it made are not served");
          open = false;
        }
      }
      live.forEach((t, i) => {
        const rev = pfd.readInt16LE((i + first) * 8 + 6);
        if (rev & POLLIN) server.events(t);
      });
    }
    server.reap();
    if (finished && killedForTests) {
      // Tests: the daemon killed (for real: SIGKILL) once the restore is over, with every page still to push.
      if (!open) process.kill(process.pid, "SIGKILL");
      continue;
    }
    if (finished) server.push();
  }
}

/** One message of the restore: a task and its userfaultfd (criu's protocol; crest's restore adds a pidfd), or the end. */
function fromRestore(server: LazyServer, client: number, guard: number, log: Logger, handed: (t: LazyTask) => void): "task" | "finished" | "closed" {
  const head = recvAll(client, 4, "read from the restore");
  if (!head) return "closed";
  const pid = head.readInt32LE(0);
  if (head.readUInt32LE(0) === RESTORE_FINISHED) return "finished";
  if (pid < 0) {
    log.info(`process ${-pid} is a zombie: no memory to serve`);
    return "task";
  }
  const m = recvFds(client, `read the userfaultfd of process ${pid}`);
  if (!m || !m.fds.length) throw new Error(`the restore sent process ${pid} without its userfaultfd`);
  const [uffd, pidfd, ...extra] = m.fds;
  for (const f of extra) closeSync(f);
  try {
    tellGuard(guard, "T", pidfd === undefined ? [uffd!] : [uffd!, pidfd]);
  } finally {
    if (pidfd !== undefined) closeSync(pidfd);
  }
  handed(server.add(pid, uffd!));
  return "task";
}

/** A message to the guard: T (a restored task's userfaultfd and pidfd), F (a forked child's userfaultfd), G (the one handed over `slot`-th is gone), D (done). */
function tellGuard(guard: number, what: "T" | "F" | "G" | "D", fds: number[], slot = 0): void {
  const m = Buffer.alloc(what === "G" ? 5 : 1);
  m.write(what);
  if (what === "G") m.writeUInt32LE(slot, 1);
  const n = sendWithFiles(guard, m, fds, 0);
  if (n !== m.length) throw new Error(`cannot reach the guard of the restored tree (${n < 0 ? errnoName(-n) : "short send"})`);
}

/** Starts the guard (this command again), connected by a seqpacket socket; returns the daemon's end. */
function startGuard(log: Logger): number {
  const pair = new Int32Array(2);
  check(native.syscall(SYS.socketpair, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), "make the guard's socket");
  const nul = check(native.syscall(SYS.openat, -100, "/dev/null", 2, 0), "open /dev/null");
  let pid: number;
  try {
    const env = Object.entries(process.env).filter(([k]) => k !== GUARD_ENV).map(([k, v]) => `${k}=${v}`);
    pid = native.spawn({
      path: join(projectRoot(), "bin", "crest"), argv: ["crest", "lazy-pages"], env: [...env, `${GUARD_ENV}=1`],
      setsid: 1, fds: [nul, nul, 2, pair[1]!],
    });
  } finally {
    closeSync(nul);
    closeSync(pair[1]!);
  }
  if (pid < 0) {
    closeSync(pair[0]!);
    throw new Error(`cannot start the guard of the restored tree: ${errnoName(-pid)}`);
  }
  log.debug(`guard of the restored tree: process ${pid}`);
  return pair[0]!;
}

/**
 * The guard: holds what the daemon hands it until told the daemon is done
 * (exits 0), or until the daemon is gone without a word: then kills every
 * restored task and its descendants.
 */
function guardMain(log: Logger): number {
  const uffds: number[] = [], pidfds: number[] = [];
  for (;;) {
    let m: { data: Buffer; fds: number[] } | null;
    try {
      m = recvFds(GUARD_FD, "read from the lazy-pages daemon", 5);
    } catch {
      m = null;
    }
    if (!m) break;
    const kind = String.fromCharCode(m.data[0]!);
    if (kind === "D") {
      for (const f of [...uffds, ...pidfds]) if (f >= 0) closeSync(f);
      return 0;
    }
    if (kind === "G") {
      // A task's memory is gone: its userfaultfd guards nothing any more.
      const slot = m.data.readUInt32LE(1);
      if (uffds[slot] !== undefined && uffds[slot] >= 0) closeSync(uffds[slot]);
      uffds[slot] = -1;
      continue;
    }
    uffds.push(m.fds[0]!);
    if (kind === "T" && m.fds[1] !== undefined) pidfds.push(m.fds[1]);
  }
  const pids = pidfds.map(pidOfPidfd).filter((p): p is number => p !== null);
  const all = new Set<number>();
  const walk = (pid: number) => {
    if (all.has(pid)) return;
    all.add(pid);
    for (const c of childrenOf(pid)) walk(c);
  };
  for (const p of pids) walk(p);
  for (const p of all) {
    try {
      process.kill(p, SIG.KILL);
    } catch {
      // gone already
    }
  }
  const msg = `crest lazy-pages: the daemon ended before every page was in place: killed the restored tree (${[...all].join(", ") || "no process left"})\n`;
  try {
    writeSync(2, msg);
  } catch {
    log.error(msg.trim());
  }
  for (const f of [...uffds, ...pidfds]) if (f >= 0) closeSync(f);
  return 1;
}

/** A process's children (of all its threads). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        out.push(...readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").split(/\s+/).filter(Boolean).map(Number));
      } catch {
        // the thread is gone
      }
    }
  } catch {
    // the process is gone
  }
  return out;
}
