// /proc/PID/timers: the process's POSIX timers, newest first, four lines each
// (fs/proc/base.c show_timer):
//   ID: 3
//   signal: 35/ffffffffffffffff      signo / sigev_value as 16 hex digits
//   notify: signal/tid.6061          kind / "pid" or "tid" (SIGEV_THREAD_ID) . target
//   ClockID: 1                       negative for CPU-time clocks (-6 process, -2 thread)
import { ProcParseError } from "./error.js";
import { decimal, hexBig, lines } from "./numbers.js";

/** SIGEV_* values (asm-generic/siginfo.h). */
export const SIGEV = { SIGNAL: 0, NONE: 1, THREAD: 2, THREAD_ID: 4 } as const;

export interface PosixTimerInfo {
  id: number;
  /** si_signo delivered on expiry (0 for SIGEV_NONE timers). */
  signal: number;
  /** sigev_value (sival_ptr) as a u64. */
  sigevValue: bigint;
  /** The notification kind without the thread-id bit. */
  notify: "signal" | "none" | "thread";
  /** sigev_notify as the kernel keeps it: SIGEV_SIGNAL/NONE/THREAD, | SIGEV_THREAD_ID for "tid". */
  sigevNotify: number;
  /** Set when the timer notifies one thread (SIGEV_THREAD_ID): its tid. */
  notifyTid?: number;
  /** The pid or tid the notification goes to, in the reader's PID namespace. */
  notifyPid: number;
  clockid: number;
}

const NOTIFY = { signal: SIGEV.SIGNAL, none: SIGEV.NONE, thread: SIGEV.THREAD } as const;

export function parseTimers(text: string): PosixTimerInfo[] {
  const all = lines(text);
  if (all.length % 4) throw new ProcParseError("timers", all[all.length - 1] ?? "", `${all.length} lines, not four per timer`);
  const out: PosixTimerInfo[] = [];
  for (let i = 0; i < all.length; i += 4) {
    const [idLine, sigLine, notifyLine, clockLine] = all.slice(i, i + 4) as [string, string, string, string];
    const id = /^ID: (-?\d+)$/.exec(idLine);
    if (!id) throw new ProcParseError("timers", idLine, "expected \"ID: N\"");
    const sig = /^signal: (\d+)\/((?:0x)?[0-9a-f]+)$/.exec(sigLine);
    if (!sig) throw new ProcParseError("timers", sigLine, "expected \"signal: SIGNO/VALUE\"");
    const notify = /^notify: (signal|none|thread)\/(pid|tid)\.(-?\d+)$/.exec(notifyLine);
    if (!notify) throw new ProcParseError("timers", notifyLine, "expected \"notify: KIND/pid|tid.N\"");
    const clock = /^ClockID: (-?\d+)$/.exec(clockLine);
    if (!clock) throw new ProcParseError("timers", clockLine, "expected \"ClockID: N\"");
    const kind = notify[1] as keyof typeof NOTIFY;
    const target = decimal("timers", notifyLine, notify[3]);
    const toThread = notify[2] === "tid";
    const t: PosixTimerInfo = {
      id: decimal("timers", idLine, id[1]),
      signal: decimal("timers", sigLine, sig[1]),
      sigevValue: hexBig("timers", sigLine, sig[2]),
      notify: kind,
      sigevNotify: NOTIFY[kind] | (toThread ? SIGEV.THREAD_ID : 0),
      notifyPid: target,
      clockid: decimal("timers", clockLine, clock[1]),
    };
    if (toThread) t.notifyTid = target;
    out.push(t);
  }
  return out;
}
