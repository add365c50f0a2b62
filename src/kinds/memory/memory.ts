// The address space: every mapping (private and shared, anonymous and
// file-backed, stack, heap, vDSO/vvar), the mm fields (code/data/brk/stack/
// args/env bounds, auxv, exe link), guard regions (MADV_GUARD_INSTALL, kept
// as criu does: entries with only VMA_AREA_GUARD) and, through pages.ts, the
// contents.
//
// Restore turns the stub into the task: crest maps its scratch page in a
// hole of both layouts (or keeps one inherited from the parent), keeps the
// mappings it inherited from its parent as they are (private ones stay
// shared copy-on-write: only pages that differ are written), drops every
// other mapping, moves the kernel's vDSO
// and vvar to where the task had them, maps each VMA at its address, lets
// the task read its pages in, sets the final protections, installs the guard
// regions again and the mm fields with PR_SET_MM_MAP.
import { closeSync, fstatSync, lstatSync, openSync, readFileSync, readlinkSync } from "node:fs";
import type { TaskKind, DumpTask, DumpRun, RestoreTask, RestoreRun } from "../context.js";
import { dumpState, restoreState, UnsupportedError } from "../context.js";
import { IMG, type vma_entry, type reg_file_entry, type pagemap_entry } from "../../images/index.js";
import type { PageSource } from "../../images/store.js";
import { MADV, MAP, MREMAP, O, PAGE_SIZE, PROT, PR, PR_SET_MM_MAP, SHM, SYS } from "../../sys/constants.js";
import { MM_MAP_SIZE, packMmMap } from "../../sys/structs.js";
import { PagemapScanner } from "../../sys/pagemap.js";
import { parseAuxv, parseMaps, vmFlagsToMadvise, vmFlagsToMapFlags, type SmapsEntry, type MapEntry } from "../../proc/index.js";
import { openCrestProcPath } from "../files/inherit.js";
import { checkMappedReopenable, dumpDeletedFile, dumpRegFile, openRegFile, queueOpenRegFile, regFile } from "../files/regfile.js";
import { dumpSocketMapping } from "../sockets/packet.js";
import { PE, PagesWriter, fillFromPages, fillRuns, pageCount, splitRuns } from "./pages.js";
import { dumpMemfd, isMemfdPath, isShmemFile, openMemfd } from "../files/memfd.js";
import { parker } from "../files/fd-table.js";
import type { RArg, Remote } from "../../remote/remote.js";
import { is, isGuard, isSpecial, MAP_DROPPABLE, MAP_TYPE, protOf, range, subtract, VMA } from "./vma.js";
import { inheritedVmas, restoreInherited, sameExe } from "./inherit.js";
import { reachedOtherwise } from "./shmem-reach.js";
import { hugeFlagsOf, hugeMapping, hugePageSize, type HugeMapping } from "./hugetlb.js";
import { runsOf, type PageLayer } from "./chain.js";
import { handOverTracking, parentPagesOf, trackTask } from "./tracking.js";
import { snapshotting, takeSnapshot } from "./snapshot.js";
import { connectLazy, finishLazy, handOverLazy, lazyRanges, lazyVma, remoteRuns, restoresLazily, splitLazy } from "./lazy.js";

/** Size of the scratch mapping crest uses inside a task under restore. */
const SCRATCH_SIZE = 256 << 10;

/**
 * mmap flags as CRIU records them: the type, then what VmFlags shows
 * (MAP_DROPPABLE replaces MAP_PRIVATE), then a hugetlb mapping's page size
 * (added, not or'ed: the size bits may pass bit 31).
 */
function mapFlagsOf(m: SmapsEntry, huge: HugeMapping | null): number {
  const f = vmFlagsToMapFlags(m.vmFlags);
  return ((f & MAP_DROPPABLE ? 0 : m.shared ? MAP.SHARED : MAP.PRIVATE) | f) + (huge ? huge.flags - MAP.HUGETLB : 0);
}

/**
 * The open mode of the file behind a mapping (O_RDONLY, O_WRONLY or O_RDWR):
 * the kernel shows it as the owner bits of the map_files link. A shared
 * mapping can be made writable later only if its file was open for writing.
 */
function mapFileMode(via: string, m: SmapsEntry): number {
  switch (lstatSync(via).mode & 0o600) {
    case 0o600: return O.RDWR;
    case 0o200: return O.WRONLY;
    case 0o400: return O.RDONLY;
  }
  return m.shared && m.prot.write ? O.RDWR : O.RDONLY;
}

