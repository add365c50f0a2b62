// Pure parsers of /proc files: text (or bytes) in, typed objects out. They never
// read files; malformed input throws ProcParseError naming the file kind and line.
export { ProcParseError } from "./error.js";
export { parseMaps, parseMapsLine, type MapEntry, type MapProt } from "./maps.js";
export { lockedKb, mappingDifference, parseSmaps, sameMappings, vmFlagsToMadvise, vmFlagsToMapFlags, type SmapsEntry } from "./smaps.js";
export { parseStat, type ProcStat } from "./stat.js";
export { parseStatus, type ProcStatus, type StatusVm } from "./status.js";
export { parseLimits, RLIMIT, RLIMIT_NAMES, RLIM_INFINITY, type Rlimit } from "./limits.js";
export { parseFdinfo, type Fdinfo } from "./fdinfo.js";
export {
  parseEpollTarget, parseInotifyWatch, parseFanotifyHeader, parseFanotifyMark, parseTimespec,
  type EpollTarget, type EventfdInfo, type FanotifyInfo, type FanotifyMark, type FileHandle,
  type InotifyWatch, type PidfdInfo, type TimerfdInfo, type Timespec,
} from "./fdinfo-kinds.js";
export { parseFileLock, parseProcLocks, fileLockLength, type FileLock, type FileLockKind } from "./file-lock.js";
export { classifyFdLink, type FdLink, type AnonInodeName } from "./fdlink.js";
export { parseNsLink, matchNsLink, NS_KINDS, type NsLink, type NsKind } from "./nslink.js";
export { parseTimers, SIGEV, type PosixTimerInfo } from "./timers.js";
export { parseMountinfo, parseMountinfoLine, decodeOctalEscapes, type MountInfo, type MountOptionalField } from "./mountinfo.js";
export { parseAuxv, auxvGet, AT } from "./auxv.js";
export { parseChildren } from "./children.js";
export {
  parseComm, parsePersonality, parseTimerslackNs, parseLoginuid, parseOomScoreAdj, parsePidMax, LOGINUID_UNSET,
} from "./scalars.js";
export { parseCgroup, type CgroupMembership } from "./cgroup.js";
export {
  parseSysvipc, parseSysvShm, parseSysvSem, parseSysvMsg,
  type SysvipcRow, type SysvipcPerm, type SysvShm, type SysvSem, type SysvMsg,
} from "./sysvipc.js";
