// /proc/PID/auxv: pairs of u64 (type, value) ending with AT_NULL.
import { ProcParseError } from "./error.js";

export function parseAuxv(bytes: Buffer): bigint[] {
  if (bytes.length % 16) throw new ProcParseError("auxv", `${bytes.length} bytes`, "not whole (type, value) pairs");
  const out: bigint[] = [];
  for (let off = 0; off < bytes.length; off += 16) {
    const type = bytes.readBigUInt64LE(off);
    out.push(type, bytes.readBigUInt64LE(off + 8));
    if (type === 0n) break;
  }
  return out;
}