/** Turns one line of smaps into a vma_entry, registering its file in files.img. */
function dumpVma(task: DumpTask, run: DumpRun, m: SmapsEntry, fileIds: Map<string, number>): vma_entry {
  const start = m.start.toString(16), end = m.end.toString(16);
  const where = `the mapping 0x${start}-0x${end} (${m.path || "anonymous"}) of process ${task.pid}`;
  const via = `/proc/${task.pid}/map_files/${start}-${end}`;
  const huge = m.vmFlags.includes("ht") ? hugeMapping(m, via, where) : null;
  const base = {
    start: BigInt(m.start), end: BigInt(m.end), pgoff: m.offset, shmid: 0n, prot: protOf(m),
    flags: mapFlagsOf(m, huge), fd: -1n, madv: vmFlagsToMadvise(m.vmFlags),
  };
  const special = (status: number): vma_entry => ({ ...base, flags: base.flags | MAP.ANONYMOUS, status });
  // The kernel's own areas are anonymous private memory to criu too (it sets VMA_ANON_PRIVATE beside their bit).
  switch (m.path) {
    case "[vsyscall]": return special(VMA.VSYSCALL | VMA.ANON_PRIVATE);
    case "[vdso]": return special(VMA.REGULAR | VMA.VDSO | VMA.ANON_PRIVATE);
    case "[vvar]": case "[vvar_vclock]": return special(VMA.REGULAR | VMA.VVAR | VMA.ANON_PRIVATE);
    case "[heap]": return special(VMA.REGULAR | VMA.HEAP | VMA.ANON_PRIVATE);
  }
  if (m.vmFlags.includes("ss")) throw new UnsupportedError(`${where} is a shadow stack; crest does not support CET shadow stacks yet`);
  if (m.vmFlags.includes("io") || m.vmFlags.includes("pf")) throw new UnsupportedError(`${where} maps device memory; crest cannot dump it`);
  // SysV shared memory: its inode is the segment id, which may be 0.
  if (m.shared && m.path.startsWith("/SYSV")) {
    // Its contents go with the IPC namespace (ipcns-shm); only the attachment is the task's.
    if (readlinkSync(`/proc/${task.pid}/ns/ipc`) === readlinkSync("/proc/self/ns/ipc")) {
      throw new UnsupportedError(`${where} is SysV shared memory of crest's own IPC namespace; crest dumps SysV IPC only of trees with their own (start them with crest run)`);
    }
    return { ...special(VMA.REGULAR | VMA.ANON_SHARED | VMA.SYSVIPC), shmid: BigInt(m.inode) };
  }
  if (m.inode === 0) {
    if (m.path.startsWith("[") && !m.path.startsWith("[stack") && !m.path.startsWith("[anon:")) {
      throw new UnsupportedError(`${where} is the kernel mapping ${m.path}; crest does not support it`);
    }
    if (m.shared) throw new UnsupportedError(`${where} is a shared mapping without a file`);
    return special(VMA.REGULAR | VMA.ANON_PRIVATE);
  }
  // Shared anonymous memory shows as a deleted /dev/zero on the shmem mount; reached through an fd too, it is a memfd mapping (shmem-reach.ts).
  const sharedAnon = m.shared && (m.path === "/dev/zero" || m.path.startsWith("[anon_shmem:") || huge?.kind === "anon");
  if (sharedAnon && m.deleted && reachedOtherwise(run, via)) return dumpMemfdMapping(task, run, m, base, via);
  if (m.shared && (m.path === "/dev/zero" || m.path.startsWith("[anon_shmem:")) ) {
    return { ...special(VMA.REGULAR | VMA.ANON_SHARED), shmid: BigInt(m.inode) };
  }
  // Anonymous hugetlb memory (hugetlb.ts): private or shared anonymous memory with its page size in the flags.
  if (huge?.kind === "anon") {
    return m.shared ? { ...special(VMA.REGULAR | VMA.ANON_SHARED), shmid: BigInt(m.inode) } : special(VMA.REGULAR | VMA.ANON_PRIVATE);
  }
  // A packet socket's rings, mapped again from the restored socket (packet.ts).
  if (/^socket:\[\d+\]$/.test(m.path)) return dumpSocketMapping(task.pid, run, m, base, where);
  // A memfd, or shared anonymous memory mapped privately through an fd of it (recorded as a memfd named /dev/zero, as criu 4.2).
  if (m.deleted && (isMemfdPath(m.path) || isShmemFile(m.path, via))) return dumpMemfdMapping(task, run, m, base, via);
  const fdflags = mapFileMode(via, m);
  // Deleted files (kept as ghosts, ghost.ts): two may have had the same path.
  const key = `${m.path}\0${fdflags}${m.deleted ? `\0${m.inode}` : ""}`;
  let id = fileIds.get(key);
  if (id === undefined) {
    const facts = { path: m.path, flags: fdflags | O.LARGEFILE, pos: 0n };
    if (m.deleted) {
      id = dumpDeletedFile(run, facts, via, where);
    } else {
      const st = checkMappedReopenable(run, task, m.path, via, where);
      if (!st.isFile()) throw new UnsupportedError(`${where} maps ${m.path}, which is not a regular file`);
      id = dumpRegFile(run, facts, st, where);
    }
    fileIds.set(key, id);
  }
  return { ...base, shmid: BigInt(id), fdflags, status: VMA.REGULAR | (m.shared ? VMA.FILE_SHARED : VMA.FILE_PRIVATE) };
}

/** A mapping of a memfd (or of shared anonymous memory recorded as one): its description in files.img. */
function dumpMemfdMapping(task: DumpTask, run: DumpRun, m: SmapsEntry, base: Omit<vma_entry, "status">, via: string): vma_entry {
  const flags = mapFileMode(via, m);
  const id = dumpMemfd(run, { via, path: m.path, pid: task.pid, flags, pos: 0n, fown: { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 } });
  // criu marks it a file mapping too (VMA_FILE_SHARED or _PRIVATE beside VMA_AREA_MEMFD).
  return { ...base, shmid: BigInt(id), fdflags: flags, status: VMA.REGULAR | VMA.MEMFD | (m.shared ? VMA.FILE_SHARED : VMA.FILE_PRIVATE) };
}

