// One RPC connection, as criu's cr_service_work serves it: read a request,
// carry it out, answer; go on only while requests ask keep_open (criu allows
// it for the requests that leave nothing behind: VERSION, FEATURE_CHECK,
// CPUINFO, PAGE_SERVER). `crest swrk FD` runs one session on the socket its
// client passed (go-criu, libcriu, pycriu); the service runs one per
// connection, each in a process of its own.
import { closeSync, fstatSync, openSync, readFileSync, constants as fsc } from "node:fs";
import { Logger } from "../../log.js";
import { workPath, type Command, type Options } from "../../options.js";
import { criu_req_type, ImageError, type criu_notify, type criu_opts, type criu_req, type criu_resp, type EncodeInput } from "../../images/index.js";
import { UnsupportedError } from "../../kinds/context.js";
import type { Progress, RunHooks } from "../../pipelines/hooks.js";
import { projectRoot } from "../../sys/native.js";
import { wait4 } from "../../sys/syscalls.js";
import { SysError } from "../../sys/errno.js";
import type { Hook, Notifier } from "../../pipelines/actions.js";
import { execute, type Executed } from "../execute.js";
import { SYSTEM_CONFIG_ENV } from "../cli/config.js";
import { translate, type Mode } from "./request.js";
import { dumpErrno, restoreErrno } from "./errno.js";
import { facts } from "../../kernel/facts.js";
import { checkDumpAllowed, checkRestoreAllowed } from "./security.js";
import { startListening } from "./service.js";
import { listenPageServer } from "../../images/page-server.js";
import { BadRequest, peerOf, recvRequest, sendResponse, type Peer } from "./wire.js";

/** criu's version, whose RPC crest speaks; runc and go-criu check it. */
const CRIU_MAJOR = 4, CRIU_MINOR = 2;
/** EBADRQC: criu's cr_errno for a request whose options it cannot take. */
const EBADRQC = 56, EPIPE = 32;

/** The requests criu lets a client keep the connection open after. */
const KEEP_OPEN: ReadonlySet<number> = new Set([
  criu_req_type.VERSION, criu_req_type.FEATURE_CHECK, criu_req_type.CPUINFO_DUMP, criu_req_type.CPUINFO_CHECK,
  criu_req_type.PAGE_SERVER, criu_req_type.PAGE_SERVER_CHLD,
]);

const TYPE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(criu_req_type).map(([k, v]) => [v, k]));

type Resp = EncodeInput<criu_resp>;

const failure = (type: number, message: string, errno = 0): Resp => ({
  type: type as criu_resp["type"], success: false, cr_errmsg: message, ...(errno ? { cr_errno: errno } : {}),
});

class Session {
  readonly peer: Peer;
  /** The connection's socket inode: the tree's socket connected to it is a self-dumping client's own. */
  readonly ino: number;

  constructor(readonly fd: number, readonly mode: Mode, readonly log: Logger) {
    this.peer = peerOf(fd);
    this.ino = fstatSync(fd).ino;
  }

  /** Serves requests until one that does not keep the connection open; returns the exit code. */
  run(): number {
    for (;;) {
      let req: criu_req | null;
      try {
        req = recvRequest(this.fd);
      } catch (e) {
        if (!(e instanceof BadRequest)) throw e;
        this.log.error(`RPC error: ${e.message}`);
        sendResponse(this.fd, failure(criu_req_type.EMPTY, e.message, EBADRQC));
        return 1;
      }
      if (!req) return 0;
      if (req.keep_open && !KEEP_OPEN.has(req.type)) {
        const why = `keep_open is allowed only with VERSION, FEATURE_CHECK, CPUINFO and PAGE_SERVER requests, not ${TYPE_NAMES[req.type]}`;
        this.log.error(`RPC error: ${why}`);
        sendResponse(this.fd, failure(req.type, why, EBADRQC));
        return 1;
      }
      const ok = this.handle(req);
      if (!req.keep_open) return ok ? 0 : 1;
    }
  }

