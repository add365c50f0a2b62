// Loads the native binding (native/binding.c) and describes what it offers.
import { fileURLToPath } from "node:url";

/** A syscall argument: a number or bigint, a buffer (passed as its address), a string (as a C string) or null (0). */
export type Arg = number | bigint | ArrayBufferView | ArrayBuffer | string | null | undefined | boolean;

export interface SpawnOptions {
  path: string;
  argv: string[];
  env: string[];
  /** Ask for this exact PID (clone3 set_tid). */
  pid?: number;
  /** Extra clone flags, such as CLONE_NEWPID. */
  flags?: number;
  setsid?: boolean;
  /** fds[i] becomes fd i of the child; -1 leaves it closed. Everything else is closed. */
  fds?: number[];
  cwd?: string;
  /** With CLONE_NEWUSER: the child's uid_map and gid_map, written before it runs on as uid and gid 0 there. */
  uidMap?: string;
  gidMap?: string;
}

interface Native {
  syscall(nr: number, ...args: Arg[]): number;
  address(buf: ArrayBufferView | ArrayBuffer): number;
  aligned(size: number, align?: number): ArrayBuffer;
  cpuid(leaf: number, subleaf: number): [number, number, number, number];
  spawn(o: Omit<SpawnOptions, "setsid"> & { setsid?: number }): number;
}

let root: string | undefined;

/**
 * The project's root directory (where package.json is), with a trailing
 * slash: from this module's place in dist/src/sys/, or as the startup
 * snapshot's entry sets it (its code has no module URL).
 */
export function projectRoot(): string {
  root ??= fileURLToPath(new URL("../../../", import.meta.url));
  return root;
}

export function setProjectRoot(dir: string): void {
  root = dir.endsWith("/") ? dir : `${dir}/`;
}

let binding: Native | undefined;

/** The binding, loaded on first use (a startup snapshot is built without it). */
export const native: Native = {
  syscall: (nr, ...args) => load().syscall(nr, ...args),
  address: (buf) => load().address(buf),
  aligned: (size, align) => load().aligned(size, align),
  cpuid: (leaf, subleaf) => load().cpuid(leaf, subleaf),
  spawn: (o) => load().spawn(o),
};

function load(): Native {
  if (!binding) {
    // process.dlopen itself: require's module resolution costs ~2 ms a command, for one known path.
    const m = { exports: {} as Native };
    process.dlopen(m, `${projectRoot()}build/crest_sys.node`);
    binding = m.exports;
  }
  return binding;
}

/** Where the stub process binary is. */
export const stubPath = (): string => `${projectRoot()}build/crest-stub`;
