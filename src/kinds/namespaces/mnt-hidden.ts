// A mount the tree's namespace covers with another (a tmpfs overmounted):
// read through a helper, crest's stub, that enters the namespace, makes a
// private copy of it (unshare), takes the covering mounts off in the copy
// only, and copies the mount there with open_tree: crest gets the copy's
// fd. The tree's own namespace is not touched (criu does the same with a
// helper of its own). Mounts of the copy are told apart from the tree's by
// their place in the tree: parent, mount point, device and root; the one
// seen at the mount point is taken off until it is the mount itself.
import { closeSync, openSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { parseMountinfo, type MountInfo } from "../../proc/index.js";
import { AT_FDCWD, CLONE, MNT_DETACH, MS, O, PTRACE_O, SYS } from "../../sys/constants.js";
import { Stub } from "../../remote/stub.js";
import { errnoName } from "../../sys/errno.js";
import { takeFd } from "../sockets/unix.js";

const OPEN_TREE_CLONE = 1;

/** The mount id of what crest reaches at path (its fdinfo), or undefined. */
function mountAt(path: string): number | undefined {
  let fd: number;
  try {
    fd = openSync(path, O.PATH | O.CLOEXEC);
  } catch {
    return undefined;
  }
  try {
    const m = /^mnt_id:\s*(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"));
    return m ? Number(m[1]) : undefined;
  } finally {
    closeSync(fd);
  }
}

/** The copy's mount for each of the original's, matched from the root down by parent, mount point, device and root. */
function matchCopy(orig: MountInfo[], copy: MountInfo[]): Map<number, MountInfo> {
  const out = new Map<number, MountInfo>();
  const key = (m: MountInfo) => `${m.mountPoint}\0${m.major}:${m.minor}\0${m.root}`;
  const rootOf = (list: MountInfo[]) => list.find((m) => !list.some((p) => p.mntId === m.parentId));
  const o = rootOf(orig), c = rootOf(copy);
  if (!o || !c) return out;
  out.set(o.mntId, c);
  const used = new Set<number>([c.mntId]);
  const walk = (op: MountInfo, cp: MountInfo) => {
    for (const ok of orig.filter((m) => m.parentId === op.mntId && m !== op)) {
      const ck = copy.find((m) => m.parentId === cp.mntId && !used.has(m.mntId) && key(m) === key(ok));
      if (!ck) continue;
      used.add(ck.mntId);
      out.set(ok.mntId, ck);
      walk(ok, ck);
    }
  };
  walk(o, c);
  return out;
}

/**
 * crest's fd of a copy of mount `id` (mounted at `mountpoint`) of process
 * `pid`'s namespace, with no mounts on it; `what` names it in errors.
 */
export function copyHiddenMount(pid: number, id: number, mountpoint: string, what: string): number {
  const s = Stub.start({
    trace: PTRACE_O.TRACESYSGOOD | PTRACE_O.EXITKILL, scratch: 4096,
    spawnError: (e) => new Error(`cannot start a helper to read ${what}: ${errnoName(e)}`),
  });
  try {
    const r = s.remote();
    const call = (doing: string, nr: number, ...args: Array<number | bigint>) => r.call(`${doing} (helper ${s.pid}, reading ${what})`, nr, ...args);
    r.resetScratch();
    const ns = call("open the tree's mount namespace", SYS.openat, AT_FDCWD, r.putString(`/proc/${pid}/ns/mnt`), O.RDONLY | O.CLOEXEC, 0);
    call("enter it", SYS.setns, ns, CLONE.NEWNS);
    call("make a copy of it", SYS.unshare, CLONE.NEWNS);
    r.resetScratch();
    call("make the copy private", SYS.mount, 0, r.putString("/"), 0, MS.REC | MS.PRIVATE, 0);
    const orig = parseMountinfo(readFileSync(`/proc/${pid}/mountinfo`, "utf8"));
    const ancestors = new Set<number>();
    for (let m = orig.find((x) => x.mntId === id); m; m = orig.find((x) => x.mntId === m!.parentId)) ancestors.add(m.mntId);
    for (let round = 0; ; round++) {
      const copy = parseMountinfo(readFileSync(`/proc/${s.pid}/mountinfo`, "utf8"));
      const match = matchCopy(orig, copy);
      const mine = match.get(id);
      if (!mine) throw new Error(`${what}: its copy in the helper's mount namespace was not found`);
      const keep = new Set([...ancestors].map((a) => match.get(a)?.mntId));
      // The mount seen at the mount point (or, where the path is gone, at the deepest part of it that is there).
      let p = mountpoint;
      let top = mountAt(`/proc/${s.pid}/root${p}`);
      while (top === undefined && p !== "/") {
        p = dirname(p);
        top = mountAt(`/proc/${s.pid}/root${p}`);
      }
      if (top === mine.mntId) break;
      const cover = copy.find((m) => m.mntId === top);
      if (!cover || keep.has(top) || round > 64) throw new Error(`${what}: crest could not uncover it in a copy of the tree's mount namespace`);
      r.resetScratch();
      call(`take mount ${cover.mntId} at ${cover.mountPoint} off the copy`, SYS.umount2, r.putString(cover.mountPoint), MNT_DETACH);
    }
    r.resetScratch();
    const clone = call("copy it (open_tree)", SYS.open_tree, AT_FDCWD, r.putString(mountpoint), OPEN_TREE_CLONE | O.CLOEXEC);
    return takeFd(s.pid, clone, `the copy of ${what}`);
  } finally {
    s.kill();
  }
}
