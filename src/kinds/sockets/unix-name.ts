// The name a unix socket is bound to in the file system, dump and restore
// side by side (an abstract name needs none of this).
//
// Dump: the socket's own file comes from the kernel (SIOCUNIXFILE on
// crest's copy): its mode and owner (file_perms), its path, and whether it
// was removed since (the path ends in " (deleted)", or the name now leads
// to another file: CRIU's `deleted`). A relative name was bound relative
// to the binder's cwd: the file's directory is kept (CRIU's `name_dir`).
//
// Restore: the task binds its socket to the name (in name_dir, where it
// changes its cwd first: the fs stage sets the cwd after the files), the
// file gets its mode and owner. A deleted name is bound where it was (its
// directories made if they are gone, a file now at the name moved aside
// meanwhile), crest keeps an O_PATH fd of the new socket file (sockets
// connecting to it connect through /proc/CREST/fd/N, as criu through its
// own), and the name is removed again, with the directories crest made: the
// socket has its address and no file, as at the dump. A task in the tree's
// own mount namespace may not see crest in its /proc (its own PID
// namespace's): it is given the fd and connects through /proc/self/fd/N.
import { ownedAtRestore, taskPath } from "../namespaces/owned.js";
import { passFd } from "../files/inherit.js";
import { idOutside } from "../namespaces/user.js";
import { closeSync, fstatSync, lstatSync, mkdirSync, openSync, readlinkSync, renameSync, rmdirSync, chmodSync, chownSync, statSync, unlinkSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import type { OpenContext } from "../files/file-kind.js";
import { restoreState, UnsupportedError } from "../context.js";
import type { file_perms_entry, unix_sk_entry } from "../../images/index.js";
import { O, SYS } from "../../sys/constants.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import { AF_UNIX } from "./unix-diag.js";

/** SIOCPROTOPRIVATE: an O_PATH fd of the file a unix socket is bound to (Linux 4.11+). */
const SIOCUNIXFILE = 0x89e0;

/** What the dump keeps of a name in the file system. */
export interface DumpedName {
  file_perms: file_perms_entry;
  name_dir?: string;
  deleted?: boolean;
}

/** The directory `path` (the file's path) was bound in under the relative `name`; undefined if it does not end in it. */
function dirOf(path: string, name: string): string | undefined {
  const tail = `/${name.replace(/^\.\//, "")}`;
  if (!path.endsWith(tail) || path.length === tail.length) return path === tail ? "/" : undefined;
  return path.slice(0, -tail.length);
}

/** Dump: the name of socket `fd` (crest's copy), bound to `name` in the file system. */
export function dumpName(fd: number, name: Buffer, what: string, seen: (path: string) => string = (p) => p): DumpedName {
  const text = name.toString("latin1");
  const file = check(native.syscall(SYS.ioctl, fd, SIOCUNIXFILE, 0), `open the file ${what} is bound to`);
  try {
    const st = fstatSync(file);
    let path = readlinkSync(`/proc/self/fd/${file}`);
    const unlinked = path.endsWith(" (deleted)");
    if (unlinked) path = path.slice(0, -" (deleted)".length);
    let nameDir: string | undefined;
    if (!text.startsWith("/")) {
      nameDir = dirOf(path, text);
      if (nameDir === undefined) throw new UnsupportedError(`${what} is bound to the relative name ${JSON.stringify(text)}, but its file is now ${path}; crest cannot tell the directory it was bound in`);
    }
    const full = nameDir !== undefined ? join(nameDir, text) : text;
    if (!unlinked && path !== full) throw new UnsupportedError(`${what} is bound to ${full}, but its file was renamed to ${path} since; crest cannot restore it`);
    // Removed, or removed and replaced by another file.
    const now = unlinked ? undefined : statSync(seen(full), { throwIfNoEntry: false });
    const deleted = unlinked || !now || now.ino !== st.ino || now.dev !== st.dev;
    return { file_perms: { mode: st.mode, uid: st.uid, gid: st.gid }, ...(nameDir !== undefined ? { name_dir: nameDir } : {}), ...(deleted ? { deleted } : {}) };
  } finally {
    closeSync(file);
  }
}

// --- restore --------------------------------------------------------------------

/** Restore: O_PATH fds crest holds of the files of sockets bound to deleted names, by socket inode. */
const ghosts = restoreState("unix socket ghosts", (run) => {
  const held = new Map<number, number>();
  run.cleanup.push(() => {
    for (const fd of held.values()) closeSync(fd);
    held.clear();
  });
  return held;
});

/** struct sockaddr_un of a name, as long as the name. */
export function sockaddr(name: Buffer): Buffer {
  const addr = Buffer.alloc(2 + name.length);
  addr.writeUInt16LE(AF_UNIX, 0);
  name.copy(addr, 2);
  return addr;
}

const isPath = (e: unix_sk_entry): boolean => e.name.length > 0 && e.name[0] !== 0;

/** The socket's path as crest reaches it (a relative name joined to its directory, in the tree's mount namespace). */
const seenPath = (c: OpenContext, e: unix_sk_entry): string => taskPath(c.run, c.task, fullPath(e));
const fullPath = (e: unix_sk_entry): string => (e.name_dir !== undefined ? join(e.name_dir, e.name.toString("latin1")) : e.name.toString("latin1"));

/** The task's cwd becomes the directory a relative name was bound in (the fs stage sets the dumped cwd after the files). */
function enterNameDir({ r, task }: OpenContext, e: unix_sk_entry): void {
  if (e.name_dir === undefined) return;
  r.resetScratch();
  r.call(`change the cwd of task ${task.vpid} to ${e.name_dir}`, SYS.chdir, r.putString(e.name_dir));
}

function bindAs(c: OpenContext, fd: number, e: unix_sk_entry, what: string): void {
  enterNameDir(c, e);
  c.r.resetScratch();
  const addr = sockaddr(e.name);
  c.r.call(`bind ${what} to ${JSON.stringify(e.name.toString("latin1"))}`, SYS.bind, fd, c.r.put(addr), addr.length);
  if (isPath(e) && e.file_perms) {
    chownSync(seenPath(c, e), e.file_perms.uid, e.file_perms.gid);
    chmodSync(seenPath(c, e), e.file_perms.mode & 0o7777);
  }
}

/**
 * Binds the socket the task made to its name, as its task (the file is
 * created with the task's credentials, then given its mode and owner). A
 * stale socket file at the path (the dumped socket's, left behind) goes
 * first; a deleted name is bound and removed again (bindDeleted).
 */
export function bindName(c: OpenContext, fd: number, e: unix_sk_entry, what: string): void {
  if (!isPath(e)) return bindAs(c, fd, e, what);
  if (e.deleted) return bindDeleted(c, fd, e, what);
  const path = seenPath(c, e);
  if (lstatSync(path, { throwIfNoEntry: false })?.isSocket()) unlinkSync(path);
  bindAs(c, fd, e, what);
}

function bindDeleted(c: OpenContext, fd: number, e: unix_sk_entry, what: string): void {
  const path = seenPath(c, e);
  // The directories that are gone, deepest last, made for the bind and removed after it.
  const made: string[] = [];
  for (let d = dirname(path); !existsSync(d); d = dirname(d)) made.unshift(d);
  if (made.length) mkdirSync(made[made.length - 1]!, { recursive: true, mode: 0o755 });
  // The task binds in them: in a user namespace of the tree's own, its root must own them (crest's root is not its).
  if (ownedAtRestore(c.run, "user")) for (const d of made) chownSync(d, idOutside(c.run, "uid", 0), idOutside(c.run, "gid", 0));
  const aside = `${path}.crest-sk-ghost`;
  const moved = lstatSync(path, { throwIfNoEntry: false }) !== undefined;
  try {
    if (moved) renameSync(path, aside);
    try {
      bindAs(c, fd, e, what);
      ghostsOf(c).set(e.ino, openSync(path, O.PATH | O.CLOEXEC));
    } finally {
      // Not there if the bind failed: its error is the one to tell.
      if (lstatSync(path, { throwIfNoEntry: false })) unlinkSync(path);
    }
  } finally {
    if (moved) renameSync(aside, path);
    for (const d of made.reverse()) rmdirSync(d);
  }
}

function ghostsOf(c: OpenContext): Map<number, number> {
  return c.run.state(ghosts);
}

/** A deleted name: the path crest's fd of its file gives (sockets connect through it, as criu through its own). */
function ghostName(c: OpenContext, to: unix_sk_entry, what: string): Buffer {
  const ghost = ghostsOf(c).get(to.ino);
  if (ghost === undefined) throw new Error(`${what} connects to unix socket ${to.ino}, whose deleted name ${fullPath(to)} crest does not hold`);
  return Buffer.from(`/proc/${process.pid}/fd/${ghost}`, "latin1");
}

/** Connects socket `fd` of the task to the one `to` is bound to: by its name, in its directory, or, for a deleted name, through crest's fd of its file. */
export function connectName(c: OpenContext, fd: number, to: unix_sk_entry, what: string): void {
  const { r } = c;
  let name = to.name;
  if (isPath(to) && to.deleted && ownedAtRestore(c.run, "mnt")) return connectThroughGivenFd(c, fd, to, what);
  if (isPath(to) && to.deleted) name = ghostName(c, to, what);
  else if (isPath(to)) enterNameDir(c, to);
  r.resetScratch();
  const addr = sockaddr(name);
  r.call(`connect ${what} to ${JSON.stringify(to.name.toString("latin1"))}`, SYS.connect, fd, r.put(addr), addr.length);
}

function connectThroughGivenFd(c: OpenContext, fd: number, to: unix_sk_entry, what: string): void {
  const { r, task } = c;
  const ghost = ghostsOf(c).get(to.ino);
  if (ghost === undefined) throw new Error(`${what} connects to unix socket ${to.ino}, whose deleted name ${fullPath(to)} crest does not hold`);
  const theirs = passFd(r, task.vpid, ghost, `the file of unix socket ${to.ino} (deleted name ${fullPath(to)})`);
  r.resetScratch();
  const addr = sockaddr(Buffer.from(`/proc/self/fd/${theirs}`, "latin1"));
  r.call(`connect ${what} to ${JSON.stringify(to.name.toString("latin1"))} (deleted; through /proc/self/fd/${theirs})`, SYS.connect, fd, r.put(addr), addr.length);
  r.call(`close the fd of the file of unix socket ${to.ino}`, SYS.close, theirs);
  c.run.log.debug(`${what} connected to the deleted name ${fullPath(to)} through /proc/self/fd/${theirs}`);
}

/** The same from crest, on its copy `fd` of the socket (a relative name joined to its directory). */
export function connectNameFromCrest(c: OpenContext, fd: number, to: unix_sk_entry, what: string): void {
  const name = isPath(to) && to.deleted ? ghostName(c, to, what) : isPath(to) ? Buffer.from(fullPath(to), "latin1") : to.name;
  const addr = sockaddr(name);
  check(native.syscall(SYS.connect, fd, addr, addr.length), `connect ${what} to ${JSON.stringify(to.name.toString("latin1"))}`);
}
