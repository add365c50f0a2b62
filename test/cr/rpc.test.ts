// CRIU's RPC: `crest swrk` and `crest service` driven by Debian's pycriu (a
// client nobody wrote for crest) and by a raw client of crest's own for what
// pycriu cannot send (notifications, keep_open, malformed messages). Dumps
// and restores of real workloads, a self-dump whose restored client reads
// `restored = true`, the notifications in criu's order, the service's rule
// for clients that are not root, a page server started for a dump, and
// requests crest cannot serve.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { criu_req_type } from "../../src/images/index.js";
import { IMG, readImage } from "../../src/images/index.js";
import { alive, CREST, finish, imagesDir, restoreWorkload, startWorkload, stop, waitFor, waitGone, waitTreeGone, type Workload } from "./harness.js";
import { RawClient } from "./rpc-client.js";

const PYTHON = "/usr/bin/python3";

/** Runs a python script with Debian's pycriu; returns its stdout (it must exit 0). */
function py(script: string, args: string[] = [], opts: { uid?: number; gid?: number } = {}): string {
  const r = spawnSync(PYTHON, ["-c", `import sys, os\nsys.path.insert(0, "/usr/lib/python3/dist-packages")\nimport pycriu\n${script}`, ...args],
    { encoding: "utf8", ...opts });
  assert.equal(r.status, 0, `python failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** pycriu's client, through swrk (`use_binary`) or a service (`use_sk`). */
const CLIENT = (how: string) => `c = pycriu.criu()\n${how === "swrk" ? `c.use_binary("${CREST}")` : `c.use_sk(sys.argv[2])`}\n`;

/** A dump and a restore of a workload by pycriu, each answer checked. */
function pycriuCycle(how: "swrk" | "service", w: Workload, sock = ""): void {
  const dir = imagesDir(w);
  mkdirSync(dir, { recursive: true });
  const out = py(`${CLIENT(how)}
c.opts.images_dir_fd = os.open(sys.argv[1], os.O_DIRECTORY)
c.opts.pid = ${w.pid}
c.opts.log_level = 4
c.opts.log_file = "dump.log"
r = c.dump()
print("restored", r.restored)`, [dir, sock]);
  assert.equal(out, "restored False");
  assert.match(readFileSync(join(dir, "dump.log"), "utf8"), /Dumping finished successfully\n$/);
  waitTreeGone(w, dir);
  const pid = py(`${CLIENT(how)}
c.opts.images_dir_fd = os.open(sys.argv[1], os.O_DIRECTORY)
c.opts.log_level = 4
c.opts.log_file = "restore.log"
print(c.restore().pid)`, [dir, sock]);
  assert.equal(Number(pid), w.pid, "RESTORE answers the restored root's PID");
  assert.equal(finish(w), "PASS");
}

/** A service at a fresh address; stopped by stop(). */
function startService(extra: string[] = []): { address: string; stop: () => Promise<void> } {
  const dir = mkdirTemp();
  const address = join(dir, "crest.sock");
  const child = spawn(CREST, ["service", "--address", address, "-o", join(dir, "service.log"), "-v4", ...extra], { stdio: "ignore" });
  waitFor("the service to listen", () => existsSync(address));
  return {
    address,
    stop: () => new Promise((resolve) => {
      child.on("exit", () => resolve());
      child.kill("SIGTERM");
    }),
  };
}

function mkdirTemp(): string {
  const d = join("/tmp", `crest-rpc-${process.pid}-${Math.random().toString(36).slice(2)}`);
  mkdirSync(d, { recursive: true });
  return d;
}

test("swrk: VERSION says criu 4.2 (with crest's own as gitid), FEATURE_CHECK and CHECK on one kept-open connection", () => {
  const c = RawClient.swrk();
  try {
    const v = c.call({ type: criu_req_type.VERSION, keep_open: true });
    assert.deepEqual([v.success, v.version?.major_number, v.version?.minor_number], [true, 4, 2]);
    assert.match(v.version?.gitid ?? "", /^crest-/);
    const f = c.call({ type: criu_req_type.FEATURE_CHECK, keep_open: true, features: { mem_track: true, lazy_pages: true, pidfd_store: true } });
    assert.equal(f.success, true);
    // Memory tracking: userfaultfd write-protection, which this kernel has (crest check --feature mem_dirty_track);
    // lazy pages: userfaultfd with its non-cooperative events (crest check --feature uffd-noncoop).
    assert.deepEqual(f.features, { mem_track: true, lazy_pages: true, pidfd_store: false }, "the pidfd store crest has not yet, said no");
    const k = c.call({ type: criu_req_type.CHECK, opts: { images_dir_fd: -1, log_to_stderr: true } });
    assert.deepEqual([k.type, k.success], [criu_req_type.CHECK, true]);
    assert.equal(c.recv(), null, "the connection ends after a request without keep_open");
  } finally {
    c.close();
  }
});

test("swrk: malformed, oversized, truncated and unserved requests get an answer naming what is wrong", () => {
  const cases: Array<[string, (c: RawClient) => void, number, RegExp]> = [
    ["garbage", (c) => c.sendRaw(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])), criu_req_type.EMPTY, /not a criu_req message/],
    ["an unknown type", (c) => c.sendRaw(Buffer.from([0x08, 99])), criu_req_type.EMPTY, /not a criu_req message/],
    ["a truncated message", (c) => c.sendRaw(Buffer.from([0x08, 0x01, 0x12, 0x10, 0x08])), criu_req_type.EMPTY, /not a criu_req message/],
    ["an oversized message", (c) => c.sendRaw(Buffer.alloc(100 << 10, 1)), criu_req_type.EMPTY, /a request of 102400 bytes, more than crest reads/],
    ["keep_open on a dump", (c) => c.send({ type: criu_req_type.DUMP, keep_open: true, opts: { images_dir_fd: -1 } }), criu_req_type.DUMP, /keep_open is allowed only with/],
    ["a single pre-dump", (c) => c.send({ type: criu_req_type.SINGLE_PRE_DUMP, opts: { images_dir_fd: -1 } }), criu_req_type.SINGLE_PRE_DUMP, /SINGLE_PRE_DUMP requests are not supported by crest yet/],
    ["a page server without images", (c) => c.send({ type: criu_req_type.PAGE_SERVER, opts: { images_dir_fd: -1 } }), criu_req_type.PAGE_SERVER, /Neither images_dir_fd nor images_dir/],
    ["a lone NOTIFY", (c) => c.send({ type: criu_req_type.NOTIFY, notify_success: true }), criu_req_type.NOTIFY, /no notification to answer/],
    ["a dump without images", (c) => c.send({ type: criu_req_type.DUMP, opts: { images_dir_fd: -1, pid: 1 } }), criu_req_type.DUMP, /Neither images_dir_fd nor images_dir/],
    ["an option crest lacks", (c) => c.send({ type: criu_req_type.DUMP, opts: { images_dir_fd: -1, images_dir: "/tmp", pid: 1, weak_sysctls: true } }), criu_req_type.DUMP, /criu_opts.weak_sysctls: --weak-sysctls/],
  ];
  for (const [what, send, type, message] of cases) {
    const c = RawClient.swrk();
    try {
      send(c);
      const r = c.recv();
      assert.ok(r, `${what}: answered`);
      assert.deepEqual([r.type, r.success], [type, false], what);
      assert.match(r.cr_errmsg ?? "", message, what);
    } finally {
      c.close();
    }
  }
});

test("swrk driven by pycriu: dump and restore a process tree", () => pycriuCycleOf("swrk", "tree"));

// (A process the service's worker restores is the worker's child until the worker ends: a workload that checks its parent would notice.)
test("the service driven by pycriu: dump and restore a process; a worker per connection", async () => {
  const s = startService();
  try {
    pycriuCycleOf("service", "loop", s.address);
  } finally {
    await s.stop();
  }
});

test("pycriu's page_server_chld: a page server for the next dump, which sends its pages there (criu_opts.ps); WAIT_PID collects it; the images restore", () => {
  const w = startWorkload("memwrite", ["8", "200"]);
  try {
    const dir = imagesDir(w);
    mkdirSync(dir, { recursive: true });
    const out = py(`${CLIENT("swrk")}
c.opts.images_dir_fd = os.open(sys.argv[1], os.O_DIRECTORY)
c.opts.log_level = 4
c.opts.log_file = "ps.log"
ps = c.page_server_chld()
d = pycriu.criu()
d.use_binary("${CREST}")
d.opts.images_dir_fd = os.open(sys.argv[1], os.O_DIRECTORY)
d.opts.pid = ${w.pid}
d.opts.log_level = 4
d.opts.log_file = "dump.log"
d.opts.ps.address = "127.0.0.1"
d.opts.ps.port = ps.port
d.dump()
print(ps.port > 0, os.WEXITSTATUS(c.wait_pid(ps.pid)))`, [dir]);
    assert.equal(out, "True 0", "the page server ran on a port of its own and ended well");
    assert.match(readFileSync(join(dir, "ps.log"), "utf8"), /Session over/);
    assert.match(readFileSync(join(dir, "dump.log"), "utf8"), /Dumping finished successfully\n$/);
    waitTreeGone(w, dir);
    restoreWorkload(w, [], dir);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

function pycriuCycleOf(how: "swrk" | "service", workload: string, sock = ""): void {
  const w = startWorkload(workload);
  try {
    pycriuCycle(how, w, sock);
  } finally {
    stop(w);
  }
}

test("notifications: each hook told in criu's order, and a client that says no fails the dump and leaves the tree running", () => {
  const w = startWorkload("loop");
  const dir = imagesDir(w);
  mkdirSync(dir, { recursive: true });
  const hooks: string[] = [];
  const notified = (c: RawClient, answer: (hook: string) => boolean) => {
    for (;;) {
      const r = c.recv()!;
      if (r.type !== criu_req_type.NOTIFY) return r;
      hooks.push(r.notify!.script!);
      c.send({ type: criu_req_type.NOTIFY, notify_success: answer(r.notify!.script!) });
    }
  };
  try {
    let c = RawClient.swrk();
    c.send({ type: criu_req_type.DUMP, opts: { images_dir_fd: -1, images_dir: dir, pid: w.pid, notify_scripts: true, log_file: "refused.log" } });
    let r = notified(c, (h) => h !== "post-dump");
    c.close();
    assert.deepEqual([r.type, r.success], [criu_req_type.DUMP, false]);
    assert.match(r.cr_errmsg ?? "", /the RPC client reported that its post-dump script failed/);
    assert.deepEqual(hooks.splice(0), ["pre-dump", "query-ext-files", "post-dump"]);
    assert.ok(alive(w.pid), "the tree runs on");
    c = RawClient.swrk();
    c.send({ type: criu_req_type.DUMP, opts: { images_dir_fd: -1, images_dir: dir, pid: w.pid, notify_scripts: true, log_file: "dump.log" } });
    r = notified(c, () => true);
    c.close();
    assert.equal(r.success, true, r.cr_errmsg);
    waitGone(w.pid);
    hooks.splice(0);
    c = RawClient.swrk();
    c.send({ type: criu_req_type.RESTORE, opts: { images_dir_fd: -1, images_dir: dir, notify_scripts: true, log_file: "restore.log" } });
    r = notified(c, () => true);
    c.close();
    assert.deepEqual([r.success, r.restore?.pid], [true, w.pid]);
    assert.deepEqual(hooks, ["pre-restore", "setup-namespaces", "post-setup-namespaces", "post-restore", "pre-resume", "post-resume"]);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

// pycriu turns these two into "No process with such pid" and "Process with requested pid already exists".
test("swrk: criu's cr_errno, ESRCH for a dump of a process that does not exist, EEXIST for a restore whose PID is taken", () => {
  const call = (req: Parameters<RawClient["call"]>[0]) => {
    const c = RawClient.swrk();
    try {
      return c.call(req);
    } finally {
      c.close();
    }
  };
  const none = Number(readFileSync("/proc/sys/kernel/pid_max", "utf8")) + 1;
  let r = call({ type: criu_req_type.DUMP, opts: { images_dir_fd: -1, images_dir: mkdirTemp(), pid: none, log_file: "dump.log" } });
  assert.deepEqual([r.success, r.cr_errno], [false, 3], r.cr_errmsg);
  const w = startWorkload("loop");
  const dir = imagesDir(w);
  mkdirSync(dir, { recursive: true });
  try {
    r = call({ type: criu_req_type.DUMP, opts: { images_dir_fd: -1, images_dir: dir, pid: w.pid, leave_running: true, log_file: "dump.log" } });
    assert.equal(r.success, true, r.cr_errmsg);
    r = call({ type: criu_req_type.RESTORE, opts: { images_dir_fd: -1, images_dir: dir, log_file: "restore.log" } });
    assert.deepEqual([r.success, r.cr_errno], [false, 17], r.cr_errmsg);
    assert.match(r.cr_errmsg ?? "", new RegExp(`PID ${w.pid} is taken`));
    // A failure for another cause, with the PIDs free, carries no errno (as criu's).
    stop(w);
    rmSync(join(dir, `core-${w.pid}.img`));
    r = call({ type: criu_req_type.RESTORE, opts: { images_dir_fd: -1, images_dir: dir, log_file: "restore2.log" } });
    assert.deepEqual([r.success, r.cr_errno], [false, undefined], r.cr_errmsg);
  } finally {
    stop(w);
  }
});

test("self-dump through the service: the client dumps itself, and reads restored = true once restored", async () => {
  const s = startService();
  const dir = mkdirTemp();
  try {
    const script = `import sys, os
sys.path.insert(0, "/usr/lib/python3/dist-packages")
import pycriu
d = sys.argv[1]
c = pycriu.criu()
c.use_sk(sys.argv[2])
c.opts.images_dir_fd = os.open(d, os.O_DIRECTORY)
c.opts.log_file = "dump.log"
c.opts.log_level = 4
r = c.dump()
open(d + "/result", "w").write("restored=%s" % r.restored)`;
    const child = spawn(PYTHON, ["-c", script, dir, s.address], { stdio: "ignore", detached: true });
    const pid = child.pid!;
    // Its parent (this process's event loop) reaps it once the dump has killed it.
    await new Promise((resolve) => child.on("exit", resolve));
    assert.ok(existsSync(join(dir, "inventory.img")), "the client was dumped");
    assert.equal(existsSync(join(dir, "result")), false, "the dumped client never heard back");
    const usk = readImage(dir, IMG.files).filter((f) => f.usk && f.usk.uflags & 2);
    assert.equal(usk.length, 1, "its connection to crest is dumped as criu's USK_SERVICE socket");
    const r = spawnSync(CREST, ["restore", "-D", dir, "-o", "restore.log", "-d"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(waitFor("the restored client's answer", () => (existsSync(join(dir, "result")) ? readFileSync(join(dir, "result"), "utf8") : null)), "restored=True");
    waitGone(pid);
  } finally {
    await s.stop();
  }
});

test("the service's rule: a client that is not root may dump only its own processes", async () => {
  const s = startService();
  const root = startWorkload("loop");
  const dir = mkdirTemp();
  spawnSync("chown", ["18943:58467", dir]);
  try {
    const script = `c = pycriu.criu()
c.use_sk(sys.argv[2])
c.opts.images_dir_fd = os.open(sys.argv[1], os.O_DIRECTORY)
c.opts.pid = ${root.pid}
try:
    c.dump()
    print("dumped")
except pycriu.CRIUExceptionExternal as e:
    print("refused")`;
    assert.equal(py(script, [dir, s.address], { uid: 18943, gid: 58467 }), "refused");
    const log = readFileSync(join(dir, "criu.log"), "utf8");
    assert.match(log, new RegExp(`process ${root.pid} .* does not run as the client's user 18943:58467, or is not dumpable: a client that is not root may dump only its own processes`));
    assert.equal(finish(root), "PASS", "the root's process was not touched");
  } finally {
    stop(root);
    await s.stop();
  }
});

