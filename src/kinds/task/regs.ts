// Registers: general purpose (with fs/gs base), the FPU/SSE/AVX state from
// the XSAVE area, and the GDT TLS descriptors. Dumped from what the thread
// had when it was seized (a thread caught in a syscall saved so that it
// carries on with it: syscall-restart.ts); restored last, right before the
// thread runs.
import type { TaskKind, DumpTask, DumpRun, RestoreTask } from "../context.js";
import { KSIGACTION_SIZE, Regs, REG_NAMES, unpackSigaction } from "../../sys/structs.js";
import { FXSAVE_SIZE, XFEATURE, XSTATE_BV_OFFSET, xcomponent, xfeatures } from "../../sys/xsave.js";
import { EINTR } from "../../sys/errno.js";
import type {
  rseq_entry, thread_info_x86, user_desc_t, user_x86_fpregs_entry, user_x86_regs_entry, user_x86_xsave_entry,
} from "../../images/index.js";
import { IMG, user_x86_regs_mode } from "../../images/index.js";
import type { Tracee } from "../../remote/tracee.js";
import { leaveRseqSection, readRseqCs, type Remote } from "../../remote/remote.js";
import { readMemory } from "../../remote/memory.js";
import { SYS } from "../../sys/constants.js";
import type { ProcStatus } from "../../proc/index.js";
import type { Logger } from "../../log.js";
import { UnsupportedError } from "../context.js";
import { resumption, type DueSignal, type ResumeContext } from "./syscall-restart.js";

/** GDT_ENTRY_TLS_MIN on x86_64, and how many TLS slots there are. */
const TLS_MIN = 12;
const TLS_ENTRIES = 3;

export function regsToEntry(r: Regs): user_x86_regs_entry {
  const e = Object.fromEntries(REG_NAMES.map((n) => [n, r.get(n)])) as unknown as user_x86_regs_entry;
  e.mode = user_x86_regs_mode.NATIVE;
  return e;
}

export function entryToRegs(e: user_x86_regs_entry): Regs {
  if (e.mode !== undefined && e.mode !== user_x86_regs_mode.NATIVE) {
    throw new Error("the image holds a 32-bit (compat) register set; crest restores 64-bit tasks only");
  }
  const r = new Regs();
  for (const n of REG_NAMES) r.set(n, e[n]);
  return r;
}

function u32s(b: Buffer, off: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => b.readUInt32LE(off + i * 4));
}
function u64s(b: Buffer, off: number, n: number): bigint[] {
  return Array.from({ length: n }, (_, i) => b.readBigUInt64LE(off + i * 8));
}
function putU32s(b: Buffer, off: number, v: number[]): void {
  v.forEach((x, i) => b.writeUInt32LE(x >>> 0, off + i * 4));
}
function putU64s(b: Buffer, off: number, v: bigint[]): void {
  v.forEach((x, i) => b.writeBigUInt64LE(x, off + i * 8));
}

/** The optional XSAVE components CRIU's image names, with their element width. */
const COMPONENTS: Array<{ feature: number; field: keyof user_x86_xsave_entry; width: 4 | 8 }> = [
  { feature: XFEATURE.YMM, field: "ymmh_space", width: 4 },
  { feature: XFEATURE.BNDREGS, field: "bndreg_state", width: 8 },
  { feature: XFEATURE.BNDCSR, field: "bndcsr_state", width: 8 },
  { feature: XFEATURE.OPMASK, field: "opmask_reg", width: 8 },
  { feature: XFEATURE.ZMM_HI256, field: "zmm_upper", width: 8 },
  { feature: XFEATURE.HI16_ZMM, field: "hi16_zmm", width: 8 },
  { feature: XFEATURE.PKRU, field: "pkru", width: 4 },
];

/** Splits an XSAVE area (standard layout) into CRIU's fpregs entry. */
export function xsaveToEntry(x: Buffer): user_x86_fpregs_entry {
  const xsave: user_x86_xsave_entry = {
    xstate_bv: x.length > XSTATE_BV_OFFSET ? x.readBigUInt64LE(XSTATE_BV_OFFSET) : 0n,
    ymmh_space: [], bndreg_state: [], bndcsr_state: [], opmask_reg: [], zmm_upper: [], hi16_zmm: [], pkru: [],
  };
  for (const c of COMPONENTS) {
    const comp = xcomponent(c.feature);
    if (!comp || comp.offset + comp.size > x.length) continue;
    const n = comp.size / c.width;
    (xsave[c.field] as unknown) = c.width === 4 ? u32s(x, comp.offset, n) : u64s(x, comp.offset, n);
  }
  return {
    cwd: x.readUInt16LE(0),
    swd: x.readUInt16LE(2),
    twd: x.readUInt16LE(4),
    fop: x.readUInt16LE(6),
    rip: x.readBigUInt64LE(8),
    rdp: x.readBigUInt64LE(16),
    mxcsr: x.readUInt32LE(24),
    mxcsr_mask: x.readUInt32LE(28),
    st_space: u32s(x, 32, 32),
    xmm_space: u32s(x, 160, 64),
    padding: u32s(x, 416, 24),
    xsave,
  };
}

