// `crit x DIR ps|fds|mems|rss`: crit's explorers over an image directory,
// the same lines as crit prints them (its Python %-formats written out here).
// They work on the decoded JSON, as crit's do, so what they show is what
// `crit decode` shows.

import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Json, JsonObject } from "../../images/index.js";
import { CritError, decodeImage } from "./image-json.js";

type Num = number | bigint;

/** The task's PID as crit reads it: `pid`, or the first of `ns_pid` in images that have it. */
function taskId(p: JsonObject, key: string): Num {
  if (key in p) return p[key] as Num;
  const ns = p[`ns_${key}`];
  if (Array.isArray(ns) && ns.length) return ns[0] as Num;
  throw new CritError(`pstree entry ${JSON.stringify(p)} has no ${key}`);
}

const hex = (n: Num): string => BigInt(n).toString(16);
const padL = (s: string, w: number): string => s.padStart(w);
const padR = (s: string, w: number): string => s.padEnd(w);

class ImageDir {
  private files?: JsonObject[];
  private legacy = new Map<string, JsonObject[]>();

  constructor(readonly dir: string) {}

  entries(name: string): JsonObject[] {
    const path = join(this.dir, name);
    if (!existsSync(path)) throw new CritError(`${path}: no such image`);
    return decodeImage(path).entries as JsonObject[];
  }

  first(name: string): JsonObject {
    const e = this.entries(name)[0];
    if (!e) throw new CritError(`${join(this.dir, name)}: no entry`);
    return e;
  }

  /** The file's part of files.img (`reg`, `pipe`, `usk`), or the entry of the old per-type image. */
  private find(field: string, legacyImage: string, id: Num): JsonObject | undefined {
    if (this.files === undefined) {
      try {
        this.files = this.entries("files.img");
      } catch {
        this.files = [];
      }
    }
    if (this.files.length) {
      const f = this.files.find((x) => x.id == id); // eslint-disable-line eqeqeq -- number or bigint
      if (f) return f[field] as JsonObject | undefined;
    }
    let old = this.legacy.get(legacyImage);
    if (!old) {
      old = existsSync(join(this.dir, legacyImage)) ? this.entries(legacyImage) : [];
      this.legacy.set(legacyImage, old);
    }
    return old.find((x) => x.id == id); // eslint-disable-line eqeqeq
  }

  /** How crit names an open file: a path, pipe[ID], unix[INO (PEER) NAME], or TYPE.ID. */
  fileString(type: string, id: Num): string {
    switch (type) {
      case "REG": {
        const rf = this.find("reg", "reg-files.img", id);
        return (rf?.name as string | undefined) || "unknown path";
      }
      case "PIPE": {
        const p = this.find("pipe", "pipes.img", id);
        return p ? `pipe[${p.pipe_id}]` : "pipe[?]";
      }
      case "UNIXSK": {
        const ux = this.find("usk", "unixsk.img", id);
        if (!ux) return "unix[?]";
        const name = ux.name ? ` ${ux.name as string}` : "";
        return `unix[${ux.ino} (${ux.peer})${name}]`;
      }
      default:
        return `${type}.${id}`;
    }
  }
}

interface PsItem { pid: Num; p: JsonObject; comm: string; kids: PsItem[] }

function explorePs(d: ImageDir): string {
  const items = new Map<string, PsItem>();
  for (const p of d.entries("pstree.img")) {
    const pid = taskId(p, "pid");
    const core = d.first(`core-${pid}.img`);
    items.set(String(pid), { pid, p, comm: ((core.tc as JsonObject | undefined)?.comm as string | undefined) ?? "", kids: [] });
  }
  let root: PsItem | undefined;
  for (const item of items.values()) {
    if (Number(item.p.ppid) === 0) {
      root = item;
      continue;
    }
    const parent = items.get(String(item.p.ppid));
    if (!parent) throw new CritError(`pstree.img: the parent ${item.p.ppid} of ${item.pid} is not in the tree`);
    parent.kids.push(item);
  }
  if (!root) throw new CritError("pstree.img: no task with ppid 0");
  let out = `${padL("PID", 7)}${padL("PGID", 7)}${padL("SID", 7)}   COMM\n`;
  const show = (it: PsItem, depth: number) => {
    out += `${padL(String(it.pid), 7)}${padL(String(taskId(it.p, "pgid")), 7)}${padL(String(taskId(it.p, "sid")), 7)}   ${" ".repeat(4 * depth)}${it.comm}\n`;
    for (const k of it.kids) show(k, depth + 1);
  };
  show(root, 0);
  return out;
}

function exploreFds(d: ImageDir): string {
  let out = "";
  for (const p of d.entries("pstree.img")) {
    const pid = taskId(p, "pid");
    const filesId = d.first(`ids-${pid}.img`).files_id as Num;
    out += `${pid}\n`;
    for (const fd of d.entries(`fdinfo-${filesId}.img`)) {
      out += `\t${padL(String(fd.fd), 7)}: ${d.fileString(fd.type as string, fd.id as Num)}\n`;
    }
    const fs = d.first(`fs-${pid}.img`);
    out += `\t${padL("cwd", 7)}: ${d.fileString("REG", fs.cwd_id as Num)}\n`;
    out += `\t${padL("root", 7)}: ${d.fileString("REG", fs.root_id as Num)}\n`;
  }
  return out;
}

