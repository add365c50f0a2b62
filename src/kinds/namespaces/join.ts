// --join-ns NS:{PID|NS_FILE} (criu's): the restored tree enters an existing
// namespace instead of crest's own, as its root's first act, so that every
// task forked after inherits it. A tree dumped with a network namespace of
// its own is put into the one named, not a new one, and the namespace's
// images (links, addresses, routes, firewall rules, the network lock to
// lift) go there, as criu does (zdtm's netns_lock tests restore a tree into
// the very namespace it was dumped in). A UTS or IPC namespace of the tree's
// own is refused with --join-ns of that kind.
import { closeSync, openSync } from "node:fs";
import { CLONE, NS_CLONE_FLAG, SYS } from "../../sys/constants.js";
import type { JoinNs } from "../../options.js";
import { UnsupportedError, type RestoreRun, type RestoreTask } from "../context.js";
import { passFd } from "../files/inherit.js";
import { ownedAtRestore, type NsKind } from "./owned.js";

/** The namespace file a --join-ns names: /proc/PID/ns/NS for a PID. */
export function joinPath(j: JoinNs): string {
  return /^\d+$/.test(j.file) ? `/proc/${j.file}/ns/${j.kind}` : j.file;
}

/**
 * Refuses, before anything is created, a --join-ns of a kind the tree has a
 * namespace of its own of, but the network; returns the CLONE_NEW* flags of
 * the namespaces the root joins instead of making them.
 */
export function joinedOwnFlags(run: RestoreRun): number {
  let flags = 0;
  for (const j of run.opts.restore.joinNs) {
    if (!ownedAtRestore(run, j.kind as NsKind)) continue;
    if (j.kind !== "net") {
      throw new UnsupportedError(
        `--join-ns ${j.kind}:${j.file}: the tree was dumped with a ${j.kind} namespace of its own, which the images hold and the restore makes anew; ` +
        `crest joins a ${j.kind} namespace only for a tree dumped in crest's own (restore without --join-ns ${j.kind})`,
      );
    }
    flags |= CLONE.NEWNET;
  }
  return flags;
}

/** The root enters each namespace --join-ns names (crest's fd of it passed in, setns, closed). */
export function joinNamespaces(root: RestoreTask, run: RestoreRun): void {
  const r = root.remotes[0]!;
  if (run.opts.restore.joinNs.length) r.needScratch();
  for (const j of run.opts.restore.joinNs) {
    const path = joinPath(j);
    let mine: number;
    try {
      mine = openSync(path, "r");
    } catch (e) {
      throw new Error(`--join-ns ${j.kind}:${j.file}: cannot open ${path}: ${(e as Error).message}`, { cause: e });
    }
    try {
      const theirs = passFd(r, root.vpid, mine, `the ${j.kind} namespace ${path}`);
      r.call(`make process ${root.vpid} join the ${j.kind} namespace ${path} (--join-ns)`, SYS.setns, theirs, NS_CLONE_FLAG[j.kind as keyof typeof NS_CLONE_FLAG]);
      r.call(`close the fd of ${path} in process ${root.vpid}`, SYS.close, theirs);
    } finally {
      closeSync(mine);
    }
    run.log.info(`process ${root.vpid} joined the ${j.kind} namespace ${path}`);
  }
}
