// Remote control of one stopped task: run syscalls inside it and use a
// scratch page of its memory for their arguments. The task's registers and
// signal mask are saved when the session opens and put back when it closes.
import { Tracee, TraceError, type Stop } from "./tracee.js";
import { readMemory, writeMemory, writeMemoryParts } from "./memory.js";
import { MAP, PROT, PTRACE, PTRACE_EVENT, SIG, SYS } from "../sys/constants.js";
import { KSIGACTION_SIZE, Regs, SIGINFO_SIZE, SYSCALL_ARGS, siginfoHead } from "../sys/structs.js";
import { errnoName, SysError } from "../sys/errno.js";
import { ptrace } from "../sys/syscalls.js";
import { remoteCounters } from "./counters.js";

/**
 * Where a `syscall` instruction is. With int3 the instruction is followed by
 * `int3`, so one resume runs it and traps; without, the syscall is stepped
 * with PTRACE_SYSCALL (entry stop, exit stop) and nothing after it runs.
 */
export interface Gadget {
  addr: bigint;
  int3: boolean;
}

/** The code we put at the start of a scratch mapping: syscall; int3. */
const GADGET_CODE = Buffer.from([0x0f, 0x05, 0xcc]);
const SCRATCH_DATA = 64;
/** si_code of the SIGTRAP an int3 raises (SI_KERNEL). */
const SI_KERNEL = 0x80;
const SIGTRAP_BIT = 1n << BigInt(SIG.TRAP - 1);
/** SIG_IGN as a handler value. */
const SIG_IGN = 1n;

/** A failed syscall inside a tracee. */
export class RemoteError extends Error {
  constructor(readonly what: string, readonly errno: number) {
    super(`${what}: ${errnoName(errno)}`);
    this.name = "RemoteError";
  }
}

/**
 * The result of a queued call (later()), which calls queued after it may
 * take as an argument: in the same batch the injected code passes it on
 * (one stop for a chain such as open, mmap the fd, close it); once run, its
 * value. A failed call passes -errno on, so the calls after it fail too, and
 * the first failure is the one reported.
 */
export class Pending {
  value?: number;
}

export type RArg = number | bigint | Pending;

/** A call as it is run: its result handed to its Pending, if it has one. */
interface RunCall {
  nr: number;
  args: RArg[];
  result?: Pending;
}

/** movabs of an immediate into rax, rdi, rsi, rdx, r10, r8, r9 (the syscall registers, in order). */
const LOAD = [[0x48, 0xb8], [0x48, 0xbf], [0x48, 0xbe], [0x48, 0xba], [0x49, 0xba], [0x49, 0xb8], [0x49, 0xb9]];
/** mov rdi|rsi|rdx|r10|r8|r9, rax (an argument from an earlier call's result, loaded into rax first). */
const FROM_RAX = [[0x48, 0x89, 0xc7], [0x48, 0x89, 0xc6], [0x48, 0x89, 0xc2], [0x49, 0x89, 0xc2], [0x49, 0x89, 0xc0], [0x49, 0x89, 0xc1]];
/** movabs rax, [imm64] */
const LOAD_RAX_FROM = [0x48, 0xa1];

/** A Pending's value, which a call run on its own needs. */
function immediate(v: RArg): number | bigint {
  if (!(v instanceof Pending)) return v;
  if (v.value === undefined) throw new Error("a syscall argument is the result of a call that has not run");
  return v.value;
}

/**
 * x86-64 code running each call and storing rax at results + 8*i; int3 at
 * the end. Arguments are loaded first (one from an earlier call's result
 * goes through rax), the syscall number last.
 */
