// Loads the native binding (native/binding.c) and describes what it offers.
import { createRequire } from "node:module";
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
}

interface Native {
  syscall(nr: number, ...args: Arg[]): number;
  address(buf: ArrayBufferView | ArrayBuffer): number;
  aligned(size: number, align?: number): ArrayBuffer;
  cpuid(leaf: number, subleaf: number): [number, number, number, number];
  spawn(o: Omit<SpawnOptions, "setsid"> & { setsid?: number }): number;
}

/** The project's root directory (where package.json is), from dist/src/sys/. */
export const projectRoot = fileURLToPath(new URL("../../../", import.meta.url));

const require = createRequire(import.meta.url);
export const native: Native = require(`${projectRoot}build/crest_sys.node`);

/** Where the stub process binary is. */
export const stubPath = `${projectRoot}build/crest-stub`;