/**
 * Writes an fpregs entry into an XSAVE area. `template` is the thread's
 * current area: it supplies the software-reserved bytes the kernel checks
 * and the size; only user-visible state is replaced.
 */
export function entryToXsave(e: user_x86_fpregs_entry, template: Buffer): Buffer {
  const x = Buffer.from(template);
  x.writeUInt16LE(e.cwd, 0);
  x.writeUInt16LE(e.swd, 2);
  // The abridged tag word is one byte; the byte after it is reserved.
  x.writeUInt16LE(e.twd & 0xff, 4);
  x.writeUInt16LE(e.fop, 6);
  x.writeBigUInt64LE(e.rip, 8);
  x.writeBigUInt64LE(e.rdp, 16);
  x.writeUInt32LE(e.mxcsr, 24);
  x.writeUInt32LE(e.mxcsr_mask, 28);
  putU32s(x, 32, e.st_space.slice(0, 32));
  putU32s(x, 160, e.xmm_space.slice(0, 64));
  const xs = e.xsave;
  if (!xs || x.length <= FXSAVE_SIZE) return x;
  const missing = xs.xstate_bv & ~xfeatures();
  if (missing) {
    throw new Error(`the image holds FPU state components 0x${missing.toString(16)} this CPU does not have; restore on a CPU with the same features`);
  }
  x.writeBigUInt64LE(xs.xstate_bv, XSTATE_BV_OFFSET);
  for (const c of COMPONENTS) {
    const vals = xs[c.field] as Array<number | bigint> | undefined;
    const comp = xcomponent(c.feature);
    if (!vals?.length || !comp) continue;
    if (vals.length * c.width !== comp.size) {
      throw new Error(`FPU state component ${c.field} has ${vals.length * c.width} bytes in the image, ${comp.size} on this CPU`);
    }
    if (c.width === 4) putU32s(x, comp.offset, vals as number[]);
    else putU64s(x, comp.offset, vals as bigint[]);
  }
  return x;
}

/** struct user_desc <-> user_desc_t. */
function descToEntry(b: Buffer): user_desc_t {
  const bits = b.readUInt32LE(12);
  return {
    entry_number: b.readUInt32LE(0),
    base_addr: b.readUInt32LE(4),
    limit: b.readUInt32LE(8),
    seg_32bit: !!(bits & 1),
    contents_h: !!(bits & 4),
    contents_l: !!(bits & 2),
    read_exec_only: !!(bits & 8),
    limit_in_pages: !!(bits & 16),
    seg_not_present: !!(bits & 32),
    usable: !!(bits & 64),
  };
}

function entryToDesc(e: user_desc_t): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(e.entry_number, 0);
  b.writeUInt32LE(e.base_addr, 4);
  b.writeUInt32LE(e.limit, 8);
  const bits = (e.seg_32bit ? 1 : 0) | (e.contents_l ? 2 : 0) | (e.contents_h ? 4 : 0) | (e.read_exec_only ? 8 : 0) |
    (e.limit_in_pages ? 16 : 0) | (e.seg_not_present ? 32 : 0) | (e.usable ? 64 : 0);
  b.writeUInt32LE(bits, 12);
  return b;
}

/** An unused TLS slot, as the kernel reports it. */
const emptyDesc = (e: user_desc_t): boolean => e.base_addr === 0 && e.limit === 0 && e.seg_not_present && e.read_exec_only;

/**
 * The thread's rseq registration. A thread stopped inside an rseq critical
 * section must resume at its abort handler, as it would after a signal; the
 * kernel clears (struct rseq).rseq_cs when we run code in the thread, so the
 * pointer is the one the remote session read before it ran any, kept in the
 * image and written back last.
 */
function dumpRseq(t: Tracee, regs: Regs, csPtr: bigint): rseq_entry | undefined {
  const cfg = t.rseqConfig();
  if (!cfg.pointer) return undefined;
  if (csPtr) {
    const cs = readRseqCs(t.tid, csPtr);
    if (cs.version !== 0) throw new UnsupportedError(`thread ${t.tid} uses rseq ABI version ${cs.version}, which crest does not know`);
    leaveRseqSection(regs, cs);
  }
  return { rseq_abi_pointer: cfg.pointer, rseq_abi_size: cfg.size, signature: cfg.signature, rseq_cs_pointer: csPtr };
}

const SA_RESTART = 0x10000000n;

/**
 * The first signal the thread takes when it runs again: pending (its own
 * queue first, then the process's, lowest number first), not blocked by its
 * own mask, with a handler.
 */
