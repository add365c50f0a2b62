// Running code in another task's namespace: setns() moves only the calling
// thread (Node's main thread, where crest works), and back again after.
import { closeSync, openSync } from "node:fs";
import { native } from "./native.js";
import { NS_CLONE_FLAG, SYS } from "./constants.js";
import { check } from "./errno.js";

export type SwitchableNs = "ipc" | "uts" | "net" | "cgroup";

export function inNamespaceOf<T>(pid: number, kind: SwitchableNs, fn: () => T): T {
  const mine = openSync(`/proc/thread-self/ns/${kind}`, "r");
  const theirs = openSync(`/proc/${pid}/ns/${kind}`, "r");
  try {
    check(native.syscall(SYS.setns, theirs, NS_CLONE_FLAG[kind]), `enter the ${kind} namespace of process ${pid}`);
    try {
      return fn();
    } finally {
      check(native.syscall(SYS.setns, mine, NS_CLONE_FLAG[kind]), `return to crest's own ${kind} namespace`);
    }
  } finally {
    closeSync(theirs);
    closeSync(mine);
  }
}
