// --freeze-cgroup PATH (runc passes it): the dump freezes the tree through
// the cgroup freezer first (v1 freezer.state, v2 cgroup.freeze), so no task
// in it can fork or exit while crest seizes them; every thread in the
// cgroup and below is seized and asked to stop while frozen, then the
// cgroup is thawed and the threads stop at crest's interrupt (criu's
// freeze_processes). If the cgroup was frozen before, it is frozen again
// when the tree runs on (criu's freezer_restore_state), and the dump keeps
// that state as freezer.state for the restore.
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import type { Logger } from "../../log.js";
import { workPath, type Options } from "../../options.js";
import { Tracee, TraceError } from "../../remote/tracee.js";
import { ESRCH } from "../../sys/errno.js";
import { sleepMs } from "../../sys/syscalls.js";

type State = "THAWED" | "FREEZING" | "FROZEN";

/** The state each run's freezer cgroup had before crest froze it (FREEZING counts as FROZEN, as criu). */
const original = new WeakMap<Options, "THAWED" | "FROZEN">();
export const originalFreezerState = (opts: Options): "THAWED" | "FROZEN" | undefined => original.get(opts);

interface Freezer {
  path: string;
  v2: boolean;
}

function freezerOf(path: string): Freezer {
  if (existsSync(`${path}/freezer.state`)) return { path, v2: false };
  if (existsSync(`${path}/cgroup.freeze`)) return { path, v2: true };
  throw new Error(`--freeze-cgroup ${path}: neither freezer.state (cgroup v1) nor cgroup.freeze (cgroup v2) is there: not a freezer cgroup`);
}

function stateOf(f: Freezer): State {
  if (!f.v2) {
    const s = readFileSync(`${f.path}/freezer.state`, "utf8").trim();
    if (s !== "THAWED" && s !== "FREEZING" && s !== "FROZEN") throw new Error(`--freeze-cgroup ${f.path}: unknown freezer state ${JSON.stringify(s)}`);
    return s;
  }
  if (readFileSync(`${f.path}/cgroup.freeze`, "utf8").trim() === "0") return "THAWED";
  return /^frozen 1$/m.test(readFileSync(`${f.path}/cgroup.events`, "utf8")) ? "FROZEN" : "FREEZING";
}

function write(f: Freezer, s: "THAWED" | "FROZEN"): void {
  if (f.v2) writeFileSync(`${f.path}/cgroup.freeze`, s === "FROZEN" ? "1" : "0");
  else writeFileSync(`${f.path}/freezer.state`, s);
}

/** Every thread in the cgroup and the cgroups below it. */
function threadsIn(f: Freezer, dir = f.path): number[] {
  const list = readFileSync(`${dir}/${f.v2 ? "cgroup.threads" : "tasks"}`, "utf8").split("\n").filter((l) => l !== "").map(Number);
  for (const d of readdirSync(dir, { withFileTypes: true })) if (d.isDirectory()) list.push(...threadsIn(f, `${dir}/${d.name}`));
  return list;
}

/**
 * Freezes the cgroup, seizes and interrupts every thread in it, thaws it;
 * returns the threads seized, by tid, each with its interrupt pending.
 */
export function freezeCgroup(opts: Options, log: Logger, seizeOptions: number, timeoutSec: number): Map<number, Tracee> {
  const f = freezerOf(workPath(opts, opts.cgroups.freeze!));
  const before = stateOf(f);
  original.set(opts, before === "THAWED" ? "THAWED" : "FROZEN");
  const seized = new Map<number, Tracee>();
  let ok = false;
  try {
    if (before === "THAWED") {
      write(f, "FROZEN");
      // As criu: 100 ms steps up to the timeout (10 s without one); a v1 freezer is nudged now and then.
      const steps = timeoutSec > 0 ? timeoutSec * 10 : 100;
      let i = 0;
      for (; stateOf(f) !== "FROZEN" && i < steps; i++) {
        if (!f.v2 && i % 32 === 31) {
          write(f, "THAWED");
          sleepMs(100);
        }
        if (!f.v2) write(f, "FROZEN");
        sleepMs(100);
      }
      if (stateOf(f) !== "FROZEN") throw new Error(`Unable to freeze cgroup ${f.path} (${i} x 100 ms attempts)`);
      log.info(`Froze cgroup ${f.path} in ${i} attempt(s)`);
    }
    for (const tid of threadsIn(f)) {
      if (seized.has(tid)) continue;
      let t: Tracee;
      try {
        t = Tracee.seize(tid, seizeOptions);
      } catch (e) {
        if (e instanceof TraceError && e.errno === ESRCH) continue;
        throw e;
      }
      seized.set(tid, t);
      t.requestInterrupt();
    }
    ok = true;
  } finally {
    // Thawed even if it had been frozen: the seized threads must reach crest's stop.
    if (ok || before === "THAWED") write(f, "THAWED");
    if (!ok) releaseSeized(seized);
  }
  log.info(`Seized ${seized.size} thread(s) of freezer cgroup ${f.path}`);
  return seized;
}

/** Lets threads seized through the cgroup go (those the dump does not take: the cgroup holds more than the tree). */
export function releaseSeized(seized: Map<number, Tracee>, log?: Logger): void {
  for (const t of seized.values()) {
    try {
      t.waitInterrupted(Date.now() + 5000);
      t.detach();
      log?.warn(`thread ${t.tid} is in the freezer cgroup but not in the dumped tree: let go`);
    } catch {
      // gone
    }
  }
  seized.clear();
}

/** Freezes the cgroup again if it was frozen before the dump (the tree runs on). */
export function restoreFreezerState(opts: Options, log: Logger): void {
  if (opts.cgroups.freeze === undefined || original.get(opts) !== "FROZEN") return;
  try {
    write(freezerOf(workPath(opts, opts.cgroups.freeze)), "FROZEN");
  } catch (e) {
    log.error(`could not freeze ${opts.cgroups.freeze} again: ${(e as Error).message}`);
  }
}
