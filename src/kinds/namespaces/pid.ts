// The PID namespace: a tree with its own is restored with its root as PID 1
// of a new one (CLONE_NEWPID); the images name every task by its PID there.
// The PIDs themselves are the tree's (pipelines/dump/tree-ids.ts, restore/tree.ts).
import type { TaskKind } from "../context.js";
import { CLONE } from "../../sys/constants.js";
import { NS_KINDS, ownedAtRestore, SUPPORTED_NS } from "./owned.js";

export const pidNamespaceKind: TaskKind = {
  name: "pid namespace",
  plan(run) {
    for (const k of NS_KINDS) {
      if (!SUPPORTED_NS.has(k) && ownedAtRestore(run, k)) {
        throw new Error(`the tree has its own ${k} namespace; crest restores trees with their own ${[...SUPPORTED_NS].join(", ")} namespaces only so far`);
      }
    }
    return ownedAtRestore(run, "pid") ? CLONE.NEWPID : 0;
  },
};