function dumpMemory(task: DumpTask, run: DumpRun): void {
  const pid = task.pid;
  const r = task.remotes[0]!;
  const st = task.stat;
  const fileIds = new Map<string, number>();
  const vmas = task.vmas.map((m) => dumpVma(task, run, m, fileIds));
  const exePath = readlinkSync(`/proc/${pid}/exe`);
  const exeId = dumpRegFile(run, { path: exePath, flags: O.RDONLY | O.LARGEFILE, pos: 0n }, checkMappedReopenable(run, task, exePath, `/proc/${pid}/exe`, `the executable of process ${pid}`));
  // Answered with the task's other questions (one stop for all).
  const brk = r.later({ what: `read the program break of task ${pid}`, nr: SYS.brk, args: [0] });
  r.afterRun(() => (task.mm!.mm_brk = BigInt(brk.value!)));
  task.mm = {
    mm_start_code: BigInt(st.startCode), mm_end_code: BigInt(st.endCode),
    mm_start_data: BigInt(st.startData), mm_end_data: BigInt(st.endData),
    mm_start_stack: BigInt(st.startStack), mm_start_brk: BigInt(st.startBrk), mm_brk: 0n,
    mm_arg_start: BigInt(st.argStart), mm_arg_end: BigInt(st.argEnd),
    mm_env_start: BigInt(st.envStart), mm_env_end: BigInt(st.envEnd),
    exe_file_id: exeId,
    // Without its closing AT_NULL pair: criu on x86 takes at most 44 words (here, all before
    // AT_NULL) and refuses more ("Image corrupted"); the kernel closes the vector itself.
    mm_saved_auxv: parseAuxv(readFileSync(`/proc/${pid}/auxv`)).slice(0, -2),
    vmas,
    aios: [],
  };

  task.pagesId = run.nextId("pages");
  const { parent, prevFd } = parentPagesOf(task, run);
  const pages = new PagesWriter(pid, run.images.pages(task.pagesId, { shmem: false, id: task.vpid }), run.stats);
  const scanner = new PagemapScanner(pid);
  // Pages the task itself cannot read (PROT_NONE) are read through /proc/PID/mem.
  const mem = openSync(`/proc/${pid}/mem`, "r");
  // Pages that could be restored lazily are marked PE_LAZY (and with dump --lazy-pages left in the tasks), as criu
  // does, but those under the threads' stack pointers.
  const stackPages = [...new Set(task.remotes.map((t) => Number(t.saved.get("sp") & ~BigInt(PAGE_SIZE - 1))))].sort((a, b) => a - b);
  // With --leave-running, copied from a snapshot once the tree runs on (snapshot.ts).
  let snapshot = false;
  try {
    snapshot = snapshotting(run) && takeSnapshot(task, run, pages, mem);
    vmas.forEach((v, i) => {
      const m = task.vmas[i]!;
      // The vDSO's pages are dumped, as criu does (its restorer reads the dumped vDSO to compare
      // it with the kernel's; PAGEMAP_SCAN does not report them); crest's restore ignores them.
      if (is(v, VMA.VDSO)) {
        pages.add(m.start, m.end - m.start, { kind: "vm" });
        run.stats.pagesWritten += (m.end - m.start) / PAGE_SIZE;
        return;
      }
      // Shared file and memfd mappings live in their file.
      if (isSpecial(v) || is(v, VMA.FILE_SHARED)) return;
      if (is(v, VMA.SYSVIPC)) return;
      // A packet socket's rings: kept only if they never carried a packet (packet.ts).
      if (is(v, VMA.SOCKET)) return;
      // The kernel may drop these pages at any time: they restore as zeros, as criu does.
      if ((v.flags & MAP_TYPE) === MAP_DROPPABLE) return;
      if (is(v, VMA.ANON_SHARED)) return dumpShmem(task, run, v, m);
      run.stats.pagesScanned += (m.end - m.start) / PAGE_SIZE;
      const lazy = lazyVma(v) ? { stack: stackPages, leave: !!run.opts.restore.lazyPages } : null;
      // Through /proc/PID/mem where the task cannot read its pages, or where it shares some copy-on-write
      // (process_vm_readv would have the kernel copy each first: memory, in a tree that may run on).
      const copy = () => (run.stats.pagesWritten += pages.dumpPrivate(scanner, m.start, m.end, m.prot.read && !m.sharedKb ? null : mem, parent, lazy));
      if (!snapshot) return copy();
      // The snapshot's fork did not copy these (or wiped them): now, from the task.
      if (m.vmFlags.includes("dc") || m.vmFlags.includes("wf")) pages.now(mem, copy);
      // Found in the snapshot once the tree runs on, unless tracking needs them now (parent images, --track-mem).
      else if (parent === null && !run.opts.dump.trackMem) pages.deferScan(m.start, m.end, lazy);
      else copy();
    });
    vmas.push(...dumpGuards(task, scanner));
  } finally {
    scanner.close();
    // A snapshot's pages are copied later, through these.
    if (!snapshot) {
      closeSync(mem);
      pages.close();
    }
  }
  task.mm.vmas = mergeVvar(vmas);
  task.pagemap = pages.entries;
  // After the scan: tracking anew clears what it found written.
  trackTask(task, run, prevFd);
}

/**
 * [vvar] and [vvar_vclock] (Linux 6.13+) as one VVAR area, as criu 4.2
 * writes them (its dump merges them); the restore splits it again as this
 * kernel lays them out (placeSpecials).
 */
function mergeVvar(vmas: vma_entry[]): vma_entry[] {
  const out: vma_entry[] = [];
  for (const v of vmas) {
    const prev = out[out.length - 1];
    if (prev && is(prev, VMA.VVAR) && is(v, VMA.VVAR) && prev.end === v.start) out[out.length - 1] = { ...prev, end: v.end };
    else out.push(v);
  }
  return out;
}

/**
 * Guard regions, which have no VMA of their own: as criu does, one entry
 * with only VMA_AREA_GUARD set per run of guard pages (a run may span
 * adjacent VMAs), after every real VMA. Their pages are never read.
 */
function dumpGuards(task: DumpTask, scanner: PagemapScanner): vma_entry[] {
  // [vsyscall] lies above the task's address space, where PAGEMAP_SCAN refuses to go.
  // smaps lists VMAs in address order.
  const user = task.vmas.filter((m) => m.path !== "[vsyscall]");
  if (!user.length) return [];
  const regions = scanner.guards(user[0]!.start, user[user.length - 1]!.end);
  return (regions ?? []).map((g) => ({
    start: BigInt(g.start), end: BigInt(g.end), pgoff: 0n, shmid: 0n, prot: 0, flags: 0, status: VMA.GUARD, fd: -1n,
  }));
}

/** Dump: the shared memory objects (by shmid) already written. */
const dumpedShmem = dumpState("shared memory", () => new Set<bigint>());

/** Shared anonymous memory goes to pagemap-shmem-SHMID.img, read through the object itself. */
function dumpShmem(task: DumpTask, run: DumpRun, v: vma_entry, m: SmapsEntry): void {
  dumpShmemObject(run, task.pid, v.shmid, `/proc/${task.pid}/map_files/${m.start.toString(16)}-${m.end.toString(16)}`);
}

/**
 * Writes the contents of shared anonymous object `shmid` (its inode
 * number), reached through `via` (a map_files or fd link of process pid),
 * once per dump: its mappings and the fds that reach it (memfd.ts) share it.
 */