test("the service serves clients side by side: five dump and restore their own trees at once", async () => {
  const s = startService();
  const ws = Array.from({ length: 5 }, () => startWorkload("loop"));
  /** pycriu clients, one per workload, all at once; each prints what it got. */
  const all = (body: string) => Promise.all(ws.map((w) => {
    const dir = imagesDir(w);
    mkdirSync(dir, { recursive: true });
    return new Promise<string>((resolve) => {
      const p = spawn(PYTHON, ["-c", `import sys, os\nsys.path.insert(0, "/usr/lib/python3/dist-packages")\nimport pycriu
c = pycriu.criu()
c.use_sk(sys.argv[2])
c.opts.images_dir_fd = os.open(sys.argv[1], os.O_DIRECTORY)
${body}`, dir, s.address, String(w.pid)]);
      let out = "";
      p.stdout.on("data", (d) => (out += d));
      p.on("exit", () => resolve(out.trim()));
    });
  }));
  try {
    assert.deepEqual(await all(`c.opts.pid = int(sys.argv[3])\nc.opts.log_file = "dump.log"\nprint(c.dump().restored)`), ws.map(() => "False"));
    for (const w of ws) waitTreeGone(w, imagesDir(w));
    assert.deepEqual((await all(`c.opts.log_file = "restore.log"\nprint(c.restore().pid)`)).map(Number), ws.map((w) => w.pid));
    for (const w of ws) assert.equal(finish(w), "PASS");
  } finally {
    ws.forEach(stop);
    await s.stop();
  }
});

