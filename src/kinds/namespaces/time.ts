// The time namespace: CLOCK_MONOTONIC and CLOCK_BOOTTIME go on, after a
// restore, from the values the tree read when it was dumped (criu's
// semantics, on the same machine or another).
//
// Dump: timens-N.img (N the id of the tree's own time namespace) or, for a
// tree in crest's own, timens-0.img, as criu writes both: the two clocks as
// the tree reads them, which is crest's clock moved by the difference of the
// two namespaces' offsets (/proc/PID/timens_offsets, relative to the host).
//
// Restore, as criu: the root unshares CLONE_NEWTIME (injected; the new
// namespace is then only its time_for_children, with crest's offsets),
// crest writes to /proc/ROOT/timens_offsets the offsets that make the clocks
// read the dumped values now, and the root enters the namespace through its
// time_for_children (setns: the kernel freezes the offsets once a task is in
// it). Its children inherit it. criu does this for timens-0.img too (when
// the kernel has time namespaces): a tree dumped in the host's comes back in
// a namespace of its own whose clocks continue.
import { closeSync, existsSync, openSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import type { DumpRun, RestoreRun, RestoreTask, TaskKind } from "../context.js";
import { IMG, type timens_entry, type timespec } from "../../images/index.js";
import { CLOCK, CLONE, SYS } from "../../sys/constants.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { passFd } from "../files/inherit.js";
import { ownedAtRestore } from "./owned.js";

const NSEC = 1_000_000_000n;
/** Time in nanoseconds, as a signed value (offsets may be negative). */
type Ns = bigint;
interface Clocks {
  monotonic: Ns;
  boottime: Ns;
}

/** A clock as crest reads it (in crest's own time namespace). */
function clockNow(id: number): Ns {
  const ts = Buffer.alloc(16);
  check(native.syscall(SYS.clock_gettime, id, ts), `read clock ${id}`);
  return ts.readBigInt64LE(0) * NSEC + ts.readBigInt64LE(8);
}

const crestClocks = (): Clocks => ({ monotonic: clockNow(CLOCK.MONOTONIC), boottime: clockNow(CLOCK.BOOTTIME) });

/**
 * The offsets of the time namespace a task's children get (its
 * time_for_children), from /proc/PID/timens_offsets: "monotonic S N" and
 * "boottime S N" lines (or the clock ids).
 */
export function parseTimensOffsets(text: string, what: string): Clocks {
  const out: Partial<Clocks> = {};
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const m = /^\s*(\S+)\s+(-?\d+)\s+(\d+)\s*$/.exec(line);
    if (!m) throw new Error(`${what}: cannot parse '${line}'`);
    const v = BigInt(m[2]!) * NSEC + BigInt(m[3]!);
    if (m[1] === "monotonic" || m[1] === String(CLOCK.MONOTONIC)) out.monotonic = v;
    else if (m[1] === "boottime" || m[1] === String(CLOCK.BOOTTIME)) out.boottime = v;
    else throw new Error(`${what}: unknown clock '${m[1]}'`);
  }
  if (out.monotonic === undefined || out.boottime === undefined) throw new Error(`${what}: the monotonic or boottime offset is missing`);
  return out as Clocks;
}

const offsetsOf = (pid: number | "self"): Clocks =>
  parseTimensOffsets(readFileSync(`/proc/${pid}/timens_offsets`, "utf8"), `/proc/${pid}/timens_offsets`);

/**
 * crest's own offsets. /proc/self/timens_offsets shows those of the
 * namespace crest's children get, which is crest's own unless whatever
 * started crest left it a different one for its children.
 */
function crestOffsets(): Clocks {
  const mine = readlinkSync("/proc/self/ns/time"), kids = readlinkSync("/proc/self/ns/time_for_children");
  if (mine !== kids) {
    throw new Error(`crest runs in time namespace ${mine} but its children would start in ${kids}: start crest in the namespace it runs in`);
  }
  return offsetsOf("self");
}

const hasTimens = (): boolean => existsSync("/proc/self/timens_offsets");

function toTimespec(v: Ns): timespec {
  return { tv_sec: v / NSEC, tv_nsec: v % NSEC };
}

const fromTimespec = (t: timespec): Ns => BigInt.asIntN(64, t.tv_sec) * NSEC + t.tv_nsec;

// --- dump ---------------------------------------------------------------------

