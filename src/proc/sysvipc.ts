// /proc/sysvipc/{shm,sem,msg}: one row per SysV IPC object of the READER's IPC
// namespace (not the inspected process's: read it from inside that namespace),
// columns named by the header line. key is signed decimal, perms octal.
import { ProcParseError } from "./error.js";
import { decimal, decimalBig, lines, octal } from "./numbers.js";

/** Any table as text cells by column name, every row checked against the header. */
function table(text: string, file: string, need: readonly string[]): Array<{ line: string; cells: Map<string, string> }> {
  const rows = lines(text).filter((l) => l.trim());
  if (!rows.length) throw new ProcParseError(file, "", "no header line");
  const cols = rows[0]!.trim().split(/\s+/);
  const missing = need.filter((c) => !cols.includes(c));
  if (missing.length) throw new ProcParseError(file, rows[0]!, `no column ${missing.join(", ")}`);
  return rows.slice(1).map((line) => {
    const vals = line.trim().split(/\s+/);
    if (vals.length !== cols.length) throw new ProcParseError(file, line, `${vals.length} columns, expected ${cols.length}`);
    return { line, cells: new Map(cols.map((c, i) => [c, vals[i]!])) };
  });
}

export type SysvipcRow = Record<string, bigint>;

/** Any of the three tables, every column as a bigint ("perms" from octal). */
export function parseSysvipc(text: string, file: string): SysvipcRow[] {
  return table(text, file, ["key", "perms"]).map(({ line, cells }) => {
    const row: SysvipcRow = {};
    for (const [c, v] of cells) {
      if (c === "perms") row[c] = BigInt(octal(file, line, v, "octal perms"));
      else if (!/^-?\d+$/.test(v)) throw new ProcParseError(file, line, `column ${c}: ${JSON.stringify(v)} is not a number`);
      else row[c] = BigInt(v);
    }
    return row;
  });
}

/** Columns every table has: the ipc_perm of the object. */
export interface SysvipcPerm {
  /** The IPC key as a signed 32-bit number (IPC_PRIVATE is 0). */
  key: number;
  /** Mode bits (octal in the file). */
  perms: number;
  uid: number; gid: number; cuid: number; cgid: number;
}

export interface SysvShm extends SysvipcPerm {
  shmid: number;
  /** Bytes. */
  size: bigint;
  cpid: number; lpid: number; nattch: number;
  /** Seconds since the epoch (0: never). */
  atime: number; dtime: number; ctime: number;
  /** Resident and swapped bytes. */
  rss: bigint; swap: bigint;
}

export interface SysvSem extends SysvipcPerm {
  semid: number;
  nsems: number;
  otime: number; ctime: number;
}

export interface SysvMsg extends SysvipcPerm {
  msqid: number;
  /** Bytes queued, and messages queued. */
  cbytes: number; qnum: number;
  lspid: number; lrpid: number;
  stime: number; rtime: number; ctime: number;
}

const PERM = ["key", "perms", "uid", "gid", "cuid", "cgid"] as const;

function typed<T>(text: string, file: string, numbers: readonly string[], bigs: readonly string[]): T[] {
  return table(text, file, [...PERM, ...numbers, ...bigs]).map(({ line, cells }) => {
    const row: Record<string, number | bigint> = { perms: octal(file, line, cells.get("perms"), "octal perms") };
    for (const c of [...PERM.filter((p) => p !== "perms"), ...numbers]) row[c] = decimal(file, line, cells.get(c), c);
    for (const c of bigs) row[c] = decimalBig(file, line, cells.get(c), c);
    return row as T;
  });
}

export function parseSysvShm(text: string): SysvShm[] {
  return typed<SysvShm>(text, "sysvipc/shm", ["shmid", "cpid", "lpid", "nattch", "atime", "dtime", "ctime"], ["size", "rss", "swap"]);
}

export function parseSysvSem(text: string): SysvSem[] {
  return typed<SysvSem>(text, "sysvipc/sem", ["semid", "nsems", "otime", "ctime"], []);
}

export function parseSysvMsg(text: string): SysvMsg[] {
  return typed<SysvMsg>(text, "sysvipc/msg", ["msqid", "cbytes", "qnum", "lspid", "lrpid", "stime", "rtime", "ctime"], []);
}
