// Credentials: user and group ids (real, effective, saved, fs), supplementary
// groups, the five capability sets, securebits and no_new_privs; with them,
// what a change of credentials resets (pdeath signal, dumpable). Restored
// per thread in the kernel's order: groups, ids with SECURE_NO_SETUID_FIXUP
// held so capabilities survive, securebits, bounding set, capabilities,
// ambient set, no_new_privs.
import { readFileSync } from "node:fs";
import type { TaskKind, DumpTask, RestoreTask } from "../context.js";
import { IMG, type creds_entry } from "../../images/index.js";
import { PR, PR_CAP_AMBIENT_RAISE, SYS } from "../../sys/constants.js";
import type { ProcStatus } from "../../proc/index.js";
import type { Remote } from "../../remote/remote.js";
import { treeIds } from "../namespaces/user.js";

const CAP_VERSION_3 = 0x20080522;
const SECBIT_NO_SETUID_FIXUP = 1 << 2;

/** A 64-bit capability set as CRIU stores it: two u32, low word first. */
const capWords = (v: bigint): number[] => [Number(v & 0xffffffffn), Number(v >> 32n)];
const capValue = (w: number[]): bigint => BigInt(w[0] ?? 0) | (BigInt(w[1] ?? 0) << 32n);

function lastCap(): number {
  return Number(readFileSync("/proc/sys/kernel/cap_last_cap", "utf8").trim());
}

/** The thread's ids as its own user namespace sees them (`ids`: crest's view turned into the tree's). */
function dumpThreadCreds(st: ProcStatus, secbits: number, ids: ReturnType<typeof treeIds>, what: string): creds_entry {
  const u = (i: number) => ids.uid(st.uid[i]!, what), g = (i: number) => ids.gid(st.gid[i]!, what);
  return {
    uid: u(0), euid: u(1), suid: u(2), fsuid: u(3),
    gid: g(0), egid: g(1), sgid: g(2), fsgid: g(3),
    cap_inh: capWords(st.capInh), cap_prm: capWords(st.capPrm), cap_eff: capWords(st.capEff),
    cap_bnd: capWords(st.capBnd), cap_amb: capWords(st.capAmb),
    secbits,
    groups: st.groups.map((x) => ids.gid(x, `${what} (a supplementary group)`)),
    no_new_privs: st.noNewPrivs ? 1 : 0,
  };
}

/** cap_last_cap, read once. */
let last: number | undefined;

/**
 * Queued, to run in one batch: setfsuid/setfsgid answer the previous value
 * whatever happens, so each is followed by a call that reads it back.
 */
