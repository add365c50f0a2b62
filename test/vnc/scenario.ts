// CRIU's VNC scenario (its wiki page "VNC"), shared by the test
// (test/cr/vnc.test.ts), the demo (npm run demo:vnc) and the bench: a VNC
// server (Xvnc), a window manager (icewm), an X client drawing through
// MIT-SHM (the x11-shm workload) and optionally an xterm with a shell, all
// one tree started by `crest run --ns pid,ipc` (the wiki's newns) running
// vnc-session.sh (its vnc_server.sh); outside the tree, TigerVNC viewers on
// an Xvfb display, connected over TCP. The tree is dumped and restored with
// the wiki's options while the viewer stays connected; what the viewers show
// is read from screenshots of the Xvfb display.
import { spawnSync } from "node:child_process";
import { accessSync, closeSync, constants as fsc, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { native, projectRoot } from "../../src/sys/native.js";
import { sleepMs, wait4 } from "../../src/sys/syscalls.js";
import { WNOHANG } from "../../src/sys/constants.js";
import { IMG, readImage } from "../../src/images/index.js";
import { CREST, WORKLOADS, waitFor, waitGone } from "../cr/harness.js";
import { parseXwd, png, shareOf, type Picture, type Rect } from "./image.js";

export const SESSION_SCRIPT = join(projectRoot(), "test", "vnc", "vnc-session.sh");

/** What the scenario runs, each with the Debian package that has it (scripts/debian-packages.mjs: PACKAGES.vnc). */
export const X_PROGRAMS: ReadonlyArray<[names: string[], pkg: string]> = [
  [["Xvnc"], "tigervnc-standalone-server"], [["icewm"], "icewm"], [["xterm"], "xterm"], [["Xvfb"], "xvfb"],
  [["xtigervncviewer", "vncviewer"], "tigervnc-viewer"], [["xdotool"], "xdotool"], [["xwininfo"], "x11-utils"], [["xwd"], "x11-apps"],
];

function which(name: string): string | undefined {
  for (const dir of `${process.env.PATH ?? ""}${delimiter}/usr/bin${delimiter}/bin`.split(delimiter).filter(Boolean)) {
    try {
      accessSync(join(dir, name), fsc.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The programs of X_PROGRAMS not found, by name ("xtigervncviewer or vncviewer"), and the Debian packages that have them. */
export function missingPrograms(): { names: string[]; packages: string[] } {
  const missing = X_PROGRAMS.filter(([names]) => !names.some((n) => which(n)));
  return { names: missing.map(([names]) => names.join(" or ")), packages: missing.map(([, pkg]) => pkg) };
}

const viewerBin = (): string => which("xtigervncviewer") ?? which("vncviewer") ?? "/usr/bin/xtigervncviewer";

/**
 * Starts a program outside the tree (Xvfb, a viewer) as a child libuv does
 * not know about (harness.startWorkload's way), so that this process can
 * wait for it synchronously; output appended to `log`.
 */
function spawnOutside(name: string, args: string[], log: string, env: Record<string, string> = {}): number {
  const path = which(name);
  if (!path) throw new Error(`${name} is not installed`);
  const nul = openSync("/dev/null", "r");
  const out = openSync(log, "a");
  try {
    const all = { ...process.env, ...env } as Record<string, string>;
    const pid = native.spawn({ path, argv: [name, ...args], env: Object.entries(all).map(([k, v]) => `${k}=${v}`), fds: [nul, out, out], cwd: "/" });
    if (pid < 0) throw new Error(`cannot start ${name}: errno ${-pid}`);
    return pid;
  } finally {
    closeSync(nul);
    closeSync(out);
  }
}

/** Whether a child started by spawnOutside has exited (it is reaped then). */
const exited = (pid: number): boolean => wait4(pid, WNOHANG) !== null;

/** Ends a child started by spawnOutside, and reaps it. */
function endOutside(pid: number): void {
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  waitGone(pid);
}

/** Runs a program to its end and returns its stdout; throws with its stderr if it fails. */
function run(cmd: string, args: string[], env: Record<string, string> = {}): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", env: { ...process.env, ...env }, timeout: 30_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status ?? r.signal}): ${r.stderr || r.error}`);
  return r.stdout;
}

/** TCP ports something holds (any state), from /proc/net/tcp and tcp6. */
function tcpPortsInUse(): Set<number> {
  const ports = new Set<number>();
  for (const f of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of readFileSync(f, "utf8").split("\n").slice(1)) {
      const local = line.trim().split(/\s+/)[1];
      if (local) ports.add(parseInt(local.split(":")[1]!, 16));
    }
  }
  return ports;
}

const displayTaken = (n: number): boolean => existsSync(`/tmp/.X${n}-lock`) || existsSync(`/tmp/.X11-unix/X${n}`);

/** A display number with no X server (no lock, no socket) whose VNC port 5900+N is free too. */
function freeDisplay(from: number, not: number[] = []): number {
  const ports = tcpPortsInUse();
  for (let n = from; n < from + 200; n++) if (!not.includes(n) && !displayTaken(n) && !ports.has(5900 + n)) return n;
  throw new Error(`no free X display from :${from} on`);
}

/** Where a window named `name` is on display :n (absolute, its inside), if it is mapped. */
export function windowRect(n: number, name: string): Rect | undefined {
  const r = spawnSync("xwininfo", ["-display", `:${n}`, "-name", name], { encoding: "utf8", timeout: 10_000 });
  if (r.status !== 0 || !/Map State: IsViewable/.test(r.stdout)) return undefined;
  const num = (label: string) => Number(new RegExp(`${label}:\\s+(-?\\d+)`).exec(r.stdout)![1]);
  return { x: num("Absolute upper-left X"), y: num("Absolute upper-left Y"), width: num("Width"), height: num("Height") };
}

/** Whether the window manager has taken the window (reparented it into a frame). */
function managed(n: number, name: string): boolean {
  const r = spawnSync("xwininfo", ["-display", `:${n}`, "-tree", "-name", name], { encoding: "utf8", timeout: 10_000 });
  const root = /Root window id: (0x[0-9a-f]+)/.exec(r.stdout)?.[1];
  const parent = /Parent window id: (0x[0-9a-f]+)/.exec(r.stdout)?.[1];
  return r.status === 0 && !!root && !!parent && root !== parent;
}

/** The children of a process, from /proc. */
function children(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((t) => readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number));
  } catch {
    return [];
  }
}

const comm = (pid: number): string => {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "";
  }
};

