// Which shared anonymous objects (plain shmem, or hugetlb) some task of the
// tree reaches other than through shared mappings: through an fd (opened
// through /proc/PID/map_files) or a private mapping of such an fd. criu 4.2
// records those as memfds (named /dev/zero or /anon_hugepage) and their
// shared mappings as memfd mappings; crest does the same for such objects,
// so that criu restores one object behind every way in, and keeps its own
// VMA_ANON_SHARED for the others (crest restores both as shared anonymous
// memory again, memfd.ts).
import { readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import type { DumpRun } from "../context.js";
import { dumpState } from "../context.js";
import { parseMaps } from "../../proc/index.js";
import { ANON_HUGEPAGE } from "./hugetlb.js";

const NAMES = ["/dev/zero", ANON_HUGEPAGE];
const DELETED = " (deleted)";

/** "dev:ino" of the file behind a /proc link, or null if it is gone or not a regular file. */
function idOf(link: string): string | null {
  try {
    const st = statSync(link);
    return st.isFile() ? `${st.dev}:${st.ino}` : null;
  } catch {
    return null;
  }
}

/** Dump: the objects of the whole tree reached through fds or private mappings, by "dev:ino". */
const reached = dumpState("shared memory reached otherwise", (run: DumpRun) => {
  const out = new Set<string>();
  const pids = [...new Set(run.tasks.map((t) => t.pid))];
  for (const pid of pids) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      // gone: its own dump says so
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (!NAMES.some((n) => target === n + DELETED)) continue;
      const id = idOf(`/proc/${pid}/fd/${fd}`);
      if (id) out.add(id);
    }
    for (const m of parseMaps(readFileSync(`/proc/${pid}/maps`, "utf8"))) {
      if (m.shared || !m.deleted || m.path !== "/dev/zero") continue;
      const id = idOf(`/proc/${pid}/map_files/${m.start.toString(16)}-${m.end.toString(16)}`);
      if (id) out.add(id);
    }
  }
  return out;
});

/** The shared anonymous object behind `via` (a map_files link of a shared mapping) is reached through an fd or a private mapping too. */
export function reachedOtherwise(run: DumpRun, via: string): boolean {
  const id = idOf(via);
  return id !== null && run.state(reached).has(id);
}