function batchCode(calls: readonly RunCall[], results: bigint): Buffer {
  const code = Buffer.allocUnsafe(calls.length * (CALL_BYTES - 8) + 1);
  const slot = new Map<Pending, number>();
  let at = 0;
  const op = (bytes: readonly number[]) => {
    for (const b of bytes) code[at++] = b;
  };
  const imm = (v: number | bigint) => {
    if (typeof v === "bigint") {
      at = code.writeBigUInt64LE(BigInt.asUintN(64, v), at);
      return;
    }
    // A safe integer in two's complement halves, without a BigInt per argument (thousands a restore).
    code.writeUInt32LE(v >>> 0, at);
    code.writeUInt32LE(Math.floor(v / 0x1_0000_0000) >>> 0, at + 4);
    at += 8;
  };
  calls.forEach((c, i) => {
    c.args.forEach((v, r) => {
      const from = v instanceof Pending && v.value === undefined ? slot.get(v) : undefined;
      if (from !== undefined) {
        op(LOAD_RAX_FROM);
        imm(results + BigInt(from * 8));
        op(FROM_RAX[r]!);
      } else {
        op(LOAD[r + 1]!);
        imm(immediate(v));
      }
    });
    op(LOAD[0]!);
    imm(c.nr);
    op(STORE); // syscall; movabs [results + 8i], rax
    imm(results + BigInt(i * 8));
    if (c.result) slot.set(c.result, i);
  });
  code[at++] = 0xcc;
  return code.subarray(0, at);
}
const STORE = [0x0f, 0x05, 0x48, 0xa3];

/** Hands each call's result to its Pending. */
function settle(calls: readonly RunCall[], res: readonly number[]): void {
  calls.forEach((c, i) => {
    if (c.result) c.result.value = res[i];
  });
}

/**
 * A queued syscall, checked when it has run: `want` the value it must
 * return (else any non-negative one), `fail` the error for an errno (else a
 * RemoteError naming `what`); `unchecked`: its caller looks at the result
 * itself (a -errno included).
 */
export interface LaterCall {
  nr: number;
  args: RArg[];
  what: string | (() => string);
  want?: number | bigint;
  fail?: (errno: number) => Error;
  unchecked?: boolean;
}

/**
 * A scratch mapping: `syscall; int3` at its start, then data (arguments,
 * results, batch code) from `cursor` on, for whichever thread of the address
 * space uses it now (`user`).
 */
interface ScratchArea {
  addr: bigint;
  size: number;
  cursor: number;
  user: Remote | null;
  /** What put() copied in since the task last ran: written in one call before it runs again (or is read or written). */
  pending: Array<{ addr: bigint; data: Buffer }>;
}

/** How many queued calls go in one batch at most (more wait for the next). */
const MAX_QUEUED = 200;
/** Batch code of one call at most (batchCode: six arguments from earlier results, the number, syscall, store of the result) with its result slot. */
const CALL_BYTES = 6 * 13 + 10 + 2 + 10 + 8;
/** The part of a scratch area batches run from: its last quarter, 8-aligned, at least one call. */
const batchZone = (size: number): number => Math.max(CALL_BYTES + 8, Math.floor(size / 4) & ~7);
/** How many calls one batch in the area holds (and the int3 after the last). */
const batchFits = (area: ScratchArea): number => Math.floor((batchZone(area.size) - 1) / CALL_BYTES);

/** Children created by an injected clone/fork, reported by ptrace events. */
export interface ForkEvent {
  event: number;
  child: number;
}

/** errno of a ptrace request this kernel does not know. */
const EIO = 5;

/**
 * (struct rseq).rseq_cs of a stopped thread: 0n if it names no critical
 * section or the thread registered no rseq area (or the kernel has no
 * PTRACE_GET_RSEQ_CONFIGURATION, before 5.13: the regs kind refuses that dump).
 */
function rseqCsOf(t: Tracee): bigint {
  let area: bigint;
  try {
    area = t.rseqConfig().pointer;
  } catch (e) {
    if (e instanceof SysError && e.errno === EIO) return 0n;
    throw e;
  }
  return area ? readMemory(t.tid, area + 8n, 8).readBigUInt64LE(0) : 0n;
}

/** struct rseq_cs: the critical section a thread's (struct rseq).rseq_cs names. */
export interface RseqCs {
  version: number;
  flags: number;
  start: bigint;
  /** post_commit_offset: the section is [start, start + len). */
  len: bigint;
  abort: bigint;
}

const RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL = 2;

export function readRseqCs(tid: number, csPtr: bigint): RseqCs {
  const b = readMemory(tid, csPtr, 32);
  return { version: b.readUInt32LE(0), flags: b.readUInt32LE(4), start: b.readBigUInt64LE(8), len: b.readBigUInt64LE(16), abort: b.readBigUInt64LE(24) };
}

/**
 * Sends a thread seized inside rseq critical section `cs` to the section's
 * abort handler, in `regs`, unless the section asks for no restart on a
 * signal: where the kernel would send it when it returns from the stop, had
 * crest not run code in it, which makes the kernel forget the section.
 * Idempotent: the kernel requires the handler to lie outside the section.
 */
