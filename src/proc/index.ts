// Pure parsers of /proc files: text (or bytes) in, typed objects out.
export { ProcParseError } from "./error.js";
export { parseMaps, parseSmaps, vmFlagsToMadvise, type MapEntry, type SmapsEntry } from "./maps.js";
export { parseStat, type ProcStat } from "./stat.js";
export { parseStatus, type ProcStatus } from "./status.js";
export { parseLimits, RLIMIT_NAMES, RLIM_INFINITY, type Rlimit } from "./limits.js";
export { parseFdinfo, type Fdinfo } from "./fdinfo.js";
export { classifyFdLink, type FdLink } from "./fdlink.js";
export { parseTimers, type PosixTimerInfo } from "./timers.js";
export { parseAuxv } from "./auxv.js";
export { parseSysvipc, type SysvipcRow } from "./sysvipc.js";