function restoreThreadCreds(r: Remote, tid: number, ce: creds_entry, image: string): void {
  const what = (s: string) => `${s} of thread ${tid} (the creds of ${image})`;
  const later = (text: string, nr: number, ...args: Array<number | bigint>) => r.later({ what: what(text), nr, args });
  r.resetScratch();
  const groups = Buffer.alloc(ce.groups.length * 4);
  ce.groups.forEach((g, i) => groups.writeUInt32LE(g, i * 4));
  later("set supplementary groups", SYS.setgroups, ce.groups.length, ce.groups.length ? r.put(groups) : 0);
  later("hold capabilities across the uid change", SYS.prctl, PR.SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0, 0, 0);
  later(`set uids to ${ce.uid}/${ce.euid}/${ce.suid}`, SYS.setresuid, ce.uid, ce.euid, ce.suid);
  later(`set fsuid ${ce.fsuid}`, SYS.setfsuid, ce.fsuid);
  r.later({ what: what(`cannot set fsuid ${ce.fsuid}`), nr: SYS.setfsuid, args: [-1], want: ce.fsuid });
  later(`set gids to ${ce.gid}/${ce.egid}/${ce.sgid}`, SYS.setresgid, ce.gid, ce.egid, ce.sgid);
  later(`set fsgid ${ce.fsgid}`, SYS.setfsgid, ce.fsgid);
  r.later({ what: what(`cannot set fsgid ${ce.fsgid}`), nr: SYS.setfsgid, args: [-1], want: ce.fsgid });
  later(`set securebits 0x${ce.secbits.toString(16)}`, SYS.prctl, PR.SET_SECUREBITS, ce.secbits, 0, 0, 0);

  const bnd = capValue(ce.cap_bnd);
  last ??= lastCap();
  for (let cap = 0; cap <= last; cap++) {
    if (!(bnd & (1n << BigInt(cap)))) later(`drop capability ${cap} from the bounding set`, SYS.prctl, PR.CAPBSET_DROP, cap, 0, 0, 0);
  }
  const hdr = Buffer.alloc(8);
  hdr.writeUInt32LE(CAP_VERSION_3, 0);
  const data = Buffer.alloc(24);
  for (let i = 0; i < 2; i++) {
    data.writeUInt32LE(ce.cap_eff[i] ?? 0, i * 12);
    data.writeUInt32LE(ce.cap_prm[i] ?? 0, i * 12 + 4);
    data.writeUInt32LE(ce.cap_inh[i] ?? 0, i * 12 + 8);
  }
  later("set capabilities", SYS.capset, r.put(hdr), r.put(data));
  const amb = capValue(ce.cap_amb);
  for (let cap = 0; cap <= last; cap++) {
    if (amb & (1n << BigInt(cap))) later(`raise ambient capability ${cap}`, SYS.prctl, PR.CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0);
  }
  if (ce.no_new_privs) later("set no_new_privs", SYS.prctl, PR.SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

export const credsKind: TaskKind = {
  name: "creds",
  dump(task: DumpTask, run) {
    const ids = treeIds(run);
    task.threads.forEach((t, i) => {
      const r = task.remotes[i]!;
      const th = task.core[i]!.thread_core!;
      r.resetScratch();
      const sig = r.alloc(4);
      // Queued with the task's other questions: one stop for all.
      const securebits = r.later({ what: `read securebits of thread ${t.tid}`, nr: SYS.prctl, args: [PR.GET_SECUREBITS, 0, 0, 0, 0] });
      r.later({ what: `read the parent-death signal of thread ${t.tid}`, nr: SYS.prctl, args: [PR.GET_PDEATHSIG, sig, 0, 0, 0] });
      const dumpable = i === 0 ? r.later({ what: `read the dumpable flag of task ${task.pid}`, nr: SYS.prctl, args: [PR.GET_DUMPABLE, 0, 0, 0, 0] }) : undefined;
      r.afterRun(() => {
        th.creds = dumpThreadCreds(task.status[i]!, securebits.value!, ids, `thread ${t.tid} of process ${task.pid}`);
        th.pdeath_sig = r.read(sig, 4).readInt32LE(0);
        if (dumpable) task.mm!.dumpable = dumpable.value!;
      });
    });
  },
  restore(task: RestoreTask, run) {
    task.threads.forEach((t, i) => {
      const th = task.core[i]!.thread_core;
      if (!th?.creds) throw run.images.invalid(IMG.core, task.vtids[i], "no credentials");
      const r = task.remotes[i]!;
      restoreThreadCreds(r, t.tid, th.creds, run.images.name(IMG.core, task.vtids[i]));
      // A change of credentials clears these, so they come after.
      if (th.pdeath_sig) r.later({ what: `set the parent-death signal of thread ${t.tid}`, nr: SYS.prctl, args: [PR.SET_PDEATHSIG, th.pdeath_sig, 0, 0, 0] });
    });
    const dumpable = task.mm.dumpable;
    // prctl takes 0 or 1; 2 (root-only core dumps) only comes from suid_dumpable.
    if (dumpable === 0 || dumpable === 1) {
      task.remotes[0]!.later({ what: `set the dumpable flag of task ${task.pid}`, nr: SYS.prctl, args: [PR.SET_DUMPABLE, dumpable, 0, 0, 0] });
    }
  },
};