function dumpClocks(run: DumpRun): void {
  const own = run.ownNamespaces.has("time");
  const now = crestClocks();
  let seen = now;
  if (own) {
    const mine = crestOffsets(), theirs = offsetsOf(run.root.pid);
    seen = { monotonic: now.monotonic - mine.monotonic + theirs.monotonic, boottime: now.boottime - mine.boottime + theirs.boottime };
  }
  const entry: timens_entry = { monotonic: toTimespec(seen.monotonic), boottime: toTimespec(seen.boottime) };
  run.images.write(IMG.timens, own ? run.root.ids.time_ns_id! : 0, [entry]);
}

// --- restore ------------------------------------------------------------------

/** The clocks the tree must read, or null when the images carry none (older criu). */
/** The timens image the clocks come from: the tree's own namespace's, or criu's timens-0.img. */
const timensId = (run: RestoreRun): number => (ownedAtRestore(run, "time") ? run.tasks[0]!.ids.time_ns_id! : 0);

function dumpedClocks(run: RestoreRun): Clocks | null {
  const own = ownedAtRestore(run, "time");
  const id = timensId(run);
  if (!run.images.exists(IMG.timens, id)) {
    if (own) throw run.images.invalid(IMG.timens, id, "the clocks of the tree's own time namespace are missing");
    run.log.warn("Clocks values have not been dumped (no timens-0.img): the tree stays in crest's time namespace");
    return null;
  }
  const [e] = run.images.read(IMG.timens, id);
  if (!e) {
    if (own) throw run.images.invalid(IMG.timens, id, "the image is empty");
    run.log.warn("Clocks values have not been dumped (timens-0.img is empty): the tree stays in crest's time namespace");
    return null;
  }
  if (!hasTimens()) {
    if (own) throw new Error("the tree has its own time namespace, and this kernel has no time namespaces (no /proc/self/timens_offsets)");
    return null;
  }
  return { monotonic: fromTimespec(e.monotonic), boottime: fromTimespec(e.boottime) };
}

/** "S N" with 0 <= N < 1 s, as the kernel reads an offset. */
function offsetText(v: Ns): string {
  let sec = v / NSEC, nsec = v % NSEC;
  if (nsec < 0n) {
    nsec += NSEC;
    sec -= 1n;
  }
  return `${sec} ${nsec}`;
}

function enterNewTimeNamespace(task: RestoreTask, run: RestoreRun, want: Clocks): void {
  const r = task.remotes[0]!;
  r.needScratch();
  r.call("create the tree's time namespace (unshare CLONE_NEWTIME)", SYS.unshare, CLONE.NEWTIME);
  const now = crestClocks(), mine = crestOffsets();
  // Host clock now = crest's clock - crest's offsets; the offset makes the tree read `want`.
  const off = (k: keyof Clocks) => want[k] - (now[k] - mine[k]);
  const text = `${CLOCK.MONOTONIC} ${offsetText(off("monotonic"))}\n${CLOCK.BOOTTIME} ${offsetText(off("boottime"))}\n`;
  try {
    writeFileSync(`/proc/${task.pid}/timens_offsets`, text);
  } catch (e) {
    throw run.images.invalid(IMG.timens, timensId(run), `the kernel refuses the clock offsets it gives (${text.trim().replace("\n", ", ")}): ${(e as NodeJS.ErrnoException).code}`);
  }
  run.log.info(`timens: the tree's offsets are ${text.trim().replace("\n", ", ")} (clock id, seconds, nanoseconds)`);
  const mineFd = openSync(`/proc/${task.pid}/ns/time_for_children`, "r");
  try {
    const fd = passFd(r, task.vpid, mineFd, "the tree's time namespace");
    r.call("enter the tree's time namespace", SYS.setns, fd, CLONE.NEWTIME);
    r.call("close the fd of the tree's time namespace", SYS.close, fd);
  } finally {
    closeSync(mineFd);
  }
}

export const timeNamespaceKind: TaskKind = {
  name: "time namespace",
  // Once every task is dumped (the tree is still frozen): its clocks.
  finishDump: dumpClocks,
  // Not a clone flag: a task cloned into a new time namespace is in it before its offsets can be set.
  plan(run) {
    if (ownedAtRestore(run, "time") && !hasTimens()) throw new Error("the tree has its own time namespace, and this kernel has no time namespaces (no /proc/self/timens_offsets)");
    return 0;
  },
  born(task, run) {
    if (task !== run.tasks[0]) return;
    const want = dumpedClocks(run);
    if (want) enterNewTimeNamespace(task, run, want);
  },
};
