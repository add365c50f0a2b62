// Which properties of each controller a dump keeps, as criu lists them:
// its built-in lists, then --cgroup-props TEXT and --cgroup-props-file FILE
// in criu's small YAML-like format, each controller's list merged into or
// replacing the one before. Pure: the caller reads the file.
//
//   "memory":
//    - "strategy": "merge"
//    - "properties": ["memory.high", "memory.max"]

/** Properties every v1 hierarchy has (criu's global list); cgroup.procs and tasks keep only their permissions. */
export const GLOBAL_V1_PROPS: readonly string[] = ["cgroup.clone_children", "notify_on_release", "cgroup.procs", "tasks"];
/** Properties every cgroup v2 directory has. */
export const GLOBAL_V2_PROPS: readonly string[] = [
  "cgroup.subtree_control", "cgroup.max.descendants", "cgroup.max.depth", "cgroup.freeze", "cgroup.type",
];

/** criu's built-in lists (memory.limit_in_bytes before memory.memsw.limit_in_bytes: the kernel wants that order). */
const BUILTIN = `"cpu":
 - "strategy": "replace"
 - "properties": ["cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.rt_period_us", "cpu.rt_runtime_us"]
"memory":
 - "strategy": "replace"
 - "properties": ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.swappiness", "memory.soft_limit_in_bytes", "memory.move_charge_at_immigrate", "memory.oom_control", "memory.use_hierarchy", "memory.kmem.limit_in_bytes", "memory.kmem.tcp.limit_in_bytes"]
"cpuset":
 - "strategy": "replace"
 - "properties": ["cpuset.cpus", "cpuset.mems", "cpuset.memory_migrate", "cpuset.cpu_exclusive", "cpuset.mem_exclusive", "cpuset.mem_hardwall", "cpuset.memory_spread_page", "cpuset.memory_spread_slab", "cpuset.sched_load_balance", "cpuset.sched_relax_domain_level"]
"blkio":
 - "strategy": "replace"
 - "properties": ["blkio.weight"]
"freezer":
 - "strategy": "replace"
 - "properties": []
"perf_event":
 - "strategy": "replace"
 - "properties": []
"net_cls":
 - "strategy": "replace"
 - "properties": ["net_cls.classid"]
"net_prio":
 - "strategy": "replace"
 - "properties": ["net_prio.ifpriomap"]
"pids":
 - "strategy": "replace"
 - "properties": ["pids.max"]
"devices":
 - "strategy": "replace"
 - "properties": ["devices.list"]
`;

export class CgroupPropsError extends Error {
  constructor(where: string, why: string) {
    super(`${where}: ${why}`);
    this.name = "CgroupPropsError";
  }
}

/** Controller name to the properties to dump. */
export type PropLists = Map<string, string[]>;

/** Parses one text in criu's format onto lists (merge appends, replace replaces). */
export function parseProps(text: string, where: string, into: PropLists = new Map()): PropLists {
  // One controller block: a quoted name and a colon, a strategy line, a properties line.
  const block = /\s*"([^"]+)"\s*:\s*\n\s*-\s*"strategy"\s*:\s*"([^"]*)"\s*\n\s*-\s*"properties"\s*:\s*\[([^\]]*)\]\s*(?:\n|$)/y;
  let at = 0;
  const rest = () => text.slice(at).trim();
  while (rest() !== "") {
    block.lastIndex = at;
    const m = block.exec(text);
    if (!m) throw new CgroupPropsError(where, `expected '"CONTROLLER":' then ' - "strategy": "merge|replace"' and ' - "properties": ["NAME", ...]' at ${JSON.stringify(text.slice(at, at + 40))}`);
    at = block.lastIndex;
    const [, name, strategy, list] = m;
    if (strategy !== "merge" && strategy !== "replace") throw new CgroupPropsError(where, `unknown strategy "${strategy}" for controller ${name}`);
    const props: string[] = [];
    const item = /\s*"([^"]+)"\s*(,|$)/y;
    const body = list!.trim();
    let i = 0;
    while (i < body.length) {
      item.lastIndex = i;
      const p = item.exec(body);
      if (!p) throw new CgroupPropsError(where, `bad property list for controller ${name}: [${list}]`);
      props.push(p[1]!);
      i = item.lastIndex;
    }
    if (strategy === "merge" && into.has(name!)) into.get(name!)!.push(...props);
    else into.set(name!, props);
  }
  return into;
}

/** criu's cgp_init: the built-in lists, then the option text, then the file's text. */
export function propLists(text?: string, file?: { path: string; text: string }): PropLists {
  const lists = parseProps(BUILTIN, "built-in cgroup properties");
  if (text) parseProps(text, "--cgroup-props", lists);
  if (file) parseProps(file.text, file.path, lists);
  return lists;
}

/**
 * Properties that cannot be set once the directory has children or tasks
 * (cpuset.cpus and .mems, which a task needs before it may enter): set as
 * soon as crest creates the directory, and only then.
 */
export const SPECIAL_PROPS: ReadonlySet<string> = new Set([
  "cpuset.cpus", "cpuset.mems", "devices.list", "memory.kmem.limit_in_bytes", "memory.swappiness", "memory.oom_control",
  "memory.use_hierarchy", "cgroup.type",
]);
