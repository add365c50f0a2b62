// Running code in another task's namespace: setns() moves only the calling
// thread (Node's main thread, where crest works), and back again after.
import { closeSync, openSync } from "node:fs";
import { native } from "./native.js";
import { CLONE, SYS } from "./constants.js";
import { check } from "./errno.js";

const FLAG = { ipc: CLONE.NEWIPC, uts: CLONE.NEWUTS, net: CLONE.NEWNET, cgroup: CLONE.NEWCGROUP } as const;
export type SwitchableNs = keyof typeof FLAG;

export function inNamespaceOf<T>(pid: number, kind: SwitchableNs, fn: () => T): T {
  const mine = openSync(`/proc/thread-self/ns/${kind}`, "r");
  const theirs = openSync(`/proc/${pid}/ns/${kind}`, "r");
  try {
    check(native.syscall(SYS.setns, theirs, FLAG[kind]), `enter the ${kind} namespace of process ${pid}`);
    try {
      return fn();
    } finally {
      check(native.syscall(SYS.setns, mine, FLAG[kind]), `return to crest's own ${kind} namespace`);
    }
  } finally {
    closeSync(theirs);
    closeSync(mine);
  }
}