export function dumpShmemObject(run: DumpRun, pid: number, shmid: bigint, via: string): void {
  const done = run.state(dumpedShmem);
  if (done.has(shmid)) return;
  done.add(shmid);
  const fd = openSync(via, "r");
  try {
    const pagesId = run.nextId("pages");
    const w = new PagesWriter(pid, run.images.pages(pagesId, { shmem: true, id: shmid }), run.stats);
    const size = fstatSync(fd).size;
    try {
      run.stats.shpagesScanned += Math.ceil(size / PAGE_SIZE);
      run.stats.shpagesWritten += w.dumpShmem(fd, size);
    } finally {
      w.close();
    }
    run.images.write(IMG.shmemPagemap, shmid, { head: { pages_id: pagesId }, entries: w.entries });
  } finally {
    closeSync(fd);
  }
}

/** The first page-aligned hole of `size` bytes above `from` that overlaps none of `taken`. */
export function findHole(taken: Array<{ start: number; end: number }>, size: number, from = 0x10000000): number {
  const sorted = [...taken].sort((a, b) => a.start - b.start);
  let at = from;
  for (const t of sorted) {
    if (t.end <= at) continue;
    if (t.start >= at + size) break;
    at = Math.ceil(t.end / PAGE_SIZE) * PAGE_SIZE;
  }
  if (at + size > 0x7ffffffff000) throw new Error("no free address range for crest's scratch memory");
  return at;
}

/** Moves the stub's vDSO and vvar areas to where the dumped task had them, or drops them. */
function placeSpecials(r: Remote, current: MapEntry[], target: vma_entry[], taken: Array<{ start: number; end: number }>, image: string): void {
  const names = ["[vvar]", "[vvar_vclock]", "[vdso]"];
  const mine = current.filter((m) => names.includes(m.path));
  const wanted = new Map<string, vma_entry>();
  // The task's specials, named in layout order the way the kernel places them.
  const tv = target.filter((v) => is(v, VMA.VDSO) || is(v, VMA.VVAR));
  for (const v of tv) {
    const name = is(v, VMA.VDSO) ? "[vdso]" : wanted.has("[vvar]") ? "[vvar_vclock]" : "[vvar]";
    wanted.set(name, v);
  }
  // CRIU 4.2 keeps [vvar] and [vvar_vclock] (Linux 6.13+) as one VVAR area: split again as this kernel lays them out.
  const vvar = mine.find((m) => m.path === "[vvar]"), vclock = mine.find((m) => m.path === "[vvar_vclock]"), w = wanted.get("[vvar]");
  if (vvar && vclock && w && !wanted.has("[vvar_vclock]") && Number(w.end - w.start) === vvar.end - vvar.start + vclock.end - vclock.start) {
    const split = w.start + BigInt(vvar.end - vvar.start);
    wanted.set("[vvar]", { ...w, end: split });
    wanted.set("[vvar_vclock]", { ...w, start: split });
  }
  // Through a free range first, so no move lands on a special not yet moved.
  const moves: Array<{ from: number; size: number; to: number }> = [];
  let parked = findHole([...taken, ...current], mine.reduce((s, m) => s + m.end - m.start, 0) + PAGE_SIZE);
  for (const m of mine) {
    const size = m.end - m.start;
    const w = wanted.get(m.path);
    if (!w) {
      r.later({ what: `unmap ${m.path} of task ${r.pid}`, nr: SYS.munmap, args: [m.start, size] });
      continue;
    }
    if (Number(w.end - w.start) !== size) {
      throw new Error(`the ${m.path} area of this kernel has ${size / PAGE_SIZE} pages, the dumped task's had ${Number(w.end - w.start) / PAGE_SIZE} (${image}): restore on the kernel the task was dumped on`);
    }
    r.later({ what: `move ${m.path} of task ${r.pid}`, nr: SYS.mremap, args: [m.start, size, size, MREMAP.MAYMOVE | MREMAP.FIXED, parked], want: parked });
    moves.push({ from: parked, size, to: Number(w.start) });
    parked += size;
  }
  for (const mv of moves) {
    r.later({ what: `move the vDSO of task ${r.pid} into place`, nr: SYS.mremap, args: [mv.from, mv.size, mv.size, MREMAP.MAYMOVE | MREMAP.FIXED, mv.to], want: mv.to });
  }
  for (const [name] of wanted) {
    if (!mine.some((m) => m.path === name)) throw new Error(`the dumped task had ${name} (${image}), this kernel gives none: restore on the kernel the task was dumped on`);
  }
}

/** The VMAs that pagemap entries (which may span adjacent VMAs) put pages into. */
export function vmasWithPages(vmas: vma_entry[], entries: pagemap_entry[]): Set<vma_entry> {
  const out = new Set<vma_entry>();
  const sorted = [...vmas].sort((a, b) => (a.start < b.start ? -1 : 1));
  let i = 0;
  for (const e of entries) {
    const end = e.vaddr + BigInt(pageCount(e) * PAGE_SIZE);
    while (i < sorted.length && sorted[i]!.end <= e.vaddr) i++;
    for (let j = i; j < sorted.length && sorted[j]!.start < end; j++) out.add(sorted[j]!);
  }
  return out;
}

/** A shared anonymous object restored so far: a task and an fd there that holds it. */
interface ShmemObject {
  pid: number;
  vpid: number;
  fd: number;
}

/**
 * Restore: the shared anonymous objects made so far, and the size each
 * needs: as far as any task maps it (criu keeps no size; parts may have been
 * unmapped or mapped at offsets).
 */
const shmem = restoreState("shared memory", (run) => {
  const sizes = new Map<bigint, bigint>();
  for (const t of run.tasks) {
    for (const v of t.mm.vmas) {
      if (!is(v, VMA.ANON_SHARED) || is(v, VMA.SYSVIPC)) continue;
      const end = v.pgoff + v.end - v.start;
      if (end > (sizes.get(v.shmid) ?? 0n)) sizes.set(v.shmid, end);
    }
  }
  return { sizes, made: new Map<bigint, ShmemObject>() };
});

