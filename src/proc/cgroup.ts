// /proc/PID/cgroup: "HIERARCHY:CONTROLLERS:PATH" per line; cgroup v2 is "0::PATH",
// named v1 hierarchies list "name=NAME" among the controllers.
import { ProcParseError } from "./error.js";
import { decimal, lines } from "./numbers.js";

export interface CgroupMembership {
  hierarchyId: number;
  /** Empty for the v2 hierarchy. */
  controllers: string[];
  /** Relative to the reader's cgroup namespace root; may itself contain ':'. */
  path: string;
}

export function parseCgroup(text: string): CgroupMembership[] {
  return lines(text).map((line) => {
    const m = /^(\d+):([^:]*):(\/.*)$/.exec(line);
    if (!m) throw new ProcParseError("cgroup", line, "expected ID:CONTROLLERS:/PATH");
    return {
      hierarchyId: decimal("cgroup", line, m[1]),
      controllers: m[2] ? m[2].split(",") : [],
      path: m[3]!,
    };
  });
}