test("the service -d: detached, listening once the command returns, its pid in --pidfile", () => {
  const dir = mkdirTemp();
  const address = join(dir, "d.sock");
  const r = spawnSync(CREST, ["service", "-d", "--address", address, "--pidfile", join(dir, "svc.pid"), "-o", join(dir, "svc.log")], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(existsSync(address));
  const pid = Number(waitFor("the pidfile", () => (existsSync(join(dir, "svc.pid")) ? readFileSync(join(dir, "svc.pid"), "utf8") : null)));
  try {
    const c = RawClient.connect(address);
    const v = c.call({ type: criu_req_type.VERSION });
    assert.deepEqual([v.success, v.version?.major_number], [true, 4]);
    c.close();
  } finally {
    process.kill(pid, "SIGTERM");
    // Orphaned by the command that started it, it comes back to this process (a subreaper), which reaps it.
    waitGone(pid);
  }
  writeFileSync(join(dir, "done"), "");
});

test("the service on a socket systemd passes (LISTEN_FDS, LISTEN_PID), as contrib/systemd/crest.socket starts it", async () => {
  const dir = mkdirTemp();
  const address = join(dir, "activated.sock");
  // What systemd does: the listening socket as fd 3, and the two variables naming it for this very process.
  const listen = RawClient.listen(address);
  const child = spawn("sh", ["-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" service -o "$1" -v4`, CREST, join(dir, "service.log")], { stdio: ["ignore", "ignore", "ignore", listen] });
  try {
    const c = RawClient.connect(address);
    const v = c.call({ type: criu_req_type.VERSION });
    assert.deepEqual([v.success, v.version?.minor_number], [true, 2]);
    c.close();
    assert.match(readFileSync(join(dir, "service.log"), "utf8"), /The service socket was passed by systemd/);
  } finally {
    await new Promise((resolve) => {
      child.on("exit", resolve);
      child.kill("SIGTERM");
    });
  }
});
