// The four runtimes as the tests drive them, each through its own commands,
// unchanged: start the counter container, read its count through its TCP
// port, checkpoint it and restore it with the criu of a CriuDir, remove it.
import { execFileSync, spawn, spawnSync, type SpawnSyncReturns } from "node:child_process";
import { closeSync, copyFileSync, existsSync, openSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import type { CriuDir } from "./criu-dir.js";
import { CONTAINERS_SRC, COUNTER_PORT, lxcContainer, ociBundle, podmanImage } from "./rootfs.js";

export interface Result {
  code: number;
  output: string;
}

export interface Container {
  name: string;
  work: string;
  /** The container's init, as this PID namespace sees it. */
  pid(): number;
  running(): boolean;
  /** The count the container serves on its TCP port; null if it does not answer. */
  count(): number | null;
  /** Its address on a network the host reaches without NAT, where it has one (podman's bridge). */
  address?(): string;
  /** With a terminal: what the container wrote on it, as the console socket's holder read it. */
  console?(): string;
}

/** What a checkpoint or restore asks besides the defaults. */
export interface CrOptions {
  /** --tcp-established (LXC always asks it). */
  tcpEstablished?: boolean;
  /** Checkpoint only: the container runs on (runc's and podman's --leave-running, lxc-checkpoint without -s). */
  leaveRunning?: boolean;
  /**
   * podman only: the checkpoint exported to this archive (--export), and the
   * restore made from it (--import) into a new container, the old one removed
   * in between (`podman rm`).
   */
  archive?: string;
}

export interface Runtime {
  readonly name: string;
  /** Why the runtime cannot be used here (not installed), or null. */
  missing(): string | null;
  /** Why it cannot checkpoint at all as it is built, or null. */
  noCheckpoint(): string | null;
  start(work: string, name: string): Container;
  checkpoint(ct: Container, criu: CriuDir, images: string, o?: CrOptions): Result;
  restore(ct: Container, criu: CriuDir, images: string, o?: CrOptions): Result;
  /** Whether it exports a checkpoint to an archive and imports it into a new container (CrOptions.archive). */
  readonly archives: boolean;
  /** criu's log of the last checkpoint ("dump") or restore, where the runtime has it written. */
  criuLog(ct: Container, images: string, what: "dump" | "restore"): string;
  remove(ct: Container): void;
}

const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

export function waitFor<T>(what: string, fn: () => T | null | undefined | false, ms = 20_000): T {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== null && v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    sleep(100);
  }
}

const has = (cmd: string) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;

/**
 * Runs a command to its end. With `log`, its output goes to that file instead
 * of a pipe: a command that leaves a process of its own behind holding its
 * stdout (LXC's monitor, after lxc-checkpoint -r) would otherwise keep the
 * pipe open long after it exited.
 */
function run(cmd: string, args: string[], env: Record<string, string> = {}, log?: string): Result {
  const opts = { encoding: "utf8" as const, env: { ...process.env, ...env }, timeout: 180_000 };
  if (log) {
    const fd = openSync(log, "a");
    const start = statSync(log).size;
    try {
      const r = spawnSync(cmd, args, { ...opts, stdio: ["ignore", fd, fd] });
      return { code: r.error ? -1 : r.status ?? -1, output: readFileSync(log, "utf8").slice(start) + (r.error ? String(r.error) : "") };
    } finally {
      closeSync(fd);
    }
  }
  const r: SpawnSyncReturns<string> = spawnSync(cmd, args, opts);
  return { code: r.error ? -1 : r.status ?? -1, output: `${r.stdout ?? ""}${r.stderr ?? ""}${r.error ? String(r.error) : ""}` };
}

/**
 * Runs a runtime's command whose process stays behind with the caller's stdio
 * (runc/crun run -d and restore -d): its stdin an empty pipe, its stdout and
 * stderr a pipe into `cat >> LOG` (pipes are what criu dumps and what runc
 * hands back with inherit_fd; a file of the host's would be a file outside
 * the container's mounts). Returns the command's own exit status.
 */
function runDetached(argv: string[], log: string, env: Record<string, string> = {}): Result {
  const status = `${log}.status-${Date.now()}`;
  const quoted = argv.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ");
  spawnSync("sh", ["-c", `(true | { ${quoted}; echo $? > '${status}'; } 2>&1 | cat >> '${log}' &)`],
    { stdio: "ignore", env: { ...process.env, ...env } });
  const code = Number(waitFor(`${argv[0]} ${argv.find((a) => a === "run" || a === "restore")}`, () => existsSync(status) && readFileSync(status, "utf8").trim(), 180_000));
  rmSync(status, { force: true });
  return { code, output: existsSync(log) ? readFileSync(log, "utf8") : "" };
}

