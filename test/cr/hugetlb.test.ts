// hugetlb memory (hugetlb workload): private and shared anonymous MAP_HUGETLB
// memory and a hugetlb memfd, in a parent and its child, restored with their
// 2 MiB pages and contents; the images say what criu's would (MAP_HUGETLB and
// the page size in the flags, the memfd's hugetlb_flag, pages in 4 KiB units).
// Skipped where the kernel has no 2 MiB huge pages to give. And shared
// anonymous memory reached through fds of it (/dev/zero, shmem-fd workload).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readImage, IMG } from "../../src/images/index.js";
import { assertDumpRefused, critDecodeAll, dumpWorkload, finish, imagesDir, restoreWorkload, startWorkload, stop } from "./harness.js";

const MAP_SHARED = 0x01, MAP_PRIVATE = 0x02, MAP_ANONYMOUS = 0x20, MAP_HUGETLB = 0x40000;
/** MAP_HUGE_2MB: log2(2 MiB) at bit 26. */
const MAP_HUGE_2MB = 21 << 26;
const MFD_HUGETLB = 4, SHM_HUGETLB = 0o4000;
const VMA_FILE_PRIVATE = 1 << 6, VMA_FILE_SHARED = 1 << 7, VMA_ANON_SHARED = 1 << 8, VMA_ANON_PRIVATE = 1 << 9, VMA_SYSVIPC = 1 << 10, VMA_MEMFD = 1 << 14;
const HUGE = 2n << 20n;

/** Why the hugetlb tests cannot run here, or null. They need 2 MiB pages; the pool is raised for the test if need be. */
function noHugePages(): string | null {
  const info = readFileSync("/proc/meminfo", "utf8");
  if (!/^Hugepagesize:\s+2048 kB$/m.test(info)) return "the kernel has no 2 MiB huge pages (no Hugepagesize: 2048 kB in /proc/meminfo)";
  try {
    readFileSync("/proc/sys/vm/nr_hugepages", "utf8");
  } catch {
    return "no /proc/sys/vm/nr_hugepages";
  }
  return null;
}

/** Runs fn with at least `want` free 2 MiB huge pages, putting the pool back after. */
function withHugePages(want: number, fn: () => void): void {
  const path = "/proc/sys/vm/nr_hugepages";
  const before = Number(readFileSync(path, "utf8"));
  const free = Number(/^HugePages_Free:\s+(\d+)$/m.exec(readFileSync("/proc/meminfo", "utf8"))?.[1] ?? 0);
  if (free < want) writeFileSync(path, String(before + want - free));
  try {
    fn();
  } finally {
    if (Number(readFileSync(path, "utf8")) !== before) writeFileSync(path, String(before));
  }
}

test("hugetlb: private, shared and memfd hugetlb memory of two processes come back", { skip: noHugePages() ?? false }, () => {
  // Parent and child: 2 + 2 private pages (the child's copy of one), 2 shared, 2 of the memfd; twice over while both exist.
  withHugePages(20, () => {
    const w = startWorkload("hugetlb");
    try {
      dumpWorkload(w);
      const dir = imagesDir(w);
      assert.deepEqual(critDecodeAll(dir), [], "crit decodes every image");
      const vmas = readImage(dir, IMG.mm, w.pid)[0]!.vmas;
      const huge = vmas.filter((v) => v.flags & MAP_HUGETLB);
      const priv = huge.find((v) => v.status & VMA_ANON_PRIVATE);
      const shared = huge.find((v) => v.status & VMA_ANON_SHARED);
      assert.ok(priv && shared, "private and shared anonymous hugetlb mappings are in mm.img");
      assert.equal(priv.flags >>> 0, (MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB) >>> 0, "private: MAP_HUGETLB and MAP_HUGE_2MB, as criu");
      assert.equal(shared.flags >>> 0, (MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB) >>> 0, "shared: MAP_HUGETLB and MAP_HUGE_2MB");
      // The memfd, and the shared region an fd reaches: memfd mappings, as criu 4.2 has them.
      const files = new Map(readImage(dir, IMG.files).map((f) => [BigInt(f.id), f]));
      const inodes = readImage(dir, IMG.memfdInode);
      const inodeOf = (v: { shmid: bigint }) => inodes.find((e) => BigInt(e.inode_id) === BigInt(files.get(v.shmid)?.memfd?.inode_id ?? -1));
      const memfds = huge.filter((v) => v.status & VMA_MEMFD);
      const memfd = memfds.find((v) => inodeOf(v)?.name === "crest-huge");
      const reached = memfds.find((v) => inodeOf(v)?.name === "/anon_hugepage");
      assert.ok(memfd && reached, "the memfd's mapping and the shared region with an fd are memfd mappings");
      for (const v of [memfd, reached]) assert.equal(v.flags >>> 0, (MAP_SHARED | MAP_HUGETLB | MAP_HUGE_2MB) >>> 0, "memfd mappings: the size too");
      for (const name of ["crest-huge", "/anon_hugepage"]) {
        assert.equal(inodes.find((e) => e.name === name)?.hugetlb_flag, (MFD_HUGETLB | MAP_HUGE_2MB) >>> 0, `memfd.img has MFD_HUGETLB | MFD_HUGE_2MB for ${name}`);
      }
      // The private region's pages: whole huge pages, in 4 KiB units.
      const pages = readImage(dir, IMG.pagemap, w.pid).entries.filter((e) => e.vaddr >= priv.start && e.vaddr < priv.end);
      const n = pages.reduce((s, e) => s + Number(e.nr_pages ?? BigInt(e.compat_nr_pages)), 0);
      assert.equal(BigInt(n) * 4096n, priv.end - priv.start, "every 4 KiB page of both huge pages is dumped");
      assert.ok(pages.every((e) => (e.vaddr - priv.start) % HUGE === 0n), "entries start at huge page boundaries");
      assert.ok(pages.every((e) => !((e.flags ?? 4) & 2)), "hugetlb pages are not marked lazy (as criu)");
      restoreWorkload(w);
      assert.equal(finish(w), "PASS");
    } finally {
      stop(w);
    }
  });
});

