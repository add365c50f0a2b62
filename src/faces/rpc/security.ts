// The RPC service's rule (CRIU's "RPC" page), enforced from the client's
// credentials as the kernel gave them (SO_PEERCRED), not from anything the
// request says: root may ask for anything; another user may dump only a
// tree whose every task runs with its own uid and gid and which it could
// trace itself (the task is dumpable: /proc/PID is owned by its euid only
// then), and restore only what it could have made: tasks with its own ids
// and no capabilities, in no namespace of their own, with no TCP connection
// to repair (TCP repair needs CAP_NET_ADMIN).
import { readdirSync, readFileSync, statSync } from "node:fs";
import { parseChildren, parseStatus } from "../../proc/index.js";
import { IMG, readImage } from "../../images/index.js";
import type { Peer } from "./wire.js";

/** The tree rooted at pid, as /proc lists it now. */
function treeOf(pid: number): number[] {
  const out: number[] = [];
  const walk = (p: number) => {
    out.push(p);
    for (const tid of readdirSync(`/proc/${p}/task`)) {
      for (const child of parseChildren(readFileSync(`/proc/${p}/task/${tid}/children`, "utf8"))) walk(child);
    }
  };
  walk(pid);
  return out;
}

/** Why a client may not dump the tree at pid, or null if it may. */
export function checkDumpAllowed(peer: Peer, pid: number): string | null {
  if (peer.uid === 0) return null;
  let pids: number[];
  try {
    pids = treeOf(pid);
  } catch {
    return `process ${pid} does not exist`;
  }
  for (const p of pids) {
    const st = parseStatus(readFileSync(`/proc/${p}/status`, "utf8"));
    const owner = statSync(`/proc/${p}`).uid;
    if (st.uid.some((u) => u !== peer.uid) || st.gid.some((g) => g !== peer.gid) || owner !== peer.uid) {
      return `process ${p} (of the tree of ${pid}) does not run as the client's user ${peer.uid}:${peer.gid}, or is not dumpable: ` +
        "a client that is not root may dump only its own processes";
    }
  }
  return null;
}

/** Why a client may not restore the images in dir, or null if it may. */
export function checkRestoreAllowed(peer: Peer, dir: string): string | null {
  if (peer.uid === 0) return null;
  const deny = (why: string) => `${why}: a client that is not root may restore only what it could have made itself`;
  const inv = readImage(dir, IMG.inventory)[0];
  const rootIds = inv?.root_ids;
  for (const e of readImage(dir, IMG.pstree)) {
    for (const tid of e.threads) {
      const c = readImage(dir, IMG.core, tid)[0]?.thread_core?.creds;
      if (!c) continue;
      if ([c.uid, c.euid, c.suid, c.fsuid].some((u) => u !== peer.uid) || [c.gid, c.egid, c.sgid, c.fsgid].some((g) => g !== peer.gid)) {
        return deny(`task ${tid} ran as ${c.euid}:${c.egid}, not as the client's user ${peer.uid}:${peer.gid}`);
      }
      if ([...c.cap_prm, ...c.cap_eff].some((w) => w !== 0)) return deny(`task ${tid} had capabilities`);
    }
    const ids = readImage(dir, IMG.ids, e.pid)[0];
    if (ids && rootIds && (["pid_ns_id", "ipc_ns_id", "uts_ns_id", "net_ns_id", "mnt_ns_id", "user_ns_id"] as const).some((k) => ids[k] !== undefined && ids[k] !== rootIds[k])) {
      return deny(`task ${e.pid} has namespaces of its own`);
    }
  }
  const tcp = readImage(dir, IMG.files).find((f) => f.isk && f.isk.proto === 6 && f.isk.type === 1 && f.isk.dst_port && f.isk.state !== 10);
  if (tcp) return deny(`the images hold a TCP connection (inet socket ${tcp.isk!.ino}), which only CAP_NET_ADMIN can put back`);
  return null;
}
