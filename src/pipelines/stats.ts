// --display-stats: the statistics criu prints after a dump or restore, on
// stdout (as log messages), in its words.
import type { Logger } from "../log.js";
import type { dump_stats_entry, restore_stats_entry } from "../images/index.js";
import { remoteCounters } from "../remote/counters.js";

const count = (n: bigint): string => `${n} (0x${n.toString(16)})`;

export function displayDumpStats(log: Logger, s: dump_stats_entry): void {
  log.msg("Displaying dump stats:");
  log.msg(`Freezing time: ${s.freezing_time} us`);
  log.msg(`Frozen time: ${s.frozen_time} us`);
  log.msg(`Memory dump time: ${s.memdump_time} us`);
  log.msg(`Memory write time: ${s.memwrite_time} us`);
  log.msg(`Memory pages scanned: ${count(s.pages_scanned)}`);
  log.msg(`Memory pages skipped from parent: ${count(s.pages_skipped_parent)}`);
  log.msg(`Memory pages written: ${count(s.pages_written)}`);
  log.msg(`Lazy memory pages: ${count(s.pages_lazy)}`);
  displayRemote(log);
}

/** crest's own lines: how much remote control the command took. */
function displayRemote(log: Logger): void {
  log.msg(`Injected syscalls: ${remoteCounters.syscalls}`);
  log.msg(`Ptrace stops: ${remoteCounters.stops}`);
}

export function displayRestoreStats(log: Logger, s: restore_stats_entry): void {
  log.msg("Displaying restore stats:");
  log.msg(`Pages compared: ${count(s.pages_compared)}`);
  log.msg(`Pages skipped COW: ${count(s.pages_skipped_cow)}`);
  if (s.pages_restored !== undefined) log.msg(`Pages restored: ${count(s.pages_restored)}`);
  log.msg(`Restore time: ${s.restore_time} us`);
  log.msg(`Forking time: ${s.forking_time} us`);
  displayRemote(log);
}
