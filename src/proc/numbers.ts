// Strict number parsing shared by the parsers: every field is checked against
// its exact textual form, so a format change throws instead of yielding NaN,
// a truncated value or a silently rounded 64-bit number.
import { ProcParseError } from "./error.js";

const DEC = /^-?\d+$/;
const UDEC = /^\d+$/;
const HEX = /^(?:0x)?[0-9a-fA-F]+$/;
const OCT = /^[0-7]+$/;

/** A decimal integer that must fit a JS number exactly. */
export function decimal(file: string, line: string, s: string | undefined, what = "a decimal number"): number {
  if (s === undefined || !DEC.test(s)) throw new ProcParseError(file, line, `expected ${what}, got ${JSON.stringify(s ?? "")}`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new ProcParseError(file, line, `${s} does not fit a JS number exactly`);
  return n;
}

/** An unsigned decimal integer of any size (u64 fields). */
export function decimalBig(file: string, line: string, s: string | undefined, what = "an unsigned decimal number"): bigint {
  if (s === undefined || !UDEC.test(s)) throw new ProcParseError(file, line, `expected ${what}, got ${JSON.stringify(s ?? "")}`);
  return BigInt(s);
}

/** A hexadecimal integer (with or without 0x) of any size. */
export function hexBig(file: string, line: string, s: string | undefined, what = "a hex number"): bigint {
  if (s === undefined || !HEX.test(s)) throw new ProcParseError(file, line, `expected ${what}, got ${JSON.stringify(s ?? "")}`);
  return BigInt(s.startsWith("0x") ? s : `0x${s}`);
}

/** A hexadecimal integer that must fit a JS number exactly. */
export function hex(file: string, line: string, s: string | undefined, what = "a hex number"): number {
  const v = hexBig(file, line, s, what);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProcParseError(file, line, `0x${v.toString(16)} does not fit a JS number exactly`);
  return Number(v);
}

/** An octal integer (flags, perms, umask). */
export function octal(file: string, line: string, s: string | undefined, what = "an octal number"): number {
  if (s === undefined || !OCT.test(s)) throw new ProcParseError(file, line, `expected ${what}, got ${JSON.stringify(s ?? "")}`);
  return parseInt(s, 8);
}

/** The lines of a /proc text file: the final newline does not make an empty last line. */
export function lines(text: string): string[] {
  if (text === "") return [];
  const out = text.split("\n");
  if (out[out.length - 1] === "") out.pop();
  return out;
}
