// maps and smaps on a process with odd mappings (test/fixtures/proc/zoo, see capture.sh).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  lockedKb, mappingDifference, parseMaps, parseMapsLine, parseSmaps, sameMappings, vmFlagsToMadvise, vmFlagsToMapFlags, ProcParseError,
  type SmapsEntry,
} from "../../src/proc/index.js";

const fixture = (name: string): string => readFileSync(new URL(`../../../test/fixtures/proc/${name}`, import.meta.url), "utf8");
const maps = parseMaps(fixture("zoo/maps"));
const smaps = parseSmaps(fixture("zoo/smaps"));
const at = <T extends { start: number }>(list: T[], start: number): T => {
  const e = list.find((m) => m.start === start);
  assert.ok(e, `a mapping at 0x${start.toString(16)}`);
  return e;
};

test("maps: file mappings, offsets, devices and paths with spaces", () => {
  assert.equal(maps.length, 51);
  const exe = maps[0]!;
  assert.equal(exe.start, 0x55d7106df000);
  assert.equal(exe.end, 0x55d7106e1000);
  assert.deepEqual(exe.prot, { read: true, write: false, exec: false });
  assert.equal(exe.shared, false);
  assert.equal(exe.major, 0xfe);
  assert.equal(exe.minor, 0);
  assert.equal(exe.inode, 2179904);
  assert.ok(exe.path.endsWith("/zoo"));
  const text = maps[1]!;
  assert.deepEqual(text.prot, { read: true, write: false, exec: true });
  assert.equal(text.offset, 0x2000n);
  const spaced = at(maps, 0x7fd8d2f4c000);
  assert.ok(spaced.path.endsWith("/zoo-dir/with space (x)"), spaced.path);
  assert.equal(spaced.deleted, false);
  assert.equal(spaced.offset, 0x2000n);
  assert.deepEqual(spaced.prot, { read: true, write: true, exec: false });
});

test("maps: deleted files, shared anonymous memory, SysV shm and memfd", () => {
  const del = at(maps, 0x7fd8d2f4e000);
  assert.ok(del.path.endsWith("/zoo-dir/deleted-file"), del.path);
  assert.equal(del.deleted, true);
  assert.equal(del.shared, true);
  assert.equal(del.end - del.start, 0x2000);
  const zero = at(maps, 0x7fd8d2f49000);
  assert.deepEqual([zero.path, zero.deleted, zero.shared, zero.inode, zero.major, zero.minor], ["/dev/zero", true, true, 1151, 0, 1]);
  const sysv = at(maps, 0x7fd8d2f47000);
  assert.deepEqual([sysv.path, sysv.deleted, sysv.inode], ["/SYSV00001234", true, 0], "the inode of a SysV segment is its shmid");
  const memfd = at(maps, 0x7fd8d2c51000);
  assert.deepEqual([memfd.path, memfd.deleted, memfd.shared, memfd.inode], ["/memfd:crest memfd", true, true, 1154]);
});

test("maps: anonymous, PROT_NONE and pseudo-named regions", () => {
  const none = at(maps, 0x7fd8d2c4c000);
  assert.deepEqual(none.prot, { read: false, write: false, exec: false });
  assert.equal(none.end - none.start, 5 * 4096);
  assert.equal(none.path, "");
  assert.equal(none.inode, 0);
  assert.deepEqual(maps.filter((m) => m.path.startsWith("[")).map((m) => m.path),
    ["[heap]", "[vvar]", "[vvar_vclock]", "[vdso]", "[stack]", "[vsyscall]"]);
  const vsys = maps[maps.length - 1]!;
  assert.equal(vsys.start, 0xffffffffff600000, "page-aligned u64 addresses are exact numbers");
  assert.equal(vsys.end, 0xffffffffff601000);
  assert.deepEqual(vsys.prot, { read: false, write: false, exec: true });
});

test("maps: names this kernel cannot show (no CONFIG_ANON_VMA_NAME) and odd paths", () => {
  const anon = parseMapsLine("7f0000000000-7f0000002000 rw-p 00000000 00:00 0                          [anon:crest name]");
  assert.equal(anon.path, "[anon:crest name]");
  const shm = parseMapsLine("7f0000000000-7f0000001000 rw-s 00000000 00:01 7                          [anon_shmem:crest shm]");
  assert.deepEqual([shm.path, shm.shared, shm.deleted], ["[anon_shmem:crest shm]", true, false]);
  const lead = parseMapsLine("7f0000000000-7f0000001000 r--p 00000000 fe:00 12                         /tmp/a  b (deleted) (deleted)");
  assert.deepEqual([lead.path, lead.deleted], ["/tmp/a  b (deleted)", true], "only the last suffix is the kernel's");
  const big = parseMapsLine("7f0000000000-7f0000001000 r--p 7fffffffffff0000 fe:00 12 /x");
  assert.equal(big.offset, 0x7fffffffffff0000n);
});

