// An fd of a namespace (opened on /proc/PID/ns/KIND, or given by setns's
// users to keep a namespace at hand). criu's ns_file_entry: the namespace by
// its kobj id, which must be a namespace one of the tree's tasks is in (its
// *_ns_id in ids-PID.img; any other is refused by name). Restore: crest
// opens /proc/PID/ns/KIND of a restored task in that namespace and passes
// the fd to the task.
import { closeSync, openSync } from "node:fs";
import { UnsupportedError } from "../context.js";
import { fd_types, type task_kobj_ids_entry } from "../../images/index.js";
import { NS_CLONE_FLAG, O } from "../../sys/constants.js";
import type { NsKind } from "../../proc/nslink.js";
import type { FileKind } from "./file-kind.js";
import { passFd } from "./inherit.js";

/** CLONE_NEW* of each namespace kind, as ns_file_entry.ns_cflag holds it. */
const CFLAG: Record<NsKind, number> = NS_CLONE_FLAG;

export const nsFileKind: FileKind = {
  name: "namespace file",
  type: fd_types.NS,
  claims: (f) => f.link.kind === "ns",
  dump(f, run) {
    if (f.link.kind !== "ns") throw new Error("not a namespace fd");
    const nsId = run.namespaceIds.get(f.text);
    if (nsId === undefined) {
      throw new UnsupportedError(`${f.what} is ${f.text}, a ${f.link.ns} namespace none of the tree's processes is in; crest can keep an fd only of a namespace of the tree`);
    }
    const id = run.nextId("file");
    run.files.push({ type: fd_types.NS, id, nsf: { id, ns_id: nsId, ns_cflag: CFLAG[f.link.ns], flags: f.info.flags & ~O.CLOEXEC } });
    return id;
  },
  fown: () => undefined,
  open({ r, task, run }, entry) {
    const nsf = entry.nsf!;
    const kind = (Object.keys(CFLAG) as NsKind[]).find((k) => CFLAG[k] === nsf.ns_cflag);
    const bad = (why: string) => new Error(`namespace file ${entry.id} of files.img: ${why}`);
    if (!kind) throw bad(`ns_cflag 0x${nsf.ns_cflag.toString(16)} is no namespace kind`);
    const field = `${kind}_ns_id` as keyof task_kobj_ids_entry;
    const holder = run.tasks.find((t) => t.ids[field] === nsf.ns_id);
    if (!holder) throw bad(`no process of the images is in ${kind} namespace ${nsf.ns_id}`);
    const mine = openSync(`/proc/${holder.pid}/ns/${kind}`, (nsf.flags & O.ACCMODE) | O.CLOEXEC);
    try {
      return passFd(r, task.vpid, mine, `an fd of the ${kind} namespace of process ${holder.vpid}`);
    } finally {
      closeSync(mine);
    }
  },
};