export function leaveRseqSection(regs: Regs, cs: RseqCs): void {
  const ip = regs.get("ip");
  if (ip >= cs.start && ip < cs.start + cs.len && !(cs.flags & RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL)) regs.set("ip", cs.abort);
}

export class Remote {
  readonly saved: Regs;
  readonly savedMask: bigint;
  /**
   * (struct rseq).rseq_cs as seized. The kernel clears it as soon as the
   * thread returns to user space outside that critical section, which the
   * first syscall we run in it does: so it is read before anything runs,
   * for the regs kind to record (and to move a thread stopped inside the
   * section to its abort handler).
   */
  readonly rseqCs: bigint;
  private readonly base: Regs;
  /** The scratch mapping this task uses, shared by the threads of its address space; null before one is mapped. */
  private area: ScratchArea | null = null;
  /** ptrace fork/clone events seen during the last syscall. */
  events: ForkEvent[] = [];
  /** Calls queued with later(), run as one batch before anything else touches the task. */
  private queued: Array<LaterCall & { result: Pending }> = [];
  /** Mappings of the threads' own scratch areas (giveThreadsScratch), removed with this one's. */
  private threadsScratch: Array<{ addr: bigint; size: number }> = [];
  /** What to do once the calls queued so far have run (afterRun), in order. */
  private after: Array<() => void> = [];
  /** The queue's batch while it runs (started by flushAll, not yet waited for). */
  private running: { q: Array<LaterCall & { result: Pending }>; results: bigint } | null = null;
  /**
   * The SIGTRAP action (struct k_sigaction) to install when the session
   * ends, for a task that ignores SIGTRAP: crest's int3 raises a forced
   * SIGTRAP, and the kernel resets an ignored (or blocked) one to SIG_DFL.
   * Set at dump from the task's own action, read before the first int3;
   * at restore by the signals kind.
   */
  trapAction: Buffer | null = null;
  /**
   * Restore: the signal that stops the process once crest lets it go (it
   * was stopped when dumped). Sent when the scratch page goes, the last
   * thing crest runs in it; the signal stays pending until the detach.
   */
  stopOnRelease = 0;

  constructor(readonly t: Tracee, private gadget: Gadget) {
    this.saved = t.getRegs();
    this.savedMask = t.getSigmask();
    this.rseqCs = rseqCsOf(t);
    this.base = this.saved.clone();
    // Nothing may be delivered while we drive the task: block all we can,
    // but SIGTRAP: the kernel would reset its action to SIG_DFL at crest's
    // first int3 (a forced signal unblocks itself that way).
    t.setSigmask(~SIGTRAP_BIT);
  }

  get pid(): number {
    return this.t.tid;
  }

  /** The syscall instruction in use (a task forked from this one has it at the same address). */
  get currentGadget(): Gadget {
    return this.gadget;
  }

  get scratch(): { addr: bigint; size: number } | null {
    return this.area ? { addr: this.area.addr, size: this.area.size } : null;
  }

  /**
   * Takes the scratch area's data part for this thread's arguments: the
   * thread that used it last runs what it queued first (its arguments are
   * there), and its allocations are forgotten.
   */
  private claim(area: ScratchArea): void {
    if (area.user === this) return;
    area.user?.flush();
    area.user = this;
    area.cursor = SCRATCH_DATA;
    // What the last user put there and no call of its used is forgotten with its allocations.
    area.pending = [];
  }

  /** Writes what put() left pending: before the task runs anything, and before scratch is read or written directly. */
  private writePending(): void {
    const area = this.area;
    if (!area?.pending.length) return;
    writeMemoryParts(this.pid, area.pending);
    area.pending = [];
  }

  /**
   * Queues a syscall whose result is only checked, to run with others in one
   * batch (one stop for all): before the next call, read, write or scratch
   * reset in this task, or at flush(). Its arguments in scratch memory stay
   * valid until then. Without a scratch page to batch in, it runs at once.
   * Returns its result to come, for the calls queued after it.
   */
  later(c: LaterCall): Pending {
    const result = new Pending();
    this.queued.push({ ...c, result });
    if (!this.area || this.queued.length >= MAX_QUEUED) this.flush();
    return result;
  }

