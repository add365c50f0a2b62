// Finding a `syscall` instruction to run injected syscalls from, without
// writing anything into the task: the vDSO's fallback paths contain one, and
// the stub marks its own with a string.
import { readMemory } from "./memory.js";
import type { Gadget } from "./remote.js";

/** The marker native/stub.c puts right before its `syscall; int3`. */
export const STUB_MARKER = "crest-syscall-gadget:";

/** The first `0f 05` (syscall) in the vDSO of pid, stepped with syscall stops. */
export function vdsoGadget(pid: number, vdso: { start: number; end: number }): Gadget {
  const code = readMemory(pid, vdso.start, vdso.end - vdso.start);
  for (let i = code.indexOf(0x0f); i >= 0 && i < code.length - 1; i = code.indexOf(0x0f, i + 1)) {
    if (code[i + 1] === 0x05) return { addr: BigInt(vdso.start + i), int3: false };
  }
  throw new Error(`no syscall instruction in the vDSO of process ${pid}`);
}

/** The stub's `syscall; int3`, found in its text by the marker. */
export function stubGadget(pid: number, text: { start: number; end: number }): Gadget {
  const code = readMemory(pid, text.start, text.end - text.start);
  const at = code.indexOf(STUB_MARKER);
  if (at < 0) throw new Error(`process ${pid} is not a crest stub (no gadget marker)`);
  return { addr: BigInt(text.start + at + STUB_MARKER.length), int3: true };
}
