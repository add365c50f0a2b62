// Finding a `syscall` instruction to run injected syscalls from, without
// writing anything into the task: the vDSO's fallback paths contain one (or
// the task's other code does), and
// the stub marks its own with a string.
import { readMemory } from "./memory.js";
import type { Gadget } from "./remote.js";

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

/** The stub's `syscall; int3`, found in its text by the marker. */
export function stubGadget(pid: number, text: { start: number; end: number }): Gadget {
  const code = readMemory(pid, text.start, text.end - text.start);
  const at = code.indexOf(STUB_MARKER);
  if (at < 0) throw new Error(`process ${pid} is not a crest stub (no gadget marker)`);
  return { addr: BigInt(text.start + at + STUB_MARKER.length), int3: true };
}
