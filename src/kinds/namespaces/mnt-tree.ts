// The mount tree of a mount namespace as criu keeps it (mnt_entry of
// mountpoints-N.img), and the facts the restore needs about it: which mount
// is the namespace's root, which mounts are binds of which, the order they
// can be put in place. Pure: no system calls here (mnt.ts does them).
import type { mnt_entry } from "../../images/index.js";
import type { MountInfo } from "../../proc/index.js";
import { MS } from "../../sys/constants.js";

/** criu's fstype numbers (images/mnt.proto). */
export const FSTYPE: Readonly<Record<string, number>> = {
  proc: 1, sysfs: 2, devtmpfs: 3, binfmt_misc: 4, tmpfs: 5, devpts: 6, simfs: 7, pstore: 8, securityfs: 9,
  fusectl: 10, debugfs: 11, cgroup: 12, aufs: 13, mqueue: 14, fuse: 15, overlay: 17, autofs: 18, tracefs: 19, cgroup2: 23,
};
export const FS_UNSUPPORTED = 0, FS_AUTO = 16, FS_TMPFS = 5, FS_DEVPTS = 6, FS_MQUEUE = 14, FS_DEVTMPFS = 3;

/** File systems crest mounts anew on restore (tmpfs with its contents); the rest only as binds of the root or external. */
export const MOUNTABLE: ReadonlySet<number> = new Set([1, 2, 3, 5, 6, 12, 14, 23, FS_AUTO]);

/** The file system's name: criu's for its numbers, the kernel's (kept at dump) for one crest does not mount. */
const unsupportedNames = new WeakMap<mnt_entry, string>();
export const fsName = (e: mnt_entry): string =>
  e.fstype === FS_AUTO ? e.fsname ?? "?" : Object.keys(FSTYPE).find((k) => FSTYPE[k] === e.fstype) ?? unsupportedNames.get(e) ?? `fstype ${e.fstype}`;

/** criu's kernel dev_t encoding (MKKDEV: major << 20 | minor), used for root_dev and tmpfs-dev-N. */
export const kdev = (major: number, minor: number): number => ((major << 20) | minor) >>> 0;

const PROPAGATION = MS.SHARED | MS.SLAVE | MS.PRIVATE | MS.UNBINDABLE;

/** Per-mount options to MS_* flags, as criu's parse_mnt_flags (no relatime nor noatime: strictatime). */
export function mountFlags(opts: string, what: string): number {
  const table: Record<string, number> = {
    rw: 0, ro: MS.RDONLY, nosuid: MS.NOSUID, nodev: MS.NODEV, noexec: MS.NOEXEC, noatime: MS.NOATIME,
    nodiratime: MS.NODIRATIME, relatime: MS.RELATIME, nosymfollow: MS.NOSYMFOLLOW,
  };
  let flags = 0;
  for (const o of opts.split(",")) {
    const f = table[o];
    if (f === undefined) throw new MountRefusal(`${what} has the mount option ${o}, which crest does not know how to set again`);
    flags |= f;
  }
  if (!(flags & (MS.RELATIME | MS.NOATIME))) flags |= MS.STRICTATIME;
  return flags;
}

/** Super block options: the flags criu keeps apart (ro, sync, dirsync, mand) and the rest as the options string. */
export function superFlags(opts: string): { flags: number; options: string } {
  const table: Record<string, number> = { rw: 0, ro: MS.RDONLY, sync: MS.SYNCHRONOUS, dirsync: MS.DIRSYNC, mand: MS.MANDLOCK };
  let flags = 0;
  const rest: string[] = [];
  for (const o of opts.split(",")) {
    const f = table[o];
    if (f === undefined) rest.push(o);
    else flags |= f;
  }
  return { flags, options: rest.join(",") };
}

/** A mount crest cannot keep: the dump stops and says which and why (kinds turn it into UnsupportedError). */
export class MountRefusal extends Error {}

/** path is root or under it. */
export function isSubPath(path: string, root: string): boolean {
  return root === "/" || path === root || path.startsWith(root.endsWith("/") ? root : `${root}/`);
}

/** path relative to root ("" for root itself); path must be under root. */
export function cutRoot(path: string, root: string): string {
  if (root === "/") return path.replace(/^\/+/, "");
  return path.slice(root.length).replace(/^\/+/, "");
}

/** The same super block as far as binding goes (criu's mounts_sb_equal). */
export const sameSb = (a: mnt_entry, b: mnt_entry): boolean =>
  a.root_dev === b.root_dev && a.fstype === b.fstype && a.source === b.source && a.options === b.options && (a.fsname ?? "") === (b.fsname ?? "");

