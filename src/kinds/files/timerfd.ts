// timerfd: clock, settime flags, the time left to the next expiry, the
// interval, and expirations not read yet (ticks), all from fdinfo. Restore
// (as CRIU): timerfd_create, timerfd_settime with the time that was left (an
// absolute timer gets "now" on its clock, read in the task, added back),
// then TFD_IOC_SET_TICKS for the ticks (settime clears them).
import { UnsupportedError } from "../context.js";
import { fd_types, type timerfd_entry } from "../../images/index.js";
import { O, SYS } from "../../sys/constants.js";
import { isAnon, setAsync, type FileKind } from "./file-kind.js";
import type { Remote } from "../../remote/remote.js";

const TFD_TIMER_ABSTIME = 1;
/** _IOW('T', 0, u64): needs CONFIG_CHECKPOINT_RESTORE. */
const TFD_IOC_SET_TICKS = 0x40085400;
const NSEC = 1_000_000_000n;
/** CLOCK_REALTIME, MONOTONIC, BOOTTIME, REALTIME_ALARM, BOOTTIME_ALARM: the clocks timerfd_create takes. */
const CLOCKS = new Set([0, 1, 7, 8, 9]);

export const timerfdKind: FileKind = {
  name: "timerfd",
  type: fd_types.TIMERFD,
  claims: isAnon("timerfd"),
  dump(f, run) {
    const t = f.info.timerfd;
    if (!t) throw new UnsupportedError(`${f.what} (${f.text}) shows no timer in its fdinfo; crest cannot read it`);
    if (!CLOCKS.has(t.clockid)) throw new UnsupportedError(`${f.what} is a timerfd on clock ${t.clockid}; crest does not support that clock`);
    const id = run.nextId("file");
    run.files.push({
      type: fd_types.TIMERFD, id,
      tfd: {
        id, flags: f.info.flags & ~O.CLOEXEC, fown: f.fown, clockid: t.clockid, ticks: t.ticks, settime_flags: t.settimeFlags,
        vsec: BigInt(t.value.sec), vnsec: BigInt(t.value.nsec), isec: BigInt(t.interval.sec), insec: BigInt(t.interval.nsec),
      },
    });
    return id;
  },
  fown: (entry) => entry.tfd?.fown,
  open({ r, task }, entry) {
    const t = entry.tfd!;
    const what = `timerfd ${entry.id} in task ${task.vpid} (files.img)`;
    const fd = r.call(`create ${what}`, SYS.timerfd_create, t.clockid, O.CLOEXEC | (t.flags & O.NONBLOCK));
    setAsync(r, fd, t.flags, what);
    arm(r, fd, t, what);
    return fd;
  },
};

function arm(r: Remote, fd: number, t: timerfd_entry, what: string): void {
  let value = t.vsec * NSEC + t.vnsec;
  const interval = t.isec * NSEC + t.insec;
  // A periodic timer that expired and was not read since shows 0 left: the
  // kernel moves it on only at the next read. It must fire at once, not be
  // disarmed (0 disarms); a timer without interval and 0 left stays disarmed.
  if (!value && interval) value = 1n;
  r.resetScratch();
  // Only a running absolute timer is moved to "now + left".
  if (value && t.settime_flags & TFD_TIMER_ABSTIME) {
    const ts = r.alloc(16);
    r.call(`read clock ${t.clockid} for ${what}`, SYS.clock_gettime, t.clockid, ts);
    const now = r.read(ts, 16);
    value += now.readBigInt64LE(0) * NSEC + now.readBigInt64LE(8);
  }
  const spec = Buffer.alloc(32);
  spec.writeBigInt64LE(t.isec, 0);
  spec.writeBigInt64LE(t.insec, 8);
  spec.writeBigInt64LE(value / NSEC, 16);
  spec.writeBigInt64LE(value % NSEC, 24);
  r.call(`arm ${what}`, SYS.timerfd_settime, fd, t.settime_flags, r.put(spec), 0);
  if (t.ticks) {
    const ticks = Buffer.alloc(8);
    ticks.writeBigUInt64LE(t.ticks);
    r.call(`set the expirations of ${what} to ${t.ticks}`, SYS.ioctl, fd, TFD_IOC_SET_TICKS, r.put(ticks));
  }
}
