// `crest inspect DIR`: what a checkpoint holds, for people (as checkpointctl's
// show/inspect give it for container checkpoints): the tree with PIDs and
// commands, each task's memory by kind, its fds and what each one is, its
// namespaces, and the dump's statistics. `--format json` gives the same for
// scripts; `dot` and `svg` draw the tree with the pipes, unix sockets and
// TCP connections between its tasks (svg laid out here: no Graphviz needed).
import { existsSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { IMG, fd_types, readImage, type file_entry, type inet_sk_entry, type pagemap_entry, type task_kobj_ids_entry, type unix_sk_entry, type vma_entry } from "../images/index.js";
import { PAGE_SIZE } from "../sys/constants.js";
import { STATE_NAMES } from "../kinds/sockets/tcp-repair.js";
import { VMA } from "../kinds/memory/vma.js";
import { PE, pageCount } from "../kinds/memory/pages.js";

export interface FdSummary {
  fd: number;
  /** The kind of file, as criu's fd_types names it (REG, PIPE, UNIXSK, ...). */
  kind: string;
  /** What it is: a path, pipe:[ID], a socket's addresses and state, ... */
  what: string;
  /** What ties it to other tasks' fds (a pipe, a unix socket's inode and peer, a TCP connection's ends). */
  link?: string;
  peer?: string;
}

export interface TaskSummary {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  threads: number[];
  comm: string;
  state: string;
  exe?: string;
  /** Bytes of each kind of mapping, and pages the images hold for the task. */
  memory: { vmas: number; anonPrivate: number; filePrivate: number; fileShared: number; sharedMemory: number; pages: number; pagesInParent: number; pagesLazy: number };
  fds: FdSummary[];
  /** Namespace ids (criu's kobj ids) by kind; `own` lists the kinds the tree has apart from the dumping side. */
  namespaces: Record<string, number>;
}

export interface CheckpointSummary {
  dir: string;
  parent?: string;
  stats?: { freezingMs: number; frozenMs: number; memdumpMs: number; memwriteMs: number; pagesScanned: number; pagesWritten: number; pagesInParent: number };
  /** The namespace kinds of the tree's own (a restore makes them anew). */
  ownNamespaces: string[];
  tasks: TaskSummary[];
}

const TASK_STATES: Record<number, string> = { 1: "running", 2: "dead", 3: "stopped", 6: "zombie" };
const FD_KINDS = Object.fromEntries(Object.entries(fd_types).map(([k, v]) => [v, k])) as Record<number, string>;
const SOCK_TYPES: Record<number, string> = { 1: "stream", 2: "dgram", 3: "raw", 5: "seqpacket" };
const NS_KINDS = ["pid", "net", "ipc", "uts", "mnt", "user", "cgroup", "time"] as const;

const mib = (bytes: number): string => (bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MiB` : `${Math.round(bytes / 1024)} KiB`);

/** An address kept as network-order words. */
function ipOf(family: number, words: readonly number[]): string {
  const b = Buffer.alloc(words.length * 4);
  words.forEach((w, i) => b.writeUInt32LE(w >>> 0, i * 4));
  if (family === 2) return [...b.subarray(0, 4)].join(".");
  const groups = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2).toString(16));
  return `[${groups.join(":").replace(/(^|:)0(:0)+(:|$)/, "::")}]`;
}

function describeInet(s: inet_sk_entry): Pick<FdSummary, "what" | "link" | "peer"> {
  const proto = s.proto === 6 ? "tcp" : s.proto === 17 ? "udp" : s.proto === 1 || s.proto === 58 ? "icmp" : `proto ${s.proto}`;
  const v = s.family === 10 ? "6" : "";
  const src = `${ipOf(s.family, s.src_addr)}:${s.src_port}`;
  if (!s.dst_port) return { what: `${proto}${v} ${src} ${s.state === 10 ? "LISTEN" : STATE_NAMES[s.state] ?? `state ${s.state}`}` };
  const dst = `${ipOf(s.family, s.dst_addr)}:${s.dst_port}`;
  return { what: `${proto}${v} ${src} -> ${dst} ${STATE_NAMES[s.state] ?? `state ${s.state}`}`, link: `inet ${src} ${dst}`, peer: `inet ${dst} ${src}` };
}

function describeUnix(s: unix_sk_entry): Pick<FdSummary, "what" | "link" | "peer"> {
  const name = s.name.length ? (s.name[0] === 0 ? `@${s.name.subarray(1).toString()}` : s.name.toString()) : "(unnamed)";
  return {
    what: `unix ${SOCK_TYPES[s.type] ?? `type ${s.type}`} ${name} (inode ${s.ino}${s.peer ? `, peer ${s.peer}` : ""})`,
    link: `unix ${s.ino}`, ...(s.peer ? { peer: `unix ${s.peer}` } : {}),
  };
}

function describeFile(f: file_entry | undefined, files: ReadonlyMap<number, file_entry>): Pick<FdSummary, "what" | "link" | "peer"> {
  if (!f) return { what: "(no file entry)" };
  // FIFOs and terminals name their path in a regular file entry of their own.
  const path = (id: number | undefined) => (id !== undefined ? files.get(id)?.reg?.name : undefined);
  if (f.reg) return { what: f.reg.name };
  if (f.pipe) return { what: `pipe:[${f.pipe.pipe_id}]`, link: `pipe ${f.pipe.pipe_id}`, peer: `pipe ${f.pipe.pipe_id}` };
  if (f.fifo) return { what: `${path(f.fifo.regf_id) ?? "fifo"} (fifo, pipe ${f.fifo.pipe_id})`, link: `pipe ${f.fifo.pipe_id}`, peer: `pipe ${f.fifo.pipe_id}` };
  if (f.usk) return describeUnix(f.usk);
  if (f.isk) return describeInet(f.isk);
  if (f.tty) return { what: `${path(f.tty.regf_id) ?? "tty"} (terminal ${f.tty.tty_info_id})` };
  if (f.memfd) return { what: `memfd (inode ${f.memfd.inode_id})` };
  if (f.nsf) return { what: `namespace file (ns ${f.nsf.ns_id})` };
  if (f.efd) return { what: `eventfd (counter ${f.efd.counter})` };
  if (f.epfd) return { what: `epoll (${f.epfd.tfd.length} targets)` };
  if (f.tfd) return { what: `timerfd (clock ${f.tfd.clockid})` };
  if (f.sgfd) return { what: "signalfd" };
  if (f.ify) return { what: `inotify (${f.ify.wd.length} watches)` };
  if (f.pidfd) return { what: `pidfd (pid ${f.pidfd.nspid})` };
  if (f.psk) return { what: "packet socket" };
  if (f.nlsk) return { what: `netlink socket (protocol ${f.nlsk.protocol})` };
  return { what: FD_KINDS[f.type] ?? `type ${f.type}` };
}

function memoryOf(vmas: readonly vma_entry[], entries: readonly pagemap_entry[]): TaskSummary["memory"] {
  const m = { vmas: 0, anonPrivate: 0, filePrivate: 0, fileShared: 0, sharedMemory: 0, pages: 0, pagesInParent: 0, pagesLazy: 0 };
  for (const v of vmas) {
    if (v.status & VMA.GUARD) continue;
    m.vmas++;
    const size = Number(v.end - v.start);
    if (v.status & (VMA.ANON_SHARED | VMA.SYSVIPC)) m.sharedMemory += size;
    else if (v.status & VMA.FILE_SHARED) m.fileShared += size;
    else if (v.status & VMA.FILE_PRIVATE) m.filePrivate += size;
    else if (v.status & VMA.ANON_PRIVATE) m.anonPrivate += size;
  }
  for (const e of entries) {
    const flags = e.flags ?? PE.PRESENT;
    const n = pageCount(e);
    if (flags & PE.PARENT) m.pagesInParent += n;
    else if (flags & PE.PRESENT) m.pages += n;
    if (flags & PE.LAZY) m.pagesLazy += n;
  }
  return m;
}

/** Reads the summary of the checkpoint in `dir` (crest's or criu's images). */
export function inspect(dir: string): CheckpointSummary {
  if (!existsSync(join(dir, "inventory.img"))) throw new Error(`${dir} holds no checkpoint (no inventory.img)`);
  const inventory = readImage(dir, IMG.inventory)[0]!;
  const files = new Map<number, file_entry>(existsSync(join(dir, "files.img")) ? readImage(dir, IMG.files).map((f) => [f.id, f]) : []);
  const rootIds = inventory.root_ids;
  let ownNamespaces: string[] = [];
  const tasks = readImage(dir, IMG.pstree).map((p, i): TaskSummary => {
    const core = readImage(dir, IMG.core, p.pid)[0]!;
    const zombie = core.tc?.task_state === 6;
    const ids: task_kobj_ids_entry | undefined = zombie ? undefined : readImage(dir, IMG.ids, p.pid)[0];
    const mm = zombie ? undefined : readImage(dir, IMG.mm, p.pid)[0];
    const pm = zombie || !existsSync(join(dir, `pagemap-${p.pid}.img`)) ? undefined : readImage(dir, IMG.pagemap, p.pid);
    const fdinfo = ids?.files_id !== undefined && existsSync(join(dir, `fdinfo-${ids.files_id}.img`)) ? readImage(dir, IMG.fdinfo, ids.files_id) : [];
    const namespaces: Record<string, number> = {};
    for (const k of NS_KINDS) {
      const id = (ids as unknown as Record<string, number | undefined> | undefined)?.[`${k}_ns_id`];
      if (id !== undefined) namespaces[k] = id;
    }
    if (i === 0 && rootIds) ownNamespaces = NS_KINDS.filter((k) => namespaces[k] !== undefined && (rootIds as unknown as Record<string, number | undefined>)[`${k}_ns_id`] !== namespaces[k]);
    return {
      pid: p.pid, ppid: p.ppid, pgid: p.pgid, sid: p.sid, threads: p.threads, comm: core.tc?.comm ?? "", state: TASK_STATES[core.tc?.task_state ?? 0] ?? `state ${core.tc?.task_state}`,
      ...(mm?.exe_file_id !== undefined && files.get(mm.exe_file_id)?.reg ? { exe: files.get(mm.exe_file_id)!.reg!.name } : {}),
      memory: memoryOf(mm?.vmas ?? [], pm?.entries ?? []),
      fds: fdinfo.map((fd) => ({ fd: fd.fd, kind: FD_KINDS[fd.type] ?? `type ${fd.type}`, ...describeFile(files.get(fd.id), files) })),
      namespaces,
    };
  });
  const stats = existsSync(join(dir, "stats-dump")) ? readImage(dir, IMG.stats, "dump")[0]?.dump : undefined;
  let parent: string | undefined;
  try {
    parent = readlinkSync(join(dir, "parent"));
  } catch {
    // no parent link: not an incremental dump
  }
  return {
    dir, ...(parent !== undefined ? { parent } : {}), ownNamespaces, tasks,
    ...(stats ? {
      stats: {
        freezingMs: stats.freezing_time / 1000, frozenMs: stats.frozen_time / 1000, memdumpMs: stats.memdump_time / 1000, memwriteMs: stats.memwrite_time / 1000,
        pagesScanned: Number(stats.pages_scanned), pagesWritten: Number(stats.pages_written), pagesInParent: Number(stats.pages_skipped_parent),
      },
    } : {}),
  };
}

/** Pairs of tasks whose fds are two ends of one thing (a pipe, a unix socket pair, a TCP connection), once each. */
export function links(c: CheckpointSummary): Array<{ from: number; to: number; what: string }> {
  const holders = new Map<string, Array<{ pid: number; fd: FdSummary }>>();
  for (const t of c.tasks) for (const fd of t.fds) if (fd.link) (holders.get(fd.link) ?? holders.set(fd.link, []).get(fd.link)!).push({ pid: t.pid, fd });
  const out: Array<{ from: number; to: number; what: string }> = [];
  const seen = new Set<string>();
  for (const t of c.tasks) {
    for (const fd of t.fds) {
      if (!fd.peer) continue;
      for (const other of holders.get(fd.peer) ?? []) {
        if (other.pid === t.pid) continue;
        const key = [fd.link, fd.peer].sort().join("|") + `|${Math.min(t.pid, other.pid)}|${Math.max(t.pid, other.pid)}`;
        if (seen.has(key)) continue;
        seen.add(key);
        out.push({ from: t.pid, to: other.pid, what: fd.link!.split(" ")[0]! === "pipe" ? fd.what : fd.what.split(" (")[0]! });
      }
    }
  }
  return out;
}

export function formatText(c: CheckpointSummary): string {
  const lines = [`Checkpoint ${c.dir}${c.parent ? ` (incremental: parent ${c.parent})` : ""}`];
  if (c.stats) {
    const s = c.stats;
    lines.push(`Dump: frozen ${s.frozenMs.toFixed(1)} ms (freezing ${s.freezingMs.toFixed(1)} ms, memory dump ${s.memdumpMs.toFixed(1)} ms, write ${s.memwriteMs.toFixed(1)} ms); ` +
      `pages scanned ${s.pagesScanned}, written ${s.pagesWritten}, left in the parent ${s.pagesInParent}`);
  }
  lines.push(`Namespaces of its own: ${c.ownNamespaces.length ? c.ownNamespaces.join(", ") : "none"}`, "", "Tree:");
  const byParent = new Map<number, TaskSummary[]>();
  const pids = new Set(c.tasks.map((t) => t.pid));
  for (const t of c.tasks) if (pids.has(t.ppid)) (byParent.get(t.ppid) ?? byParent.set(t.ppid, []).get(t.ppid)!).push(t);
  const walk = (t: TaskSummary, prefix: string, last: boolean, top: boolean) => {
    const threads = t.threads.length > 1 ? `, ${t.threads.length} threads` : "";
    lines.push(`${prefix}${top ? "" : last ? "└─ " : "├─ "}${t.pid} ${t.comm} (${t.state}${threads}; pgid ${t.pgid}, sid ${t.sid})`);
    const kids = byParent.get(t.pid) ?? [];
    kids.forEach((k, i) => walk(k, top ? prefix : prefix + (last ? "   " : "│  "), i === kids.length - 1, false));
  };
  for (const root of c.tasks.filter((t) => !pids.has(t.ppid))) walk(root, "  ", true, true);
  for (const t of c.tasks) {
    const m = t.memory;
    lines.push("", `Task ${t.pid} (${t.comm})${t.exe ? `: ${t.exe}` : ""}`);
    if (t.state !== "zombie") {
      lines.push(`  memory: ${m.vmas} mappings; anonymous private ${mib(m.anonPrivate)}, file private ${mib(m.filePrivate)}, file shared ${mib(m.fileShared)}, shared memory ${mib(m.sharedMemory)}; ` +
        `${m.pages} pages in the images (${mib(m.pages * PAGE_SIZE)})${m.pagesInParent ? `, ${m.pagesInParent} in the parent images` : ""}${m.pagesLazy ? `, ${m.pagesLazy} lazy` : ""}`);
      lines.push(`  namespaces: ${Object.entries(t.namespaces).map(([k, v]) => `${k} ${v}`).join(", ")}`);
    }
    for (const fd of t.fds) lines.push(`  fd ${String(fd.fd).padStart(3)}  ${fd.kind.padEnd(9)} ${fd.what}`);
  }
  const ties = links(c);
  if (ties.length) lines.push("", "Between tasks:", ...ties.map((l) => `  ${l.from} <-> ${l.to}: ${l.what}`));
  return lines.join("\n") + "\n";
}

const dotQuote = (s: string): string => `"${s.replace(/["\\]/g, "\\$&")}"`;