/** mnt_entry of one mountinfo line (flags, sb_flags and options split as criu does). */
export function entryOf(m: MountInfo, fstype: number, extraOptions: string[] = []): mnt_entry {
  const what = `mount ${m.mntId} at ${m.mountPoint} (${m.fsType})`;
  let flags = mountFlags(m.mountOptions, what);
  if (m.shared !== undefined) flags |= MS.SHARED;
  if (m.master !== undefined) flags |= MS.SLAVE;
  if (m.unbindable) flags |= MS.UNBINDABLE;
  const sb = superFlags(m.superOptions);
  const options = [sb.options, ...extraOptions].filter((o) => o !== "").join(",");
  const e: mnt_entry = {
    fstype, mnt_id: m.mntId, root_dev: kdev(m.major, m.minor), parent_mnt_id: m.parentId, flags,
    root: m.root, mountpoint: m.mountPoint, source: m.source, options,
    shared_id: m.shared ?? 0, master_id: m.master ?? 0, sb_flags: sb.flags,
    ...(fstype === FS_AUTO ? { fsname: m.fsType } : {}),
  };
  if (fstype === FS_UNSUPPORTED) unsupportedNames.set(e, m.fsType);
  return e;
}

/** The mount flags a bind remount sets (propagation is set apart). */
export const mountOnlyFlags = (e: mnt_entry): number => e.flags & ~PROPAGATION;

/**
 * One peer group (mounts with the same shared_id and master_id), widest
 * root first; `outside`: its master group has no mount in the namespace,
 * and is taken from the mount --root (root) or an external mount (key) is
 * bound from.
 */
export interface PeerGroup {
  shared: number;
  master: number;
  mounts: mnt_entry[];
  outside?: { root: true } | { key: string };
}

/** How one mount comes back on restore. */
export type MountPlan =
  | { how: "root" }
  | { how: "new" }
  | { how: "bind"; from: number; sub: string }
  | { how: "external"; key: string; sub: string };

/**
 * The mount tree of one namespace: its root (the mount at "/" whose parent
 * is not in the namespace) and, for every mount, how it is made again:
 * the root from --root, a file system crest can mount anew, a bind of
 * another mount of the same super block (the root's, or one showing the
 * file system's root), or a bind of an external mount (ext_key). Throws
 * MountRefusal for what cannot be made.
 */
export class MountTree {
  readonly root: mnt_entry;
  readonly byId = new Map<number, mnt_entry>();
  readonly children = new Map<number, mnt_entry[]>();
  readonly plans = new Map<number, MountPlan>();

  constructor(readonly entries: readonly mnt_entry[]) {
    for (const e of entries) this.byId.set(e.mnt_id, e);
    const roots = entries.filter((e) => !this.byId.has(e.parent_mnt_id));
    if (roots.length !== 1 || roots[0]!.mountpoint !== "/") {
      throw new MountRefusal(`the mount namespace has ${roots.length} mounts whose parent is outside it (${roots.map((r) => `${r.mnt_id} at ${r.mountpoint}`).join(", ")}); crest needs exactly one, at /`);
    }
    this.root = roots[0]!;
    for (const e of entries) {
      if (e === this.root) continue;
      const list = this.children.get(e.parent_mnt_id) ?? [];
      list.push(e);
      this.children.set(e.parent_mnt_id, list);
    }
    for (const [parent, list] of this.children) {
      const seen = new Map<string, number>();
      for (const c of list) {
        const other = seen.get(c.mountpoint);
        if (other !== undefined) throw new MountRefusal(`mounts ${other} and ${c.mnt_id} are both mounted on ${c.mountpoint} of mount ${parent} (a propagation leftover); crest cannot restore that order, as criu cannot`);
        seen.set(c.mountpoint, c.mnt_id);
      }
    }
    for (const e of entries) this.plans.set(e.mnt_id, this.planOf(e));
  }

