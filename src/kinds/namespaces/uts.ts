// The UTS namespace: host and domain name, read and set by crest from
// inside the tree's namespace (setns on its own thread).
import type { TaskKind } from "../context.js";
import { IMG, type utsns_entry } from "../../images/index.js";
import { CLONE, SYS } from "../../sys/constants.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { inNamespaceOf } from "../../sys/namespace.js";
import { ownedAtRestore } from "./owned.js";

function uname(): utsns_entry {
  const b = Buffer.alloc(6 * 65);
  check(native.syscall(SYS.uname, b), "uname");
  const field = (i: number) => b.subarray(i * 65, (i + 1) * 65).toString("utf8").replace(/\0.*$/s, "");
  return { nodename: field(1), domainname: field(5) };
}

export const utsNamespaceKind: TaskKind = {
  name: "uts namespace",
  // Once every task is dumped (the tree is still frozen): the root's namespace, if the tree owns it.
  finishDump(run) {
    if (!run.ownNamespaces.has("uts")) return;
    run.images.write(IMG.utsns, run.root.ids.uts_ns_id!, [inNamespaceOf(run.root.pid, "uts", uname)]);
  },
  plan: (run) => (ownedAtRestore(run, "uts") ? CLONE.NEWUTS : 0),
  born(task, run) {
    if (task !== run.tasks[0] || !ownedAtRestore(run, "uts")) return;
    const [uts] = run.images.read(IMG.utsns, task.ids.uts_ns_id!);
    if (!uts) return;
    inNamespaceOf(task.pid, "uts", () => {
      check(native.syscall(SYS.sethostname, uts.nodename, Buffer.byteLength(uts.nodename)), "set the host name");
      check(native.syscall(SYS.setdomainname, uts.domainname, Buffer.byteLength(uts.domainname)), "set the domain name");
    });
  },
};
