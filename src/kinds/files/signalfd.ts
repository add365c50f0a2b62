// signalfd: which signals it accepts (fdinfo "sigmask", the signals as the
// task gave them, SIGKILL and SIGSTOP never among them). Recreated with
// signalfd4(-1, mask). The signals it reads are the task's pending ones,
// which the signals kind queues back.
import { UnsupportedError } from "../context.js";
import { fd_types } from "../../images/index.js";
import { O, SYS } from "../../sys/constants.js";
import { isAnon, setAsync, type FileKind } from "./file-kind.js";

export const signalfdKind: FileKind = {
  name: "signalfd",
  type: fd_types.SIGNALFD,
  claims: isAnon("signalfd"),
  dump(f, run) {
    const s = f.info.signalfd;
    if (!s) throw new UnsupportedError(`${f.what} (${f.text}) shows no sigmask in its fdinfo; crest cannot read its signals`);
    const id = run.nextId("file");
    run.files.push({ type: fd_types.SIGNALFD, id, sgfd: { id, flags: f.info.flags & ~O.CLOEXEC, fown: f.fown, sigmask: s.sigmask } });
    return id;
  },
  fown: (entry) => entry.sgfd?.fown,
  open({ r, task }, entry) {
    const s = entry.sgfd!;
    const what = `signalfd ${entry.id} in task ${task.vpid}`;
    r.resetScratch();
    const mask = Buffer.alloc(8);
    mask.writeBigUInt64LE(BigInt.asUintN(64, s.sigmask));
    const fd = r.call(`create ${what}`, SYS.signalfd4, -1, r.put(mask), 8, O.CLOEXEC | (s.flags & O.NONBLOCK));
    setAsync(r, fd, s.flags, what);
    return fd;
  },
};
