// /proc/PID/timers: the task's POSIX timers, four lines each:
//   ID: <id> / signal: <signo>/<sigev value> / notify: <how>/<pid|tid>.<n> / ClockID: <clock>
import { ProcParseError } from "./error.js";

export interface PosixTimerInfo {
  id: number;
  signal: number;
  sigevValue: bigint;
  /** The kernel's notification kind, without the thread-id bit. */
  notify: "signal" | "none" | "thread";
  /** Set when the timer notifies one thread (SIGEV_THREAD_ID). */
  notifyTid?: number;
  /** The pid or tid the notification goes to. */
  notifyPid: number;
  clockid: number;
}

export function parseTimers(text: string): PosixTimerInfo[] {
  const lines = text.split("\n").filter(Boolean);
  const out: PosixTimerInfo[] = [];
  for (let i = 0; i < lines.length; i += 4) {
    const id = /^ID: (-?\d+)$/.exec(lines[i] ?? "");
    const sig = /^signal: (\d+)\/(?:0x)?([0-9a-f]+)$/.exec(lines[i + 1] ?? "");
    const notify = /^notify: (signal|none|thread)\/(pid|tid)\.(\d+)$/.exec(lines[i + 2] ?? "");
    const clock = /^ClockID: (-?\d+)$/.exec(lines[i + 3] ?? "");
    if (!id || !sig || !notify || !clock) throw new ProcParseError("timers", lines.slice(i, i + 4).join(" | "));
    const target = Number(notify[3]);
    out.push({
      id: Number(id[1]), signal: Number(sig[1]), sigevValue: BigInt(`0x${sig[2]}`),
      notify: notify[1] as PosixTimerInfo["notify"], notifyPid: target, clockid: Number(clock[1]),
      ...(notify[2] === "tid" ? { notifyTid: target } : {}),
    });
  }
  return out;
}
