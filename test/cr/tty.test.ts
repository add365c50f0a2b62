// Terminals: pty pairs with their settings and data queued both ways
// (tty-pty), a session whose controlling terminal only a master holds, with
// children holding /dev/tty and a foreground group of their own
// (tty-session); the images (tty-info.img, tty-data.img, the tty entries of
// files.img) as crest and crit read them; a dump that leaves the tree
// running or fails gives the queued data back; a pty index taken since the
// dump fails the restore naming its holder, with nothing left alive; and
// what crest refuses, the tree left running: a slave whose master is outside
// the tree, a shell job without -j, a pty of another devpts instance.
import { test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, mkdirSync, openSync, readFileSync, readlinkSync, statSync, constants as fsc } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { criu_req_type, readImage, IMG, fd_types, TtyType } from "../../src/images/index.js";
import { native } from "../../src/sys/native.js";
import { ccByte } from "../../src/kinds/files/tty-ioctl.js";
import { SYS, TIOC } from "../../src/sys/constants.js";
import {
  alive, crest, critDecodeAll, dumpLog, dumpWorkload, finish, imagesDir, procState, restoreWorkload, startWorkload, stop, waitGone,
  waitTreeGone, WORKLOADS, waitFor, type Workload,
} from "./harness.js";
import { RawClient } from "./rpc-client.js";

function ptyIndex(fd: number): number {
  const b = Buffer.alloc(4);
  assert.equal(native.syscall(SYS.ioctl, fd, TIOC.GPTN, b), 0);
  return b.readInt32LE(0);
}

/** A pty made by this process: [master, slave, index]. */
function openPty(ptmx = "/dev/ptmx", pts = "/dev/pts"): [number, number, number] {
  const m = openSync(ptmx, fsc.O_RDWR | fsc.O_NOCTTY);
  const idx = ptyIndex(m);
  assert.equal(native.syscall(SYS.ioctl, m, TIOC.SPTLCK, Buffer.alloc(4)), 0);
  return [m, openSync(`${pts}/${idx}`, fsc.O_RDWR | fsc.O_NOCTTY), idx];
}

function checkPtyImages(w: Workload): void {
  const dir = imagesDir(w);
  assert.deepEqual(critDecodeAll(dir), []);
  const infos = readImage(dir, IMG.ttyInfo);
  const ptys = infos.filter((i) => i.type === TtyType.PTY);
  assert.equal(ptys.filter((i) => i.id & 1).length, 4, "four masters");
  assert.equal(ptys.filter((i) => !(i.id & 1)).length, 2, "two slaves (A's, B's): C's was closed, D's never opened");
  for (const i of ptys) assert.equal(i.id, i.pty!.index * 2 + (i.id & 1), "criu's tty_info ids: index * 2, + 1 for the master");
  const a = ptys.find((i) => i.winsize?.ws_row === 33 && !(i.id & 1))!;
  assert.ok(a, "A's slave, 33 rows");
  assert.equal(a.sid, w.pid, "A is the workload's controlling terminal");
  assert.equal(a.exclusive, true);
  assert.equal(ccByte(a.termios!, 11), "#".charCodeAt(0), "VEOL");
  assert.ok(ptys.some((i) => i.packet_mode), "B's master in packet mode");
  assert.ok(ptys.some((i) => i.locked && i.slave_closed), "C locked, its slave closed");
  assert.ok(ptys.some((i) => (i.id & 1) && i.exclusive && !i.slave_closed), "D exclusive");
  const data = new Map(readImage(dir, IMG.ttyData).map((d) => [d.tty_id, Buffer.from(d.data).toString("latin1")]));
  assert.equal(data.get(a.id), "one\ntwo#par", "A's slave: input not read, the partial line included");
  assert.equal(data.get(a.id + 1), "one\r\ntwo#parout\r\n", "A's master: the echo and the slave's output");
  const files = readImage(dir, IMG.files);
  const ttys = files.filter((f) => f.type === fd_types.TTY);
  for (const t of ttys) {
    const reg = files.find((f) => f.id === t.tty!.regf_id)?.reg;
    assert.ok(reg && /^\/dev\/(ptmx|pts\/\d+)$/.test(reg.name), `tty file ${t.id} has its path (${reg?.name})`);
  }
}