  /**
   * Runs fn once the calls queued so far have run, right after their batch
   * (before anything else uses the scratch memory they wrote their answers
   * to): a kind queues the questions it asks a task and reads the answers
   * there, and every kind's questions share one stop.
   */
  afterRun(fn: () => void): void {
    this.after.push(fn);
  }

  private runAfter(): void {
    const after = this.after;
    this.after = [];
    for (const fn of after) fn();
  }

  /** Runs the queued calls; throws for the first that failed, as it would have failed alone. */
  flush(): void {
    if (!this.queued.length) return this.runAfter();
    const q = this.queued;
    this.queued = [];
    const res = q.length === 1 || !this.area ? q.map((c) => (c.result.value = this.run(c.nr, c.args))) : this.runBatch(q);
    this.check(q, res);
    this.runAfter();
  }

  private check(q: readonly LaterCall[], res: readonly number[]): void {
    q.forEach((c, i) => {
      if (c.unchecked) return;
      const r = res[i]!;
      const what = () => (typeof c.what === "string" ? c.what : c.what());
      if (r < 0 && r > -4096) throw c.fail?.(-r) ?? new RemoteError(what(), -r);
      if (c.want !== undefined && BigInt(r) !== BigInt(c.want)) throw new TraceError(`${what()}: the kernel gave ${r}, not ${c.want}`);
    });
  }

  /**
   * Runs one syscall in the task and returns the kernel's answer (-errno on
   * failure). Calls still queued run first, in the same batch: one stop.
   */
  syscall(nr: number, ...args: RArg[]): number {
    // (Arguments may be results of queued calls: they run in the same batch, before it.)
    if (!this.queued.length || !this.area) {
      this.flush();
      return this.run(nr, args);
    }
    const q = this.queued;
    this.queued = [];
    const res = this.runBatch([...q, { nr, args }]);
    this.check(q, res);
    this.runAfter();
    return res[q.length]!;
  }

  /** Points the task at the gadget with a syscall's number and arguments loaded. */
  private load(nr: number, args: RArg[]): void {
    if (this.running) throw new Error(`task ${this.pid} is still running a batch`);
    this.writePending();
    remoteCounters.syscalls++;
    const r = this.base.clone();
    r.set("ip", this.gadget.addr);
    r.set("ax", nr);
    // orig_ax = -1: the kernel must not treat this as a syscall to restart.
    r.set("orig_ax", -1n);
    args.forEach((a, i) => r.set(SYSCALL_ARGS[i]!, immediate(a)));
    this.t.setRegs(r);
    this.events = [];
  }

  private run(nr: number, args: RArg[]): number {
    this.load(nr, args);
    if (this.gadget.int3) {
      this.t.cont();
      this.expect((s) => this.isOwnTrap(s), nr);
    } else {
      this.t.syscallStep();
      this.expect((s) => s.kind === "syscall", nr);
      this.t.syscallStep();
      this.expect((s) => s.kind === "syscall", nr);
    }
    return Number(this.t.getRegs().getSigned("ax"));
  }

  /**
   * Runs several syscalls in one go: crest writes a few instructions per
   * call into the scratch page (load the number and arguments, `syscall`,
   * store the result) and one `int3` after the last, so the whole batch costs
   * one stop instead of one per call. Returns each result (-errno on failure).
   */
  batch(calls: readonly RunCall[]): number[] {
    this.flush();
    return this.runBatch(calls);
  }

  /**
   * Runs calls in one stop each batch: the code and results go in the
   * scratch area's batch zone (its last quarter, apart from the arguments
   * the calls point to), as many calls at a time as it holds.
   */
  private runBatch(calls: readonly RunCall[]): number[] {
    if (!calls.length) return [];
    const area = this.area;
    if (!area) throw new Error(`task ${this.pid} has no scratch memory`);
    const fits = batchFits(area);
    // The first part's results are settled before the rest's code is written: that takes them as values.
    if (calls.length > fits) return [...this.runBatch(calls.slice(0, fits)), ...this.runBatch(calls.slice(fits))];
    const res = this.finishBatch(this.startBatch(area, calls), calls.length, calls[0]!.nr);
    settle(calls, res);
    return res;
  }

