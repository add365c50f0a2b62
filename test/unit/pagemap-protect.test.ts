// PAGEMAP_SCAN that write-protects what it finds (PagemapScanner.scan with
// `protect`, as dump --precopy scans a running task), on pages of this
// process: the written pages of a tracked mapping are reported and protected
// again; a mapping not tracked stops the scan (EPERM), and the pages it had
// found before it are reported all the same, since they were protected.
import { test } from "node:test";
import assert from "node:assert/strict";
import { closeSync } from "node:fs";
import { native } from "../../src/sys/native.js";
import { MAP, O, PAGE_SIZE, PROT, SYS } from "../../src/sys/constants.js";
import { PAGE_IS, PagemapScanner } from "../../src/sys/pagemap.js";
import { UFFD_FEATURE, UFFD_USER_MODE_ONLY, uffdApi, uffdRegisterWp, uffdWriteProtect } from "../../src/sys/uffd.js";

const CLOCK_MONOTONIC = 1;
/** Writes a page from the kernel's side (a struct timespec into it): JS has no view of memory it did not allocate. */
const touch = (addr: number) => assert.equal(native.syscall(SYS.clock_gettime, CLOCK_MONOTONIC, addr), 0);
const WRITTEN = { mask: PAGE_IS.WRITTEN | PAGE_IS.PRESENT, inverted: 0, anyof: 0, returned: PAGE_IS.PRESENT, protect: true };

test("a protecting scan reports the pages written and protects them again; an untracked mapping stops it, after what it found", () => {
  const len = 4 * PAGE_SIZE;
  const addr = native.syscall(SYS.mmap, 0, len, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS, -1, 0);
  assert.ok(addr > 0, "mmap");
  const uffd = native.syscall(SYS.userfaultfd, O.CLOEXEC | O.NONBLOCK | UFFD_USER_MODE_ONLY);
  assert.ok(uffd >= 0, "userfaultfd");
  const scanner = new PagemapScanner(process.pid);
  try {
    for (let p = 0; p < 4; p++) touch(addr + p * PAGE_SIZE);
    uffdApi(uffd, UFFD_FEATURE.WP_ASYNC, "a test's pages");
    // The first two pages tracked (the mapping splits there), the last two not.
    assert.equal(uffdRegisterWp(uffd, addr, 2 * PAGE_SIZE), 0);
    uffdWriteProtect(uffd, addr, 2 * PAGE_SIZE, "a test's pages");
    touch(addr + PAGE_SIZE);
    const scan = (end: number) => {
      const found: string[] = [];
      const whole = scanner.scan(addr, end, WRITTEN, (s, e) => void found.push(`${(s - addr) / PAGE_SIZE}-${(e - addr) / PAGE_SIZE}`));
      return { whole, found: found.join(",") };
    };
    assert.deepEqual(scan(addr + len), { whole: false, found: "1-2" }, "page 1 written; the untracked mapping after stops the scan");
    assert.deepEqual(scan(addr + 2 * PAGE_SIZE), { whole: true, found: "" }, "page 1 was protected again by the scan that found it");
    touch(addr);
    assert.deepEqual(scan(addr + 2 * PAGE_SIZE), { whole: true, found: "0-1" }, "a write after the scan marks its page anew");
  } finally {
    scanner.close();
    closeSync(uffd);
    native.syscall(SYS.munmap, addr, len);
  }
});
