// UTS namespaces: host and domain name, read and set by crest from inside
// each namespace (setns on its own thread). The tree's own namespace is its
// root's (utsns-ID.img, the root made with CLONE_NEWUTS); a task that
// unshared one of its own (systemd's ProtectHostname=, a container in the
// tree) has it too, by the id in its ids image: the first task in it
// unshares it again right after it is born, before its children, and the
// others in it that are not its descendants enter it.
import { closeSync, openSync } from "node:fs";
import { restoreState, type RestoreRun, type RestoreTask, type TaskKind } from "../context.js";
import { IMG, type utsns_entry } from "../../images/index.js";
import { CLONE, SYS } from "../../sys/constants.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { inNamespaceOf } from "../../sys/namespace.js";
import { ownedAtRestore } from "./owned.js";
import { passFd } from "../files/inherit.js";

function uname(): utsns_entry {
  const b = Buffer.alloc(6 * 65);
  check(native.syscall(SYS.uname, b), "uname");
  const field = (i: number) => b.subarray(i * 65, (i + 1) * 65).toString("utf8").replace(/\0.*$/s, "");
  return { nodename: field(1), domainname: field(5) };
}

/** Sets the names of the UTS namespace task pid is in, from its image. */
function setNames(run: RestoreRun, pid: number, id: number): void {
  const [uts] = run.images.read(IMG.utsns, id);
  if (!uts) return;
  inNamespaceOf(pid, "uts", () => {
    check(native.syscall(SYS.sethostname, uts.nodename, Buffer.byteLength(uts.nodename)), "set the host name");
    check(native.syscall(SYS.setdomainname, uts.domainname, Buffer.byteLength(uts.domainname)), "set the domain name");
  });
}

/** Restore: the nested namespaces made so far, by id: a task in each. */
const made = restoreState("nested uts namespaces", () => new Map<number, number>());

/** A task whose UTS namespace is not the one it was born in (its nearest task ancestor's, or the root's crest's). */
function placeTask(task: RestoreTask, run: RestoreRun): void {
  const id = task.ids.uts_ns_id;
  const from = task.parent?.ids.uts_ns_id;
  if (id === undefined || from === undefined || id === from) return;
  const r = task.remotes[0]!;
  const crest = run.inventory.root_ids?.uts_ns_id;
  const holder = id === run.tasks[0]!.ids.uts_ns_id ? run.tasks[0]!.pid : run.state(made).get(id);
  if (holder === undefined && id !== crest) {
    // The first task in it: a namespace of its own, then its names.
    r.call(`make the UTS namespace ${id} of process ${task.vpid} (unshare)`, SYS.unshare, CLONE.NEWUTS);
    run.state(made).set(id, task.pid);
    setNames(run, task.pid, id);
    run.log.info(`Process ${task.vpid} made its UTS namespace ${id}`);
    return;
  }
  const mine = openSync(holder === undefined ? "/proc/thread-self/ns/uts" : `/proc/${holder}/ns/uts`, "r");
  try {
    r.needScratch();
    const theirs = passFd(r, task.vpid, mine, `UTS namespace ${id}`);
    r.call(`make process ${task.vpid} enter UTS namespace ${id}`, SYS.setns, theirs, CLONE.NEWUTS);
    r.call(`close the fd of UTS namespace ${id} in process ${task.vpid}`, SYS.close, theirs);
  } finally {
    closeSync(mine);
  }
  run.log.info(`Process ${task.vpid} entered UTS namespace ${id}`);
}

export const utsNamespaceKind: TaskKind = {
  name: "uts namespace",
  // Once every task is dumped (the tree is still frozen): each UTS namespace of the tree's but crest's, read in a task in it.
  finishDump(run) {
    const crest = run.ownNamespaces.has("uts") ? undefined : run.root.ids.uts_ns_id;
    const done = new Set<number>();
    for (const t of run.tasks) {
      const id = t.ids.uts_ns_id;
      if (id === undefined || id === crest || done.has(id) || t.zombie) continue;
      done.add(id);
      run.images.write(IMG.utsns, id, [inNamespaceOf(t.pid, "uts", uname)]);
    }
  },
  plan: (run) => (ownedAtRestore(run, "uts") ? CLONE.NEWUTS : 0),
  born(task, run) {
    if (task !== run.tasks[0]) return placeTask(task, run);
    if (ownedAtRestore(run, "uts")) setNames(run, task.pid, task.ids.uts_ns_id!);
  },
};
