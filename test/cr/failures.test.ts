// Failure is a first-class path: a dump that fails leaves the process
// running as before (registers, memory, no mapping of crest's left behind);
// a restore that fails leaves nothing alive; every error says what and why.
import { test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, constants, cpSync, existsSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import {
  alive, crest, dumpWorkload, finish, imagesDir, procState, restoreWorkload, socketpair, startWorkload, stop, waitGone,
} from "./harness.js";
import { Tracee } from "../../src/remote/tracee.js";
import { native } from "../../src/sys/native.js";
import { SYS } from "../../src/sys/constants.js";

const maps = (pid: number): string => readFileSync(`/proc/${pid}/maps`, "utf8");

/** A free PID below pid_max. */
function freePid(): number {
  for (let p = 30000; p > 1000; p--) if (!existsSync(`/proc/${p}`)) return p;
  throw new Error("no free PID");
}

test("dumping a PID that does not exist", () => {
  const pid = freePid();
  const r = crest(["dump", "-t", String(pid), "-D", `/tmp/crest-nopid-${pid}`]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`process ${pid} does not exist`));
  rmSync(`/tmp/crest-nopid-${pid}`, { recursive: true, force: true });
});

test("dumping a process another tracer holds: refused, process untouched", () => {
  const w = startWorkload("fpu");
  const t = Tracee.seize(w.pid, 0);
  try {
    const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w)]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot be traced/);
  } finally {
    t.interrupt();
    t.detach();
  }
  assert.equal(finish(w), "PASS");
});

test("dumping a process that holds something unsupported: refused by name, process untouched", () => {
  const [mine, theirs] = socketpair();
  const w = startWorkload("loop", [], { stdout: theirs });
  closeSync(theirs);
  try {
    const before = maps(w.pid);
    const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`External socket is used: fd 1 of process ${w.pid} \\(unix stream socket, inode \\d+\\) is connected to socket \\d+ outside the dumped tree`));
    const log = readFileSync(join(imagesDir(w), "dump.log"), "utf8");
    assert.match(log, /Dumping FAILED/);
    assert.doesNotMatch(log, /^\s+at /m, "no JavaScript stack in the log");
    // The fds come after the memory: its pages were written, and are gone again.
    assert.deepEqual(readdirSync(imagesDir(w)), ["dump.log"], "the images directory is left as the dump found it");
    assert.equal(maps(w.pid), before, "no mapping left behind");
    assert.deepEqual(procState(w.pid).tracer, 0);
    assert.equal(finish(w), "PASS");
  } finally {
    closeSync(mine);
    stop(w);
  }
});

test("a dump failing at any point leaves the process as it was (fpu checks every register)", () => {
  const w = startWorkload("fpu");
  try {
    const before = maps(w.pid);
    for (const point of ["dump:frozen", "dump:regs", "dump:memory", "dump:signals", "dump:files", "dump:images"]) {
      const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w)], { CREST_FAULT: point });
      assert.equal(r.code, 1, point);
      assert.match(r.stderr, new RegExp(`injected fault at ${point}`));
      assert.deepEqual(readdirSync(imagesDir(w)), [], `no images left after a fault at ${point}`);
      assert.equal(maps(w.pid), before, `no mapping left behind after a fault at ${point}`);
      const st = procState(w.pid);
      assert.equal(st.tracer, 0, `not traced after ${point}`);
      assert.match(st.state, /[RS]/, `running after ${point}`);
    }
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

/** Dumps a mem workload and returns it (gone) with its images. */
function dumped() {
  const w = startWorkload("mem");
  dumpWorkload(w);
  return w;
}

function restoreFails(w: ReturnType<typeof dumped>, pattern: RegExp, env: Record<string, string> = {}, dir = imagesDir(w)): void {
  const r = crest(["restore", "-D", dir, "-d"], env);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, pattern);
  assert.equal(alive(w.pid), false, "nothing left running");
}

