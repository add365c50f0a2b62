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
import { IMG } from "../../images/index.js";

export const rlimitsKind: TaskKind = {
  name: "rlimits",
  dump(task: DumpTask) {
    const limits = parseLimits(readFileSync(`/proc/${task.pid}/limits`, "utf8"));
    task.core[0]!.tc!.rlimits = { rlimits: limits.map((l) => ({ cur: l.cur, max: l.max })) };
  },
  restore(task: RestoreTask, run) {
    const limits = task.core[0]!.tc!.rlimits?.rlimits ?? [];
    const r = task.remotes[0]!;
    r.resetScratch();
    // All the limits in one write to the task's memory.
    const at = r.put(packU64s(limits.flatMap((l) => [l.cur, l.max])));
    const image = run.images.name(IMG.core, task.vpid);
    limits.forEach((l, res) => {
      const name = RLIMIT_NAMES[res] ?? `rlimit ${res}`;
      if (l.cur > l.max) throw run.images.invalid(IMG.core, task.vpid, `rlimits[${res}] (${name}): cur ${l.cur} is above max ${l.max}`);
      r.later({
        nr: SYS.prlimit64, args: [0, res, at + BigInt(res * 16), 0], what: `restore ${name} of task ${task.pid}`,
        fail: (e) => new Error(e === EPERM
          ? `cannot restore ${name} of task ${task.pid} (hard limit ${l.max}, rlimits[${res}] of ${image}): raising a hard limit needs CAP_SYS_RESOURCE`
          : `cannot restore ${name} of task ${task.pid} (rlimits[${res}] of ${image}: ${l.cur}/${l.max}): ${errnoName(e)}`),
      });
    });
  },
};