test("hugetlb: the workload's checks fail on a broken region (sabotage)", { skip: noHugePages() ?? false }, () => {
  withHugePages(20, () => {
    for (const item of [1, 2, 3, 4]) {
      const w = startWorkload("hugetlb", [], { env: [`CREST_WL_SABOTAGE=${item}`] });
      try {
        assert.match(finish(w), /^FAIL: (private hugetlb|shared hugetlb|hugetlb memfd|shared hugetlb with an fd): the byte at/);
      } finally {
        stop(w);
      }
    }
  });
});

// Shared anonymous memory reached through fds (shmem-fd workload): recorded as criu 4.2 does, a memfd named
// /dev/zero for each fd and private mapping, and restored as the same object as its shared mappings.
test("shmem-fd: shared anonymous memory through fds and a private mapping of one comes back as one object", () => {
  const w = startWorkload("shmem-fd");
  try {
    dumpWorkload(w);
    const dir = imagesDir(w);
    assert.deepEqual(critDecodeAll(dir), [], "crit decodes every image");
    const inodes = readImage(dir, IMG.memfdInode).filter((e) => e.name === "/dev/zero");
    assert.equal(inodes.length, 2, "two shared anonymous objects reached through fds, as memfds named /dev/zero");
    assert.deepEqual(inodes.map((e) => e.size).sort(), [5n, 5n * 4096n].sort(), "each with its size in bytes");
    const vmas = readImage(dir, IMG.mm, w.pid)[0]!.vmas;
    const priv = vmas.find((v) => v.status & VMA_MEMFD && v.flags & MAP_PRIVATE);
    assert.ok(priv, "the private mapping of the fd is a memfd mapping");
    assert.equal(priv.pgoff, 4096n);
    // Reached through an fd, its shared mappings are memfd mappings of the same inode too (as criu 4.2), for criu to restore one object.
    const big = inodes.find((e) => e.size === 5n * 4096n)!;
    const files = new Map(readImage(dir, IMG.files).map((f) => [BigInt(f.id), f]));
    const shared = vmas.filter((v) => v.status & VMA_MEMFD && v.flags & MAP_SHARED);
    assert.equal(shared.length, 2, "the region and the fd's shared mapping");
    for (const v of shared) assert.equal(BigInt(files.get(v.shmid)?.memfd?.inode_id ?? -1), BigInt(big.inode_id), "of the region's inode");
    assert.equal(BigInt(files.get(priv.shmid)?.memfd?.inode_id ?? -1), BigInt(big.inode_id), "the private mapping too");
    restoreWorkload(w);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("shmem-fd: the workload's checks fail on a broken object (sabotage)", () => {
  for (const [item, what] of [[1, /shared region: page 2/], [2, /private mapping of the fd: page 1/], [3, /the second fd is at 1/]] as const) {
    const w = startWorkload("shmem-fd", [], { env: [`CREST_WL_SABOTAGE=${item}`] });
    try {
      assert.match(finish(w), what);
    } finally {
      stop(w);
    }
  }
});

test("hugetlb-sysv: SysV SHM_HUGETLB segments keep their huge pages and contents", { skip: noHugePages() ?? false }, () => {
  // Two segments: 1 + 2 huge pages.
  withHugePages(6, () => {
    const w = startWorkload("hugetlb-sysv", [], { ns: "pid,ipc" });
    try {
      dumpWorkload(w);
      const dir = imagesDir(w);
      assert.deepEqual(critDecodeAll(dir), [], "crit decodes every image");
      const shmImage = readdirSync(dir).find((f) => /^ipcns-shm-\d+\.img$/.test(f));
      assert.ok(shmImage, "the tree's IPC namespace has its segments dumped");
      const shm = readImage(dir, IMG.ipcShm, Number(/\d+/.exec(shmImage)![0])).map((s) => s.entry);
      assert.equal(shm.length, 2);
      for (const s of shm) assert.equal(s.hugetlb_flag, (SHM_HUGETLB | MAP_HUGE_2MB) >>> 0, "ipcns-shm has SHM_HUGETLB | SHM_HUGE_2MB, as criu");
      const vmas = readImage(dir, IMG.mm, readImage(dir, IMG.pstree)[0]!.pid)[0]!.vmas;
      assert.ok(vmas.some((v) => v.status & VMA_SYSVIPC && v.flags & MAP_HUGETLB && (v.flags >>> 26) === 21), "the attachment has MAP_HUGETLB and the size");
      restoreWorkload(w);
      assert.equal(finish(w), "PASS");
    } finally {
      stop(w);
    }
  });
});

test("hugetlb-sysv: the workload's checks fail on a broken segment (sabotage)", { skip: noHugePages() ?? false }, () => {
  withHugePages(6, () => {
    for (const item of [1, 2]) {
      const w = startWorkload("hugetlb-sysv", [], { ns: "pid,ipc", env: [`CREST_WL_SABOTAGE=${item}`] });
      try {
        assert.match(finish(w), /^FAIL: segment \d+: byte \d+ is/);
      } finally {
        stop(w);
      }
    }
  });
});

/** Runs fn with a hugetlbfs (2 MiB pages) mounted on a fresh directory, unmounted after. */
function withHugetlbfs(fn: (dir: string) => void): void {
  const dir = mkdtempSync("/tmp/crest-hugetlbfs-");
  execFileSync("mount", ["-t", "hugetlbfs", "-o", "pagesize=2M", "none", dir]);
  try {
    fn(dir);
  } finally {
    execFileSync("umount", [dir]);
    rmdirSync(dir);
  }
}

test("hugetlb-file: shared and private mappings of a file on a hugetlbfs mount come back", { skip: noHugePages() ?? false }, () => {
  // The file's 2 pages and the private copy of one.
  withHugePages(3, () => withHugetlbfs((mnt) => {
    const w = startWorkload("hugetlb-file", [join(mnt, "f")]);
    try {
      dumpWorkload(w);
      const dir = imagesDir(w);
      assert.deepEqual(critDecodeAll(dir), [], "crit decodes every image");
      const vmas = readImage(dir, IMG.mm, w.pid)[0]!.vmas.filter((v) => v.flags & MAP_HUGETLB);
      assert.ok(vmas.some((v) => v.status & VMA_FILE_SHARED) && vmas.some((v) => v.status & VMA_FILE_PRIVATE), "file mappings, with MAP_HUGETLB");
      restoreWorkload(w);
      assert.equal(finish(w), "PASS");
    } finally {
      stop(w);
    }
  }));
});

test("hugetlb-file: a deleted file of a hugetlbfs mount is refused, the tree left running", { skip: noHugePages() ?? false }, () => {
  withHugePages(3, () => withHugetlbfs((mnt) => {
    assertDumpRefused("hugetlb-file", [join(mnt, "f"), "unlink"], /\(deleted\), a deleted file of a hugetlbfs mount; crest cannot bring its contents back/);
  }));
});

test("hugetlb-file: the workload's checks fail on a broken mapping (sabotage)", { skip: noHugePages() ?? false }, () => {
  withHugePages(3, () => withHugetlbfs((mnt) => {
    for (const [item, what] of [[1, /shared mapping: holds/], [2, /private mapping: its copy holds/]] as const) {
      const w = startWorkload("hugetlb-file", [join(mnt, `f${item}`)], { env: [`CREST_WL_SABOTAGE=${item}`] });
      try {
        assert.match(finish(w), what);
      } finally {
        stop(w);
      }
    }
  }));
});