test("maps: malformed lines throw ProcParseError naming the line", () => {
  assert.throws(() => parseMaps("7f00-7f01 rw-p 0 00:00 0\n"), /not a page-aligned/);
  assert.throws(() => parseMaps("7f0000001000-7f0000000000 rw-p 00000000 00:00 0\n"), /end is not above start/);
  assert.throws(() => parseMaps("7f0000000000-7f0000001000 rwzp 00000000 00:00 0\n"), /maps: unexpected format: "7f00/);
  assert.throws(() => parseMaps("7f0000000000-7f0000001000 rw-p 00000000 00:00\n"), ProcParseError);
  assert.throws(() => parseMaps("7f0000000000-7f0000001000 rw-p 00000000 00:00 99999999999999999 /x\n"), /does not fit/);
  assert.deepEqual(parseMaps(""), []);
});

test("smaps: the same mappings, with their VmFlags", () => {
  assert.deepEqual(smaps.map((m) => [m.start, m.end, m.path]), maps.map((m) => [m.start, m.end, m.path]));
  const stack = smaps.find((m) => m.path === "[stack]")!;
  assert.deepEqual(stack.vmFlags, ["rd", "wr", "mr", "mw", "me", "gd", "ac"]);
  assert.ok(at(smaps, 0x7fd8d2d52000).vmFlags.includes("gd"));
  assert.deepEqual(at(smaps, 0x7fd8d2f49000).vmFlags, ["rd", "wr", "sh", "mr", "mw", "me", "ms"]);
  assert.ok(at(smaps, 0x7fd8d2c3c000).vmFlags.includes("lo"));
  const vvar = smaps.find((m) => m.path === "[vvar]")!;
  assert.deepEqual(vvar.vmFlags, ["rd", "mr", "pf", "io", "de", "dd"]);
});

test("smaps: how much of a mapping other mappings map too", () => {
  assert.equal(smaps[0]!.sharedKb, 8, "the program's first page: Shared_Dirty 8 kB");
  assert.equal(at(smaps, 0x7fd8d2c34000).sharedKb, 0);
  const head = "7f0000000000-7f0000004000 rw-p 00000000 00:00 0\n";
  assert.equal(parseSmaps(`${head}Shared_Clean:          4 kB\nShared_Dirty:         12 kB\nPrivate_Dirty:   4 kB\n`)[0]!.sharedKb, 16);
  assert.throws(() => parseSmaps(`${head}Shared_Dirty: many kB\n`), ProcParseError);
});

test("smaps: VmFlags to CRIU's madv and mmap flags", () => {
  // One page per madvise() advice, in the order the capture program applied them.
  const advised = [0x7fd8d2c3d000, 0x7fd8d2c3f000, 0x7fd8d2c41000, 0x7fd8d2c43000, 0x7fd8d2c45000, 0x7fd8d2c47000, 0x7fd8d2c49000, 0x7fd8d2c4b000]
    .map((start) => vmFlagsToMadvise(at(smaps, start).vmFlags));
  // RANDOM 1, SEQUENTIAL 2, DONTFORK 10, DONTDUMP 16, WIPEONFORK 18, HUGEPAGE 14, NOHUGEPAGE 15, MERGEABLE 12
  assert.deepEqual(advised, [1n << 1n, 1n << 2n, 1n << 10n, 1n << 16n, 1n << 18n, 1n << 14n, 1n << 15n, 1n << 12n]);
  assert.equal(vmFlagsToMadvise(at(smaps, 0x7fd8d2c34000).vmFlags), 0n);
  assert.equal(vmFlagsToMapFlags(at(smaps, 0x7fd8d2d52000).vmFlags), 0x100, "MAP_GROWSDOWN");
  assert.equal(vmFlagsToMapFlags(at(smaps, 0x7fd8d2c3c000).vmFlags), 0x2000, "MAP_LOCKED");
  assert.equal(vmFlagsToMapFlags(at(smaps, 0x7fd8d2c34000).vmFlags), 0x4000, "MAP_NORESERVE");
  assert.equal(vmFlagsToMapFlags(["rd", "ht", "dp"]), 0x40000 | 0x08);
  assert.equal(vmFlagsToMadvise(["dd", "wf", "sr"]), (1n << 16n) | (1n << 18n) | (1n << 2n));
});

test("smaps: malformed input throws", () => {
  assert.throws(() => parseSmaps("Size: 4 kB\n"), /field before the first mapping/);
  const head = "7f0000000000-7f0000001000 rw-p 00000000 00:00 0\n";
  assert.throws(() => parseSmaps(`${head}garbage\n`), ProcParseError);
  assert.throws(() => parseSmaps(`${head}size 4 kB\n`), ProcParseError);
  assert.throws(() => parseSmaps(`${head}VmFlags: rd WRITE\n`), /bad VmFlags mnemonic/);
  const ok = parseSmaps(`${head}Size:                  4 kB\nVmFlags: \n`);
  assert.deepEqual([ok[0]!.start, ok[0]!.vmFlags], [0x7f0000000000, []]);
});

test("smaps read early: the same mappings as maps shows, the locked kB, and what a fork child may differ in", () => {
  assert.ok(sameMappings(maps, smaps));
  assert.ok(!sameMappings(maps.slice(1), smaps), "one mapping fewer");
  const moved = maps.map((m, i) => (i === 3 ? { ...m, offset: m.offset + 4096n } : m));
  assert.ok(!sameMappings(moved, smaps), "another offset");
  const lo = at(smaps, 0x7fd8d2c3c000);
  assert.equal(lockedKb(smaps), smaps.filter((m) => m.vmFlags.includes("lo")).reduce((kb, m) => kb + (m.end - m.start) / 1024, 0));
  assert.ok(lockedKb(smaps) >= (lo.end - lo.start) / 1024);

  // A child: no mlock or userfaultfd flags, none of the MADV_DONTFORK mappings, crest's scratch mapping besides.
  const withDc = smaps.map((m) => (m.start === 0x7fd8d2c34000 ? { ...m, vmFlags: [...m.vmFlags, "dc"] } : m));
  const child = (list: SmapsEntry[]): SmapsEntry[] => [
    ...list.filter((m) => !m.vmFlags.includes("dc")).map((m) => ({ ...m, vmFlags: m.vmFlags.filter((f) => f !== "lo" && f !== "uw") })),
    { ...smaps[0]!, start: 0x10000, end: 0x20000, path: "", vmFlags: ["rd", "wr", "ex"] },
  ].sort((a, b) => a.start - b.start);
  assert.equal(mappingDifference(withDc, child(withDc), true), null);
  const wiped = child(withDc).map((m) => (m.start === 0x7fd8d2f49000 ? { ...m, vmFlags: [...m.vmFlags, "wf"] } : m));
  assert.match(mappingDifference(withDc, wiped, true) ?? "", /^0x7fd8d2f49000-0x[0-9a-f]+ has VmFlags .* wf, not /);
  const gone = child(withDc).filter((m) => m.start !== 0x7fd8d2f49000);
  assert.match(mappingDifference(withDc, gone, true) ?? "", /^0x7fd8d2f49000-0x[0-9a-f]+ is not the mapping it was$/);
  assert.match(mappingDifference(smaps, child(withDc), true) ?? "", /^0x7fd8d2c34000-/, "a mapping the child lacks that was not dc");

  // crest's scratch mapping merged into the anonymous mapping above it, which then reaches further down
  // (a file mapping that did would be at another offset of its file).
  const further = (m: SmapsEntry, off: bigint) => (list: SmapsEntry[]) => list.map((n) => (n.start === m.start ? { ...n, start: n.start - 0x10000, offset: n.offset - off } : n));
  const anon = smaps.find((m) => m.inode === 0 && !m.path && !m.shared && !m.vmFlags.includes("lo"))!;
  assert.equal(mappingDifference(withDc, further(anon, 0n)(child(withDc)), true), null);
  const file = smaps.find((m) => m.inode !== 0 && m.offset >= 0x10000n)!;
  assert.equal(mappingDifference(withDc, further(file, 0x10000n)(child(withDc)), true), null);
  assert.match(mappingDifference(withDc, further(file, 0n)(child(withDc)), true) ?? "", /is not the mapping it was/, "an offset that does not follow");

  // The process itself (no fork): every mapping, every flag, mlock included.
  assert.equal(mappingDifference(smaps, smaps, false), null);
  assert.match(mappingDifference(smaps, smaps.map((m) => ({ ...m, vmFlags: m.vmFlags.filter((f) => f !== "lo") })), false) ?? "", /^0x7fd8d2c3c000-.* has VmFlags/);
});