  /** Writes the batch code (calls.length <= batchFits) and lets the task run it; returns where the results go. */
  private startBatch(area: ScratchArea, calls: readonly RunCall[]): bigint {
    if (this.running) throw new Error(`task ${this.pid} is still running a batch`);
    remoteCounters.syscalls += calls.length;
    const zone = batchZone(area.size);
    const results = area.addr + BigInt(area.size - zone);
    const code = batchCode(calls, results);
    const at = results + BigInt(calls.length * 8);
    // The calls' arguments and their code in one write.
    area.pending.push({ addr: at, data: code });
    writeMemoryParts(this.pid, area.pending);
    area.pending = [];
    const r = this.base.clone();
    r.set("ip", at);
    r.set("orig_ax", -1n);
    this.t.setRegs(r);
    this.events = [];
    this.t.cont();
    return results;
  }

  /** Waits for the batch's int3 and reads the n results (nr: its first call, for errors). */
  private finishBatch(results: bigint, n: number, nr: number): number[] {
    this.expect((s) => this.isOwnTrap(s), nr);
    const out = readMemory(this.pid, results, n * 8);
    return Array.from({ length: n }, (_, i) => Number(out.readBigInt64LE(i * 8)));
  }

  /**
   * Runs the queues of several tasks side by side: each task's batch is
   * started, then each waited for, so the tasks run theirs at the same time
   * (on other cores) while crest starts the next; one thread per scratch
   * area at a time. A queue too long for one batch runs as flush() would.
   */
  static flushAll(remotes: readonly Remote[]): void {
    let rest = remotes.filter((r) => r.queued.length);
    while (rest.length) {
      const busy = new Set<ScratchArea>(), later: Remote[] = [], started: Remote[] = [];
      for (const r of rest) {
        const area = r.area;
        if (area && busy.has(area)) {
          later.push(r);
        } else if (!area || r.queued.length > batchFits(area)) {
          r.flush();
        } else {
          busy.add(area);
          r.claim(area);
          const q = r.queued;
          r.queued = [];
          r.running = { q, results: r.startBatch(area, q) };
          started.push(r);
        }
      }
      for (const r of started) {
        const { q, results } = r.running!;
        r.running = null;
        const res = r.finishBatch(results, q.length, q[0]!.nr);
        settle(q, res);
        r.check(q, res);
        r.runAfter();
      }
      rest = later;
    }
    // Those that had nothing queued, but something to do after it.
    for (const r of remotes) r.runAfter();
  }

  /** Like batch, but throws RemoteError naming the first call that failed. */
  callAll(calls: ReadonlyArray<RunCall & { what: string }>): number[] {
    const res = this.batch(calls);
    res.forEach((r, i) => {
      if (r < 0 && r > -4096) throw new RemoteError(calls[i]!.what, -r);
    });
    return res;
  }

  /** Makes the task exit with `code` (exit_group) and waits until it has. */
  exit(code: number): void {
    this.flush();
    const r = this.base.clone();
    r.set("ip", this.gadget.addr);
    r.set("ax", SYS.exit_group);
    r.set("orig_ax", -1n);
    r.set("di", code);
    this.t.setRegs(r);
    this.t.cont();
    for (let s = this.t.wait(); s.kind !== "exited" && s.kind !== "killed"; s = this.t.wait()) this.t.cont();
  }

  /** Like syscall, but throws RemoteError naming `what` on failure. */
  call(what: string | (() => string), nr: number, ...args: RArg[]): number {
    const r = this.syscall(nr, ...args);
    if (r < 0 && r > -4096) throw new RemoteError(typeof what === "string" ? what : what(), -r);
    return r;
  }

  /**
   * A SIGTRAP stop from crest's int3 (si_code SI_KERNEL). Another SIGTRAP
   * (SIGTRAP is not blocked while crest drives the task) would be taken from
   * the task: crest stops there rather than lose it silently.
   */
  private isOwnTrap(s: Stop): boolean {
    if (s.kind !== "signal" || s.sig !== SIG.TRAP) return false;
    const info = Buffer.alloc(SIGINFO_SIZE);
    ptrace(PTRACE.GETSIGINFO, this.t.tid, 0, info);
    const { code } = siginfoHead(info);
    if (code !== SI_KERNEL) {
      throw new TraceError(`task ${this.t.tid} was sent a SIGTRAP (si_code ${code}) while crest was driving it; it is lost, since crest's own traps are SIGTRAPs`);
    }
    return true;
  }