test("restoring from a missing, incomplete, truncated or corrupted image directory", () => {
  const w = dumped();
  const dir = imagesDir(w);
  try {
    restoreFails(w, /no such image: \/nonexistent/, {}, "/nonexistent");
    const copy = `${w.dir}/copy`;
    const fresh = () => {
      rmSync(copy, { recursive: true, force: true });
      cpSync(dir, copy, { recursive: true });
      return copy;
    };
    rmSync(join(fresh(), "inventory.img"));
    restoreFails(w, /no such image: .*inventory\.img/, {}, copy);
    truncateSync(join(fresh(), "pages-1.img"), 8192);
    restoreFails(w, /pages-1\.img.*(truncated|has 8192 bytes)/, {}, copy);
    const core = join(fresh(), `core-${w.pid}.img`);
    const bytes = readFileSync(core);
    truncateSync(core, bytes.length - 100);
    restoreFails(w, new RegExp(`core-${w.pid}\\.img`), {}, copy);
    bytes[4] ^= 0xff; // the type magic
    writeFileSync(join(fresh(), `core-${w.pid}.img`), bytes);
    restoreFails(w, /wrong image type: expected CORE/, {}, copy);
    const mm = join(fresh(), `mm-${w.pid}.img`);
    const mmBytes = readFileSync(mm);
    for (let i = 12; i < 40; i++) mmBytes[i] = 0xff;
    writeFileSync(mm, mmBytes);
    restoreFails(w, new RegExp(`mm-${w.pid}\\.img`), {}, copy);
    // After all that, the originals still restore.
    restoreWorkload(w);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("a restore failing at any point kills what it made", () => {
  const w = dumped();
  try {
    for (const point of ["restore:forked", "restore:memory", "restore:files", "restore:signals", "restore:creds", "restore:regs"]) {
      restoreFails(w, new RegExp(`injected fault at ${point}`), { CREST_FAULT: point });
    }
    restoreWorkload(w);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("restoring while the PID is taken: refused, the holder untouched", () => {
  const w = dumped();
  try {
    restoreWorkload(w);
    const r = crest(["restore", "-D", imagesDir(w), "-d"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`PID ${w.pid} is taken by process ${w.pid} \\(mem\\)`));
    assert.equal(finish(w), "PASS", "the running process was not disturbed");
  } finally {
    stop(w);
  }
});

test("images copied elsewhere restore: nothing is needed from the dumping side", () => {
  const w = dumped();
  try {
    const elsewhere = `${w.dir}-moved`;
    cpSync(imagesDir(w), elsewhere, { recursive: true });
    rmSync(imagesDir(w), { recursive: true });
    const r = crest(["restore", "-D", elsewhere, "-d", "-o", "restore.log", "-v4"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(readFileSync(join(elsewhere, "restore.log"), "utf8"), /Restore finished successfully\. Resuming tasks\.\n$/);
    assert.equal(finish(w), "PASS");
    rmSync(elsewhere, { recursive: true });
  } finally {
    stop(w);
  }
});

test("a failed dump leaves its log naming the failure", () => {
  const pid = freePid();
  const dir = `/tmp/crest-nopid-log-${pid}`;
  const r = crest(["dump", "-t", String(pid), "-D", dir, "-o", "dump.log", "-v4"]);
  assert.equal(r.code, 1);
  const log = readFileSync(join(dir, "dump.log"), "utf8");
  // One criu-style line naming where in crest the error was raised, and no stack.
  assert.match(log, /Error \([a-z/-]+\.ts:\d+\): process \d+ does not exist/);
  assert.doesNotMatch(log, /^\s+at /m);
  assert.match(log, /Dumping FAILED\.\n$/);
  assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith(".img")), [], "no images of a dump that never started");
  rmSync(dir, { recursive: true });
  waitGone(pid);
});

/** A pty whose master this process holds; returns the master fd and the slave's path. */
function pty(): { master: number; slave: string } {
  const TIOCSPTLCK = 0x40045431, TIOCGPTN = 0x80045430;
  const master = openSync("/dev/ptmx", constants.O_RDWR | constants.O_NOCTTY);
  const n = new Int32Array(1);
  if (native.syscall(SYS.ioctl, master, TIOCSPTLCK, n) < 0 || native.syscall(SYS.ioctl, master, TIOCGPTN, n) < 0) throw new Error("cannot set up a pty");
  return { master, slave: `/dev/pts/${n[0]}` };
}

test("a session leader with a controlling terminal no fd holds and whose master is outside the tree is refused by name, not restored without it", () => {
  const { master, slave } = pty();
  const w = startWorkload("refused", ["ctty", slave]);
  try {
    const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`process ${w.pid} \\(session ${w.pid}\\) has the controlling terminal ${slave}, which no process of the tree holds open and whose master is not in the tree; crest cannot restore it`));
    assert.equal(procState(w.pid).tracer, 0);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
    closeSync(master);
  }
});