const tcp = (o: CrOptions) => [...(o.tcpEstablished ? ["--tcp-established"] : []), ...(o.leaveRunning ? ["--leave-running"] : [])];

/** The count, read with busybox wget inside the container's network namespace (no -T: Debian's static busybox 1.35 wget dies of SIGSEGV with it). */
function countIn(pid: number): number | null {
  const r = spawnSync("nsenter", ["-t", String(pid), "-n", "/bin/busybox", "wget", "-q", "-O", "-", `http://127.0.0.1:${COUNTER_PORT}/count`], { encoding: "utf8", timeout: 5000 });
  return r.status === 0 && /^\d+\n?$/.test(r.stdout) ? Number(r.stdout) : null;
}

function pidOf(ct: Container): number | null {
  try {
    return ct.pid();
  } catch {
    return null;
  }
}

/**
 * runc and crun: an OCI bundle, `run -d`, `checkpoint`, `restore -d`. With
 * `terminal`, the container has one: its master goes to a console socket
 * (`--console-socket`, held by recvtty.py) on run and, criu's
 * orphan-pts-master, on restore.
 */
class OciRuntime implements Runtime {
  readonly archives = false;
  constructor(readonly name: "runc" | "crun", readonly terminal = false) {}

  /** The console socket's holder of each container with a terminal, by name. */
  private readonly consoles = new Map<string, { pid: number; socket: string }>();

  missing(): string | null {
    return has(this.name) ? null : `${this.name} is not installed (Debian's ${this.name} package)`;
  }

  noCheckpoint(): string | null {
    const r = run(this.name, ["checkpoint", "--help"]);
    if (/unknown command/.test(r.output)) {
      const version = run(this.name, ["--version"]).output.split("\n")[0];
      return `${version} here is built without CRIU support: \`${this.name} checkpoint\` answers ${JSON.stringify(r.output.trim())}`;
    }
    return null;
  }

  /** runc takes criu's path (--criu); crun's libcriu runs the criu on PATH. */
  private criuArgs(criu: CriuDir): string[] {
    return this.name === "runc" ? ["--criu", criu.criu] : [];
  }

  start(work: string, name: string): Container {
    const bundle = ociBundle(join(work, "bundle"), this.terminal);
    const ct: Container = {
      name, work,
      ...(this.terminal ? { console: () => { const f = join(work, "console.log"); return existsSync(f) ? readFileSync(f, "latin1") : ""; } } : {}),
      pid: () => (JSON.parse(execFileSync(this.name, ["state", name], { encoding: "utf8" })) as { pid: number }).pid,
      running: () => {
        const r = run(this.name, ["state", name]);
        return r.code === 0 && (JSON.parse(r.output) as { status: string }).status === "running";
      },
      count: () => { const p = pidOf(ct); return p ? countIn(p) : null; },
    };
    const r = runDetached([this.name, "run", "-d", ...this.consoleArgs(ct), "--bundle", bundle, name], join(work, "container.log"));
    if (r.code !== 0) throw new Error(`${this.name} run failed (${r.code}): ${r.output}`);
    return ct;
  }

  /** `--console-socket` for a container with a terminal, its holder started on first use. */
  private consoleArgs(ct: Container): string[] {
    if (!this.terminal) return [];
    let c = this.consoles.get(ct.name);
    if (!c) {
      const socket = join(ct.work, "console.sock");
      const p = spawn(join(CONTAINERS_SRC, "recvtty.py"), [socket, join(ct.work, "console.log")], { stdio: "ignore", detached: true });
      p.unref();
      c = { pid: p.pid!, socket };
      this.consoles.set(ct.name, c);
      waitFor("the console socket", () => existsSync(socket), 10_000);
    }
    return ["--console-socket", c.socket];
  }

  checkpoint(ct: Container, criu: CriuDir, images: string, o: CrOptions = {}): Result {
    return run(this.name, [...this.criuArgs(criu), "checkpoint", ...tcp(o), "--image-path", images, "--work-path", `${images}.work`, ct.name], { PATH: criu.path });
  }

