// Reaching a cgroup hierarchy: crest mounts it where nothing sees it
// (fsopen/fsmount: a mount with no place in any tree, reached through
// /proc/self/fd/N and gone when the fd closes), as criu's open_cgroupfs,
// or takes it from a cgroup yard (--cgroup-yard: one directory per
// hierarchy, named as criu names them, mounted by the caller).
import { closeSync, existsSync } from "node:fs";
import { FSCONFIG, FSMOUNT_CLOEXEC, FSOPEN_CLOEXEC, SYS } from "../../sys/constants.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { yardName } from "./sets.js";

/** A hierarchy crest can reach: the directory of its root, and how to let it go. */
export interface Hierarchy {
  /** e.g. /proc/self/fd/23, or YARD/memory. */
  root: string;
  close(): void;
}

/** Mounts the hierarchy of a controller name ("memory", "cpu,cpuacct", "name=systemd", "" for v2) nowhere. */
export function mountHierarchy(name: string): Hierarchy {
  const what = name === "" ? "the cgroup2 hierarchy" : `the cgroup hierarchy ${name}`;
  const fs = check(native.syscall(SYS.fsopen, name === "" ? "cgroup2" : "cgroup", FSOPEN_CLOEXEC), `open ${what}`);
  try {
    if (name.startsWith("name=")) {
      check(native.syscall(SYS.fsconfig, fs, FSCONFIG.SET_STRING, "name", name.slice(5), 0), `name ${what}`);
    } else if (name !== "") {
      for (const c of name.split(",")) check(native.syscall(SYS.fsconfig, fs, FSCONFIG.SET_FLAG, c, null, 0), `ask for ${c} in ${what}`);
    }
    check(native.syscall(SYS.fsconfig, fs, FSCONFIG.CMD_CREATE, null, null, 0), `set up ${what}`);
    const mnt = check(native.syscall(SYS.fsmount, fs, FSMOUNT_CLOEXEC, 0), `mount ${what}`);
    return { root: `/proc/self/fd/${mnt}`, close: () => closeSync(mnt) };
  } finally {
    closeSync(fs);
  }
}

/**
 * The hierarchies of one run, each mounted once: from the yard when one is
 * given (criu: YARD/<controllers>, "unified" for v2), else mounted nowhere.
 */
export class Hierarchies {
  private readonly open = new Map<string, Hierarchy>();

  constructor(private readonly yard?: string) {}

  /** The root directory of the hierarchy holding these controllers (cnames of cgroup.img, or a /proc/PID/cgroup name split at ','). */
  rootOf(cnames: readonly string[]): string {
    const key = cnames.join(",");
    let h = this.open.get(key);
    if (!h) {
      const inYard = this.yard !== undefined ? `${this.yard}/${yardName(cnames)}` : undefined;
      if (inYard !== undefined && !existsSync(inYard)) {
        throw new Error(`--cgroup-yard ${this.yard}: ${inYard} does not exist; mount the ${key === "" ? "cgroup2" : key} hierarchy there first`);
      }
      h = inYard !== undefined ? { root: inYard, close: () => {} } : mountHierarchy(key);
      this.open.set(key, h);
    }
    return h.root;
  }

  closeAll(): void {
    for (const h of this.open.values()) h.close();
    this.open.clear();
  }
}
