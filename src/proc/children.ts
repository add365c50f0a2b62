// /proc/PID/task/TID/children: the pids of this thread's children, space-separated
// with a trailing space ("6059 6060 "), empty for none. Children of other threads
// of the same process are listed under those threads.
import { decimal } from "./numbers.js";

export function parseChildren(text: string): number[] {
  const t = text.trim();
  return t ? t.split(/\s+/).map((p) => decimal("children", text, p, "a pid")) : [];
}
