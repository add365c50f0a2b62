// eventfd: a 64-bit counter. Dumped from fdinfo (eventfd-count, and
// eventfd-semaphore on Linux 6.x, which crest keeps in an extension field:
// CRIU drops EFD_SEMAPHORE); recreated with eventfd2 holding the counter.
import { isAnon, setAsync, type FileKind } from "./file-kind.js";
import { UnsupportedError } from "../context.js";
import { fd_types } from "../../images/index.js";
import { O, SYS } from "../../sys/constants.js";

const EFD_SEMAPHORE = 1;

export const eventfdKind: FileKind = {
  name: "eventfd",
  type: fd_types.EVENTFD,
  claims: isAnon("eventfd"),
  dump(f, run) {
    const e = f.info.eventfd;
    if (!e) throw new UnsupportedError(`${f.what} (${f.text}) shows no eventfd-count in its fdinfo; crest cannot read its counter`);
    const id = run.nextId("file");
    const efd = { id, flags: f.info.flags & ~O.CLOEXEC, fown: f.fown, counter: e.count, ...(e.semaphore ? { semaphore: true } : {}) };
    run.files.push({ type: fd_types.EVENTFD, id, efd });
    return id;
  },
  fown: (entry) => entry.efd?.fown,
  open({ r, task }, entry) {
    const e = entry.efd!;
    const what = `eventfd ${entry.id} in task ${task.vpid}`;
    // eventfd2 takes an unsigned int: a larger counter is written in after.
    const small = e.counter <= 0xffffffffn;
    const fd = r.call(`create ${what}`, SYS.eventfd2, small ? e.counter : 0, O.CLOEXEC | (e.flags & O.NONBLOCK) | (e.semaphore ? EFD_SEMAPHORE : 0));
    if (!small) {
      r.resetScratch();
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(e.counter);
      const n = r.call(`set the counter of ${what}`, SYS.write, fd, r.put(b), 8);
      if (n !== 8) throw new Error(`set the counter of ${what}: wrote ${n} of 8 bytes`);
    }
    setAsync(r, fd, e.flags, what);
    return fd;
  },
};
