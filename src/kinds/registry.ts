// The kinds crest knows, in the order the pipelines run them. Each pipeline
// runs every hook a kind has at that hook's stage (kinds/context.ts), kinds
// in the order of these lists.
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
import { threadsKind } from "./task/threads.js";
import { schedKind } from "./task/sched.js";
import { filesKind } from "./files/fd-table.js";
import { fileLocksKind } from "./files/file-locks.js";
import { ttySessionKind } from "./files/tty-session.js";
import { pidNamespaceKind } from "./namespaces/pid.js";
import { utsNamespaceKind } from "./namespaces/uts.js";
import { ipcNamespaceKind } from "./namespaces/ipc.js";
import { mntNamespaceKind } from "./namespaces/mnt.js";
import { mqueueKind } from "./namespaces/mqueue.js";
import { cgroupKind, cgroupThreadsKind } from "./cgroup/cgroup.js";
import { netNamespaceKind } from "./namespaces/net.js";
import { timeNamespaceKind } from "./namespaces/time.js";
import { userNamespaceKind } from "./namespaces/user.js";

/**
 * The tree's own namespaces. On dump they are read once every task is
 * (finishDump); on restore they say how the root is created (plan) and are
 * filled right after it is born, before its memory attaches SysV segments
 * and maps files (the mounts first: the files are the namespace's).
 */
export const NAMESPACE_KINDS: readonly TaskKind[] = [userNamespaceKind, mntNamespaceKind, pidNamespaceKind, timeNamespaceKind, utsNamespaceKind, ipcNamespaceKind, mqueueKind, netNamespaceKind];

/**
 * Dump order: registers first (the thread's as seized; its rseq_cs was read
 * when its remote session opened, before any code ran in it); memory before the kinds that fill mm fields (creds:
 * dumpable, props: THP); creds before files (file owners carry uids); file
 * locks after the fd table (they are read off its fds).
 */
export const DUMP_KINDS: readonly TaskKind[] = [
  regsKind, memoryKind, credsKind, propsKind, schedKind, signalsKind, timersKind, rlimitsKind, seccompKind, fsKind, filesKind, fileLocksKind, ttySessionKind,
  cgroupKind, ...NAMESPACE_KINDS,
];

/**
 * Restore order: cgroups first as each task is born (its memory is charged
 * there, its children inherit them; their threads follow theirs once made);
 * memory as each task is born (it replaces the stub's
 * address space and sets up crest's scratch page; children inherit it);
 * then, once the tree exists, the threads (they share the scratch page);
 * files before fs (paths are opened from crest's root and cwd); everything
 * needing privileges before seccomp and creds drop them; registers (and
 * rseq) last.
 */
export const TASK_RESTORE_KINDS: readonly TaskKind[] = [
  cgroupKind, memoryKind, ttySessionKind, threadsKind, cgroupThreadsKind, filesKind, fileLocksKind, propsKind, schedKind, signalsKind, timersKind, fsKind, rlimitsKind, seccompKind, credsKind, regsKind,
];