  private handle(req: criu_req): boolean {
    // Every request as it came, at -v4: what a client (runc, podman, LXC's tools) asks of criu, field by field.
    this.log.debug(`RPC request ${TYPE_NAMES[req.type] ?? req.type}: ${describe(req)}`);
    switch (req.type) {
      case criu_req_type.DUMP: return this.dump(req.opts);
      case criu_req_type.PRE_DUMP: return this.preDump(req.opts);
      case criu_req_type.RESTORE: return this.restore(req.opts);
      case criu_req_type.CHECK: return this.check(req.opts);
      case criu_req_type.FEATURE_CHECK:
        // What crest offers of these today: memory tracking and lazy pages (as criu: userfaultfd with its non-cooperative events) where the kernel has them, no pidfd store.
        const lazy = facts.get("uffd").supported && facts.get("uffd-noncoop").supported;
        return this.answer({ type: req.type, success: true, features: { mem_track: facts.get("uffd-wp").supported, lazy_pages: lazy, pidfd_store: false } });
      case criu_req_type.VERSION:
        return this.answer({ type: req.type, success: true, version: { major_number: CRIU_MAJOR, minor_number: CRIU_MINOR, gitid: gitid() } });
      case criu_req_type.WAIT_PID: return this.waitPid(req.pid ?? 0);
      case criu_req_type.PAGE_SERVER:
      case criu_req_type.PAGE_SERVER_CHLD:
        return this.pageServer(req.type, req.opts);
      case criu_req_type.NOTIFY:
        return this.answer(failure(req.type, "a NOTIFY request came with no notification to answer"));
      default:
        return this.answer(failure(req.type, `${TYPE_NAMES[req.type] ?? `request type ${req.type}`} requests are not supported by crest yet`));
    }
  }

  private answer(resp: Resp, passFd?: number): boolean {
    try {
      sendResponse(this.fd, resp, passFd);
    } catch (e) {
      // A client that went away (or dumped itself and was killed) is not there to hear it.
      if (!(e instanceof SysError && e.errno === EPIPE)) throw e;
      this.log.info("The client has gone; its answer is not sent");
    }
    return resp.success;
  }

  /**
   * Runs one command with the request's options, its log in the client's
   * work directory. `explain` gives criu's cr_errno for a failure that
   * carries none (it runs while the client's directories are still held).
   */
  private execute(cmd: Executed, o: criu_opts | undefined, allowed?: (opts: Options) => string | null,
    explain?: (opts: Options) => number): { ok: boolean; resp: Resp; pid?: number } {
    const t = translate(cmd as Command, o, this.peer, this.mode, SYSTEM_CONFIG_ENV);
    const type = cmd === "dump" ? criu_req_type.DUMP : cmd === "pre-dump" ? criu_req_type.PRE_DUMP : cmd === "restore" ? criu_req_type.RESTORE : criu_req_type.CHECK;
    let log: Logger;
    try {
      log = new Logger(t.options.log.level, t.options.log.file ? workPath(t.options, t.options.log.file) : undefined);
    } catch (e) {
      return { ok: false, resp: failure(type, `cannot open the log file: ${(e as Error).message}`) };
    }
    log.debug(`RPC ${TYPE_NAMES[type]} options as the client set them: ${o ? describe(o) : "none"}`);
    let status: number | undefined;
    const held: number[] = [];
    try {
      const refused = [...t.refused];
      // The client's directories, held open by crest for the whole request: a self-dumping client takes its fds with it when it dies.
      for (const key of ["dir", "workDir"] as const) {
        const path = t.options.images[key];
        if (path === undefined || !path.startsWith(`/proc/${this.peer.pid}/`)) continue;
        try {
          const fd = openSync(path, fsc.O_RDONLY | fsc.O_DIRECTORY);
          held.push(fd);
          t.options.images[key] = `/proc/${process.pid}/fd/${fd}`;
        } catch (e) {
          refused.push(`cannot open the client's ${key === "dir" ? "images" : "work"} directory ${path}: ${(e as Error).message}`);
        }
      }
      const denied = allowed?.(t.options);
      if (denied) refused.push(denied);
      if (t.statusPath !== undefined) {
        try {
          status = openSync(t.statusPath, "w");
          t.options.restore.statusFd = status;
        } catch (e) {
          refused.push(`cannot reopen the status fd ${t.statusPath}: ${(e as Error).message}`);
        }
      }
      const hooks: RunHooks = {
        ...(t.notify ? { notify: this.notifier() } : {}),
        ...(o?.crest_progress ? { progress: this.progressNotifier() } : {}),
      };
      const out = execute(cmd, t.options, refused, log, hooks);
      let errno = out.error instanceof SysError ? out.error.errno : refused.length ? EBADRQC : 0;
      if (out.code !== 0 && !errno && explain) errno = explain(t.options);
      const resp: Resp = out.code === 0 ? { type, success: true }
        : { ...failure(type, out.error?.message ?? "failed", errno), crest_errcode: refused.length ? "unsupported" : errorCode(out.error) };
      return { ok: out.code === 0, resp, ...(out.pid !== undefined ? { pid: out.pid } : {}) };
    } finally {
      if (status !== undefined) closeSync(status);
      for (const fd of held) closeSync(fd);
      log.close();
    }
  }

