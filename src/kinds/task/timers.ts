// Timers: the three interval timers (real, virtual, prof) and POSIX timers
// with their ids, clocks, notification and remaining time. Read and re-armed
// by syscalls inside the task; /proc/PID/timers tells which POSIX timers exist.
import { readFileSync } from "node:fs";
import type { TaskKind, DumpTask, RestoreTask } from "../context.js";
import type { itimer_entry, posix_timer_entry } from "../../images/index.js";
import { ITIMER, SYS } from "../../sys/constants.js";
import { packU64s, unpackU64s } from "../../sys/structs.js";
import { parseTimers } from "../../proc/index.js";
import type { Remote } from "../../remote/remote.js";

const PR_TIMER_CREATE_RESTORE_IDS = 77;
const SIGEV = { SIGNAL: 0, NONE: 1, THREAD: 2, THREAD_ID: 4 } as const;

/** Queues the questions for the three interval timers; `got` has them once they have run (with the task's other questions). */
function getItimers(r: Remote, got: (timers: itimer_entry[]) => void): void {
  r.resetScratch();
  const bufs = [ITIMER.REAL, ITIMER.VIRTUAL, ITIMER.PROF].map((which) => ({ which, buf: r.alloc(32) }));
  for (const { which, buf } of bufs) r.later({ what: `read interval timer ${which} of task ${r.pid}`, nr: SYS.getitimer, args: [which, buf] });
  r.afterRun(() => got(bufs.map(({ buf }) => {
    const [isec, iusec, vsec, vusec] = unpackU64s(r.read(buf, 32), 4);
    return { isec: isec!, iusec: iusec!, vsec: vsec!, vusec: vusec! };
  })));
}

function setItimer(r: Remote, which: number, t: itimer_entry): void {
  if (!t.isec && !t.iusec && !t.vsec && !t.vusec) return;
  // No time left but an interval: the timer expired and its signal was still
  // pending (the kernel re-arms ITIMER_REAL only when SIGALRM is dequeued).
  // A zero value would disarm it: start a full interval instead, as CRIU.
  const expired = !t.vsec && !t.vusec;
  r.resetScratch();
  const v = r.put(packU64s([t.isec, t.iusec, expired ? t.isec : t.vsec, expired ? t.iusec : t.vusec]));
  r.call(`set interval timer ${which} of task ${r.pid}`, SYS.setitimer, which, v, 0);
}

/** struct sigevent: value (8), signo (4), notify (4), then the thread id of SIGEV_THREAD_ID; 64 bytes. */
function packSigevent(t: posix_timer_entry): Buffer {
  const b = Buffer.alloc(64);
  b.writeBigUInt64LE(t.sival_ptr, 0);
  b.writeInt32LE(t.si_signo, 8);
  b.writeInt32LE(t.it_sigev_notify, 12);
  b.writeInt32LE(t.notify_thread_id ?? 0, 16);
  return b;
}

function dumpPosixTimers(task: DumpTask): posix_timer_entry[] {
  const r = task.remotes[0]!;
  const listed = parseTimers(readFileSync(`/proc/${task.pid}/timers`, "utf8"));
  return listed.map((t) => {
    r.resetScratch();
    const spec = r.alloc(32);
    r.call(`read POSIX timer ${t.id} of task ${task.pid}`, SYS.timer_gettime, t.id, spec);
    const [isec, insec, vsec, vnsec] = unpackU64s(r.read(spec, 32), 4);
    const overrun = r.call(`read overruns of POSIX timer ${t.id} of task ${task.pid}`, SYS.timer_getoverrun, t.id);
    const notify = { signal: SIGEV.SIGNAL, none: SIGEV.NONE, thread: SIGEV.THREAD }[t.notify] | (t.notifyTid !== undefined ? SIGEV.THREAD_ID : 0);
    return {
      // CPU-time clocks have negative ids; the image field is a u32.
      it_id: t.id, clock_id: t.clockid >>> 0, si_signo: t.signal, it_sigev_notify: notify, sival_ptr: t.sigevValue,
      overrun, isec: isec!, insec: insec!, vsec: vsec!, vnsec: vnsec!,
      // /proc shows crest's view of the thread; the image keeps the task's.
      ...(t.notifyTid !== undefined ? { notify_thread_id: task.vtids[task.threads.findIndex((th) => th.tid === t.notifyTid)] ?? t.notifyTid } : {}),
    };
  });
}

function restorePosixTimers(task: RestoreTask, timers: posix_timer_entry[]): void {
  if (!timers.length) return;
  const r = task.remotes[0]!;
  // Linux 6.16+: timer_create takes the id to use from *timerid.
  r.call(`ask for chosen POSIX timer ids in task ${task.pid} (needs Linux 6.16 or later)`, SYS.prctl, PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0);
  for (const t of timers) {
    r.resetScratch();
    const sev = r.put(packSigevent(t));
    const id = r.put(packU64s([t.it_id]));
    r.call(`create POSIX timer ${t.it_id} in task ${task.pid}`, SYS.timer_create, t.clock_id | 0, sev, id);
    const got = r.read(id, 4).readInt32LE(0);
    if (got !== t.it_id) throw new Error(`POSIX timer ${t.it_id} of task ${task.pid} was created with id ${got}`);
    if (t.isec || t.insec || t.vsec || t.vnsec) {
      const spec = r.put(packU64s([t.isec, t.insec, t.vsec, t.vnsec]));
      r.call(`arm POSIX timer ${t.it_id} of task ${task.pid}`, SYS.timer_settime, t.it_id, 0, spec, 0);
    }
  }
  r.call(`turn off chosen POSIX timer ids in task ${task.pid}`, SYS.prctl, PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0);
}

export const timersKind: TaskKind = {
  name: "timers",
  dump(task: DumpTask) {
    const posix = dumpPosixTimers(task);
    getItimers(task.remotes[0]!, ([real, virt, prof]) => {
      task.core[0]!.tc!.timers = { real: real!, virt: virt!, prof: prof!, posix };
    });
  },
  restore(task: RestoreTask) {
    const timers = task.core[0]!.tc!.timers;
    if (!timers) return;
    const r = task.remotes[0]!;
    setItimer(r, ITIMER.REAL, timers.real);
    setItimer(r, ITIMER.VIRTUAL, timers.virt);
    setItimer(r, ITIMER.PROF, timers.prof);
    restorePosixTimers(task, timers.posix);
  },
};
