// Finding a `syscall` instruction to run injected syscalls from, without
// writing anything into the task: the vDSO's fallback paths contain one (or
// the task's other code does), and
// the stub marks its own with a string.
import { readMemory } from "./memory.js";
import type { Gadget } from "./remote.js";
import type { MapEntry } from "../proc/index.js";

/** The marker native/stub.c puts right before its `syscall; int3`. */
const STUB_MARKER = "crest-syscall-gadget:";

/**
 * The first `0f 05` (syscall) in the task's code, stepped with syscall
 * stops: the vDSO's when it has one (small, always there), else any other
 * executable mapping's (a task may unmap its vDSO).
 */
export function syscallGadget(pid: number, code: ReadonlyArray<{ start: number; end: number }>): Gadget {
  for (const region of code) {
    const bytes = readMemory(pid, region.start, region.end - region.start);
    for (let i = bytes.indexOf(0x0f); i >= 0 && i < bytes.length - 1; i = bytes.indexOf(0x0f, i + 1)) {
      if (bytes[i + 1] === 0x05) return { addr: BigInt(region.start + i), int3: false };
    }
  }
  throw new Error(`no syscall instruction in the code of process ${pid}`);
}

/** A task's gadget in its vDSO or other code, from its mappings; fails naming the task where it has none. */
export function taskGadget(pid: number, vmas: readonly MapEntry[]): Gadget {
  const vdso = vmas.filter((m) => m.path === "[vdso]");
  const code = vmas.filter((m) => m.prot.exec && m.prot.read && m.path !== "[vdso]" && m.path !== "[vsyscall]");
  if (!vdso.length && !code.length) throw new Error(`process ${pid} has no readable code mapped (no vDSO either); crest needs a syscall instruction in the task to run code in it`);
  return syscallGadget(pid, [...vdso, ...code]);
}

/** The stub's `syscall; int3`, found in its text by the marker. */
export function stubGadget(pid: number, text: { start: number; end: number }): Gadget {
  const code = readMemory(pid, text.start, text.end - text.start);
  const at = code.indexOf(STUB_MARKER);
  if (at < 0) throw new Error(`process ${pid} is not a crest stub (no gadget marker)`);
  return { addr: BigInt(text.start + at + STUB_MARKER.length), int3: true };
}
