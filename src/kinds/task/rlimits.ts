// Resource limits. Read from /proc/PID/limits (prlimit on another user's
// process needs CAP_SYS_RESOURCE, which this machine does not grant) and set
// by the task itself. A hard limit above crest's own cannot be raised without
// that capability: the restore then fails and says which limit.
import { readFileSync } from "node:fs";
import type { TaskKind, DumpTask, RestoreTask } from "../context.js";
import { SYS } from "../../sys/constants.js";
import { EPERM, errnoName } from "../../sys/errno.js";
import { packU64s } from "../../sys/structs.js";
import { parseLimits, RLIMIT_NAMES } from "../../proc/index.js";

export const rlimitsKind: TaskKind = {
  name: "rlimits",
  dump(task: DumpTask) {
    const limits = parseLimits(readFileSync(`/proc/${task.pid}/limits`, "utf8"));
    task.core[0]!.tc!.rlimits = { rlimits: limits.map((l) => ({ cur: l.cur, max: l.max })) };
  },
  restore(task: RestoreTask) {
    const limits = task.core[0]!.tc!.rlimits?.rlimits ?? [];
    const r = task.remotes[0]!;
    limits.forEach((l, res) => {
      r.resetScratch();
      const v = r.put(packU64s([l.cur, l.max]));
      const ret = r.syscall(SYS.prlimit64, 0, res, v, 0);
      if (ret === -EPERM) {
        throw new Error(`cannot restore ${RLIMIT_NAMES[res] ?? `rlimit ${res}`} of task ${task.pid} (hard limit ${l.max}): raising a hard limit needs CAP_SYS_RESOURCE`);
      }
      if (ret < 0) throw new Error(`cannot restore ${RLIMIT_NAMES[res] ?? `rlimit ${res}`} of task ${task.pid}: ${errnoName(-ret)}`);
    });
  },
};