/** The processes of the tree under `root` (crest's PIDs), root first. */
export function treeOf(root: number): number[] {
  const out = [root];
  for (let i = 0; i < out.length; i++) out.push(...children(out[i]!));
  return out;
}

/** Whether a file ends with a line. */
const fileSays = (path: string, re: RegExp): boolean => existsSync(path) && re.test(readFileSync(path, "utf8"));

export interface SessionOptions {
  /** An xterm with a shell in the tree (the wiki's scenario; needs crest's terminal support). */
  xterm: boolean;
  /**
   * icewm's network status applet, which holds /proc/PID/net/dev open
   * (icewm's default). criu cannot restore it: the bench switches it off
   * for both tools.
   */
  netStatus: boolean;
  /** Where everything goes (a new directory under /tmp by default). */
  dir?: string;
}

/** One command's outcome: wall time and the end of its log. */
export interface Step {
  ms: number;
  logEnd: string;
}

/** The first viewer is at x 0 of the Xvfb screen, the second at x VIEWER_STEP. */
const VIEWER_STEP = 832;
const VNC_W = 800, VNC_H = 600;

export class VncSession {
  /** The tree's root, as crest sees it (it changes with every restore). */
  root = 0;
  /** The viewers on the Xvfb display (their PIDs), by slot (0: the one that stays connected). */
  private readonly viewers = new Map<number, number>();
  private xvfb = 0;
  private shmWin: Rect | undefined;

  private constructor(readonly opts: SessionOptions, readonly dir: string, readonly display: number, readonly port: number, readonly viewerDisplay: number) {}

  /** Starts the tree and waits until every window is up and managed. */
  static start(opts: SessionOptions): VncSession {
    const missing = missingPrograms();
    if (missing.names.length) throw new Error(`the VNC scenario needs ${missing.names.join(", ")} (Debian: apt-get install ${missing.packages.join(" ")})`);
    const dir = opts.dir ?? mkdtempSync("/tmp/crest-vnc-");
    mkdirSync(dir, { recursive: true });
    const n = freeDisplay(40);
    const s = new VncSession(opts, dir, n, 5900 + n, freeDisplay(n + 1, [n]));
    try {
      s.startTree();
      s.startXvfb();
      return s;
    } catch (e) {
      s.stop();
      throw e;
    }
  }