  private planOf(e: mnt_entry): MountPlan {
    const what = `mount ${e.mnt_id} at ${e.mountpoint} (${fsName(e)} ${e.source}, root ${e.root})`;
    if (e === this.root) return { how: "root" };
    if (e.ext_key !== undefined) {
      if (e.deleted) throw new MountRefusal(`${what} is an external mount whose source was removed; crest cannot bind it again`);
      return { how: "external", key: e.ext_key, sub: "" };
    }
    // A bind of an external mount (a sub-path of it, same super block).
    const ext = this.entries.find((x) => x.ext_key !== undefined && sameSb(x, e) && isSubPath(e.root, x.root));
    if (ext) return { how: "external", key: ext.ext_key!, sub: cutRoot(e.root, ext.root) };
    // A bind of a file or directory removed since: its source is made again for the bind, and removed after (mnt.ts).
    if (sameSb(e, this.root) && isSubPath(e.root, this.root.root)) return { how: "bind", from: this.root.mnt_id, sub: cutRoot(e.root, this.root.root) };
    if (e.root === "/") {
      // The first mount of a file system's root is mounted; the others are binds of it.
      const first = this.entries.find((x) => x.root === "/" && sameSb(x, e) && x.ext_key === undefined);
      if (first !== e) return { how: "bind", from: first!.mnt_id, sub: "" };
      if (!MOUNTABLE.has(e.fstype)) {
        throw new MountRefusal(`${what}: crest does not mount ${fsName(e)} file systems (it mounts proc, sysfs, devtmpfs, tmpfs, devpts, mqueue, cgroup, cgroup2, and what --enable-fs names); name it with --external mnt[${e.mountpoint}]:KEY on dump and --external mnt[KEY]:DIR on restore`);
      }
      return { how: "new" };
    }
    const src = this.entries.find((x) => x.root === "/" && sameSb(x, e) && x.ext_key === undefined);
    if (src) return { how: "bind", from: src.mnt_id, sub: cutRoot(e.root, "/") };
    throw new MountRefusal(`${what} is a bind mount of a file system the tree's mount namespace does not show from its root; name it with --external mnt[${e.mountpoint}]:KEY on dump and --external mnt[KEY]:DIR on restore`);
  }

  /**
   * Mounts in the order they can be put in place: parents before children,
   * and among siblings, one mounted on a path under another's mount point
   * before that other (which covers it).
   */
  order(): mnt_entry[] {
    const out: mnt_entry[] = [];
    const walk = (e: mnt_entry) => {
      out.push(e);
      const left = [...(this.children.get(e.mnt_id) ?? [])];
      const under = (x: mnt_entry, y: mnt_entry) => x.mountpoint !== y.mountpoint && isSubPath(x.mountpoint, y.mountpoint);
      const kids: mnt_entry[] = [];
      while (left.length) {
        // The first (in mountinfo order) that no other left is covered by.
        const i = left.findIndex((y) => !left.some((x) => under(x, y)));
        kids.push(left.splice(i, 1)[0]!);
      }
      for (const k of kids) walk(k);
    };
    walk(this.root);
    return out;
  }

  /**
   * Peer groups, parents before the groups that are their slaves: each
   * group's mounts (shared_id, master_id), widest root first. Throws for
   * a master outside the namespace.
   */
  groups(): PeerGroup[] {
    const map = new Map<string, PeerGroup>();
    for (const e of this.entries) {
      if (!e.shared_id && !e.master_id) continue;
      const k = `${e.shared_id ?? 0}:${e.master_id ?? 0}`;
      const g: PeerGroup = map.get(k) ?? { shared: e.shared_id ?? 0, master: e.master_id ?? 0, mounts: [] };
      g.mounts.push(e);
      map.set(k, g);
    }
    const all = [...map.values()];
    for (const g of all) g.mounts.sort((a, b) => a.root.length - b.root.length);
    const out: typeof all = [];
    const placed = new Set<typeof all[number]>();
    const place = (g: typeof all[number], depth: number) => {
      if (placed.has(g)) return;
      if (depth > all.length) throw new MountRefusal(`peer groups ${g.shared}/${g.master} form a cycle of masters`);
      if (g.master) {
        const parent = all.find((p) => p.shared === g.master);
        if (parent) place(parent, depth + 1);
        else {
          // A master outside: the restore takes it from the mount --root or an external mount is bound from (criu's mount-v2).
          const m = g.mounts[0]!;
          const via = [this.root, ...this.entries.filter((x) => x.ext_key !== undefined)]
            .find((x) => x.master_id === g.master && sameSb(x, m) && isSubPath(m.root, x.root));
          if (!via) throw new MountRefusal(`mount ${m.mnt_id} at ${m.mountpoint} is a slave of peer group ${g.master}, which has no mount in the tree's mount namespace (criu: "unreachable sharing"), nor is it bound from the root or an external mount that is a slave of that group too; crest cannot restore that master`);
          g.outside = via === this.root ? { root: true } : { key: via.ext_key! };
        }
      }
      placed.add(g);
      out.push(g);
    };
    for (const g of all) place(g, 0);
    return out;
  }
}