function dueSignal(st: ProcStatus, r: Remote): DueSignal | null {
  for (const pending of [st.sigPnd, st.shdPnd]) {
    const due = pending & ~r.savedMask & st.sigCgt;
    if (!due) continue;
    let sig = 1;
    while (!(due & (1n << BigInt(sig - 1)))) sig++;
    r.resetScratch();
    const act = r.alloc(KSIGACTION_SIZE);
    r.call(`read the action of signal ${sig} of thread ${r.pid}`, SYS.rt_sigaction, sig, 0, act, 8);
    return { sig, restart: !!(unpackSigaction(r.read(act, KSIGACTION_SIZE)).flags & SA_RESTART) };
  }
  return null;
}

/**
 * The registers to save for a thread crest's interrupt may have caught in a
 * syscall (see syscall-restart.ts); a thread left running gets the live set
 * where crest's interrupt would otherwise show.
 */
function resumeRegs(pid: number, st: ProcStatus, r: Remote, log: Logger): Regs {
  const ctx: ResumeContext = {
    stopped: r.t.stopSignal !== 0,
    dueSignal: () => dueSignal(st, r),
    readTimespec: (addr) => {
      try {
        const b = readMemory(r.pid, addr, 16);
        return { sec: b.readBigInt64LE(0), nsec: b.readBigInt64LE(8) };
      } catch {
        return null;
      }
    },
  };
  const res = resumption(r.saved, ctx);
  const who = `thread ${r.pid} of process ${pid}`;
  if (res.inexact) {
    const eintr = res.regs.getSigned("ax") === BigInt(-EINTR);
    log.warn(`${eintr ? `Will restore ${r.pid} with interrupted system call: ` : ""}${who} is in ${res.call}: ${res.inexact}`);
  } else if (res.note) {
    log.info(`${who} is in ${res.call}: ${res.note}`);
  } else if (res.call) {
    log.debug(`${who} is in ${res.call} (ax ${res.regs.getSigned("ax")}): it resumes as the kernel would resume it`);
  }
  if (res.live) res.live.buf.copy(r.saved.buf);
  return res.regs;
}

/**
 * A thread crest stops only for a moment and lets run on (not dumped): the
 * registers it gets back resume a syscall crest's interrupt caught it in, as
 * a dumped thread left running does (Remote.restore sends it out of an rseq
 * critical section).
 */
export function resumeLive(r: Remote, pid: number, st: ProcStatus, log: Logger): void {
  resumeRegs(pid, st, r, log);
}

function dumpThread(r: Remote, pid: number, st: ProcStatus, log: Logger): { info: thread_info_x86; rseq?: rseq_entry } {
  const t = r.t;
  const tls: user_desc_t[] = [];
  for (let i = 0; i < TLS_ENTRIES; i++) tls.push(descToEntry(t.getThreadArea(TLS_MIN + i)));
  // The rseq abort fixup, and a syscall restart crest's interrupt made
  // necessary, also apply to the registers the thread gets back if it is
  // left running, so they edit the saved set itself.
  const rseq = dumpRseq(t, r.saved, r.rseqCs);
  const info: thread_info_x86 = {
    clear_tid_addr: 0n, // filled by the props kind, which asks the thread
    gpregs: regsToEntry(resumeRegs(pid, st, r, log)),
    fpregs: xsaveToEntry(t.getXstate()),
    tls,
  };
  return { info, ...(rseq ? { rseq } : {}) };
}

export const regsKind: TaskKind = {
  name: "regs",
  dump(task: DumpTask, run: DumpRun) {
    task.remotes.forEach((r, i) => {
      const { info, rseq } = dumpThread(r, task.pid, task.status[i]!, run.log);
      task.core[i]!.thread_info = info;
      if (rseq) task.core[i]!.thread_core!.rseq_entry = rseq;
    });
  },
  restore(task: RestoreTask, run) {
    task.threads.forEach((t, i) => {
      const ti = task.core[i]!.thread_info;
      if (!ti) throw run.images.invalid(IMG.core, task.vtids[i], "no x86 thread_info: it was not dumped on x86_64");
      const f = task.final[i]!;
      f.regs = entryToRegs(ti.gpregs);
      // What the kernel refuses of these (a state or TLS descriptor it cannot take) is the image's fault.
      try {
        f.xstate = entryToXsave(ti.fpregs, t.getXstate());
        for (const d of ti.tls) if (!emptyDesc(d)) t.setThreadArea(d.entry_number, entryToDesc(d));
      } catch (e) {
        throw run.images.invalid(IMG.core, task.vtids[i], `thread ${task.vtids[i]}: ${(e as Error).message}`);
      }
      const rseq = task.core[i]!.thread_core?.rseq_entry;
      if (rseq?.rseq_abi_pointer) {
        task.remotes[i]!.later({ what: `register rseq of thread ${t.tid} (rseq_entry of ${run.images.name(IMG.core, task.vtids[i])})`, nr: SYS.rseq, args: [rseq.rseq_abi_pointer, rseq.rseq_abi_size, 0, rseq.signature] });
        if (rseq.rseq_cs_pointer) {
          const b = Buffer.alloc(8);
          b.writeBigUInt64LE(rseq.rseq_cs_pointer);
          f.memoryWrites.push({ addr: rseq.rseq_abi_pointer + 8n, data: b });
        }
      }
    });
  },
};