  private expect(ok: (s: Stop) => boolean, nr: number): void {
    for (;;) {
      const s = this.t.wait();
      if (ok(s)) return;
      if (s.kind === "event" && (s.event === PTRACE_EVENT.FORK || s.event === PTRACE_EVENT.CLONE || s.event === PTRACE_EVENT.VFORK)) {
        const msg = new BigUint64Array(1);
        ptrace(PTRACE.GETEVENTMSG, this.t.tid, 0, msg);
        this.events.push({ event: s.event, child: Number(msg[0]) });
        if (this.gadget.int3) this.t.cont();
        else this.t.syscallStep();
        continue;
      }
      if (s.kind === "exited" || s.kind === "killed") {
        throw new TraceError(`task ${this.t.tid} died during injected syscall ${nr} (${s.kind} ${"code" in s ? s.code : s.sig})`);
      }
      throw new TraceError(`task ${this.t.tid} stopped unexpectedly during injected syscall ${nr}: ${JSON.stringify(s)}`);
    }
  }

  /** Maps a scratch area of 64 KiB anywhere unless the task has one: for a restore's calls that pass memory. */
  needScratch(): void {
    if (!this.scratch) this.mapScratch(64 << 10);
  }

  /**
   * Maps a scratch area (RWX, private anonymous) in the task, puts our gadget
   * at its start and uses it from then on. With addr the mapping must land
   * exactly there (MAP_FIXED_NOREPLACE).
   */
  mapScratch(size: number, addr: bigint = 0n, trapMayBeIgnored = true): bigint {
    const flags = MAP.PRIVATE | MAP.ANONYMOUS | (addr ? MAP.FIXED_NOREPLACE : 0);
    const a = this.call(`map scratch memory in task ${this.pid}`, SYS.mmap, addr, size, PROT.READ | PROT.WRITE | PROT.EXEC, flags, -1, 0);
    if (addr && BigInt(a) !== addr) throw new TraceError(`scratch mapping of task ${this.pid} landed at 0x${a.toString(16)}, not 0x${addr.toString(16)}`);
    const area: ScratchArea = { addr: BigInt(a), size, cursor: SCRATCH_DATA, user: this, pending: [] };
    // Before the first int3: an ignored SIGTRAP is reset by it, so keep the
    // task's action to put back at the end (the caller may know it is not
    // ignored: /proc/PID/status SigIgn).
    if (!this.gadget.int3 && trapMayBeIgnored) {
      const act = area.addr + BigInt(SCRATCH_DATA);
      this.call(`read the action of signal ${SIG.TRAP} of task ${this.pid}`, SYS.rt_sigaction, SIG.TRAP, 0, act, 8);
      const b = this.read(act, KSIGACTION_SIZE);
      if (b.readBigUInt64LE(0) === SIG_IGN) this.trapAction = b;
    }
    writeMemory(this.pid, area.addr, GADGET_CODE);
    this.area = area;
    this.gadget = { addr: area.addr, int3: true };
    return area.addr;
  }

  /** Uses the scratch area of another thread of the same address space (they take turns with it). */
  shareScratch(other: Remote): void {
    if (!other.area) throw new Error(`task ${other.pid} has no scratch memory to share`);
    this.area = other.area;
    this.gadget = { addr: other.area.addr, int3: true };
  }

  /**
   * Gives each of the threads a scratch area of its own, in one mapping
   * made here (this is their leader): their queues then wait for their own
   * next call instead of running whenever another thread takes the shared
   * area. The mapping goes with this task's own scratch area.
   */
  giveThreadsScratch(threads: readonly Remote[], each: number): void {
    if (!threads.length) return;
    const size = threads.length * each;
    const addr = BigInt(this.call(`map scratch memory for the threads of task ${this.pid}`, SYS.mmap, 0, size, PROT.READ | PROT.WRITE | PROT.EXEC, MAP.PRIVATE | MAP.ANONYMOUS, -1, 0));
    this.threadsScratch.push({ addr, size });
    threads.forEach((r, i) => {
      // What it queued used the shared area.
      r.flush();
      const at = addr + BigInt(i * each);
      writeMemory(r.pid, at, GADGET_CODE);
      r.area = { addr: at, size: each, cursor: SCRATCH_DATA, user: r, pending: [] };
      r.gadget = { addr: at, int3: true };
    });
  }

  /** Uses the copy of a scratch area a forked task inherited, at the same address. */
  useScratch(addr: bigint, size: number): void {
    this.area = { addr, size, cursor: SCRATCH_DATA, user: this, pending: [] };
    this.gadget = { addr, int3: true };
  }