  private startTree(): void {
    // icewm's preferences: the network status applet on or off, and nothing that watches a mailbox.
    const cfg = join(this.dir, "icewm");
    mkdirSync(cfg, { recursive: true });
    writeFileSync(join(cfg, "preferences"), `TaskBarShowNetStatus=${this.opts.netStatus ? 1 : 0}\nTaskBarShowMailboxStatus=0\n`);
    const args = ["run", "--ns", "pid,ipc", "--log", join(this.dir, "session.log"), "--",
      "/bin/sh", SESSION_SCRIPT, String(this.display), String(this.port), this.dir, join(WORKLOADS, "x11-shm"), ...(this.opts.xterm ? ["xterm"] : [])];
    const r = spawnSync(CREST, args, { encoding: "utf8", cwd: this.dir, env: { ...process.env, ICEWM_PRIVCFG: cfg, HOME: this.dir } });
    if (r.status !== 0) throw new Error(`crest run of the VNC session failed: ${r.stderr}`);
    this.root = Number(r.stdout.trim());
    const alive = () => existsSync(`/proc/${this.root}`) || (() => {
      throw new Error(`the VNC session ended:\n${this.logs()}`);
    })();
    waitFor("the MIT-SHM client to be ready", () => alive() && fileSays(join(this.dir, "x11-shm.status"), /^ready/), 30_000);
    waitFor(`Xvnc to listen on port ${this.port}`, () => alive() && tcpPortsInUse().has(this.port), 30_000);
    waitFor("icewm to manage the MIT-SHM client's window", () => alive() && managed(this.display, "crest-shm"), 30_000);
    if (this.opts.xterm) {
      waitFor("icewm to manage the xterm", () => alive() && managed(this.display, "crest-xterm"), 30_000);
      waitFor("the xterm's shell", () => {
        const xterm = this.pidOf("xterm");
        return xterm !== undefined && this.pidOf("sh", xterm) !== undefined;
      }, 30_000);
    }
    // Let icewm settle (its taskbar and frames drawn) before anyone looks.
    sleepMs(500);
  }

  private startXvfb(): void {
    this.xvfb = spawnOutside("Xvfb", [`:${this.viewerDisplay}`, "-screen", "0", `${VIEWER_STEP + VNC_W}x${VNC_H + 40}x24`, "-nolisten", "tcp", "-noreset"], join(this.dir, "outside.log"));
    waitFor(`Xvfb :${this.viewerDisplay}`, () => {
      if (exited(this.xvfb)) throw new Error(`Xvfb :${this.viewerDisplay} exited:\n${this.logs()}`);
      return existsSync(`/tmp/.X11-unix/X${this.viewerDisplay}`);
    }, 15_000);
  }

  /** A process of the tree (below `under`, the root by default) by its name. */
  pidOf(name: string, under = this.root): number | undefined {
    return treeOf(under).slice(1).find((p) => comm(p) === name);
  }

  /** The last lines of the session's logs, for messages. */
  logs(): string {
    return ["session.log", "Xvnc.log", "icewm.log", "x11-shm.log", "xterm.log", "outside.log"]
      .filter((f) => existsSync(join(this.dir, f)))
      .map((f) => `--- ${f}\n${readFileSync(join(this.dir, f), "utf8").trim().split("\n").slice(-8).join("\n")}`).join("\n");
  }

  /** Starts a viewer in slot 0 (left) or 1 (right) of the Xvfb screen, connected over TCP, and waits until it shows the session. */
  connectViewer(slot: number): void {
    const bin = viewerBin();
    const v = spawnOutside(bin.slice(bin.lastIndexOf("/") + 1), ["-Shared", "-AutoSelect=0", "-NoJPEG", "-FullColor", "-RemoteResize=0", "-MenuKey=", "-geometry", `+${slot * VIEWER_STEP}+0`, `127.0.0.1::${this.port}`],
      join(this.dir, "outside.log"), { DISPLAY: `:${this.viewerDisplay}`, HOME: this.dir });
    this.viewers.set(slot, v);
    waitFor(`viewer ${slot} to show the session`, () => {
      if (exited(v)) {
        this.viewers.delete(slot);
        throw new Error(`viewer ${slot} exited:\n${this.logs()}`);
      }
      return this.viewerRect(slot) !== undefined;
    }, 20_000);
  }