/**
 * The pages a pagemap's entries need, from the image store (which refuses
 * pages in parent images or lazy ones). CRIU marks every page that could be
 * restored lazily PE_LAZY, and PE_PRESENT as well when it is in the pages
 * image: only PE_LAZY alone is a page left to be served on demand.
 */
function pagesOf(run: RestoreRun, id: number, entries: pagemap_entry[], what: string): PageSource {
  const flags = entries.map((e) => e.flags ?? PE.PRESENT);
  return run.images.pages(id, { parent: flags.some((f) => f & PE.PARENT), lazy: flags.some((f) => f & PE.LAZY && !(f & PE.PRESENT)), what });
}

function withPages(run: RestoreRun, id: number, entries: pagemap_entry[], what: string, fn: (p: PageSource) => void): void {
  const p = pagesOf(run, id, entries, what);
  try {
    fn(p);
  } finally {
    p.close();
  }
}

/**
 * Creates shared anonymous object `v.shmid` in the task at its full size,
 * fills it from pagemap-shmem through a temporary mapping (object offsets
 * are the image's addresses) and keeps an fd of it, parked, for every
 * mapping of it in any task.
 */
function createShmem(task: RestoreTask, run: RestoreRun, v: vma_entry): ShmemObject {
  const r = task.remotes[0]!;
  const what = `shared memory ${v.shmid} in task ${task.vpid}`;
  const img = run.images.readOr(IMG.shmemPagemap, v.shmid, null);
  const s = run.state(shmem);
  let size = s.sizes.get(v.shmid) ?? v.pgoff + v.end - v.start;
  for (const e of img?.entries ?? []) {
    const end = e.vaddr + BigInt(pageCount(e) * PAGE_SIZE);
    if (end > size) size = end;
  }
  // hugetlb memory (hugetlb.ts) comes in whole huge pages.
  const huge = hugeFlagsOf(v.flags);
  if (huge) {
    const page = BigInt(hugePageSize(v.flags));
    size = (size + page - 1n) / page * page;
  }
  const addr = BigInt(r.call(`create ${what}`, SYS.mmap, 0, size, PROT.READ | PROT.WRITE, (MAP.SHARED | MAP.ANONYMOUS | (v.flags & MAP.NORESERVE)) + huge, -1, 0));
  if (img) withPages(run, img.head.pages_id, img.entries, what, (p) => fillFromPages(r, p, img.entries, run.stats, (off) => addr + off));
  r.resetScratch();
  const path = `/proc/${task.pid}/map_files/${addr.toString(16)}-${(addr + size).toString(16)}`;
  const fd = parker(task)(openCrestProcPath(run, r, task.vpid, path, O.RDWR, what));
  r.call(`unmap the temporary mapping of ${what}`, SYS.munmap, addr, size);
  run.transient.push({ task, fd });
  const obj = { pid: task.pid, vpid: task.vpid, fd };
  s.made.set(v.shmid, obj);
  return obj;
}

/**
 * Shared anonymous object `shmid` reached through an fd or a private
 * mapping (memfd.ts): a task and its fd that hold it, made in `task` at
 * least `size` bytes long if no task has it yet (`created`); `huge`, the
 * hugetlb mmap flags of hugetlb memory.
 */
export function shmemObject(task: RestoreTask, run: RestoreRun, shmid: bigint, size: bigint, huge: number): ShmemObject & { created: boolean } {
  const made = run.state(shmem).made.get(shmid);
  if (made) return { ...made, created: false };
  const page = BigInt(PAGE_SIZE);
  const end = size > page ? (size + page - 1n) / page * page : page;
  const v: vma_entry = { start: 0n, end, pgoff: 0n, shmid, prot: PROT.READ | PROT.WRITE, flags: (MAP.SHARED | MAP.ANONYMOUS) + huge, status: VMA.REGULAR | VMA.ANON_SHARED, fd: -1n };
  return { ...createShmem(task, run, v), created: true };
}

/** An fd of shared anonymous object `v.shmid` in the task (to close after mapping), creating the object if no task has it yet. */
function openShmem(task: RestoreTask, run: RestoreRun, v: vma_entry): number {
  const r = task.remotes[0]!;
  const obj = run.state(shmem).made.get(v.shmid) ?? createShmem(task, run, v);
  const path = `/proc/${obj.pid}/fd/${obj.fd}`;
  // Read-write whatever the mapping's protection: an anonymous mapping may always become writable.
  return openCrestProcPath(run, r, task.vpid, path, O.RDWR, `shared memory ${v.shmid}`);
}

/**
 * The VMAs of the SysV attach `v` is part of: the first one (its offset in
 * the segment 0, or no part of the same segment right below it) and those
 * that follow it, each starting where the last ends, its offset going on.
 */
function sysvAttach(vmas: readonly vma_entry[], v: vma_entry): vma_entry[] {
  const i = vmas.indexOf(v);
  const follows = (a: vma_entry, b: vma_entry) => is(a, VMA.SYSVIPC) && a.shmid === b.shmid && a.end === b.start && a.pgoff + (a.end - a.start) === b.pgoff;
  let first = i;
  while (first > 0 && follows(vmas[first - 1]!, vmas[first]!)) first--;
  if (first !== i) return [vmas[first]!];
  let last = i;
  while (last + 1 < vmas.length && follows(vmas[last]!, vmas[last + 1]!)) last++;
  return vmas.slice(i, last + 1);
}

/**
 * Maps every non-special VMA at its address, writable if pages are to be
 * filled in (`fill`).
 */