  /** Removes the scratch area; the current gadget must not be in it unless this is the last syscall. */
  unmapScratch(): void {
    Remote.unmapAll([this]);
  }

  /**
   * Removes the scratch areas of several tasks side by side (what they
   * queued runs first, as flushAll; their threads must be done with theirs). The munmap runs from the page it
   * removes: it is stepped with syscall stops, so nothing executes after it;
   * each step is started in every task before any is waited for.
   */
  static unmapAll(remotes: readonly Remote[]): void {
    for (const r of remotes) {
      for (const m of r.threadsScratch) r.later({ what: `unmap the threads' scratch memory of task ${r.pid}`, nr: SYS.munmap, args: [m.addr, m.size] });
      r.threadsScratch = [];
    }
    Remote.flushAll(remotes);
    const stepping: Remote[] = [];
    for (const r of remotes) {
      if (!r.area) continue;
      const { addr, size } = r.area;
      r.gadget = { addr, int3: false };
      if (r.trapAction) {
        r.resetScratch();
        r.call(`set the action of signal ${SIG.TRAP} of task ${r.pid}`, SYS.rt_sigaction, SIG.TRAP, r.put(r.trapAction), 0, 8);
      }
      r.load(SYS.munmap, [addr, size]);
      r.t.syscallStep();
      stepping.push(r);
    }
    const step = (r: Remote) => r.expect((s) => s.kind === "syscall", SYS.munmap);
    for (const r of stepping) {
      step(r);
      r.t.syscallStep();
    }
    for (const r of stepping) {
      step(r);
      const res = Number(r.t.getRegs().getSigned("ax"));
      if (res < 0 && res > -4096) throw new RemoteError(`unmap scratch memory of task ${r.pid}`, -res);
      r.area = null;
      if (r.stopOnRelease) process.kill(r.pid, r.stopOnRelease);
    }
  }

  /**
   * Forgets scratch allocations (the mapping stays): a new operation starts
   * and needs none of the caller's earlier ones. Queued calls may still use
   * theirs: those stay, and allocation goes on after them, until half the
   * room is used; then the queue runs first.
   */
  resetScratch(): void {
    const area = this.area;
    if (!area) return this.flush();
    this.claim(area);
    if (this.queued.length && area.cursor < (area.size - batchZone(area.size)) / 2) return;
    this.flush();
    area.cursor = SCRATCH_DATA;
  }

  /** Reserves n bytes of scratch (8-aligned) and returns their address in the task. */
  alloc(n: number): bigint {
    const area = this.area;
    if (!area) throw new Error(`task ${this.pid} has no scratch memory`);
    this.claim(area);
    const at = area.cursor;
    const end = at + ((n + 7) & ~7);
    const room = area.size - batchZone(area.size);
    if (end > room) throw new Error(`scratch memory of task ${this.pid} is full (${end} > ${room})`);
    area.cursor = end;
    return area.addr + BigInt(at);
  }

  /** Copies bytes into scratch (written to the task before it next runs) and returns their address in the task. */
  put(data: Buffer): bigint {
    const a = this.alloc(data.length);
    if (data.length) this.area!.pending.push({ addr: a, data: Buffer.from(data) });
    return a;
  }

  putString(s: string): bigint {
    return this.put(Buffer.from(s + "\0"));
  }

  write(addr: bigint, data: Buffer): void {
    this.flush();
    this.writePending();
    writeMemory(this.pid, addr, data);
  }

  read(addr: bigint, len: number): Buffer {
    this.flush();
    this.writePending();
    return readMemory(this.pid, addr, len);
  }

  /** Puts the registers and signal mask back as they were when the session opened (calls still queued are dropped). */
  restore(): void {
    this.queued = [];
    this.after = [];
    // A thread put back inside the rseq section it was seized in would run the rest of it unprotected.
    if (this.rseqCs) {
      let cs: RseqCs | undefined;
      try {
        cs = readRseqCs(this.pid, this.rseqCs);
      } catch {
        // A descriptor that cannot be read: the kernel kills the thread at its next return to user space, as it would have.
      }
      if (cs?.version === 0) leaveRseqSection(this.saved, cs);
    }
    this.t.setRegs(this.saved);
    this.t.setSigmask(this.savedMask);
  }
}
