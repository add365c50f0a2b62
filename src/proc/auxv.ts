// /proc/PID/auxv: the auxiliary vector the kernel gave the program at exec,
// native-endian u64 (type, value) pairs ending with the AT_NULL pair.
import { ProcParseError } from "./error.js";

/** Some AT_* types (uapi linux/auxvec.h, asm/auxvec.h). */
export const AT = {
  NULL: 0n, PHDR: 3n, PHENT: 4n, PHNUM: 5n, PAGESZ: 6n, BASE: 7n, FLAGS: 8n, ENTRY: 9n,
  UID: 11n, EUID: 12n, GID: 13n, EGID: 14n, PLATFORM: 15n, HWCAP: 16n, CLKTCK: 17n,
  SECURE: 23n, RANDOM: 25n, HWCAP2: 26n, EXECFN: 31n, SYSINFO_EHDR: 33n, MINSIGSTKSZ: 51n,
} as const;

/**
 * The vector as alternating type, value, ... up to and including AT_NULL (the
 * shape of CRIU's mm_entry.mm_saved_auxv). Empty input (a zombie or kernel
 * thread has no mm) gives []; anything else must end exactly at AT_NULL.
 */
export function parseAuxv(bytes: Buffer): bigint[] {
  if (bytes.length % 16) throw new ProcParseError("auxv", `${bytes.length} bytes`, "not whole (type, value) pairs");
  const out: bigint[] = [];
  for (let off = 0; off < bytes.length; off += 16) {
    const type = bytes.readBigUInt64LE(off);
    out.push(type, bytes.readBigUInt64LE(off + 8));
    if (type === AT.NULL) {
      if (off + 16 !== bytes.length) throw new ProcParseError("auxv", `${bytes.length} bytes`, `data after AT_NULL at byte ${off}`);
      return out;
    }
  }
  if (bytes.length) throw new ProcParseError("auxv", `${bytes.length} bytes`, "no AT_NULL entry");
  return out;
}

/** The value of the first entry of this type, or undefined. */
export function auxvGet(auxv: readonly bigint[], type: bigint): bigint | undefined {
  for (let i = 0; i + 1 < auxv.length; i += 2) if (auxv[i] === type) return auxv[i + 1];
  return undefined;
}
