// The mount namespace: a tree with its own is dumped as criu's
// mountpoints-N.img (one mnt_entry per line of the root's mountinfo, see
// mnt-tree.ts) with each tmpfs's files in tmpfs-dev-N.tar.gz (criu runs tar
// for it; so does crest). Restore, as criu's mount-v2 does it, inside the
// root right after it is born (CLONE_NEWNS: a copy of crest's mounts, made
// private first): every mount is first made apart ("plain") in a tmpfs yard
// (the root a bind of --root, file systems mounted anew with their options,
// tmpfs contents untarred, binds from the plain mount of their source, which
// has no children yet, external mounts from the directory --external names),
// then moved into place parents first, the root pivoted to, and peer groups
// and masters set last (MOVE_MOUNT_SET_GROUP, mount_setattr) on fds of the
// mounts. crest reaches the namespace's files through /proc/PID/root.
import { closeSync, existsSync, fstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, realpathSync, rmdirSync, statSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { basename, dirname, join, resolve } from "node:path";
import type { DumpRun, DumpTask, RestoreRun, RestoreTask, TaskKind } from "../context.js";
import { UnsupportedError, restoreState } from "../context.js";
import { IMG, type mnt_entry } from "../../images/index.js";
import { parseMountinfo } from "../../proc/index.js";
import { AT_EMPTY_PATH, AT_FDCWD, AT_REMOVEDIR, CLONE, MNT_DETACH, MOVE_MOUNT, MS, O, OPEN_TREE_CLONE, SYS } from "../../sys/constants.js";
import { RemoteError } from "../../remote/remote.js";
import { check, EINVAL, EPERM } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { externalMount } from "../../options.js";
import { runAsUsernsRoot, mountOptionsInside } from "./user.js";
import { passFd } from "../files/inherit.js";
import { isTreeMqueueMount } from "./mqueue.js";
import { ownedAtRestore } from "./owned.js";
import { takeFd } from "../sockets/unix.js";
import { copyHiddenMount } from "./mnt-hidden.js";
import { makePtyForMount } from "../files/tty.js";

import {
  FS_AUTO, FS_BINFMT_MISC, FS_DEVPTS, FS_MQUEUE, FS_TMPFS, FSTYPE, MountRefusal, MountTree, autodetectExternal, cutRoot, entryOf, fsName, isSubPath, kdev,
  mountOnlyFlags,
} from "./mnt-tree.js";

const TAR_CREATE = ["--create", "--gzip", "--no-unquote", "--no-wildcards", "--one-file-system", "--check-links", "--preserve-permissions", "--sparse", "--numeric-owner"];
const TAR_EXTRACT = ["--extract", "--gzip", "--no-unquote", "--no-wildcards"];

/** The mount id of an fd of crest's (its fdinfo). */
function mntIdOf(fd: number): number {
  const m = /^mnt_id:\s*(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"));
  return m ? Number(m[1]) : -1;
}

/** dev_t of crest's own /dev/pts and /dev: a devpts of another instance was mounted with newinstance. */
function devOf(path: string): number | undefined {
  try {
    const st = statSync(path);
    return kdev(Math.floor(st.dev / 256) & 0xfff, (st.dev & 0xff) | ((st.dev >> 12) & 0xfff00));
  } catch {
    return undefined;
  }
}

/** The mounts of the root's namespace as mnt_entry, refusing what crest cannot make again. */
function readMounts(run: DumpRun, pid: number, nested = false): mnt_entry[] {
  const byMountpoint = new Map<string, string>();
  for (const e of run.opts.external) {
    const m = externalMount(e);
    if (m) byMountpoint.set(m.key, m.val);
  }
  const enabled = (name: string) => run.opts.mnt.enableFs.some((n) => n === name || n === "all");
  const fstypeOf = (name: string) => FSTYPE[name] ?? (enabled(name) ? FS_AUTO : 0);
  const hostPts = devOf("/dev/pts");
  const out: mnt_entry[] = [];
  for (const m of parseMountinfo(readFileSync(`/proc/${pid}/mountinfo`, "utf8"))) {
    if (run.opts.mnt.skip.includes(m.mountPoint)) {
      run.log.info(`skipping mount ${m.mntId} at ${m.mountPoint} (--skip-mnt)`);
      continue;
    }
    const name = m.fsType.split(".")[0]!;
    // criu leaves tracefs out: the kernel mounts it under debugfs by itself.
    if (name === "tracefs") continue;
    const fstype = fstypeOf(name);
    const extra = fstype === FS_DEVPTS && kdev(m.major, m.minor) !== hostPts ? ["newinstance"] : [];
    const e = entryOf(m, fstype, extra);
    // The kernel marks a bind whose source was removed (criu's strip_deleted).
    for (const mark of [" (deleted)", "//deleted"]) {
      if (e.root.length > mark.length && e.root.endsWith(mark)) {
        e.root = e.root.slice(0, -mark.length);
        e.deleted = true;
      }
    }
    // --external names mount points of the tree's own namespace (criu's); a nested one's copy of such a mount is bound from it.
    const key = nested ? undefined : byMountpoint.get(m.mountPoint);
    if (key !== undefined) {
      if (key === "") throw new UnsupportedError(`mount ${m.mntId} at ${m.mountPoint} of process ${pid}: --external mnt[${m.mountPoint}]: gives it no name; give mnt[${m.mountPoint}]:KEY`);
      e.ext_key = key;
    }
    out.push(e);
  }
  if (run.opts.mnt.autoExternal && !nested) {
    const root = out.find((e) => !out.some((p) => p.mnt_id === e.parent_mnt_id));
    const found = autodetectExternal(out, ownMounts(fstypeOf), root?.mnt_id ?? -1, { sharing: run.opts.mnt.externalSharing, masters: run.opts.mnt.externalMasters });
    for (const e of found) run.log.info(`autodetected external mount /${e.source} for ${e.mountpoint} (${e.mnt_id})${e.internal_sharing ? ", its sharing internal" : ""}`);
  }
  return out;
}

/** crest's own mounts as mnt_entry, for --ext-mount-map auto (one with options crest does not know is left out: it matches nothing). */
function ownMounts(fstypeOf: (name: string) => number): mnt_entry[] {
  const out: mnt_entry[] = [];
  for (const m of parseMountinfo(readFileSync("/proc/self/mountinfo", "utf8"))) {
    try {
      out.push(entryOf(m, fstypeOf(m.fsType.split(".")[0]!)));
    } catch (e) {
      if (!(e instanceof MountRefusal)) throw e;
    }
  }
  return out;
}

/** Whether fd (crest's) shows mount `id`. */
function opensMount(path: string, id: number): number | undefined {
  let fd: number;
  try {
    fd = openSync(path, O.RDONLY | O.DIRECTORY | O.CLOEXEC);
  } catch {
    return undefined;
  }
  if (mntIdOf(fd) === id) return fd;
  closeSync(fd);
  return undefined;
}

/**
 * tmpfs-dev-N.tar.gz of one tmpfs, as criu's tar makes it, from a clean
 * copy of the first of its mounts that shows its root (open_tree's clone,
 * made by the root task in its namespace: no mounts on it, so files under
 * mount points are seen too).
 */
function dumpTmpfs(run: DumpRun, task: DumpTask, tree: MountTree, e: mnt_entry): void {
  const pid = task.pid;
  const mounts = tree.entries.filter((x) => x.root === "/" && x.root_dev === e.root_dev);
  const visible = mounts.find((m) => {
    const fd = opensMount(`/proc/${pid}/root${m.mountpoint}`, m.mnt_id);
    if (fd !== undefined) closeSync(fd);
    return fd !== undefined;
  });
  if (!visible) {
    // Covered by other mounts: read through a helper's copy of the namespace.
    const what = `tmpfs mount ${e.mnt_id} at ${e.mountpoint} of process ${pid}`;
    if (e.flags & MS.UNBINDABLE) throw new UnsupportedError(`${what} is unbindable and covered by another mount, so crest cannot read its files`);
    return tarTmpfs(run, e, copyHiddenMount(pid, e.mnt_id, e.mountpoint, what));
  }
  const r = task.remotes[0]!;
  r.resetScratch();
  const clone = r.syscall(SYS.open_tree, AT_FDCWD, r.putString(visible.mountpoint), OPEN_TREE_CLONE | O.CLOEXEC);
  let fd: number;
  if (clone === -EINVAL && visible.flags & MS.UNBINDABLE) {
    // An unbindable mount cannot be copied: its files as the mount shows them (those under mounts on it are not seen).
    fd = opensMount(`/proc/${pid}/root${visible.mountpoint}`, visible.mnt_id)!;
    run.log.warn(`tmpfs mount ${visible.mnt_id} at ${visible.mountpoint} is unbindable: its files are read through its mount point, files under mounts on it are not kept`);
  } else if (clone === -EPERM) {
    // A task without CAP_SYS_ADMIN (a container's) cannot copy it: crest's helper does, in a copy of the namespace.
    return tarTmpfs(run, e, copyHiddenMount(pid, visible.mnt_id, visible.mountpoint, `tmpfs mount ${visible.mnt_id} at ${visible.mountpoint} of process ${pid}`));
  } else {
    if (clone < 0) throw new RemoteError(`copy tmpfs mount ${visible.mnt_id} at ${visible.mountpoint} in process ${pid} (open_tree)`, -clone);
    try {
      fd = takeFd(r.pid, clone, `the copy of tmpfs mount ${visible.mnt_id}`);
    } finally {
      r.call(`close the copy of tmpfs mount ${visible.mnt_id} in process ${pid}`, SYS.close, clone);
    }
  }
  tarTmpfs(run, e, fd);
}

/** tar of the tmpfs crest's fd shows, into tmpfs-dev-N.tar.gz.img; closes fd. */
function tarTmpfs(run: DumpRun, e: mnt_entry, fd: number): void {
  try {
    // In the tree's own user namespace, tar runs there: owners as it sees them.
    const [cmd, ...pre] = run.ownNamespaces.has("user") ? runAsUsernsRoot(run.root.pid) : [];
    const tar = [...pre, "tar", ...TAR_CREATE, "--directory", "/proc/self/fd/0", "."];
    const r = spawnSync(cmd ?? tar.shift()!, tar, { stdio: [fd, "pipe", "pipe"], maxBuffer: 1 << 30 });
    if (r.error || r.status !== 0) throw new Error(`tar of the tmpfs at ${e.mountpoint} (mount ${e.mnt_id}) failed: ${r.error?.message ?? r.stderr.toString().trim()}`);
    run.images.write(IMG.tmpfsDev, e.root_dev, r.stdout);
  } finally {
    closeSync(fd);
  }
}

/**
 * One mount namespace of the tree into mountpoints-ID.img, read from
 * `task`, the first task in it; `outer`: for a nested one, the mounts of the
 * namespace it was made from. Returns its mounts.
 */
function dumpNamespace(run: DumpRun, task: DumpTask, id: number, outer: readonly mnt_entry[] | undefined, tarred: Set<number>): mnt_entry[] {
  const pid = task.pid;
  const which = outer ? `the nested mount namespace ${id} of process ${pid}` : `the mount namespace of process ${pid}`;
  let tree: MountTree;
  try {
    tree = new MountTree(readMounts(run, pid, outer !== undefined), outer);
    tree.groups();
  } catch (e) {
    if (e instanceof MountRefusal) throw new UnsupportedError(`${which}: ${e.message}`);
    throw e;
  }
  for (const e of tree.entries) {
    if (tree.plans.get(e.mnt_id)!.how !== "new") continue;
    if (e.fstype === FS_TMPFS && !tarred.has(e.root_dev)) {
      dumpTmpfs(run, task, tree, e);
      tarred.add(e.root_dev);
    } else if (e.fstype === FS_MQUEUE && !isTreeMqueueMount(run, e.root_dev)) {
      // The queues of the tree's own IPC namespace are kept (mqueue.ts); a mount of another namespace's is kept only empty, as criu.
      const names = mountEntries(pid, e);
      if (names === undefined || names.length) {
        throw new UnsupportedError(`mqueue mount ${e.mnt_id} at ${e.mountpoint} of process ${pid}, of an IPC namespace that is not the tree's own, ${names ? `holds the queues ${names.join(", ")}` : "cannot be read (overmounted)"}; crest keeps the queues of the tree's own IPC namespace only (start the tree with one: crest run --ns pid,ipc,mnt), and an empty mqueue file system otherwise`);
      }
    } else if (e.fstype === FS_BINFMT_MISC && run.ownNamespaces.has("user")) {
      // The instance of the tree's own user namespace (the kernel's is shared and keeps its entries across the restore):
      // a new one comes back empty; criu dumps its entries, crest does not yet.
      const names = mountEntries(pid, e)?.filter((n) => n !== "register" && n !== "status");
      if (names === undefined || names.length) {
        throw new UnsupportedError(`binfmt_misc mount ${e.mnt_id} at ${e.mountpoint} of process ${pid}, its user namespace's own, ${names ? `holds the entries ${names.join(", ")}` : "cannot be read (overmounted)"}; crest keeps only an empty one there`);
      }
    }
  }
  run.images.write(IMG.mnts, id, tree.entries);
  run.log.info(`${which}: ${tree.entries.length} mounts`);
  return tree.entries as mnt_entry[];
}

/**
 * The root's namespace, then each nested one (a task that unshared
 * CLONE_NEWNS, and its children) from its first task, in tree order: the
 * namespace it was made from (its parent's) is dumped before it. mnt_ids are
 * the kernel's, unique across namespaces, as criu keeps them.
 */
function dumpMounts(run: DumpRun): void {
  const tarred = new Set<number>();
  const rootId = run.root.ids.mnt_ns_id!;
  const trees = new Map<number, mnt_entry[]>([[rootId, dumpNamespace(run, run.root, rootId, undefined, tarred)]]);
  const byVpid = new Map(run.tasks.map((t) => [t.vpid, t]));
  for (const t of run.tasks) {
    const id = t.ids.mnt_ns_id;
    if (t.zombie || id === undefined || trees.has(id)) continue;
    const parentId = byVpid.get(t.vppid)?.ids.mnt_ns_id;
    const outer = parentId === undefined ? undefined : trees.get(parentId);
    if (!outer) throw new UnsupportedError(`process ${t.pid} is in the mount namespace ${id}, made from one (${parentId ?? "?"}) that no task of the tree dumped before it is in; crest cannot tell what it was made from`);
    trees.set(id, dumpNamespace(run, t, id, outer, tarred));
  }
}

/** The names in mount e of the tree's (through process pid), undefined if crest cannot reach that mount. */
function mountEntries(pid: number, e: mnt_entry): string[] | undefined {
  const fd = opensMount(`/proc/${pid}/root${e.mountpoint}`, e.mnt_id);
  if (fd === undefined) return undefined;
  try {
    return readdirSync(`/proc/self/fd/${fd}`);
  } finally {
    closeSync(fd);
  }
}

// ---- restore

/** The mounts of namespace `id` (the root's by default); `outer` for a nested one: the mounts of the namespace it was made from. */
function treeOf(run: RestoreRun, id = run.tasks[0]!.ids.mnt_ns_id!, outer?: readonly mnt_entry[]): MountTree {
  const entries = run.images.read(IMG.mnts, id);
  try {
    return new MountTree(entries, outer);
  } catch (e) {
    if (e instanceof MountRefusal) throw run.images.invalid(IMG.mnts, id, e.message);
    throw e;
  }
}

function restoreExternals(run: RestoreRun): Map<string, string> {
  const map = new Map<string, string>();
  for (const e of run.opts.external) {
    const m = externalMount(e);
    // A relative directory is taken from /, as criu's restore binds it (its working directory then is /;
    // zdtm's mnt_root_ext passes one). An empty VAL (LXC's "console:") is kept empty: checkPlan refuses it
    // where a mount needs it.
    if (m) map.set(m.key, m.val === "" ? "" : resolve("/", m.val));
  }
  return map;
}

/** Every nested mount namespace with the first task in it, in tree order, and the namespace it is made from (its parent's). */
function nestedNamespaces(run: RestoreRun): Array<{ id: number; task: RestoreTask; outerId: number }> {
  const rootId = run.tasks[0]!.ids.mnt_ns_id;
  const seen = new Set<number | undefined>([rootId]);
  const out: Array<{ id: number; task: RestoreTask; outerId: number }> = [];
  for (const t of run.tasks.slice(1)) {
    const id = t.ids.mnt_ns_id;
    if (id === undefined || seen.has(id)) continue;
    seen.add(id);
    out.push({ id, task: t, outerId: (t.parent ?? run.tasks[0]!).ids.mnt_ns_id! });
  }
  return out;
}

/** The trees of the nested namespaces, each with the mounts of the one it is made from; refuses what cannot be made. */
function nestedTrees(run: RestoreRun): Map<number, MountTree> {
  const entries = new Map<number, readonly mnt_entry[]>([[run.tasks[0]!.ids.mnt_ns_id!, treeOf(run).entries]]);
  const out = new Map<number, MountTree>();
  for (const n of nestedNamespaces(run)) {
    const outer = entries.get(n.outerId);
    if (!outer) throw run.images.invalid(IMG.mnts, n.id, `process ${n.task.vpid} is in mount namespace ${n.id}, made from namespace ${n.outerId}, which no task before it is in`);
    const tree = treeOf(run, n.id, outer);
    entries.set(n.id, tree.entries);
    out.set(n.id, tree);
  }
  return out;
}

function checkTmpfs(run: RestoreRun, tree: MountTree): void {
  for (const e of tree.entries) {
    if (tree.plans.get(e.mnt_id)!.how === "new" && e.fstype === FS_TMPFS && !run.images.exists(IMG.tmpfsDev, e.root_dev) && !run.images.exists(IMG.tmpfsImg, e.mnt_id)) {
      throw run.images.invalid(IMG.tmpfsDev, e.root_dev, `the files of tmpfs mount ${e.mnt_id} at ${e.mountpoint} are missing`);
    }
  }
}

function checkPlan(run: RestoreRun): void {
  const tree = treeOf(run);
  for (const [id, nested] of nestedTrees(run)) {
    try {
      nested.groups();
    } catch (e) {
      if (e instanceof MountRefusal) throw run.images.invalid(IMG.mnts, id, e.message);
      throw e;
    }
    checkTmpfs(run, nested);
  }
  if (run.opts.mnt.root === undefined) {
    throw new Error("the tree has its own mount namespace: give --root DIR, the directory its root mount is restored from (criu needs it too)");
  }
  const ext = restoreExternals(run);
  for (const e of tree.entries) {
    const p = tree.plans.get(e.mnt_id)!;
    if (p.how === "external" && !ext.get(p.key)) {
      throw new Error(`mount ${e.mnt_id} at ${e.mountpoint} is the external mount ${p.key}: give --external mnt[${p.key}]:DIR (the directory to bind there)`);
    }
    if (p.how === "auto" && !run.opts.mnt.autoExternal) {
      throw new Error(`mount ${e.mnt_id} at ${e.mountpoint} is an autodetected external mount (of ${p.dir}); restore with --ext-mount-map auto to bind it from there, as criu asks`);
    }
  }
  checkTmpfs(run, tree);
  tree.groups();
}

/**
 * Builds a namespace's mounts inside `task` and makes them its namespace
 * (see the top of this file): the tree's own in the root, a nested one in
 * the first task in it, which has just unshared it (`nested`: its id).
 */
function buildMounts(task: RestoreTask, run: RestoreRun, tree: MountTree, nested?: { id: number; outerId: number }): void {
  const r = task.remotes[0]!;
  const ext = restoreExternals(run);
  const rootDir = resolve(run.opts.mnt.root!);
  /** crest's way to a path of the task's mount namespace. */
  const view = (p: string) => `/proc/${task.pid}/root${p}`;
  const which = nested === undefined ? "the restored mount namespace" : `the nested mount namespace ${nested.id} of process ${task.vpid}`;
  const outerId = nested?.outerId;
  /** A nested namespace's mounts shown by the one it was made from: the task's fds of them, opened before the yard covers anything. */
  const outerFds = new Map<number, { fd: number; dir: boolean; path: string }>();
  let yard: string;
  if (nested === undefined) {
    yard = mkdtempSync("/tmp/.crest-mntns-");
    const made = yard;
    run.cleanup.push(() => {
      try {
        rmdirSync(made);
      } catch {
        // already gone
      }
    });
  } else {
    // The task sees the namespace it was made from (a copy): the yard goes on a directory there, which the pivot takes away with the rest.
    const at = ["/tmp", "/mnt", "/run", "/dev", "/proc", "/sys", "/home", "/var"].find((d) => {
      try {
        return statSync(view(d)).isDirectory();
      } catch {
        return false;
      }
    });
    if (at === undefined) throw new Error(`${which}: the namespace it is made from has none of /tmp, /mnt, /run, /dev, /proc, /sys, /home, /var to put crest's yard on`);
    yard = at;
  }
  const plain = (e: mnt_entry) => `${yard}/${e.mnt_id}`;
  const what = (e: mnt_entry) => `mount ${e.mnt_id} at ${e.mountpoint} (${fsName(e)})`;
  const mount = (doing: string, src: string | null, target: string, fstype: string | null, flags: number, data: string | null) => {
    r.resetScratch();
    r.call(doing, SYS.mount, src === null ? 0 : r.putString(src), r.putString(target), fstype === null ? 0 : r.putString(fstype), flags, data === null ? 0 : r.putString(data));
  };
  const fds = new Map<number, number>();
  /** Where an external mount (given or auto-detected) is bound from, in crest's namespace. */
  const externalDir = (e: mnt_entry): string => {
    const p = tree.plans.get(e.mnt_id)!;
    return p.how === "auto" ? p.dir : ext.get(e.ext_key!)!;
  };
  /** Sources of binds of removed files made again, in the order made: crest's fd of the directory holding each, its name. */
  const remade: Array<{ dir: number; name: string; isDir: boolean }> = [];
  const removeMadeSources = () => {
    for (const m of remade.splice(0).reverse()) {
      check(native.syscall(SYS.unlinkat, m.dir, m.name, m.isDir ? AT_REMOVEDIR : 0), `remove ${m.name} again (made for a bind of it, which was removed when dumped)`);
      closeSync(m.dir);
    }
  };
  run.cleanup.push(() => {
    try {
      removeMadeSources();
    } catch {
      // best effort: the restore has failed already
    }
  });
  const openMount = (e: mnt_entry, path: string) => {
    r.resetScratch();
    fds.set(e.mnt_id, r.call(`open ${what(e)}`, SYS.openat, AT_FDCWD, r.putString(path), O.PATH | O.CLOEXEC, 0));
  };
  // The memory kind, next, keeps this scratch page or replaces it.
  r.needScratch();
  try {
    mount(`make ${which} private`, null, "/", null, MS.REC | MS.PRIVATE, null);
    for (const e of tree.entries) {
      const p = tree.plans.get(e.mnt_id)!;
      if (p.how !== "outer") continue;
      const from = tree.outer!.find((x) => x.mnt_id === p.from)!;
      const path = join(from.mountpoint, p.sub);
      let dir: boolean;
      try {
        dir = statSync(view(path)).isDirectory();
      } catch (err) {
        throw new Error(`${what(e)}: its source ${path} (mount ${from.mnt_id}) is missing in the namespace it is made from (${(err as Error).message})`);
      }
      r.resetScratch();
      outerFds.set(e.mnt_id, { fd: r.call(`open ${path}, the source of ${what(e)}`, SYS.openat, AT_FDCWD, r.putString(path), O.PATH | O.CLOEXEC, 0), dir, path });
    }
    mount(`mount a tmpfs yard at ${yard}`, "crest-yard", yard, "tmpfs", 0, "mode=0700");

    // 1. Every mount apart, sources before the binds made from them.
    const made = new Set<number>();
    const pending = tree.order();
    while (pending.length) {
      const i = pending.findIndex((e) => {
        const p = tree.plans.get(e.mnt_id)!;
        // A removed source is made again as its mount point is: a file or a directory (the parent shows which).
        return p.how !== "bind" || (made.has(p.from) && (!e.deleted || made.has(e.parent_mnt_id)));
      });
      const e = pending.splice(i, 1)[0]!;
      makePlain(e);
      made.add(e.mnt_id);
    }

    // 2. Into place, parents first (a covered sibling before the one covering it).
    const top = plain(tree.root);
    openMount(tree.root, top);
    for (const e of tree.order().slice(1)) {
      const to = `${top}${e.mountpoint}`;
      r.resetScratch();
      try {
        r.call(`move ${what(e)} into place`, SYS.move_mount, AT_FDCWD, r.putString(plain(e)), AT_FDCWD, r.putString(to), 0);
      } catch (err) {
        if (err instanceof RemoteError && err.errno === 2) throw new Error(`${what(e)}: its mount point does not exist in mount ${e.parent_mnt_id} as restored (the directory or file must be there, as it was when dumped)`);
        throw err;
      }
      openMount(e, to);
    }

    // 3. The namespace's root: the old one goes, with the yard.
    r.resetScratch();
    r.call("change to the restored root", SYS.chdir, r.putString(top));
    r.call("pivot to the restored root", SYS.pivot_root, r.putString("."), r.putString("."));
    r.call("detach crest's mounts from the restored namespace", SYS.umount2, r.putString("."), MNT_DETACH);
    r.call("change to /", SYS.chdir, r.putString("/"));

    // 4. Peer groups and masters, masters' groups first.
    const setGroup = (from: mnt_entry, to: mnt_entry) => r.call(`put ${what(to)} in the peer group of ${what(from)}`,
      SYS.move_mount, fds.get(from.mnt_id)!, r.putString(""), fds.get(to.mnt_id)!, r.putString(""),
      MOVE_MOUNT.SET_GROUP | MOVE_MOUNT.F_EMPTY_PATH | MOVE_MOUNT.T_EMPTY_PATH);
    const propagate = (e: mnt_entry, type: number, name: string) => {
      const attr = Buffer.alloc(32);
      attr.writeBigUInt64LE(BigInt(type), 16);
      r.call(`make ${what(e)} ${name}`, SYS.mount_setattr, fds.get(e.mnt_id)!, r.putString(""), AT_EMPTY_PATH, r.put(attr), attr.length);
    };
    const groups = tree.groups();
    for (const g of groups) {
      r.resetScratch();
      const first = g.mounts[0]!;
      const outside = g.outside && ("root" in g.outside ? rootDir : externalDir(g.outside.ext));
      if (g.outer) {
        // A nested namespace's group tied to a mount of the namespace it was made from (restored already).
        fromOuter(first, g.outer.from);
        if (g.outer.as === "slave") propagate(first, MS.SLAVE, "a slave");
        if (g.shared && g.outer.as !== "peer") propagate(first, MS.SHARED, "shared");
      } else if (g.outsidePeer) {
        // A peer of the outside mount an auto-detected external mount is bound from (--enable-external-sharing): its group, not a
        // new one, and with it its master (peers share one).
        masterFromOutside(first, externalDir(g.outsidePeer));
      } else {
        if (g.master) {
          if (outside) masterFromOutside(first, outside);
          else setGroup(groups.find((p) => p.shared === g.master)!.mounts[0]!, first);
          propagate(first, MS.SLAVE, "a slave");
        }
        if (g.shared) propagate(first, MS.SHARED, "shared");
      }
      for (const other of g.mounts.slice(1)) {
        if (isSubPath(other.root, first.root)) setGroup(first, other);
        else if (outside && !g.shared) {
          // Slaves of an outside master whose roots do not contain each other: each takes it from outside (criu's runc case).
          masterFromOutside(other, outside);
          propagate(other, MS.SLAVE, "a slave");
        } else throw new Error(`${what(other)} and ${what(first)} are peers, but neither's root (${other.root}, ${first.root}) contains the other's: the kernel cannot put them in one group again`);
      }
    }
    for (const e of tree.entries) {
      r.resetScratch();
      if (e.flags & MS.UNBINDABLE) propagate(e, MS.UNBINDABLE, "unbindable");
    }
    removeMadeSources();
  } finally {
    for (const fd of fds.values()) r.later({ what: `close an fd of a mount in task ${task.pid}`, nr: SYS.close, args: [fd] });
    for (const o of outerFds.values()) r.later({ what: `close the fd of ${o.path} in task ${task.pid}`, nr: SYS.close, args: [o.fd] });
    r.flush();
  }
  run.log.info(`${which}: ${tree.entries.length} mounts restored`);

  function makePlain(e: mnt_entry): void {
    const p = tree.plans.get(e.mnt_id)!;
    const target = plain(e);
    let source: string | undefined;
    if (p.how === "root") source = rootDir;
    else if (p.how === "bind") source = join(plain(tree.byId.get(p.from)!), p.sub);
    else if (p.how === "external") source = join(ext.get(p.key)!, p.sub);
    else if (p.how === "auto") source = p.dir;
    let dir = true;
    if (p.how === "outer") {
      // A bind of the task's copy of the outer mount (open_tree of its fd: no path, which the yard may cover).
      const o = outerFds.get(e.mnt_id)!;
      r.resetScratch();
      if (o.dir) r.call(`make the mount point of ${what(e)}`, SYS.mkdirat, AT_FDCWD, r.putString(target), 0o700);
      else r.call(`close the mount point of ${what(e)}`, SYS.close, r.call(`make the mount point of ${what(e)}`, SYS.openat, AT_FDCWD, r.putString(target), O.WRONLY | O.CREAT | O.CLOEXEC, 0o600));
      const copy = r.call(`copy ${o.path} for ${what(e)} (open_tree)`, SYS.open_tree, o.fd, r.putString(""), OPEN_TREE_CLONE | AT_EMPTY_PATH | O.CLOEXEC);
      try {
        r.resetScratch();
        r.call(`bind ${o.path} for ${what(e)}`, SYS.move_mount, copy, r.putString(""), AT_FDCWD, r.putString(target), MOVE_MOUNT.F_EMPTY_PATH);
      } finally {
        r.call(`close the copy of ${o.path}`, SYS.close, copy);
      }
      mount(`set the flags of ${what(e)}`, null, target, null, MS.REMOUNT | MS.BIND | mountOnlyFlags(e), null);
      return;
    }
    if (e.deleted && p.how === "bind") remake(e, source!);
    if (p.how === "bind") ptyForBind(e, tree.byId.get(p.from)!, p.sub, source!);
    if (source !== undefined) {
      try {
        dir = statSync(view(source)).isDirectory();
      } catch (err) {
        throw new Error(`${what(e)}: its source ${p.how === "bind" ? `${p.sub || "/"} in mount ${p.from}` : source} is missing (${(err as Error).message})`);
      }
    }
    // Made by the root task: in a user namespace of the tree's own, the kernel refuses crest's uid on the yard (a tmpfs mounted there).
    r.resetScratch();
    if (dir) r.call(`make the mount point of ${what(e)}`, SYS.mkdirat, AT_FDCWD, r.putString(target), 0o700);
    else r.call(`close the mount point of ${what(e)}`, SYS.close, r.call(`make the mount point of ${what(e)}`, SYS.openat, AT_FDCWD, r.putString(target), O.WRONLY | O.CREAT | O.CLOEXEC, 0o600));
    if (source !== undefined && ownedAtRestore(run, "user")) {
      // The root of a user namespace may not reach the source by its path (crest's --root in a directory of root's): crest opens it in the task's mount namespace and hands it over.
      const mine = openSync(view(source), O.PATH | O.CLOEXEC);
      try {
        const theirs = passFd(r, task.vpid, mine, source);
        mount(`bind ${source} for ${what(e)}`, `/proc/self/fd/${theirs}`, target, null, MS.BIND, null);
        r.call(`close the fd of ${source}`, SYS.close, theirs);
      } finally {
        closeSync(mine);
      }
    } else if (source !== undefined) {
      mount(`bind ${source} for ${what(e)}`, source, target, null, MS.BIND, null);
    } else {
      // Read-only tmpfs: filled first, then made read-only.
      const roLater = e.fstype === FS_TMPFS && ((e.sb_flags ?? 0) & MS.RDONLY) !== 0;
      const sb = (e.sb_flags ?? 0) & ~(roLater ? MS.RDONLY : 0);
      mount(`mount ${what(e)}`, e.source, target, fsName(e), sb | MS.SILENT, mountOptionsInside(run, e.options));
      if (e.fstype === FS_TMPFS) untar(e, view(target));
      if (roLater) mount(`make ${what(e)} read-only`, null, target, null, MS.REMOUNT | MS.RDONLY | sb, null);
    }
    mount(`set the flags of ${what(e)}`, null, target, null, MS.REMOUNT | MS.BIND | mountOnlyFlags(e), null);
  }

  /**
   * A bind of a pty slave (runc's /dev/console over the container's
   * /dev/pts/N): the pty is made first, through the devpts's own ptmx.
   */
  function ptyForBind(e: mnt_entry, from: mnt_entry, sub: string, source: string): void {
    const m = /^\/?(\d+)$/.exec(sub);
    if (from.fstype !== FS_DEVPTS || !m || existsSync(view(source))) return;
    makePtyForMount(run, view(join(plain(from), "ptmx")), Number(m[1]));
    run.log.info(`${what(e)}: the pty ${m[1]} of its devpts (mount ${from.mnt_id}) made for it`);
  }

  /** Makes the removed source of bind `e` again (and directories missing above it), as its mount point is: file or directory. */
  function remake(e: mnt_entry, source: string): void {
    if (existsSync(view(source))) return;
    const parent = tree.byId.get(e.parent_mnt_id)!;
    const point = join(plain(parent), cutRoot(e.mountpoint, parent.mountpoint));
    let isDir: boolean;
    try {
      isDir = statSync(view(point)).isDirectory();
    } catch (err) {
      throw new Error(`${what(e)}: its mount point is missing in mount ${parent.mnt_id} (${(err as Error).message})`);
    }
    const missing: string[] = [];
    for (let d = dirname(source); !existsSync(view(d)); d = dirname(d)) missing.unshift(d);
    for (const d of [...missing, source]) {
      const last = d === source;
      const holder = openSync(view(dirname(d)), O.PATH | O.DIRECTORY | O.CLOEXEC);
      remade.push({ dir: holder, name: basename(d), isDir: !last || isDir });
      if (!last || isDir) mkdirSync(view(d), last ? 0o600 : 0o755);
      else closeSync(openSync(view(d), "wx", 0o600));
    }
    run.log.info(`${what(e)}: its source ${source} (removed when dumped) made again for the bind`);
  }

  /**
   * Puts `e` in the peer group of `x`, a mount of the namespace a nested one
   * was made from, as restored: crest opens it through a task of that
   * namespace by its mount point, and checks it is the one (its root).
   */
  function fromOuter(e: mnt_entry, x: mnt_entry): void {
    const holder = run.tasks.find((t) => t.ids.mnt_ns_id === outerId && t.pid > 0);
    if (!holder) throw new Error(`${what(e)}: no task of mount namespace ${outerId} is there to reach mount ${x.mnt_id} at ${x.mountpoint}, whose peer group it joins`);
    const from = openSync(`/proc/${holder.pid}/root${x.mountpoint}`, O.PATH | O.CLOEXEC);
    try {
      const id = mntIdOf(from);
      const seen = parseMountinfo(readFileSync(`/proc/${holder.pid}/mountinfo`, "utf8")).find((m) => m.mntId === id);
      if (!seen || seen.mountPoint !== x.mountpoint || seen.root !== x.root) {
        throw new Error(`${what(e)}: mount ${x.mnt_id} at ${x.mountpoint} of namespace ${outerId}, whose peer group it joins, is not the mount seen at that path now (${seen ? `${seen.root} of ${seen.fsType}` : "none"})`);
      }
      const to = takeFd(r.pid, fds.get(e.mnt_id)!, `the restored ${what(e)}`);
      try {
        check(native.syscall(SYS.move_mount, from, "", to, "", MOVE_MOUNT.SET_GROUP | MOVE_MOUNT.F_EMPTY_PATH | MOVE_MOUNT.T_EMPTY_PATH),
          `put ${what(e)} in the peer group of mount ${x.mnt_id} at ${x.mountpoint} of namespace ${outerId}`);
      } finally {
        closeSync(to);
      }
    } finally {
      closeSync(from);
    }
  }

  /**
   * Puts `e` in the peer group of the mount crest's `source` is on (which
   * is shared, or a slave), from crest's side: e becomes a slave of the
   * same master once the task makes it one. move_mount needs the mount's
   * root: the mount point of the mount holding `source`.
   */
  function masterFromOutside(e: mnt_entry, source: string): void {
    const real = realpathSync(source);
    const mine = parseMountinfo(readFileSync("/proc/self/mountinfo", "utf8"))
      .filter((m) => isSubPath(real, m.mountPoint))
      .sort((a, b) => b.mountPoint.length - a.mountPoint.length)[0];
    if (!mine) throw new Error(`${what(e)}: no mount of crest's holds ${source}, whose master it needs`);
    const from = openSync(mine.mountPoint, O.PATH | O.CLOEXEC);
    const to = takeFd(r.pid, fds.get(e.mnt_id)!, `the restored ${what(e)}`);
    try {
      check(native.syscall(SYS.move_mount, from, "", to, "", MOVE_MOUNT.SET_GROUP | MOVE_MOUNT.F_EMPTY_PATH | MOVE_MOUNT.T_EMPTY_PATH),
        `give ${what(e)} the master of crest's mount ${mine.mntId} at ${mine.mountPoint} (it must be shared or a slave, and show the same file system)`);
    } finally {
      closeSync(to);
      closeSync(from);
    }
  }

  function untar(e: mnt_entry, dir: string): void {
    const img = run.images.exists(IMG.tmpfsDev, e.root_dev) ? run.images.name(IMG.tmpfsDev, e.root_dev) : run.images.name(IMG.tmpfsImg, e.mnt_id);
    const fd = openSync(img, "r");
    try {
      const [cmd, ...pre] = ownedAtRestore(run, "user") ? runAsUsernsRoot(task.pid) : [];
      const tar = [...pre, "tar", ...TAR_EXTRACT, "--directory", dir];
      const t = spawnSync(cmd ?? tar.shift()!, tar, { stdio: [fd, "pipe", "pipe"] });
      if (t.error || t.status !== 0) throw new Error(`untar ${img} into ${what(e)} failed: ${t.error?.message ?? t.stderr.toString().trim()}`);
    } finally {
      closeSync(fd);
    }
  }
}

/** The namespace (mnt_ns_id) of every mount of the images, by mnt_id. */
const namespaceOfMount = restoreState("mount namespaces of mounts", (run) => {
  const out = new Map<number, number>();
  if (!ownedAtRestore(run, "mnt")) return out;
  for (const id of [run.tasks[0]!.ids.mnt_ns_id!, ...nestedNamespaces(run).map((n) => n.id)]) {
    for (const e of run.images.read(IMG.mnts, id)) out.set(e.mnt_id, id);
  }
  return out;
});

/** Restore: every mount of the images (of every mount namespace of the tree) with its namespace's id; none without one of the tree's own. */
export const imageMounts = restoreState("mounts of the images", (run) => {
  const out: Array<{ entry: mnt_entry; ns: number }> = [];
  if (!ownedAtRestore(run, "mnt")) return out;
  for (const id of [run.tasks[0]!.ids.mnt_ns_id!, ...nestedNamespaces(run).map((n) => n.id)]) {
    for (const entry of run.images.read(IMG.mnts, id)) out.push({ entry, ns: id });
  }
  return out;
});

/** A task (born already) of mount namespace `ns` (an id of the images). */
export const taskOfNamespace = (run: RestoreRun, ns: number): RestoreTask | undefined => run.tasks.find((t) => t.ids.mnt_ns_id === ns && t.pid > 0);

/**
 * A task (born already) of the mount namespace that mount `mntId` belongs
 * to, when that is not `task`'s own: a file `task` had open through it is
 * reopened there (criu's mnt_id), as mntns_open asks. undefined when the
 * task's own namespace will do.
 */
export function holderOfMount(run: RestoreRun, task: RestoreTask, mntId: number | undefined): RestoreTask | undefined {
  if (mntId === undefined || mntId < 0) return undefined;
  const ns = run.state(namespaceOfMount).get(mntId);
  if (ns === undefined || ns === task.ids.mnt_ns_id) return undefined;
  return run.tasks.find((t) => t.ids.mnt_ns_id === ns && t.pid > 0);
}

/** A task (born already) of the nested mount namespace mount `mntId` belongs to; undefined for the root's, or a mount of none. */
export function nestedHolderOfMount(run: RestoreRun, mntId: number | undefined): RestoreTask | undefined {
  if (mntId === undefined || mntId < 0) return undefined;
  const ns = run.state(namespaceOfMount).get(mntId);
  if (ns === undefined || ns === run.tasks[0]!.ids.mnt_ns_id) return undefined;
  return run.tasks.find((t) => t.ids.mnt_ns_id === ns && t.pid > 0);
}

/** Nested namespaces made so far, by id: crest's fd of each (the other tasks in it join it). */
const madeNamespaces = restoreState("mnt namespaces", (run) => {
  const made = new Map<number, number>();
  run.cleanup.push(() => {
    for (const fd of made.values()) closeSync(fd);
  });
  return made;
});

/**
 * A task other than the root, right after it is born (in its parent's
 * namespace, before its children): the first task of a nested namespace
 * unshares it and builds its mounts; the others in it join it (setns).
 */
function placeTask(run: RestoreRun, task: RestoreTask): void {
  const id = task.ids.mnt_ns_id;
  const root = run.tasks[0]!;
  if (id === undefined || !ownedAtRestore(run, "mnt")) return;
  const made = run.state(madeNamespaces);
  if (!made.has(id) && id !== root.ids.mnt_ns_id) {
    const tree = nestedTrees(run).get(id);
    if (!tree) throw run.images.invalid(IMG.ids, task.vpid, `process ${task.vpid} is in mount namespace ${id}, which the restore did not plan to make`);
    const r = task.remotes[0]!;
    r.needScratch();
    r.call(`make the nested mount namespace ${id} of process ${task.vpid} (unshare)`, SYS.unshare, CLONE.NEWNS);
    made.set(id, openSync(`/proc/${task.pid}/ns/mnt`, "r"));
    buildMounts(task, run, tree, { id, outerId: nestedNamespaces(run).find((n) => n.id === id)!.outerId });
    return;
  }
  const path = made.has(id) ? undefined : `/proc/${root.pid}/ns/mnt`;
  const mine = path === undefined ? made.get(id)! : openSync(path, "r");
  try {
    if (fstatSync(mine).ino === statSync(`/proc/${task.pid}/ns/mnt`).ino) return;
    const r = task.remotes[0]!;
    r.needScratch();
    const theirs = passFd(r, task.vpid, mine, `mount namespace ${id}`);
    r.call(`make process ${task.vpid} join mount namespace ${id}`, SYS.setns, theirs, CLONE.NEWNS);
    r.call(`close the fd of mount namespace ${id} in process ${task.vpid}`, SYS.close, theirs);
    run.log.info(`process ${task.vpid} joined mount namespace ${id}`);
  } finally {
    if (path !== undefined) closeSync(mine);
  }
}

export const mntNamespaceKind: TaskKind = {
  name: "mnt namespace",
  finishDump(run) {
    if (run.ownNamespaces.has("mnt")) dumpMounts(run);
  },
  plan(run) {
    if (!ownedAtRestore(run, "mnt")) return 0;
    checkPlan(run);
    return CLONE.NEWNS;
  },
  born(task, run) {
    if (task === run.tasks[0]) {
      if (ownedAtRestore(run, "mnt")) buildMounts(task, run, treeOf(run));
    } else placeTask(run, task);
  },
};