  /** Whether viewer `slot` still runs. */
  viewerRunning(slot: number): boolean {
    const v = this.viewers.get(slot);
    return v !== undefined && !exited(v);
  }

  /** Closes a viewer's connection (the viewer is ended). */
  disconnectViewer(slot: number): void {
    const v = this.viewers.get(slot);
    if (v === undefined) return;
    this.viewers.delete(slot);
    endOutside(v);
  }

  /** Where viewer `slot`'s window is on the Xvfb screen. */
  viewerRect(slot: number): Rect | undefined {
    return this.viewerWindow(slot)?.rect;
  }

  /** Viewer `slot`'s window: its id and where it is on the Xvfb screen (there is no window manager there: it is where it asked to be). */
  private viewerWindow(slot: number): { id: string; rect: Rect } | undefined {
    const tree = spawnSync("xwininfo", ["-display", `:${this.viewerDisplay}`, "-root", "-children"], { encoding: "utf8", timeout: 10_000 }).stdout ?? "";
    for (const m of tree.matchAll(/(0x[0-9a-f]+) "[^"]*TigerVNC[^"]*".*?(\d+)x(\d+)\+(-?\d+)\+(-?\d+)/g)) {
      const rect = { width: Number(m[2]), height: Number(m[3]), x: Number(m[4]), y: Number(m[5]) };
      if (Math.abs(rect.x - slot * VIEWER_STEP) < 40 && rect.width >= VNC_W && rect.height >= VNC_H) return { id: m[1]!, rect };
    }
    return undefined;
  }

  /** The Xvfb screen, what the viewers show (only `area` of it, if given). */
  screenshot(area?: Rect): Picture {
    const r = spawnSync("xwd", ["-root", "-silent", "-display", `:${this.viewerDisplay}`], { maxBuffer: 64 << 20, timeout: 20_000 });
    if (r.status !== 0) throw new Error(`xwd failed: ${r.stderr}`);
    return parseXwd(r.stdout, area);
  }

  /**
   * The viewers' ends of their TCP connections to Xvnc (established), as
   * local ports: the same port before and after the checkpoints is the same
   * connection, kept (a viewer that reconnected would have another).
   */
  viewerPorts(): number[] {
    const ports: number[] = [];
    for (const f of ["/proc/net/tcp", "/proc/net/tcp6"]) {
      for (const line of readFileSync(f, "utf8").split("\n").slice(1)) {
        const [, local, remote, state] = line.trim().split(/\s+/);
        if (state === "01" && remote && parseInt(remote.split(":")[1]!, 16) === this.port) ports.push(parseInt(local!.split(":")[1]!, 16));
      }
    }
    return ports.sort((a, b) => a - b);
  }

  /** Writes a screenshot of the Xvfb screen as DIR/NAME.png and returns its path. */
  saveScreenshot(name: string, p = this.screenshot()): string {
    const file = join(this.dir, `${name}.png`);
    writeFileSync(file, png(p));
    return file;
  }

  /**
   * Where the MIT-SHM client's window is on the VNC screen: asked of Xvnc
   * once, and kept (nothing moves it; while the tree is dumped there is no
   * Xvnc to ask).
   */
  shmWindow(): Rect {
    this.shmWin ??= waitFor("the MIT-SHM client's window on the VNC display", () => windowRect(this.display, "crest-shm"), 10_000)!;
    return this.shmWin;
  }

  /** Its coloured part (above the counter strip), inset from the edges, as viewer `slot` shows it on the Xvfb screen. */
  colourArea(slot: number, win: Rect): Rect {
    const v = this.viewerRect(slot);
    if (!v) throw new Error(`viewer ${slot} has no window`);
    return { x: v.x + win.x + 6, y: v.y + win.y + 6, width: win.width - 12, height: win.height - 12 - 12 };
  }