test("tty-pty: ptys keep their index, settings, controlling terminal and data queued both ways", () => {
  const w = startWorkload("tty-pty");
  try {
    dumpWorkload(w);
    checkPtyImages(w);
    restoreWorkload(w);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("tty-pty: each sabotage makes the workload's checks fail", () => {
  const want: Record<number, RegExp> = {
    1: /A's slave, first line/, 2: /window/, 3: /packet mode/, 4: /C's lock/, 5: /foreground group/, 6: /A's master, echo and output/,
  };
  for (const [n, re] of Object.entries(want)) {
    const w = startWorkload("tty-pty", [], { env: [`CREST_WL_SABOTAGE=${n}`] });
    try {
      dumpWorkload(w);
      restoreWorkload(w);
      assert.match(finish(w), re, `sabotage ${n}`);
    } finally {
      stop(w);
    }
  }
});

test("tty-session: a controlling terminal only a master holds, /dev/tty in children, a foreground group of its own", () => {
  const w = startWorkload("tty-session");
  try {
    dumpWorkload(w);
    const dir = imagesDir(w);
    assert.deepEqual(critDecodeAll(dir), []);
    const infos = readImage(dir, IMG.ttyInfo);
    const master = infos.find((i) => i.type === TtyType.PTY)!;
    assert.equal(master.id & 1, 1, "only the master is held");
    assert.equal(master.sid, w.pid, "it carries the session");
    assert.equal(master.slave_closed, undefined, "the children's /dev/tty hold the slave open");
    const ctty = infos.filter((i) => i.type === TtyType.CTTY);
    assert.equal(ctty.length, 1, "/dev/tty: one tty_info (criu's CTTY)");
    assert.equal(ctty[0]!.id, 1006 * 2, "criu's CTTY_INDEX");
    const pstree = readImage(dir, IMG.pstree);
    assert.equal(master.pgrp, pstree[2]!.pgid, "the foreground group is the second child's");
    restoreWorkload(w);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
  for (const [n, re] of [[1, /tpgid/], [2, /c1 ended with status/]] as const) {
    const s = startWorkload("tty-session", [], { env: [`CREST_WL_SABOTAGE=${n}`] });
    try {
      dumpWorkload(s);
      restoreWorkload(s);
      assert.match(finish(s), re, `sabotage ${n}`);
    } finally {
      stop(s);
    }
  }
});

test("tty-pty: a dump that leaves the tree running, or fails, gives the queued data back", () => {
  for (const how of [["-R"], ["fault"]]) {
    const w = startWorkload("tty-pty");
    try {
      const args = ["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log", "-v4", ...(how[0] === "-R" ? ["-R"] : [])];
      const r = crest(args, how[0] === "fault" ? { CREST_FAULT: "dump:images" } : {});
      assert.equal(r.code, how[0] === "fault" ? 1 : 0, r.stderr);
      assert.equal(procState(w.pid).tracer, 0);
      assert.equal(finish(w), "PASS", `after ${how[0]}`);
    } finally {
      stop(w);
    }
  }
});

test("tty-session: a pty index taken since the dump fails the restore naming its holder; nothing is left alive", () => {
  const w = startWorkload("tty-session");
  const held: number[] = [];
  try {
    dumpWorkload(w);
    const index = readImage(imagesDir(w), IMG.ttyInfo).find((i) => i.type === TtyType.PTY)!.pty!.index;
    // Take that index (and any lower free one on the way).
    for (;;) {
      const m = openSync("/dev/ptmx", fsc.O_RDWR | fsc.O_NOCTTY);
      held.push(m);
      const got = ptyIndex(m);
      if (got >= index) {
        assert.equal(got, index, "the index was free after the dump");
        break;
      }
    }
    const r = crest(["restore", "-D", imagesDir(w), "-o", "restore.log", "-d"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`/dev/pts/${index} cannot be made again: its index is taken \\(process ${process.pid} \\(node\\) holds its master at fd ${held.at(-1)}\\)`));
    assert.equal(alive(w.pid), false, "nothing restored is left");
    for (const fd of held.splice(0)) closeSync(fd);
    restoreWorkload(w);
    assert.equal(finish(w), "PASS");
  } finally {
    for (const fd of held) closeSync(fd);
    stop(w);
  }
});

const readlinkStat = (p: string) => statSync(p);

/** Starts `loop` with extra fds, in a session of its own unless `inSession`. */
function loopWith(fds: number[], inSession = true): Workload {
  if (inSession) return startWorkload("loop", [], { fds });
  const w: Workload = { name: "loop", pid: 0, dir: "", status: "", log: "" };
  const dir = spawnSync("mktemp", ["-d", "/tmp/crest-loop-XXXXXX"], { encoding: "utf8" }).stdout.trim();
  Object.assign(w, { dir, status: join(dir, "status"), log: join(dir, "out.log") });
  const nul = openSync("/dev/null", "r"), out = openSync(w.log, "a");
  w.pid = native.spawn({ path: join(WORKLOADS, "loop"), argv: ["loop", w.status], env: ["PATH=/usr/bin:/bin"], setsid: 0, fds: [nul, out, out, ...fds], cwd: dir });
  closeSync(nul);
  closeSync(out);
  waitFor("loop to get ready", () => { try { return readFileSync(w.status, "utf8").startsWith("ready"); } catch { return false; } });
  return w;
}

function assertRefused(w: Workload, what: RegExp, extra: string[] = []): void {
  mkdirSync(imagesDir(w), { recursive: true });
  const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log", ...extra]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, what);
  assert.match(dumpLog(w), /Dumping FAILED/);
  assert.equal(procState(w.pid).tracer, 0);
  assert.equal(finish(w), "PASS");
}

test("refused: a slave whose master is outside the tree (without -j), a shell job without -j, a pty of another devpts", () => {
  const [m, s, idx] = openPty();
  try {
    const w = loopWith([s]);
    try {
      assertRefused(w, new RegExp(`fd 3 of process ${w.pid}\\): its master \\(the other end of /dev/pts/${idx}\\) is not in the dumped tree; if the tree is a job of a shell, dump it with -j`));
    } finally {
      stop(w);
    }
  } finally {
    closeSync(m);
    closeSync(s);
  }
  const j = loopWith([], false);
  try {
    assertRefused(j, new RegExp(`process ${j.pid} is a shell job: .*dump it with -j \\(--shell-job\\)`));
  } finally {
    stop(j);
  }
  const mnt = spawnSync("mktemp", ["-d", "/tmp/crest-devpts-XXXXXX"], { encoding: "utf8" }).stdout.trim();
  assert.equal(spawnSync("mount", ["-t", "devpts", "-o", "newinstance,ptmxmode=0666", "devpts", mnt]).status, 0);
  try {
    const [m2, s2] = openPty(`${mnt}/ptmx`, mnt);
    try {
      const w = loopWith([m2, s2]);
      try {
        assertRefused(w, /a pty of a devpts instance that is not the host's \/dev\/pts \(a newinstance mount\)/);
      } finally {
        stop(w);
      }
    } finally {
      closeSync(m2);
      closeSync(s2);
    }
  } finally {
    spawnSync("umount", ["-l", mnt]);
  }
});

void waitGone;
void waitTreeGone;

/** tmux on a server of its own (a new one for each run: one being killed may still answer), for the shell-job test. */
let TMUX = ["-L", `crest-tty-${process.pid}`];
function tmux(...args: string[]): string {
  const r = spawnSync("tmux", [...TMUX, "-f", "/dev/null", ...args], { encoding: "utf8", env: { ...process.env, TERM: "xterm", TMUX: "" } });
  assert.equal(r.status, 0, `tmux ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}
const pane = (s: string): string => tmux("capture-pane", "-p", "-t", s);

test("-j: a job started from a shell in one terminal (tmux) is dumped and restored into another, attached to it", () => {
  for (const sabotage of [0, 1]) {
    TMUX = ["-L", `crest-tty-${process.pid}-${sabotage}`];
    const dir = spawnSync("mktemp", ["-d", "/tmp/crest-job-XXXXXX"], { encoding: "utf8" }).stdout.trim();
    const status = join(dir, "status"), imgs = join(dir, "imgs");
    const env = sabotage ? `CREST_WL_SABOTAGE=${sabotage} ` : "";
    tmux("new-session", "-d", "-s", "A", "-x", "100", "-y", "30", "bash --norc --noprofile -i");
    try {
      tmux("new-session", "-d", "-s", "B", "-x", "90", "-y", "25", "bash --norc --noprofile -i");
      tmux("send-keys", "-t", "A", `${env}${join(WORKLOADS, "tty-job")} ${status}`, "Enter");
      waitFor("tty-job to get ready", () => { try { return readFileSync(status, "utf8").startsWith("ready"); } catch { return false; } });
      tmux("send-keys", "-t", "A", "one", "Enter");
      waitFor("the job to answer in A", () => pane("A").includes("got: one"));
      const pid = Number(spawnSync("pgrep", ["-f", `tty-job ${status}`], { encoding: "utf8" }).stdout.trim());
      // Without -j it is refused, and runs on.
      const refused = crest(["dump", "-t", String(pid), "-D", imgs, "-o", "dump.log"]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, new RegExp(`process ${pid} is a shell job: .*dump it with -j \\(--shell-job\\)`));
      assert.equal(procState(pid).tracer, 0);
      const r = crest(["dump", "-j", "-t", String(pid), "-D", imgs, "-o", "dump.log", "-v4"]);
      assert.equal(r.code, 0, r.stderr);
      waitGone(pid);
      assert.deepEqual(critDecodeAll(imgs), []);
      const infos = readImage(imgs, IMG.ttyInfo);
      assert.equal(infos.length, 1, "one terminal: the pane's pty slave, its master in tmux");
      assert.equal(infos[0]!.id & 1, 0);
      assert.equal(ccByte(infos[0]!.termios!, 3), 11, "the job's VKILL");
      // Restore without -j, or -j without a terminal: refused before anything is made.
      const no = crest(["restore", "-D", imgs, "-o", "restore-no.log", "-d"]);
      assert.match(no.stderr, new RegExp(`process ${pid} was not a session leader .*: it is a shell job; restore it with -j`));
      const notty = crest(["restore", "-j", "-D", imgs, "-o", "restore-no.log", "-d"]);
      assert.match(notty.stderr, /crest's stdin is not a terminal: run crest restore -j in the terminal the job should use/);
      assert.equal(alive(pid), false);
      tmux("send-keys", "-t", "B", `cd ${dir} && ${join(WORKLOADS, "..", "..", "bin", "crest")} restore -j -D imgs -o restore.log -v4; echo crest-exit=$?`, "Enter");
      waitFor("the job restored in B", () => alive(pid) && procState(pid).tracer === 0);
      tmux("send-keys", "-t", "B", "hello", "Enter");
      waitFor("the job to answer in B", () => pane("B").includes("got: hello"));
      tmux("send-keys", "-t", "B", "check", "Enter");
      const verdict = waitFor("the job's verdict", () => { const s = readFileSync(status, "utf8"); return s.startsWith("PASS") || s.startsWith("FAIL") ? s : ""; });
      if (sabotage) assert.match(verdict, /foreground group/);
      else assert.equal(verdict.trim(), "PASS");
      waitFor("crest to end and the shell to come back", () => pane("B").includes(`crest-exit=${sabotage ? 1 : 0}`));
    } finally {
      spawnSync("tmux", [...TMUX, "kill-server"]);
    }
  }
});

test("--external tty[RDEV:DEV] on dump and --inherit-fd fd[N]:tty[RDEV:DEV] on restore: a terminal from outside given back by the caller", () => {
  const [m, s, idx] = openPty();
  let w: Workload | undefined;
  const given: number[] = [];
  try {
    w = loopWith([s]);
    const st = readlinkStat(`/proc/${w.pid}/fd/3`);
    const key = `tty[${st.rdev.toString(16)}:${st.dev.toString(16)}]`;
    const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log", "-v4", "--external", key]);
    assert.equal(r.code, 0, r.stderr);
    waitGone(w.pid);
    assert.deepEqual(critDecodeAll(imagesDir(w)), []);
    const info = readImage(imagesDir(w), IMG.ttyInfo);
    assert.deepEqual(info.map((i) => [i.type, i.id]), [[TtyType.EXT_TTY, (1012 + 1) * 2]], "criu's EXT_TTY, index ETTY_INDEX + 1");
    const no = crest(["restore", "-D", imagesDir(w), "-o", "restore-no.log", "-d"]);
    assert.match(no.stderr, new RegExp(`an external terminal \\(dumped with --external ${key.replace(/[[\]]/g, "\\$&")}\\): give one with --inherit-fd fd\\[N\\]:`));
    const [m2, s2, idx2] = openPty();
    given.push(m2, s2);
    const pidfile = join(w.dir, "restored.pid");
    const rr = spawnSync(join(WORKLOADS, "..", "..", "bin", "crest"), ["restore", "-D", imagesDir(w), "-o", "restore.log", "-v4", "-d", "--pidfile", pidfile, "--inherit-fd", `fd[3]:${key}`],
      { encoding: "utf8", stdio: ["ignore", "pipe", "pipe", s2] });
    assert.equal(rr.status, 0, rr.stderr);
    w.pid = Number(readFileSync(pidfile, "utf8"));
    assert.equal(readlinkSync(`/proc/${w.pid}/fd/3`), `/dev/pts/${idx2}`, `the caller's terminal, not /dev/pts/${idx}`);
    assert.equal(finish(w), "PASS");
  } finally {
    if (w) stop(w);
    for (const fd of [m, s, ...given]) closeSync(fd);
  }
});

test("orphan_pts_master over RPC (runc sets it on every request): a session's terminal whose master is outside comes back with a new master handed to the client", () => {
  const [m, s, idx] = openPty();
  const w: Workload = { name: "loop", pid: 0, dir: "", status: "", log: "" };
  const dir = spawnSync("mktemp", ["-d", "/tmp/crest-orphan-XXXXXX"], { encoding: "utf8" }).stdout.trim();
  Object.assign(w, { dir, status: join(dir, "status"), log: join(dir, "out.log") });
  const clients: RawClient[] = [];
  /** One request through a swrk of its own, every notification answered yes; the hooks told, in order. */
  const call = (req: Parameters<RawClient["send"]>[0]) => {
    const c = RawClient.swrk();
    clients.push(c);
    const hooks: string[] = [];
    c.send(req);
    for (;;) {
      const r = c.recv()!;
      if (r.type !== criu_req_type.NOTIFY) return { r, hooks, passed: c.passed };
      hooks.push(r.notify!.script!);
      c.send({ type: criu_req_type.NOTIFY, notify_success: true });
    }
  };
  try {
    // A session leader whose controlling terminal (and stdin) is the slave; the master stays here, outside the tree.
    const out = openSync(w.log, "a");
    w.pid = native.spawn({ path: "/usr/bin/setsid", argv: ["setsid", "-c", join(WORKLOADS, "loop"), w.status], env: ["PATH=/usr/bin:/bin"], setsid: 0, fds: [s, out, out], cwd: dir });
    closeSync(out);
    waitFor("loop to get ready", () => { try { return readFileSync(w.status, "utf8").startsWith("ready"); } catch { return false; } });
    const ttyNr = () => Number(readFileSync(`/proc/${w.pid}/stat`, "utf8").split(") ")[1]!.split(" ")[4]);
    assert.equal(ttyNr(), statSync(`/dev/pts/${idx}`).rdev, "its controlling terminal is the slave");
    mkdirSync(imagesDir(w), { recursive: true });
    const opts = { images_dir_fd: -1, images_dir: imagesDir(w), notify_scripts: true, log_level: 4 };
    const d = call({ type: criu_req_type.DUMP, opts: { ...opts, pid: w.pid, orphan_pts_master: true, log_file: "dump.log" } });
    assert.equal(d.r.success, true, d.r.cr_errmsg);
    waitGone(w.pid);
    assert.deepEqual(critDecodeAll(imagesDir(w)), []);
    const slave = readImage(imagesDir(w), IMG.ttyInfo).find((i) => i.pty?.index === idx)!;
    assert.deepEqual([slave.id & 1, slave.sid], [0, w.pid], "the slave, the session's terminal; no master in the images");
    closeSync(m);
    closeSync(s);
    const r = call({ type: criu_req_type.RESTORE, opts: { ...opts, orphan_pts_master: true, log_file: "restore.log" } });
    assert.deepEqual([r.r.success, r.r.restore?.pid], [true, w.pid], r.r.cr_errmsg);
    assert.deepEqual(r.hooks, ["pre-restore", "setup-namespaces", "post-setup-namespaces", "orphan-pts-master", "post-restore", "pre-resume", "post-resume"]);
    assert.equal(r.passed.length, 1, "the new master came with the orphan-pts-master notification");
    const master = r.passed[0]!;
    assert.equal(ptyIndex(master), idx, "the new master is the other end of the slave, at its old index");
    assert.equal(readlinkSync(`/proc/${w.pid}/fd/0`), `/dev/pts/${idx}`);
    assert.equal(ttyNr(), statSync(`/dev/pts/${idx}`).rdev, "the slave is its controlling terminal again");
    const pgrp = Buffer.alloc(4);
    assert.equal(native.syscall(SYS.ioctl, master, TIOC.GPGRP, pgrp), 0);
    assert.equal(pgrp.readInt32LE(0), w.pid, "seen from the client's master, the restored session's group is in the foreground");
    // Before the master closes: that hangs the terminal up, and SIGHUP ends the session's leader.
    assert.equal(finish(w), "PASS");
    closeSync(master);
  } finally {
    if (w.pid) stop(w);
    for (const c of clients) c.close();
  }
});