function mapVmas(task: RestoreTask, run: RestoreRun, fill: Set<vma_entry>, kept: Set<vma_entry>): void {
  const r = task.remotes[0]!;
  const fds = new Map<string, RArg>();
  for (const v of task.mm.vmas) {
    if (isSpecial(v) || isGuard(v) || kept.has(v)) continue;
    const len = v.end - v.start;
    // MAP_LOCKED: mlock'ed memory, populated and locked as the mapping is made (before creds may drop the right to).
    const extra = v.flags & (MAP.GROWSDOWN | MAP.NORESERVE | MAP.LOCKED);
    const what = () => `map 0x${v.start.toString(16)}-0x${v.end.toString(16)} in task ${task.vpid} (a VMA of ${run.images.name(IMG.mm, task.vpid)})`;
    const prot = v.prot | (fill.has(v) ? PROT.WRITE | PROT.READ : 0);
    // Queued: every mapping of the task in one batch, each checked to land at its address.
    const map = (flags: number, fd: RArg, off: bigint) =>
      r.later({ what, nr: SYS.mmap, args: [v.start, len, prot, flags | MAP.FIXED | extra, fd, off], want: v.start });
    const close = (fd: number) => r.later({ what: `close a temporary fd of task ${task.vpid}`, nr: SYS.close, args: [fd] });
    if (is(v, VMA.ANON_PRIVATE)) {
      map((((v.flags & MAP_TYPE) === MAP_DROPPABLE ? MAP_DROPPABLE : MAP.PRIVATE) | MAP.ANONYMOUS) + hugeFlagsOf(v.flags), -1, 0n);
    } else if (is(v, VMA.SYSVIPC)) {
      // One attach split into VMAs by mprotect (zdtm shm-mp): attached once, with the widest protection of its parts, each part then given its own.
      const parts = sysvAttach(task.mm.vmas, v);
      if (parts[0] === v) {
        const prot = parts.reduce((p, x) => p | x.prot, 0);
        const flags = (prot & PROT.WRITE ? 0 : SHM.RDONLY) | (prot & PROT.EXEC ? SHM.EXEC : 0);
        r.later({ what: () => `attach SysV segment ${v.shmid} at 0x${v.start.toString(16)} in task ${task.vpid} (a VMA of ${run.images.name(IMG.mm, task.vpid)})`, nr: SYS.shmat, args: [v.shmid, v.start, flags], want: v.start });
        for (const x of parts) {
          if (x.prot !== prot) r.later({ what: () => `protect 0x${x.start.toString(16)}-0x${x.end.toString(16)} of SysV segment ${v.shmid} in task ${task.vpid}`, nr: SYS.mprotect, args: [x.start, x.end - x.start, x.prot] });
        }
      }
      if (v.flags & MAP.LOCKED) r.later({ what: () => `lock 0x${v.start.toString(16)} in task ${task.vpid}`, nr: SYS.mlock, args: [v.start, len] });
    } else if (is(v, VMA.ANON_SHARED)) {
      const fd = openShmem(task, run, v);
      map(MAP.SHARED, fd, v.pgoff);
      close(fd);
    } else if (is(v, VMA.MEMFD)) {
      const m = run.files.get(Number(v.shmid))?.memfd;
      if (!m) throw run.images.invalid(IMG.mm, task.vpid, `mapping 0x${v.start.toString(16)} names memfd file ${v.shmid}, not in files.img`);
      const fd = openMemfd({ r, task, run, park: parker(task) }, m.inode_id, v.fdflags ?? m.flags, true);
      map(v.flags & (MAP.SHARED | MAP.PRIVATE), fd, v.pgoff);
      close(fd);
    } else if (is(v, VMA.SOCKET)) {
      // A packet socket's rings: a placeholder holds the range until the socket exists (packet.ts maps them over it).
      r.later({ what, nr: SYS.mmap, args: [v.start, len, PROT.NONE, MAP.PRIVATE | MAP.ANONYMOUS | MAP.NORESERVE | MAP.FIXED, -1, 0], want: v.start });
    } else if (is(v, VMA.FILE_PRIVATE) || is(v, VMA.FILE_SHARED)) {
      const reg: reg_file_entry = regFile(run, Number(v.shmid));
      const flags = v.fdflags ?? reg.flags;
      const key = `${v.shmid}\0${flags}`;
      let fd = fds.get(key);
      if (fd === undefined) {
        // Queued: the open, every mapping of the file and the close run in the mappings' batch.
        fd = queueOpenRegFile(r, reg, flags | O.CLOEXEC);
        fds.set(key, fd);
      }
      map(is(v, VMA.FILE_SHARED) ? MAP.SHARED : MAP.PRIVATE, fd, v.pgoff);
    } else {
      throw run.images.invalid(IMG.mm, task.vpid, `mapping 0x${v.start.toString(16)} has status 0x${v.status.toString(16)}, which crest cannot restore yet`);
    }
  }
  for (const fd of fds.values()) r.later({ what: `close a temporary fd of task ${task.vpid}`, nr: SYS.close, args: [fd] });
}

/** Sets final protections and madvise hints. */
function finishVmas(task: RestoreTask, run: RestoreRun, fill: Set<vma_entry>, kept: Set<vma_entry>): void {
  const r = task.remotes[0]!;
  for (const v of task.mm.vmas) {
    // An inherited mapping has its final protection and hints already; a packet ring gets them once mapped.
    if (isSpecial(v) || isGuard(v) || kept.has(v) || is(v, VMA.SOCKET)) continue;
    const len = v.end - v.start;
    if (fill.has(v) && (v.prot & (PROT.WRITE | PROT.READ)) !== (PROT.WRITE | PROT.READ)) {
      r.later({ what: `protect 0x${v.start.toString(16)} in task ${task.pid}`, nr: SYS.mprotect, args: [v.start, len, v.prot] });
    }
    const madv = v.madv ?? 0n;
    for (let bit = 0n; madv >> bit; bit++) {
      if (madv & (1n << bit)) r.later({ what: `advise 0x${v.start.toString(16)} (${bit}) in task ${task.pid} (madv of a VMA of ${run.images.name(IMG.mm, task.vpid)})`, nr: SYS.madvise, args: [v.start, len, bit] });
    }
  }
}

/**
 * Puts the guard regions back, last: installing one drops whatever page was
 * under it, and the VMAs around must exist (guard pages live in them).
 */