  /** The counter strip along the bottom of the client's window, as viewer `slot` shows it. */
  stripArea(slot: number, win: Rect): Rect {
    const v = this.viewerRect(slot);
    if (!v) throw new Error(`viewer ${slot} has no window`);
    return { x: v.x + win.x, y: v.y + win.y + win.height - 12, width: win.width, height: 12 };
  }

  /** Has the MIT-SHM client fill its window with `colour` (RRGGBB) and waits until it says it did. */
  paint(colour: number): void {
    const hex = colour.toString(16).padStart(6, "0");
    writeFileSync(join(this.dir, "color"), `${hex}\n`);
    const pid = this.pidOf("x11-shm");
    if (!pid) throw new Error(`the MIT-SHM client is not running:\n${this.logs()}`);
    process.kill(pid, "SIGUSR1");
    waitFor(`the MIT-SHM client to paint ${hex}`, () => fileSays(join(this.dir, "painted"), new RegExp(`^painted ${hex}$`, "m")), 10_000);
  }

  /** Waits until viewer `slot` shows the client's window in `colour`; returns the screenshot that did. */
  waitViewerShows(slot: number, colour: number, ms = 10_000): Picture {
    const win = this.shmWindow();
    let last = 0;
    try {
      return waitFor(`viewer ${slot} to show ${colour.toString(16).padStart(6, "0")}`, () => {
        const p = this.screenshot();
        last = shareOf(p, this.colourArea(slot, win), colour);
        return last > 0.98 ? p : undefined;
      }, ms)!;
    } catch (e) {
      throw new Error(`${(e as Error).message} (only ${(last * 100).toFixed(1)}% of the window's pixels have it)`);
    }
  }

  /**
   * Types `text` into the window named `name` through viewer 0, as a person
   * would: the viewer focused, the pointer moved onto the window's place in
   * the viewer and clicked (icewm focuses the window), then the keys pressed
   * on the Xvfb display; the viewer sends both to Xvnc over its connection.
   */
  typeViaViewer(name: string, text: string): void {
    const win = waitFor(`window ${name} on the VNC display`, () => windowRect(this.display, name), 10_000)!;
    const v = this.viewerWindow(0);
    if (!v) throw new Error("viewer 0 has no window");
    const env = { DISPLAY: `:${this.viewerDisplay}` };
    // The viewer takes keys only with the input focus, which Xvfb (no window manager) gives nobody.
    run("xdotool", ["windowfocus", "--sync", v.id], env);
    // (mousemove --sync would wait 15 s for a motion that never comes when the pointer is there already.)
    run("xdotool", ["mousemove", String(v.rect.x + win.x + Math.floor(win.width / 2)), String(v.rect.y + win.y + Math.floor(win.height / 2))], env);
    sleepMs(100);
    run("xdotool", ["click", "1"], env);
    sleepMs(300);
    run("xdotool", ["type", "--delay", "40", text], env);
  }

  /**
   * Dumps the tree with the wiki's options (`crest dump -t PID --images-dir
   * imgs/ --log-file dump.log -v4 --tcp-established`) and waits until it is
   * gone. `bin`: crest, or a criu to compare with; `during` runs over and
   * over while the command does (the demo watches the viewer).
   */
  dump(images: string, bin = CREST, during?: () => void): Step & { frozenMs: number } {
    mkdirSync(images, { recursive: true });
    const r = command(bin, ["dump", "-t", String(this.root), "--images-dir", `${images}/`, "--log-file", "dump.log", "-v4", "--tcp-established"], `${images}-dump.out`, during);
    const logEnd = lastLine(join(images, "dump.log"));
    if (r.code !== 0) throw new Error(`${bin} dump of the VNC session failed (${r.code}): ${lastError(join(images, "dump.log")) ?? r.output}\n${logEnd}`);
    waitGone(this.root);
    const frozenMs = readImage(images, IMG.stats, "dump")[0]!.dump!.frozen_time / 1000;
    return { ms: r.ms, logEnd, frozenMs };
  }

