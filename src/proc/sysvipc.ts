// /proc/sysvipc/{shm,sem,msg}: one row per SysV IPC object of the reader's
// IPC namespace, columns named by the header line. "perms" is octal.
import { ProcParseError } from "./error.js";

export type SysvipcRow = Record<string, bigint>;

export function parseSysvipc(text: string, file: string): SysvipcRow[] {
  const lines = text.split("\n").filter((l) => l.trim());
  if (!lines.length) throw new ProcParseError(file, "", "no header line");
  const cols = lines[0]!.trim().split(/\s+/);
  return lines.slice(1).map((line) => {
    const vals = line.trim().split(/\s+/);
    if (vals.length !== cols.length) throw new ProcParseError(file, line, `${vals.length} columns, expected ${cols.length}`);
    const row: SysvipcRow = {};
    cols.forEach((c, i) => {
      const v = vals[i]!;
      row[c] = c === "perms" ? BigInt(`0o${v}`) : BigInt(v);
    });
    return row;
  });
}
