// What a probe is (one kernel fact, checked by doing the real thing on a
// small scale), and the small helpers probes share: raw syscalls whose
// failure becomes a readable reason, and syscall numbers and constants that
// src/sys/constants.ts does not have (x86_64 values from the uapi headers).
import { accessSync, closeSync, openSync, constants as fsc } from "node:fs";
import { native, type Arg } from "../sys/native.js";
import { ENOSYS, errnoName } from "../sys/errno.js";
import type { Category } from "./features.js";

/** Syscalls crest's own code does not make. */
export const XSYS = {
  mkdir: 83, mount: 165, io_setup: 206, io_destroy: 207, io_getevents: 208,
  userfaultfd: 323, move_mount: 429, openat2: 437,
} as const;

export const ENODEV = 19, ENOTTY = 25, ERANGE = 34, ENOPROTOOPT = 92;
export const SOCK_CLOEXEC = 0o2000000;

/** errno names src/sys/errno.ts does not list (socket errors). */
const MORE_ERRNO: Record<number, string> = { 92: "ENOPROTOOPT", 93: "EPROTONOSUPPORT", 94: "ESOCKTNOSUPPORT", 97: "EAFNOSUPPORT" };
export const errname = (e: number): string => MORE_ERRNO[e] ?? errnoName(e);

/** The kernel (or crest) lacks what a probe asked for; the message says what. */
export class Missing extends Error {
  constructor(message: string) {
    super(message);
    this.name = "Missing";
  }
}

export function missing(reason: string): never {
  throw new Missing(reason);
}

/**
 * Returns r, or fails the probe when r is -errno: "WHAT is not supported by
 * this kernel (ENOSYS)" for the errnos in `absent`, "WHAT failed: EPERM"
 * for the others.
 */
export function need(r: number, what: string, absent: readonly number[] = [ENOSYS]): number {
  if (r >= 0 || r <= -4096) return r;
  if (absent.includes(-r)) missing(`${what} is not supported by this kernel (${errname(-r)})`);
  missing(`${what} failed: ${errname(-r)}`);
}

export const sys = (nr: number, ...args: Arg[]): number => native.syscall(nr, ...args);

/** Closes fds made by raw syscalls (negative ones are skipped). */
export function closeFds(...fds: number[]): void {
  for (const fd of fds) if (fd >= 0) native.syscall(3 /* close */, fd);
}

/** Opens a path with node, failing the probe with the reason when it cannot. */
export function openOrMissing(path: string, flags: string, what: string): number {
  try {
    return openSync(path, flags);
  } catch (e) {
    missing(`${what}: cannot open ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

const SBIN = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/** A program crest runs (nft, iptables-restore), on PATH or in the sbin directories root's PATH may lack; undefined if none. */
export function programOnPath(name: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? "").split(":").filter(Boolean), ...SBIN]) {
    try {
      accessSync(`${dir}/${name}`, fsc.X_OK);
      return `${dir}/${name}`;
    } catch {
      // not here
    }
  }
  return undefined;
}

export function withFd<T>(fd: number, fn: (fd: number) => T): T {
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

export interface Probe {
  /** The fact's id: criu's feature name where the probe answers one, else crest's own name. */
  id: string;
  /** Which `crest check` runs include it. */
  category: Category;
  /** What cannot be done without it: "crest cannot find the pages to dump". */
  breaks: string;
  /**
   * Returns when the kernel has it, or a reason when there is nothing here
   * to check it on (no tun device, no AppArmor); throws (Missing, or any
   * error when the probe itself broke) when it does not work.
   */
  run(): void | string;
}