function installGuards(task: RestoreTask): void {
  const r = task.remotes[0]!;
  for (const v of task.mm.vmas) {
    if (!isGuard(v)) continue;
    r.later({
      what: () => `install guard pages at 0x${v.start.toString(16)}-0x${v.end.toString(16)} (madvise MADV_GUARD_INSTALL, Linux 6.13+) in task ${task.vpid}`,
      nr: SYS.madvise, args: [v.start, v.end - v.start, MADV.GUARD_INSTALL],
    });
  }
}

/**
 * The kernel's own checks of PR_SET_MM_MAP's addresses (kernel/sys.c
 * validate_prctl_map_addr), made first so that a bad mm image is named with
 * its field, not only refused with EINVAL.
 */
function checkMmFields(task: RestoreTask, run: RestoreRun): void {
  const mm = task.mm;
  const bad = (detail: string) => run.images.invalid(IMG.mm, task.vpid, `process ${task.vpid}: ${detail}`);
  const hex = (v: bigint) => `0x${v.toString(16)}`;
  const fields = ["mm_start_code", "mm_end_code", "mm_start_data", "mm_end_data", "mm_start_brk", "mm_brk", "mm_start_stack", "mm_arg_start", "mm_arg_end", "mm_env_start", "mm_env_end"] as const;
  // 57 bits: the largest user address space (5-level page tables); the kernel checks its own TASK_SIZE.
  for (const f of fields) if (mm[f] >= 1n << 57n) throw bad(`${f} ${hex(mm[f])} is not a user address`);
  const order: Array<[typeof fields[number], "<" | "<=", typeof fields[number]]> = [
    ["mm_start_code", "<", "mm_end_code"], ["mm_start_data", "<=", "mm_end_data"], ["mm_start_brk", "<=", "mm_brk"],
    ["mm_arg_start", "<=", "mm_arg_end"], ["mm_env_start", "<=", "mm_env_end"],
  ];
  for (const [a, op, b] of order) {
    if (op === "<" ? mm[a] >= mm[b] : mm[a] > mm[b]) throw bad(`${a} ${hex(mm[a])} is not ${op} ${b} ${hex(mm[b])}`);
  }
}

/**
 * Each VMA a range of whole pages of a user address space, in order and
 * apart, as the kernel's /proc/PID/maps gave them: else mapping them fails
 * with EINVAL or ENOMEM, or maps over another.
 */
function checkVmas(task: RestoreTask, run: RestoreRun): void {
  const bad = (i: number, detail: string) => run.images.invalid(IMG.mm, task.vpid, `process ${task.vpid}: vmas[${i}] ${detail}`);
  const hex = (v: bigint) => `0x${v.toString(16)}`;
  const page = BigInt(PAGE_SIZE);
  task.mm.vmas.forEach((v, i) => {
    if (v.start % page || v.end % page) throw bad(i, `${hex(v.start)}-${hex(v.end)} is not page-aligned`);
    if (v.start >= v.end) throw bad(i, `start ${hex(v.start)} is not below its end ${hex(v.end)}`);
    // The vsyscall page is the kernel's, above every user address; crest leaves it as it is.
    if (v.end > 1n << 57n && !is(v, VMA.VSYSCALL)) throw bad(i, `end ${hex(v.end)} is not a user address`);
  });
  // Mappings apart (guard regions lie inside theirs, and come after them in the image).
  const mapped = task.mm.vmas.map((v, i) => ({ v, i })).filter(({ v }) => !isSpecial(v) && !isGuard(v)).sort((a, b) => (a.v.start < b.v.start ? -1 : 1));
  for (let k = 1; k < mapped.length; k++) {
    const prev = mapped[k - 1]!, cur = mapped[k]!;
    if (cur.v.start < prev.v.end) throw bad(cur.i, `${hex(cur.v.start)}-${hex(cur.v.end)} overlaps vmas[${prev.i}] ${hex(prev.v.start)}-${hex(prev.v.end)}`);
  }
}

/** Before anything is created: each task's memory layout as the kernel will take it, then its pages files. */
function planMemory(run: RestoreRun): number {
  for (const t of run.tasks) {
    checkVmas(t, run);
    checkMmFields(t, run);
  }
  return checkPages(run);
}

function setMmFields(task: RestoreTask, run: RestoreRun): void {
  const r = task.remotes[0]!;
  const mm = task.mm;
  // A child of a parent running the same program has its exe link already;
  // setting it again fails (EBUSY) while the file is mapped, as it is in the mappings it kept.
  // (Opened at once: its fd goes into a struct, where a queued call's result cannot.)
  const exe = sameExe(run, task) ? -1 : openRegFile(r, regFile(run, mm.exe_file_id), O.RDONLY | O.CLOEXEC);
  r.resetScratch();
  const auxv = Buffer.alloc(mm.mm_saved_auxv.length * 8);
  mm.mm_saved_auxv.forEach((v, i) => auxv.writeBigUInt64LE(v, i * 8));
  const auxvAddr = r.put(auxv);
  const map = r.put(packMmMap({
    start_code: mm.mm_start_code, end_code: mm.mm_end_code, start_data: mm.mm_start_data, end_data: mm.mm_end_data,
    start_brk: mm.mm_start_brk, brk: mm.mm_brk, start_stack: mm.mm_start_stack, arg_start: mm.mm_arg_start,
    arg_end: mm.mm_arg_end, env_start: mm.mm_env_start, env_end: mm.mm_env_end, auxv: auxvAddr,
    auxv_size: auxv.length, exe_fd: exe,
  }));
  r.later({ what: `set the memory layout fields of task ${task.pid} (PR_SET_MM_MAP) from ${run.images.name(IMG.mm, task.vpid)}`, nr: SYS.prctl, args: [PR.SET_MM, PR_SET_MM_MAP, map, MM_MAP_SIZE, 0] });
  if (exe >= 0) r.later({ what: `close a temporary fd of task ${task.pid}`, nr: SYS.close, args: [exe] });
}

