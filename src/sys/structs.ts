// Layouts of the kernel structs crest passes around (x86_64). Each is a thin
// view over bytes, so the same buffer can go to the kernel or into a tracee.

/** struct user_regs_struct, in order; also the order of CRIU's user_x86_regs_entry. */
export const REG_NAMES = [
  "r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx", "si", "di",
  "orig_ax", "ip", "cs", "flags", "sp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
] as const;
export type RegName = (typeof REG_NAMES)[number];
const REG_INDEX = Object.fromEntries(REG_NAMES.map((n, i) => [n, i])) as Record<RegName, number>;

export class Regs {
  static readonly SIZE = REG_NAMES.length * 8;
  readonly buf: Buffer;
  constructor(buf?: Buffer) {
    this.buf = buf ?? Buffer.alloc(Regs.SIZE);
  }
  get(name: RegName): bigint {
    return this.buf.readBigUInt64LE(REG_INDEX[name] * 8);
  }
  /** Signed view, for syscall results (-errno) and orig_ax (-1). */
  getSigned(name: RegName): bigint {
    return this.buf.readBigInt64LE(REG_INDEX[name] * 8);
  }
  set(name: RegName, v: bigint | number): void {
    this.buf.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)), REG_INDEX[name] * 8);
  }
  clone(): Regs {
    return new Regs(Buffer.from(this.buf));
  }
}

/** The six syscall argument registers, in order. */
export const SYSCALL_ARGS: RegName[] = ["di", "si", "dx", "r10", "r8", "r9"];

/** struct kernel_sigaction as rt_sigaction takes it: handler, flags, restorer, mask. */
export interface KSigaction {
  handler: bigint;
  flags: bigint;
  restorer: bigint;
  mask: bigint;
}
export const KSIGACTION_SIZE = 32;
export function packSigaction(a: KSigaction): Buffer {
  const b = Buffer.alloc(KSIGACTION_SIZE);
  b.writeBigUInt64LE(a.handler, 0);
  b.writeBigUInt64LE(a.flags, 8);
  b.writeBigUInt64LE(a.restorer, 16);
  b.writeBigUInt64LE(a.mask, 24);
  return b;
}
export function unpackSigaction(b: Buffer): KSigaction {
  return {
    handler: b.readBigUInt64LE(0),
    flags: b.readBigUInt64LE(8),
    restorer: b.readBigUInt64LE(16),
    mask: b.readBigUInt64LE(24),
  };
}

/** stack_t: ss_sp, ss_flags (int, padded; SS_AUTODISARM is bit 31, so read unsigned), ss_size. */
export const STACK_T_SIZE = 24;
export function unpackStack(b: Buffer): { sp: bigint; flags: number; size: bigint } {
  return { sp: b.readBigUInt64LE(0), flags: b.readUInt32LE(8), size: b.readBigUInt64LE(16) };
}
export function packStack(s: { sp: bigint; flags: number; size: bigint }): Buffer {
  const b = Buffer.alloc(STACK_T_SIZE);
  b.writeBigUInt64LE(s.sp, 0);
  b.writeUInt32LE(s.flags >>> 0, 8);
  b.writeBigUInt64LE(s.size, 16);
  return b;
}

/** Pairs of u64, as struct itimerval (timeval x2) and struct itimerspec (timespec x2) are. */
export function packU64s(vals: Array<bigint | number>): Buffer {
  const b = Buffer.alloc(vals.length * 8);
  vals.forEach((v, i) => b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)), i * 8));
  return b;
}
export function unpackU64s(b: Buffer, n: number, offset = 0): bigint[] {
  return Array.from({ length: n }, (_, i) => b.readBigUInt64LE(offset + i * 8));
}

export const SIGINFO_SIZE = 128;
/** A siginfo's signal number and code, the first two ints. */
export function siginfoHead(b: Buffer): { signo: number; errno: number; code: number } {
  return { signo: b.readInt32LE(0), errno: b.readInt32LE(4), code: b.readInt32LE(8) };
}

/**
 * struct prctl_mm_map (PR_SET_MM_MAP): 13 u64 addresses, then auxv pointer,
 * auxv size (u32) and exe fd (u32).
 */
export interface MmMap {
  start_code: bigint; end_code: bigint; start_data: bigint; end_data: bigint;
  start_brk: bigint; brk: bigint; start_stack: bigint; arg_start: bigint; arg_end: bigint;
  env_start: bigint; env_end: bigint; auxv: bigint; auxv_size: number; exe_fd: number;
}
export const MM_MAP_SIZE = 104;
export function packMmMap(m: MmMap): Buffer {
  const b = Buffer.alloc(MM_MAP_SIZE);
  const addrs = [m.start_code, m.end_code, m.start_data, m.end_data, m.start_brk, m.brk, m.start_stack,
    m.arg_start, m.arg_end, m.env_start, m.env_end, m.auxv];
  addrs.forEach((v, i) => b.writeBigUInt64LE(v, i * 8));
  b.writeUInt32LE(m.auxv_size, 96);
  b.writeInt32LE(m.exe_fd, 100);
  return b;
}

/** struct clone_args (clone3), up to set_tid_size (88 bytes). */
export const CLONE_ARGS_SIZE = 88;
export function packCloneArgs(a: { flags: number; exitSignal: number; setTid?: bigint; setTidSize?: number }): Buffer {
  const b = Buffer.alloc(CLONE_ARGS_SIZE);
  b.writeBigUInt64LE(BigInt(a.flags), 0);
  b.writeBigUInt64LE(BigInt(a.exitSignal), 32);
  b.writeBigUInt64LE(a.setTid ?? 0n, 64);
  b.writeBigUInt64LE(BigInt(a.setTidSize ?? 0), 72);
  return b;
}
