// Every probe crest knows, in the order a check run reports them. The ids
// are typed: a fact is asked for by a name the compiler knows.
import { TASK_PROBES } from "./probes-task.js";
import { MEMORY_PROBES } from "./probes-memory.js";
import { SYSTEM_PROBES } from "./probes-system.js";
import { NET_PROBES } from "./probes-net.js";

export const PROBES = [...TASK_PROBES, ...MEMORY_PROBES, ...SYSTEM_PROBES, ...NET_PROBES] as const;

export type FactId = (typeof PROBES)[number]["id"];