  /** Restores it with the wiki's options (`crest restore --images-dir imgs/ --log-file rst.log -v4 --tcp-established -d`). */
  restore(images: string, bin = CREST, during?: () => void): Step {
    const r = command(bin, ["restore", "--images-dir", `${images}/`, "--log-file", "rst.log", "-v4", "--tcp-established", "-d"], `${images}-restore.out`, during);
    const logEnd = lastLine(join(images, "rst.log"));
    if (r.code !== 0) throw new Error(`${bin} restore of the VNC session failed (${r.code}): ${lastError(join(images, "rst.log")) ?? r.output}\n${logEnd}`);
    this.root = this.findRoot();
    return { ms: r.ms, logEnd };
  }

  /** The restored root: the session script's shell with this session's directory in its command line. */
  private findRoot(): number {
    for (const e of readdirSync("/proc")) {
      if (!/^\d+$/.test(e)) continue;
      try {
        const argv = readFileSync(`/proc/${e}/cmdline`, "utf8").split("\0");
        if (argv[1] === SESSION_SCRIPT && argv.includes(this.dir)) return Number(e);
      } catch {
        // gone
      }
    }
    throw new Error("the restored VNC session's root is nowhere to be found");
  }

  /** Asks the MIT-SHM client for its verdict (SIGTERM): "PASS" or "FAIL: ...". */
  shmClientVerdict(): string {
    const pid = this.pidOf("x11-shm");
    if (!pid) throw new Error(`the MIT-SHM client is not running:\n${this.logs()}`);
    process.kill(pid, "SIGTERM");
    return waitFor("the MIT-SHM client's verdict", () => {
      const s = existsSync(join(this.dir, "x11-shm.status")) ? readFileSync(join(this.dir, "x11-shm.status"), "utf8") : "";
      return /^(PASS|FAIL)/.test(s) ? s.trim() : undefined;
    }, 20_000)!;
  }

  /** Ends everything: the tree, the viewers, Xvfb; removes the display's leftover lock and socket. */
  stop(): void {
    for (const slot of [...this.viewers.keys()]) {
      try {
        this.disconnectViewer(slot);
      } catch {
        // killed below
      }
    }
    if (this.root && existsSync(`/proc/${this.root}`)) {
      // PID 1 of the tree's namespace: its end ends every process in it.
      process.kill(this.root, "SIGKILL");
      waitGone(this.root);
    }
    if (this.xvfb) endOutside(this.xvfb);
    this.xvfb = 0;
    // Xvnc, killed, leaves its lock (with a PID of its namespace in it) and socket behind.
    for (const f of [`/tmp/.X${this.display}-lock`, `/tmp/.X11-unix/X${this.display}`]) rmSync(f, { force: true });
  }
}

/**
 * Runs crest (or criu) to its end, output to `out`, and times it; `during`
 * runs in between while it does. (A child libuv does not know, so that the
 * restored tree, reparented to this process when crest exits, is reaped here.)
 */
function command(bin: string, args: string[], out: string, during?: () => void): { code: number; ms: number; output: string } {
  const nul = openSync("/dev/null", "r");
  const fd = openSync(out, "w");
  const t0 = process.hrtime.bigint();
  let pid: number;
  try {
    pid = native.spawn({ path: bin, argv: [bin, ...args], env: Object.entries(process.env).map(([k, v]) => `${k}=${v}`), fds: [nul, fd, fd], cwd: process.cwd() });
  } finally {
    closeSync(nul);
    closeSync(fd);
  }
  if (pid < 0) throw new Error(`cannot start ${bin}: errno ${-pid}`);
  for (;;) {
    const st = wait4(pid, WNOHANG);
    if (st) {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      return { code: st.exited ? st.code : 128 + st.code, ms, output: readFileSync(out, "utf8") };
    }
    if (Number(process.hrtime.bigint() - t0) > 180e9) {
      process.kill(pid, "SIGKILL");
      waitGone(pid);
      throw new Error(`${bin} ${args.join(" ")} did not end in 3 minutes`);
    }
    if (during) during();
    else sleepMs(2);
  }
}

/** The last error a log names before its verdict ("Dumping FAILED"), which says why. */
function lastError(file: string): string | undefined {
  if (!existsSync(file)) return undefined;
  return readFileSync(file, "utf8").split("\n").filter((l) => /Error \(/.test(l) && !/FAILED/.test(l)).pop()?.replace(/^\([\d.]+\)\s*/, "");
}

function lastLine(file: string): string {
  return existsSync(file) ? readFileSync(file, "utf8").trim().split("\n").pop() ?? "" : "";
}