  private dump(o: criu_opts | undefined): boolean {
    // No pid: the client dumps itself; its end of this connection comes back with the dump's answer.
    const self = !o?.pid;
    const opts = o ? { ...o } : undefined;
    const r = this.execute("dump", opts, (options) => {
      if (self) {
        options.dump.tree = this.peer.pid;
        options.dump.rpcSocket = this.ino;
      }
      return checkDumpAllowed(this.peer, options.dump.tree!);
    }, (options) => dumpErrno(options.dump.tree));
    // A client that dumped itself and was killed by it is not there to hear (it hears it after its restore).
    if (!self || !r.ok || o?.leave_running) this.answer({ ...r.resp, dump: { restored: false } });
    return r.ok;
  }

  private preDump(o: criu_opts | undefined): boolean {
    const r = this.execute("pre-dump", o, (options) => checkDumpAllowed(this.peer, options.dump.tree!), (options) => dumpErrno(options.dump.tree));
    this.answer(r.resp);
    return r.ok;
  }

  private restore(o: criu_opts | undefined): boolean {
    const r = this.execute("restore", o, (options) => {
      // As criu: the restored tree is detached (crest's child, or its client's with rst_sibling).
      options.restore.detached = true;
      return checkRestoreAllowed(this.peer, options.images.dir);
    }, (options) => restoreErrno(options.images.dir));
    this.answer({ ...r.resp, restore: { pid: r.pid ?? -1 } });
    return r.ok;
  }

  private check(o: criu_opts | undefined): boolean {
    return this.answer(this.execute("check", o).resp);
  }

  /**
   * criu's PAGE_SERVER (and PAGE_SERVER_CHLD): a page server of its own for
   * the client's next dump, at ps.address:ps.port (a free port when none is
   * given), writing into the request's images directory; answered with its
   * PID and port once it listens. The client stops it (or the dump's
   * session ends it).
   */
  private pageServer(type: number, o: criu_opts | undefined): boolean {
    const t = translate("page-server", o, this.peer, this.mode, SYSTEM_CONFIG_ENV);
    if (t.refused.length) return this.answer(failure(type, t.refused.join("; "), EBADRQC));
    const opts = t.options;
    const address = opts.service.address ?? "0.0.0.0";
    let port = opts.service.port ?? 0;
    if (!port) {
      const l = listenPageServer(address, 0);
      port = l.port;
      closeSync(l.fd);
    }
    const args = ["page-server", "-D", opts.images.dir, "--address", address, "--port", String(port), `-v${opts.log.level}`];
    if (opts.log.file !== undefined) args.push("-o", workPath(opts, opts.log.file));
    const tls = opts.service.tls;
    if (tls?.on) args.push("--tls");
    for (const [flag, file] of [["--tls-cacert", tls?.cacert], ["--tls-cacrl", tls?.cacrl], ["--tls-cert", tls?.cert], ["--tls-key", tls?.key]] as const) {
      if (file !== undefined) args.push(flag, workPath(opts, file));
    }
    if (tls?.noCnVerify) args.push("--tls-no-cn-verify");
    const pid = startListening(args);
    if (pid === null) return this.answer(failure(type, `the page server on ${address}:${port} ended before it listened (its log: ${opts.log.file ?? "none"})`));
    this.log.info(`Page server ${pid} listens on ${address}:${port} for the client`);
    return this.answer({ type: type as criu_resp["type"], success: true, ps: { pid, port } });
  }

