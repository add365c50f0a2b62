// The kinds crest knows, in the order the pipelines run them.
import type { TaskKind } from "./context.js";
import { regsKind } from "./task/regs.js";
import { memoryKind } from "./memory/memory.js";
import { credsKind } from "./task/creds.js";
import { propsKind } from "./task/props.js";
import { signalsKind } from "./task/signals.js";
import { timersKind } from "./task/timers.js";
import { rlimitsKind } from "./task/rlimits.js";
import { seccompKind } from "./task/seccomp.js";
import { fsKind } from "./task/fs.js";
import { filesKind } from "./files/fd-table.js";
import { threadsKind } from "./task/threads.js";
import { schedKind } from "./task/sched.js";
import { fileLocksKind } from "./files/file-locks.js";

/**
 * Dump order: registers first (they are the thread's as seized, before any
 * rseq fixup is lost); memory before the kinds that fill mm fields (creds:
 * dumpable, props: THP); creds before files (file owners carry uids).
 */
export const DUMP_KINDS: readonly TaskKind[] = [
  regsKind, memoryKind, credsKind, propsKind, schedKind, signalsKind, timersKind, rlimitsKind, seccompKind, fsKind, filesKind, fileLocksKind,
];

/**
 * Restore order: memory first (it replaces the stub's address space and
 * sets up crest's scratch page), then the threads (they share it); files
 * before fs (paths are opened from crest's root and cwd); everything needing
 * privileges before seccomp and creds drop them; registers (and rseq) last.
 */
export const RESTORE_KINDS: readonly TaskKind[] = [
  memoryKind, threadsKind, filesKind, fileLocksKind, fsKind, propsKind, schedKind, signalsKind, timersKind, rlimitsKind, seccompKind, credsKind, regsKind,
];