/** Graphviz: tasks as boxes, parent to child arrows, dashed lines for what ties tasks together. */
export function formatDot(c: CheckpointSummary): string {
  const pids = new Set(c.tasks.map((t) => t.pid));
  const lines = ["digraph checkpoint {", "  node [shape=box, fontname=monospace];"];
  for (const t of c.tasks) lines.push(`  t${t.pid} [label=${dotQuote(`${t.pid} ${t.comm}\\n${t.fds.length} fds, ${mib(t.memory.pages * PAGE_SIZE)} of pages`)}];`);
  for (const t of c.tasks) if (pids.has(t.ppid)) lines.push(`  t${t.ppid} -> t${t.pid};`);
  for (const l of links(c)) lines.push(`  t${l.from} -> t${l.to} [dir=both, style=dashed, label=${dotQuote(l.what)}];`);
  lines.push("}");
  return lines.join("\n") + "\n";
}

const xml = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** The same picture as SVG, laid out in rows by depth. */
export function formatSvg(c: CheckpointSummary): string {
  const W = 180, H = 44, GX = 40, GY = 70, PAD = 20;
  const pids = new Set(c.tasks.map((t) => t.pid));
  const depth = new Map<number, number>();
  const depthOf = (t: TaskSummary): number => {
    if (depth.has(t.pid)) return depth.get(t.pid)!;
    const parent = c.tasks.find((p) => p.pid === t.ppid);
    const d = pids.has(t.ppid) && parent && parent !== t ? depthOf(parent) + 1 : 0;
    depth.set(t.pid, d);
    return d;
  };
  const rows: TaskSummary[][] = [];
  for (const t of c.tasks) (rows[depthOf(t)] ??= []).push(t);
  const at = new Map<number, { x: number; y: number }>();
  rows.forEach((row, d) => row.forEach((t, i) => at.set(t.pid, { x: PAD + i * (W + GX), y: PAD + d * (H + GY) })));
  const width = PAD * 2 + Math.max(...rows.map((r) => r.length)) * (W + GX) - GX;
  const height = PAD * 2 + rows.length * (H + GY) - GY;
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="monospace" font-size="12">`];
  for (const t of c.tasks) {
    const p = at.get(t.ppid), q = at.get(t.pid)!;
    if (p && t.ppid !== t.pid) out.push(`<line x1="${p.x + W / 2}" y1="${p.y + H}" x2="${q.x + W / 2}" y2="${q.y}" stroke="black"/>`);
  }
  for (const l of links(c)) {
    const a = at.get(l.from)!, b = at.get(l.to)!;
    const mx = (a.x + b.x) / 2 + W / 2, my = Math.min(a.y, b.y) - GY / 3;
    out.push(`<path d="M${a.x + W / 2},${a.y} Q${mx},${my} ${b.x + W / 2},${b.y}" fill="none" stroke="steelblue" stroke-dasharray="4 3"><title>${xml(l.what)}</title></path>`);
  }
  for (const t of c.tasks) {
    const { x, y } = at.get(t.pid)!;
    out.push(`<g><title>${xml(t.fds.map((f) => `fd ${f.fd} ${f.what}`).join("\n"))}</title><rect x="${x}" y="${y}" width="${W}" height="${H}" fill="white" stroke="black"/>` +
      `<text x="${x + 6}" y="${y + 17}">${xml(`${t.pid} ${t.comm}`)}</text><text x="${x + 6}" y="${y + 35}">${xml(`${t.fds.length} fds, ${mib(t.memory.pages * PAGE_SIZE)}`)}</text></g>`);
  }
  out.push("</svg>");
  return out.join("\n") + "\n";
}

export const INSPECT_USAGE = "Usage: crest inspect [--format text|json|dot|svg] DIR\n";

/** `crest inspect`: prints the summary of the checkpoint in DIR. */
export function inspectMain(argv: string[]): number {
  let format = "text";
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--format" || a === "-f") format = argv[++i] ?? "";
    else if (a.startsWith("--format=")) format = a.slice("--format=".length);
    else if (a === "-h" || a === "--help") {
      process.stdout.write(INSPECT_USAGE);
      return 0;
    } else rest.push(a);
  }
  const print = { text: formatText, json: (c: CheckpointSummary) => JSON.stringify(c, null, 2) + "\n", dot: formatDot, svg: formatSvg }[format];
  if (!print || rest.length !== 1) {
    process.stderr.write(`crest inspect: ${!print ? `unknown format ${format}` : "give one images directory"}\n${INSPECT_USAGE}`);
    return 1;
  }
  try {
    process.stdout.write(print(inspect(rest[0]!)));
    return 0;
  } catch (e) {
    process.stderr.write(`crest inspect: ${(e as Error).message}\n`);
    return 1;
  }
}