  private waitPid(pid: number): boolean {
    try {
      const st = wait4(pid, 0, `wait for process ${pid}`)!;
      return this.answer({ type: criu_req_type.WAIT_PID, success: true, status: st.raw });
    } catch (e) {
      return this.answer(failure(criu_req_type.WAIT_PID, (e as Error).message, e instanceof SysError ? e.errno : 0));
    }
  }

  /** criu's RPC notifications: each hook told to the client, whose NOTIFY answer says go on or fail. */
  private notifier(): Notifier {
    return (hook: Hook, pid?: number, fd?: number) => {
      const reply = this.notify({ script: hook, ...(pid !== undefined ? { pid } : {}) }, hook, fd);
      if (!reply.notify_success) throw new Error(`the RPC client reported that its ${hook} script failed`);
      return { external: reply.opts?.external ?? [] };
    };
  }

  /** crest's progress notifications (asked for with crest_progress): a client that answers no cancels the command. */
  private progressNotifier(): (p: Progress) => void {
    return (p) => {
      if (!this.notify({ script: "crest-progress", crest_progress: JSON.stringify(p) }, "progress").notify_success) {
        throw new Aborted("cancelled by the RPC client");
      }
    };
  }

  /** Sends a NOTIFY (with a file descriptor if given) and returns the client's NOTIFY answer. */
  private notify(n: EncodeInput<criu_notify>, what: string, passFd?: number): criu_req {
    sendResponse(this.fd, { type: criu_req_type.NOTIFY, success: true, notify: n }, passFd);
    const reply = recvRequest(this.fd);
    if (!reply) throw new Error(`the RPC client went away during the ${what} notification`);
    if (reply.type !== criu_req_type.NOTIFY) throw new Error(`the RPC client answered the ${what} notification with a ${TYPE_NAMES[reply.type]} request`);
    return reply;
  }
}

/** A command the client cancelled. */
class Aborted extends Error {}

/** What kind of failure an error is, for crest's own clients (criu_resp.crest_errcode). */
function errorCode(e: Error | undefined): string {
  if (e instanceof Aborted) return "aborted";
  if (e instanceof UnsupportedError) return "unsupported";
  if (e instanceof ImageError) return "image";
  return "failed";
}

/** A request or its options as JSON, without the fields left unset or empty. */
function describe(v: object): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x === undefined || x === null || (Array.isArray(x) && x.length === 0) ? undefined : typeof x === "bigint" ? x.toString() : x);
}

/** crest's own version, for VERSION's gitid. */
function gitid(): string {
  const pkg = JSON.parse(readFileSync(`${projectRoot()}package.json`, "utf8")) as { version: string };
  return `crest-${pkg.version}`;
}

/** `crest swrk FD`: one session on the socket the client passed; returns the exit code. */
export function swrk(fd: number, log: Logger): number {
  if (!Number.isInteger(fd) || fd < 0) {
    log.error(`swrk: bad file descriptor ${fd}`);
    return 1;
  }
  try {
    return new Session(fd, "swrk", log).run();
  } catch (e) {
    log.error(`swrk: ${(e as Error).message}`);
    return 1;
  }
}

/** The service's worker: one session on an accepted connection. */
export function serveConnection(fd: number, log: Logger): number {
  try {
    return new Session(fd, "service", log).run();
  } catch (e) {
    log.error(`service: ${(e as Error).message}`);
    return 1;
  }
}
