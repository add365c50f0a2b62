// Every probe crest check knows, in the order a run reports them.
import type { Probe } from "./probe.js";
import { TASK_PROBES } from "./probes-task.js";
import { MEMORY_PROBES } from "./probes-memory.js";
import { SYSTEM_PROBES } from "./probes-system.js";
import { NET_PROBES } from "./probes-net.js";

export const PROBES: readonly Probe[] = [...TASK_PROBES, ...MEMORY_PROBES, ...SYSTEM_PROBES, ...NET_PROBES];

export function probeFor(id: string): Probe | undefined {
  return PROBES.find((p) => p.id === id);
}