const VMA = { REGULAR: 1 << 0, STACK: 1 << 1, VSYSCALL: 1 << 2, VDSO: 1 << 3, FILE_PRIVATE: 1 << 6, FILE_SHARED: 1 << 7, ANON_SHARED: 1 << 8, SYSVIPC: 1 << 10, SOCKET: 1 << 11 };
const MAP_GROWSDOWN = 0x100;

function exploreMems(d: ImageDir): string {
  // Shared objects get small numbers of their own, in the order first met, across the tree.
  const ids = new Map<string, number>();
  const idOf = (shmid: Num) => {
    let n = ids.get(String(shmid));
    if (n === undefined) ids.set(String(shmid), (n = ids.size + 1));
    return n;
  };
  let out = "";
  for (const p of d.entries("pstree.img")) {
    const pid = taskId(p, "pid");
    const mm = d.first(`mm-${pid}.img`);
    out += `${pid}\n`;
    out += `\t${padR("exe", 36)}    ${d.fileString("REG", mm.exe_file_id as Num)}\n`;
    for (const vma of (mm.vmas ?? []) as JsonObject[]) {
      const st = Number(vma.status), shmid = vma.shmid as Num, pgoff = vma.pgoff as Num;
      let fn: string;
      if (st & VMA.SYSVIPC) fn = ` ips[${idOf(shmid).toString(16)}]`;
      else if (st & VMA.ANON_SHARED) fn = ` shmem[${idOf(shmid).toString(16)}]`;
      else if (st & VMA.SOCKET) fn = ` packet[${idOf(shmid).toString(16)}]`;
      else if (st & (VMA.FILE_PRIVATE | VMA.FILE_SHARED)) {
        fn = ` ${d.fileString("REG", shmid)}`;
        if (BigInt(pgoff) !== 0n) fn += ` + 0x${hex(pgoff)}`;
        if (st & VMA.FILE_SHARED) fn += " (s)";
      } else if (st & VMA.STACK) fn = " [stack]";
      else if (st & VMA.VSYSCALL) fn = " [vsyscall]";
      else if (st & VMA.VDSO) fn = " [vdso]";
      else if (Number(vma.flags) & MAP_GROWSDOWN) fn = " [stack?]";
      else fn = "";
      if (!(st & VMA.REGULAR)) fn += " *";
      const prot = Number(vma.prot);
      const perms = (prot & 1 ? "r" : "-") + (prot & 2 ? "w" : "-") + (prot & 4 ? "x" : "-");
      const range = `${hex(vma.start as Num).padStart(8, "0")}-${hex(vma.end as Num).padStart(8, "0")}`;
      out += `\t${padR(range, 36)}${perms}${fn}\n`;
    }
  }
  return out;
}

function exploreRss(d: ImageDir): string {
  let out = "";
  for (const p of d.entries("pstree.img")) {
    const pid = taskId(p, "pid");
    const vmas = (d.first(`mm-${pid}.img`).vmas ?? []) as JsonObject[];
    const pms = d.entries(`pagemap-${pid}.img`);
    out += `${pid}\n`;
    // crit's walk, index -1 included (Python's last element).
    const vmaAt = (i: number) => vmas[i < 0 ? vmas.length + i : i]!;
    let vmi = 0, pvmi = -1;
    for (const pm of pms.slice(1)) {
      // nr_pages (CRIU 4.x), else the 32-bit count older images carry in field 2.
      const nr = BigInt((pm.nr_pages ?? pm.compat_nr_pages) as Num);
      const vaddr = BigInt(pm.vaddr as Num);
      const pstr = `\t${vaddr.toString(16)} / ${padR(String(nr), 8)}`;
      while (vmi < vmas.length && BigInt(vmaAt(vmi).end as Num) <= vaddr) vmi++;
      const pme = vaddr + (nr << 12n);
      let vstr = "";
      while (vmi < vmas.length && BigInt(vmaAt(vmi).start as Num) < pme) {
        const vma = vmaAt(vmi);
        if (vmi === pvmi) {
          vstr += " ~";
        } else {
          const start = BigInt(vma.start as Num), end = BigInt(vma.end as Num);
          vstr += ` ${start.toString(16).padStart(8, "0")} / ${padR(String((end - start) >> 12n), 8)}`;
          if (Number(vma.status) & (VMA.FILE_PRIVATE | VMA.FILE_SHARED)) vstr += ` ${d.fileString("REG", vma.shmid as Num)}`;
          pvmi = vmi;
        }
        vstr += `\n\t${" ".repeat(23)}`;
        vmi++;
      }
      vmi--;
      out += `${padR(pstr, 24)}${vstr}\n`;
    }
  }
  return out;
}

export const EXPLORERS: Record<string, (d: ImageDir) => string> = { ps: explorePs, fds: exploreFds, mems: exploreMems, rss: exploreRss };

/** `crit x DIR WHAT`: the explorer's text. */
export function explore(dir: string, what: string): string {
  const fn = EXPLORERS[what];
  if (!fn) throw new CritError(`unknown explorer ${what}: ps, fds, mems or rss`, 2);
  return fn(new ImageDir(dir));
}

export type { Json };