  restore(ct: Container, criu: CriuDir, images: string, o: CrOptions = {}): Result {
    const r = runDetached([this.name, ...this.criuArgs(criu), "restore", "-d", ...tcp(o), ...this.consoleArgs(ct), "--image-path", images, "--work-path", `${images}.rwork`,
      "--bundle", join(ct.work, "bundle"), ct.name], join(ct.work, "container.log"), { PATH: criu.path });
    // runc asks criu for an empty network namespace (empty_ns = CLONE_NEWNET: "runc doesn't manage
    // network devices"): what was in it is its user's to set up again, here the loopback.
    if (r.code === 0) execFileSync("nsenter", ["-t", String(ct.pid()), "-n", "/bin/busybox", "ip", "link", "set", "lo", "up"]);
    return r;
  }

  criuLog(_ct: Container, images: string, what: "dump" | "restore"): string {
    return what === "dump" ? join(`${images}.work`, "dump.log") : join(`${images}.rwork`, "restore.log");
  }

  remove(ct: Container): void {
    run(this.name, ["delete", "-f", ct.name]);
    const c = this.consoles.get(ct.name);
    if (c) {
      try {
        process.kill(c.pid, "SIGKILL");
      } catch { /* gone already */ }
      this.consoles.delete(ct.name);
      rmSync(c.socket, { force: true });
    }
  }
}

/**
 * podman with runc as its OCI runtime (Debian's crun has no CRIU in it), the
 * container's port published on the host's loopback at a port podman picks.
 * Its ulimits are given below the host's: podman otherwise asks for the
 * host's NOFILE/NPROC maximum, which a root without CAP_SYS_RESOURCE (this
 * machine's) cannot set.
 */
class Podman implements Runtime {
  readonly name = "podman";
  readonly archives = true;
  readonly oci = has("runc") ? "runc" : "crun";
  /** With `terminal`, the container has one (`-t`): conmon holds its master, and the restore's new one (orphan-pts-master). */
  constructor(readonly terminal = false) {}

  missing(): string | null {
    if (!has("podman")) return "podman is not installed (Debian's podman package)";
    return new OciRuntime(this.oci).missing();
  }

  noCheckpoint(): string | null {
    return new OciRuntime(this.oci).noCheckpoint();
  }

  private inspect(name: string, format: string): string {
    return execFileSync("podman", ["inspect", name, "--format", format], { encoding: "utf8" }).trim();
  }

  start(work: string, name: string): Container {
    const image = podmanImage(work);
    const r = run("podman", ["--runtime", this.oci, "run", "-d", ...(this.terminal ? ["-t"] : []), "--name", name, "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096",
      "-p", `127.0.0.1::${COUNTER_PORT}`, image]);
    if (r.code !== 0) throw new Error(`podman run failed (${r.code}): ${r.output}`);
    // The published port, read again when the container is new (an --import makes one, and podman picks its port anew).
    let port: { id: string; port: number } | undefined;
    const hostPort = (): number | null => {
      const id = run("podman", ["inspect", name, "--format", "{{.ID}}"]).output.trim();
      if (port?.id !== id) {
        const p = run("podman", ["port", name, String(COUNTER_PORT)]);
        const m = /:(\d+)\s*$/.exec(p.output);
        if (p.code !== 0 || !m) return null;
        port = { id, port: Number(m[1]) };
      }
      return port.port;
    };
    hostPort();
    return {
      name, work,
      // The bridge's address: a connection to the published port goes through NAT and was reset after
      // the restore with criu 4.2 too (likely its conntrack entry, gone with podman's network at the checkpoint).
      address: () => this.inspect(name, "{{.NetworkSettings.IPAddress}}"),
      // What the container wrote on its terminal, as conmon read it from the master.
      ...(this.terminal ? { console: () => run("podman", ["logs", name]).output } : {}),
      pid: () => Number(this.inspect(name, "{{.State.Pid}}")),
      running: () => run("podman", ["inspect", name, "--format", "{{.State.Status}}"]).output.trim() === "running",
      // From the host, through the published port.
      count: () => {
        const port = hostPort();
        if (port === null) return null;
        const w = spawnSync("/bin/busybox", ["wget", "-q", "-O", "-", `http://127.0.0.1:${port}/count`], { encoding: "utf8", timeout: 5000 });
        return w.status === 0 && /^\d+\n?$/.test(w.stdout) ? Number(w.stdout) : null;
      },
    };
  }

