// The native boundary: the raw syscall entry, buffer addresses, aligned
// memory, cpuid, spawning with a chosen PID, and the stub's gadget.
import { test } from "node:test";
import assert from "node:assert/strict";
import { native, stubPath } from "../../src/sys/native.js";
import { PTRACE_O, SYS } from "../../src/sys/constants.js";
import { wait4 } from "../../src/sys/syscalls.js";
import { readFileSync, existsSync } from "node:fs";
import { Tracee } from "../../src/remote/tracee.js";
import { stubGadget } from "../../src/remote/gadget.js";
import { Remote } from "../../src/remote/remote.js";
import { parseMaps } from "../../src/proc/index.js";

test("syscall: results, -errno, strings and buffers as arguments", () => {
  assert.equal(native.syscall(SYS.getpid), process.pid);
  assert.equal(native.syscall(SYS.close, 99999), -9, "EBADF comes back as -9");
  const fd = native.syscall(SYS.openat, -100, "/proc/self/comm", 0, 0);
  assert.ok(fd >= 0);
  const buf = Buffer.alloc(64);
  const n = native.syscall(SYS.read, fd, buf, 64);
  assert.equal(buf.subarray(0, n).toString().trim(), readFileSync("/proc/self/comm", "utf8").trim());
  native.syscall(SYS.close, fd);
  assert.throws(() => native.syscall(SYS.getpid, {} as never), /argument must be/);
});

test("address and aligned memory", () => {
  const ab = native.aligned(3 * 4096);
  assert.equal(ab.byteLength, 3 * 4096);
  assert.equal(native.address(ab) % 4096, 0);
  const b = Buffer.from(ab);
  assert.equal(native.address(b), native.address(ab));
  assert.equal(native.address(b.subarray(10)), native.address(ab) + 10);
  assert.ok(b.every((x) => x === 0), "zero-filled");
  b.fill(7);
  assert.equal(b[3 * 4096 - 1], 7);
});

test("cpuid: the XSAVE leaf reports x87 and SSE", () => {
  const [eax] = native.cpuid(0xd, 0);
  assert.equal(eax & 3, 3);
});

test("spawn: exact PID, exec errors reported, fds closed", () => {
  let pid = 20000;
  while (existsSync(`/proc/${pid}`)) pid++;
  const got = native.spawn({ path: "/bin/sleep", argv: ["sleep", "5"], env: [], pid, setsid: 1, fds: [] });
  assert.equal(got, pid);
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  assert.match(status, /PPid:\s+\d+/);
  assert.equal(Number(/PPid:\s+(\d+)/.exec(status)![1]), process.pid);
  process.kill(pid, "SIGKILL");
  assert.ok(wait4(pid, 0)!.signaled);
  assert.equal(native.spawn({ path: "/nonexistent", argv: ["x"], env: [] }), -2, "ENOENT from execve");
  assert.equal(native.spawn({ path: "/bin/true", argv: ["true"], env: [], pid: 1 }), -17, "PID 1 is taken: EEXIST");
});

test("the stub: seized, its gadget found, syscalls run inside it", () => {
  const pid = native.spawn({ path: stubPath(), argv: ["crest-stub"], env: [], fds: [] });
  assert.ok(pid > 0);
  try {
    const t = Tracee.seize(pid, PTRACE_O.TRACESYSGOOD);
    t.interrupt();
    const text = parseMaps(readFileSync(`/proc/${pid}/maps`, "utf8")).find((m) => m.prot.exec && m.path.endsWith("crest-stub"))!;
    const r = new Remote(t, stubGadget(pid, text));
    assert.equal(r.syscall(SYS.getpid), pid);
    const scratch = r.mapScratch(8192);
    assert.ok(parseMaps(readFileSync(`/proc/${pid}/maps`, "utf8")).some((m) => BigInt(m.start) === scratch));
    assert.equal(r.syscall(SYS.close, 12345), -9);
    r.unmapScratch();
    assert.ok(!parseMaps(readFileSync(`/proc/${pid}/maps`, "utf8")).some((m) => BigInt(m.start) === scratch));
    r.restore();
    t.detach();
  } finally {
    process.kill(pid, "SIGKILL");
    wait4(pid, 0);
  }
});
