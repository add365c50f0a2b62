// `crest service`: criu's RPC service. It listens on a SOCK_SEQPACKET unix
// socket (--address, default criu's ./criu_service.socket; or the socket
// systemd passes, LISTEN_FDS), and serves each connection in a crest
// process of its own (`crest service-worker FD`), as criu forks a worker
// per connection: clients are served side by side, each request isolated,
// and a request that fails or crashes never takes the service down. The
// service itself never traces anything. Node cannot wait on a SEQPACKET
// socket, so the service polls it in short slices and lets its event loop
// run between them (it reaps the workers there).
import { spawn } from "node:child_process";
import { chmodSync, closeSync, existsSync, openSync, readSync, unlinkSync, writeFileSync } from "node:fs";
import { statusReady } from "../../pipelines/actions.js";
import { join } from "node:path";
import type { Logger } from "../../log.js";
import { workPath, type Options } from "../../options.js";
import { SYS } from "../../sys/constants.js";
import { check } from "../../sys/errno.js";
import { native, projectRoot } from "../../sys/native.js";
import { wait4 } from "../../sys/syscalls.js";

const AF_UNIX = 1, SOCK_SEQPACKET = 5, SOCK_CLOEXEC = 0o2000000;
const POLLIN = 1, EINTR = 4;
/** criu's CR_DEFAULT_SERVICE_ADDRESS. */
export const DEFAULT_ADDRESS = "./criu_service.socket";
/** systemd's first passed fd (SD_LISTEN_FDS_START). */
const SD_LISTEN_FDS_START = 3;

/** The socket systemd passed (socket activation), if it passed one to this process. */
function activated(): number | undefined {
  if (process.env.LISTEN_PID !== String(process.pid) || Number(process.env.LISTEN_FDS ?? 0) < 1) return undefined;
  return SD_LISTEN_FDS_START;
}

/** A listening SEQPACKET socket at path, anyone may connect to (as criu's). */
function listenAt(path: string): number {
  const fd = check(native.syscall(SYS.socket, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), "create the service socket");
  if (existsSync(path)) unlinkSync(path);
  const name = Buffer.from(path, "utf8");
  const addr = Buffer.alloc(2 + name.length + 1);
  addr.writeUInt16LE(AF_UNIX, 0);
  name.copy(addr, 2);
  check(native.syscall(SYS.bind, fd, addr, addr.length), `bind the service socket to ${path}`);
  chmodSync(path, 0o666);
  check(native.syscall(SYS.listen, fd, 16), "listen on the service socket");
  return fd;
}

/** The command a worker runs: this crest, as bin/crest starts it (on the startup snapshot when there is one). */
function workerCommand(): { file: string; args: string[] } {
  return { file: join(projectRoot(), "bin", "crest"), args: ["service-worker"] };
}

/** Waits up to ms for a connection; the accepted socket, or undefined. */
function acceptOne(listenFd: number, ms: number): number | undefined {
  const p = new Int32Array([listenFd, POLLIN]);
  const r = native.syscall(SYS.poll, p, 1, ms);
  if (r === -EINTR || r === 0) return undefined;
  check(r, "wait for a connection");
  // accept4 with SOCK_CLOEXEC: the worker gets it as its fd 3, nothing else does.
  return check(native.syscall(SYS.accept4, listenFd, null, null, SOCK_CLOEXEC), "accept a connection");
}

/** Runs the service until SIGTERM or SIGINT; returns the exit code. */
export function service(opts: Options, log: Logger): Promise<number> {
  const given = activated();
  const address = opts.service.address ?? DEFAULT_ADDRESS;
  if (given === undefined && !opts.service.address) log.warn("Binding to local dir address!");
  const listenFd = given ?? listenAt(address);
  log.info(given !== undefined ? "The service socket was passed by systemd" : `The service socket is bound to ${address}`);
  if (opts.restore.pidfile) writeFileSync(workPath(opts, opts.restore.pidfile), `${process.pid}`);
  statusReady(opts, log);
  const worker = workerCommand();
  let workers = 0, stopping = false;
  return new Promise((resolve) => {
    const stop = () => {
      stopping = true;
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
    const loop = () => {
      if (stopping) {
        closeSync(listenFd);
        log.info(`Stopped; ${workers} worker(s) still running`);
        resolve(0);
        return;
      }
      let sk: number | undefined;
      try {
        sk = acceptOne(listenFd, 100);
      } catch (e) {
        log.error((e as Error).message);
      }
      if (sk !== undefined) {
        log.info("Connected.");
        const child = spawn(worker.file, [...worker.args, "3", `-v${opts.log.level}`], { stdio: ["ignore", "inherit", "inherit", sk] });
        workers++;
        child.on("exit", (code, signal) => {
          workers--;
          if (code !== 0) log.info(`A worker ended with ${signal ? `signal ${signal}` : `exit code ${code}`}`);
        });
        child.on("error", (e) => log.error(`cannot start a worker: ${e.message}`));
        closeSync(sk);
      }
      setImmediate(loop);
    };
    log.info("Waiting for connection...");
    loop();
  });
}

/**
 * `crest service -d` (--daemon), and the page server and lazy-pages daemon:
 * the command runs on in a detached copy of crest (its own session, no
 * terminal), as criu's daemon(3); this one returns once that copy listens
 * (it says so on a pipe, as --status-fd).
 */
export function daemonize(argv: readonly string[], log: Logger): number {
  const pid = startListening(argv.filter((a) => a !== "-d" && a !== "--daemon" && a !== "--restore-detached"));
  if (pid === null) log.error(`crest ${argv[0] ?? ""} ended before it listened (run it without -d to see why)`);
  return pid === null ? 1 : 0;
}

/**
 * Starts `crest ARGS --status-fd 3` in a session of its own; its PID once it
 * says it listens, or null if it ended first. Not through child_process:
 * Node would reap it, and an RPC client may wait for it (WAIT_PID).
 */
export function startListening(args: readonly string[]): number | null {
  const fds = new Int32Array(2);
  check(native.syscall(SYS.pipe2, fds, 0o2000000), "make a pipe");
  const [readEnd, writeEnd] = [fds[0]!, fds[1]!];
  const nul = openSync("/dev/null", "r+");
  let pid: number;
  try {
    pid = native.spawn({
      path: join(projectRoot(), "bin", "crest"), argv: ["crest", ...args, "--status-fd", "3"],
      env: Object.entries(process.env).map(([k, v]) => `${k}=${v}`), setsid: 1, fds: [nul, nul, nul, writeEnd],
    });
  } finally {
    closeSync(nul);
    closeSync(writeEnd);
  }
  const got = Buffer.alloc(1);
  let n = 0;
  try {
    if (pid > 0) n = readSync(readEnd, got, 0, 1, null);
  } finally {
    closeSync(readEnd);
  }
  if (n === 1) return pid;
  // It ended (or its end of the pipe did): not left a zombie here.
  if (pid > 0) wait4(pid, 0, "reap a crest that ended before it listened");
  return null;
}