  /**
   * In place (podman keeps the images in the container's userdata directory, with --keep its logs too), or
   * exported to an archive (which holds the images and criu's log) and the container removed.
   */
  checkpoint(ct: Container, criu: CriuDir, _images: string, o: CrOptions = {}): Result {
    const r = run("podman", ["container", "checkpoint", "--keep", ...tcp(o), ...(o.archive ? ["--export", o.archive] : []), ct.name], { PATH: criu.path });
    if (o.archive) {
      // Kept beside the archive: the container, and its userdata with the log, are removed before the import.
      const log = `${o.archive}.dump.log`;
      try {
        copyFileSync(join(this.userdata(ct), "dump.log"), log);
        this.logs.set(ct.name, log);
      } catch { /* no log: the failure's message says so */ }
    }
    return r;
  }

  /** In place, or from the archive into a new container of the same name (import refuses --tcp-established with --name). */
  restore(ct: Container, criu: CriuDir, _images: string, o: CrOptions = {}): Result {
    return run("podman", ["container", "restore", "--keep", ...tcp(o), ...(o.archive ? ["--import", o.archive] : [ct.name])], { PATH: criu.path });
  }

  /** Where the checkpoint's log was kept when its container is gone (removed after an export). */
  private readonly logs = new Map<string, string>();

  private userdata(ct: Container): string {
    return join("/var/lib/containers/storage/overlay-containers", this.inspect(ct.name, "{{.ID}}"), "userdata");
  }

  criuLog(ct: Container, _images: string, what: "dump" | "restore"): string {
    try {
      return join(this.userdata(ct), `${what}.log`);
    } catch {
      return (what === "dump" && this.logs.get(ct.name)) || `(${ct.name} is gone, and its ${what}.log with it)`;
    }
  }

  remove(ct: Container): void {
    // -t 0: the counter's shell, its init, ignores SIGTERM; podman would wait 10 s for it before SIGKILL.
    run("podman", ["rm", "-f", "-t", "0", ct.name]);
  }
}

/** LXC 5: a container under a path of the test's own (-P), lxc-start -d, lxc-checkpoint -s and -r. */
class Lxc implements Runtime {
  readonly name = "lxc";
  readonly archives = false;

  missing(): string | null {
    return has("lxc-start") && has("lxc-checkpoint") ? null : "LXC is not installed (Debian's lxc package)";
  }

  noCheckpoint(): string | null {
    return null;
  }

  private lxc(tool: string, ct: { name: string; work: string }, args: string[], env: Record<string, string> = {}): Result {
    return run(tool, ["-P", join(ct.work, "lxc"), "-n", ct.name, ...args], env, join(ct.work, "lxc-tools.log"));
  }

  start(work: string, name: string): Container {
    lxcContainer(join(work, "lxc"), name);
    const ct: Container = {
      name, work,
      pid: () => Number(this.lxc("lxc-info", ct, ["-pH"]).output.trim()) || (() => { throw new Error(`${name} has no init`); })(),
      running: () => this.lxc("lxc-info", ct, ["-sH"]).output.trim() === "RUNNING",
      count: () => { const p = pidOf(ct); return p ? countIn(p) : null; },
    };
    const r = this.lxc("lxc-start", ct, ["-d"]);
    if (r.code !== 0) throw new Error(`lxc-start failed (${r.code}): ${r.output}`);
    return ct;
  }

  checkpoint(ct: Container, criu: CriuDir, images: string, o: CrOptions = {}): Result {
    return this.lxc("lxc-checkpoint", ct, ["-D", images, ...(o.leaveRunning ? [] : ["-s"]), "-v"], { PATH: criu.path });
  }

  restore(ct: Container, criu: CriuDir, images: string): Result {
    return this.lxc("lxc-checkpoint", ct, ["-D", images, "-r", "-v"], { PATH: criu.path });
  }

  criuLog(_ct: Container, images: string, what: "dump" | "restore"): string {
    return join(images, `${what}.log`);
  }

  remove(ct: Container): void {
    this.lxc("lxc-stop", ct, ["-k"]);
  }
}

export const RUNTIMES: readonly Runtime[] = [new OciRuntime("runc"), new OciRuntime("crun"), new Podman(), new Lxc()];

/** runc with a terminal in its container (`"terminal": true`, a console socket): criu's orphan-pts-master on restore. */
export const RUNC_TERMINAL: Runtime = new OciRuntime("runc", true);
/** podman with a terminal in its container (`podman run -t`: conmon's console socket). */
export const PODMAN_TERMINAL: Runtime = new Podman(true);
