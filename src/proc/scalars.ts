// /proc files that hold one value each.
import { ProcParseError } from "./error.js";
import { decimal, decimalBig, hex } from "./numbers.js";

/** The one line of a single-value file, without its newline. */
function only(file: string, text: string): string {
  const v = text.endsWith("\n") ? text.slice(0, -1) : text;
  if (v.includes("\n")) throw new ProcParseError(file, text, "more than one line");
  return v;
}

/** /proc/PID/comm: the raw name (up to 15 bytes; may hold spaces, tabs, even a newline). */
export function parseComm(text: string): string {
  if (!text.endsWith("\n")) throw new ProcParseError("comm", text, "no final newline");
  return text.slice(0, -1);
}

/** /proc/PID/personality: the persona word in hex ("00040000" = ADDR_NO_RANDOMIZE). */
export function parsePersonality(text: string): number {
  const v = only("personality", text);
  if (!/^[0-9a-f]{8}$/.test(v)) throw new ProcParseError("personality", text, "expected 8 hex digits");
  return hex("personality", text, v);
}

/** /proc/PID/timerslack_ns: nanoseconds (u64). */
export function parseTimerslackNs(text: string): bigint {
  return decimalBig("timerslack_ns", text, only("timerslack_ns", text));
}

/** AUDIT_UID_UNSET: loginuid of a task no login session set. */
export const LOGINUID_UNSET = 4294967295;

/** /proc/PID/loginuid: an unsigned uid, 4294967295 when unset (printed without a newline). */
export function parseLoginuid(text: string): number {
  const v = decimal("loginuid", text, only("loginuid", text), "a uid");
  if (v < 0 || v > LOGINUID_UNSET) throw new ProcParseError("loginuid", text, "not a u32");
  return v;
}

/** /proc/PID/oom_score_adj: -1000..1000. */
export function parseOomScoreAdj(text: string): number {
  const v = decimal("oom_score_adj", text, only("oom_score_adj", text));
  if (v < -1000 || v > 1000) throw new ProcParseError("oom_score_adj", text, "outside -1000..1000");
  return v;
}

/** /proc/sys/kernel/pid_max: pids are below this. */
export function parsePidMax(text: string): number {
  const v = decimal("pid_max", text, only("pid_max", text));
  if (v <= 0) throw new ProcParseError("pid_max", text, "not positive");
  return v;
}