function restoreMemory(task: RestoreTask, run: RestoreRun): void {
  const r = task.remotes[0]!;
  // fds the parent holds only for the restore (shared memory objects, memfds) are not the child's.
  if (task.parent && !task.sharesFiles) {
    for (const t of run.transient) {
      if (t.task === task.parent) r.later({ what: `close an inherited temporary fd of task ${task.vpid}`, nr: SYS.close, args: [t.fd] });
    }
  }
  const current = parseMaps(readFileSync(`/proc/${task.pid}/maps`, "utf8"));
  const taken = task.mm.vmas.map(range);
  // A lazy restore maps everything afresh: an inherited mapping would come with the parent's userfaultfd (a fork event).
  const lazy = restoresLazily(run);
  const kept = lazy ? new Set<vma_entry>() : inheritedVmas(task, run, current);
  // A child may keep the scratch page it inherited if the address is free in its own layout.
  const had = r.scratch;
  const clash = (s: { addr: bigint; size: number }) => taken.some((t) => t.start < Number(s.addr) + s.size && Number(s.addr) < t.end);
  if (!had || clash(had)) r.mapScratch(SCRATCH_SIZE, BigInt(findHole([...taken, ...current], SCRATCH_SIZE)));
  const scratch = r.scratch!;
  const scratchRange = { start: Number(scratch.addr), end: Number(scratch.addr) + scratch.size };
  const keep = [...[...kept].map(range), scratchRange].sort((a, b) => a.start - b.start);
  for (const m of current) {
    if (["[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]"].includes(m.path)) continue;
    for (const gap of subtract([m], keep)) {
      r.later({ what: `unmap the stub's ${m.path || "memory"} in task ${task.pid}`, nr: SYS.munmap, args: [gap.start, gap.end - gap.start] });
    }
  }
  placeSpecials(r, current, task.mm.vmas, [...taken, scratchRange], run.images.name(IMG.mm, task.vpid));
  const fill = vmasWithPages(task.mm.vmas.filter((v) => !isGuard(v) && !kept.has(v)), task.pagemap);
  mapVmas(task, run, fill, kept);
  const priv = [...kept].filter((v) => !(v.flags & MAP.SHARED));
  const byStart = (a: { start: bigint }, b: { start: bigint }) => (a.start < b.start ? -1 : 1);
  const runs = splitRuns(task.pages.runs, priv.map((v) => ({ start: v.start, end: v.end })).sort(byStart));
  // CRIU 4.2 dumps the vDSO's pages too; the task has this kernel's vDSO, whose pages are not written.
  const specials = task.mm.vmas.filter((v) => is(v, VMA.VDSO) || is(v, VMA.VVAR)).map((v) => ({ start: v.start, end: v.end })).sort(byStart);
  let own = splitRuns(runs.outside, specials).outside;
  if (lazy) {
    // The lazy mappings with pages, registered before anything touches them; their pages are the daemon's.
    const split = splitLazy(own, task.mm.vmas);
    // And those whose pages a page server holds (dump --lazy-pages left them in the dumped task).
    const far = splitLazy(remoteRuns(task.pagemap, false), task.mm.vmas);
    if (far.eager.length) {
      throw run.images.invalid(IMG.pagemap, task.vpid, `pages at 0x${far.eager[0]!.vaddr.toString(16)} of process ${task.vpid} were left lazy by the dump, in a mapping crest restores eagerly (not private anonymous memory): crest cannot take them from the page server`);
    }
    const ranges = lazyRanges(task.mm.vmas).filter((v) => [...split.lazy, ...far.lazy].some((p) => p.vaddr >= v.start && p.vaddr < v.end));
    r.flush();
    handOverLazy(task, run, r, ranges);
    own = split.eager;
  }
  withLayers(task, lazy, (sources) => {
    sources.forEach((pages, layer) => fillRuns(r, pages, runsOf(own, layer), run.stats));
    restoreInherited(task, run, sources, priv, runs.inside);
  });
  finishVmas(task, run, fill, kept);
  installGuards(task);
  setMmFields(task, run);
  if (kept.size) run.log.info(`kept ${kept.size} mapping(s) inherited from process ${task.parent!.vpid}`);
}

/** The pages files of a task's image chain, open while fn runs (lazy pages refused). */
function withLayers(task: RestoreTask, lazily: boolean, fn: (sources: PageSource[]) => void): void {
  const sources: PageSource[] = [];
  try {
    for (const l of task.pages.layers) sources.push(layerPages(l, `process ${task.vpid}`, lazily));
    fn(sources);
  } finally {
    for (const s of sources) s.close();
  }
}

/** Pages left lazy by the dump (PE_LAZY alone) are refused, but on a lazy restore: the daemon has them from a page server. */
const layerPages = (l: PageLayer, what: string, lazily: boolean): PageSource =>
  l.images.pages(l.pagesId, { lazy: !lazily && l.entries.some((e) => (e.flags ?? PE.PRESENT) & PE.LAZY && !((e.flags ?? PE.PRESENT) & PE.PRESENT)), what });

/** Before anything is created: each pages file of each task's chain holds exactly the pages its pagemap says. */
function checkPages(run: RestoreRun): number {
  if (run.opts.restore.lazyPages) connectLazy(run);
  for (const t of run.tasks) {
    for (const l of t.pages.layers) {
      const need = l.entries.filter((e) => (e.flags ?? PE.PRESENT) & PE.PRESENT).reduce((n, e) => n + pageCount(e), 0) * PAGE_SIZE;
      const p = layerPages(l, `process ${t.vpid}`, !!run.opts.restore.lazyPages);
      p.close();
      if (p.size !== need) throw l.images.invalid(IMG.pages, l.pagesId, `truncated: it has ${p.size} bytes, the pagemap of process ${t.vpid} needs ${need}`);
    }
  }
  return 0;
}

/**
 * Memory is restored in each task right after it is born and before its
 * children are: they inherit it, and keep what is still theirs shared.
 */
export const memoryKind: TaskKind = {
  name: "memory",
  dump: dumpMemory,
  finishDump: handOverTracking,
  plan: planMemory,
  born: restoreMemory,
  finishRestore: finishLazy,
};
