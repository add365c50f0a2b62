// crest as a Node library:
//
//   import { dump, restore, check, features, CrestError } from "crest";
//   await dump({ pid, imagesDir: "/tmp/imgs", tcpEstablished: true });
//   const { pid } = await restore({ imagesDir: "/tmp/imgs", tcpEstablished: true });
//
// A thin face, like the command line and the RPC service: each call runs in
// a `crest swrk` of its own (crest traces from its own process, never from
// the caller's) and speaks criu's RPC to it, so the options are criu_opts
// and every rule of the RPC face holds. Options are typed, results are
// promises, long dumps and restores report progress, an AbortSignal cancels
// a command before the tasks run again, and failures are CrestErrors.
import { closeSync, openSync, constants as fsc } from "node:fs";
import { criu_network_lock_method, criu_req_type, type criu_opts, type criu_resp, type EncodeInput } from "./images/index.js";
import { SwrkClient } from "./faces/rpc/client.js";
import type { Progress } from "./pipelines/hooks.js";

export type { Progress } from "./pipelines/hooks.js";

/** Options every command shares. */
export interface CommonOptions {
  /** The images directory (crest opens it; it must exist). */
  imagesDir: string;
  /** The log file's name in the images directory (criu's default: criu.log). */
  logFile?: string;
  /** 0..4, as criu's -v (default 2). */
  logLevel?: number;
  tcpEstablished?: boolean;
  tcpClose?: boolean;
  fileLocks?: boolean;
  /** External objects, as criu's --external (crest supports unix[INO]). */
  external?: string[];
  /** criu's --ext-unix-sk. */
  extUnixSk?: boolean;
}

export interface DumpOptions extends CommonOptions {
  /** The root of the tree to dump. */
  pid: number;
  leaveRunning?: boolean;
  leaveStopped?: boolean;
  skipInFlight?: boolean;
  networkLock?: "iptables" | "nftables" | "skip";
  /** Seconds freezing may take (criu's --timeout). */
  timeout?: number;
  /** The largest deleted file kept, in bytes (criu's --ghost-limit). */
  ghostLimit?: number;
  /** The parent images (a pre-dump's), relative to imagesDir as criu takes it (--prev-images-dir). */
  parentImagesDir?: string;
  /** Track memory for a next dump; with parentImagesDir, pages unchanged since stay there (--track-mem). */
  trackMem?: boolean;
  /** Punch the pages these images hold anew out of the parent images (--auto-dedup). */
  autoDedup?: boolean;
  /** With parentImagesDir and trackMem: copy the pages written since the pre-dump while the tree runs, into a layer of their own, before the freeze (crest's --precopy). */
  precopy?: boolean;
  /** Send the pages to a page server (criu's --page-server --address --port); with lazyPages, serve them from the frozen tree on port instead. */
  pageServer?: { address?: string; port: number };
  /** Leave private memory for a remote lazy restore (criu's dump --lazy-pages), served on pageServer.port. */
  lazyPages?: boolean;
}

export interface RestoreOptions extends CommonOptions {
  /** The restored root becomes a child of the calling process (criu's --restore-sibling). */
  restoreSibling?: boolean;
  /** Descriptions the restored tree gets from the caller: the caller's fd and criu's key (pipe:[INO], socket:[INO], a path). */
  inheritFd?: Array<{ fd: number; key: string }>;
  /** Private memory is filled on first touch by a lazy-pages daemon the caller runs (crest lazy-pages; criu's --lazy-pages). */
  lazyPages?: boolean;
}

/** What each call can be given besides its options. */
export interface Control {
  /** Cancels the command at its next step (a dump: the tree runs on; a restore: nothing is left alive). */
  signal?: AbortSignal;
  /** Called as the command goes: tasks frozen, tasks dumped or restored, pages written, bytes per second. */
  onProgress?: (p: Progress) => void;
}

/** Why a command failed: `code` says what kind of failure, the message names the object and what to do. */
export class CrestError extends Error {
  constructor(
    message: string,
    /** unsupported (crest refuses the object or option), image (bad images), aborted, failed. */
    readonly code: string,
    /** The errno behind it, when there was one. */
    readonly errno?: number,
  ) {
    super(message);
    this.name = "CrestError";
  }
}

export interface DumpResult {
  /** The process dumped (the tree's root). */
  pid: number;
}

export interface RestoreResult {
  /** The restored root's PID. */
  pid: number;
}

function criuOpts(o: CommonOptions, fd: number): EncodeInput<criu_opts> {
  return {
    images_dir_fd: fd, log_file: o.logFile ?? "criu.log", log_level: o.logLevel ?? 2,
    ...(o.tcpEstablished !== undefined ? { tcp_established: o.tcpEstablished } : {}),
    ...(o.tcpClose !== undefined ? { tcp_close: o.tcpClose } : {}),
    ...(o.fileLocks !== undefined ? { file_locks: o.fileLocks } : {}),
    ...(o.extUnixSk !== undefined ? { ext_unix_sk: o.extUnixSk } : {}),
    external: o.external ?? [],
  };
}

const LOCKS = { iptables: criu_network_lock_method.IPTABLES, nftables: criu_network_lock_method.NFTABLES, skip: criu_network_lock_method.SKIP } as const;

/** Runs one request in a swrk of its own, the images directory open for it. */
async function call(type: number, o: CommonOptions, extra: Partial<EncodeInput<criu_opts>>, ctl: Control = {}): Promise<criu_resp> {
  if (ctl.signal?.aborted) throw new CrestError("cancelled before it started", "aborted");
  const dir = openSync(o.imagesDir, fsc.O_RDONLY | fsc.O_DIRECTORY);
  const client = SwrkClient.start();
  try {
    const opts = { ...criuOpts(o, dir), ...extra, notify_scripts: true, crest_progress: ctl.onProgress !== undefined || ctl.signal !== undefined };
    const resp = await client.request({ type: type as criu_resp["type"], opts }, (n) => {
      if (n.crest_progress) ctl.onProgress?.(JSON.parse(n.crest_progress) as Progress);
      // A no to any notification fails the command where it stands (criu: a failed action script).
      return !ctl.signal?.aborted;
    });
    if (!resp.success) {
      const code = ctl.signal?.aborted ? "aborted" : resp.crest_errcode ?? "failed";
      throw new CrestError(resp.cr_errmsg ?? "crest failed without saying why", code, resp.cr_errno);
    }
    return resp;
  } finally {
    await client.close();
    closeSync(dir);
  }
}

/** Checkpoints the tree rooted at o.pid into o.imagesDir. */
export async function dump(o: DumpOptions, ctl?: Control): Promise<DumpResult> {
  await call(criu_req_type.DUMP, o, dumpOpts(o), ctl);
  return { pid: o.pid };
}

/** Copies the tree's memory while it runs on, for a later dump with parentImagesDir and trackMem. */
export async function preDump(o: DumpOptions, ctl?: Control): Promise<DumpResult> {
  await call(criu_req_type.PRE_DUMP, o, dumpOpts(o), ctl);
  return { pid: o.pid };
}

function dumpOpts(o: DumpOptions): Partial<EncodeInput<criu_opts>> {
  return {
    pid: o.pid,
    ...(o.leaveRunning ? { leave_running: true } : {}), ...(o.leaveStopped ? { leave_stopped: true } : {}),
    ...(o.skipInFlight !== undefined ? { tcp_skip_in_flight: o.skipInFlight } : {}),
    ...(o.networkLock ? { network_lock: LOCKS[o.networkLock] } : {}),
    ...(o.timeout !== undefined ? { timeout: o.timeout } : {}), ...(o.ghostLimit !== undefined ? { ghost_limit: o.ghostLimit } : {}),
    ...(o.parentImagesDir !== undefined ? { parent_img: o.parentImagesDir } : {}), ...(o.trackMem ? { track_mem: true } : {}),
    ...(o.autoDedup ? { auto_dedup: true } : {}), ...(o.lazyPages ? { lazy_pages: true } : {}), ...(o.precopy ? { crest_precopy: true } : {}),
    ...(o.pageServer ? { ps: { port: o.pageServer.port, ...(o.pageServer.address !== undefined ? { address: o.pageServer.address } : {}) } } : {}),
  };
}

/** Restores the tree in o.imagesDir; it runs detached (or as the caller's child with restoreSibling). */
export async function restore(o: RestoreOptions, ctl?: Control): Promise<RestoreResult> {
  const resp = await call(criu_req_type.RESTORE, o, {
    ...(o.restoreSibling ? { rst_sibling: true } : {}), ...(o.lazyPages ? { lazy_pages: true } : {}),
    inherit_fd: (o.inheritFd ?? []).map((i) => ({ fd: i.fd, key: i.key })),
  }, ctl);
  return { pid: resp.restore?.pid ?? -1 };
}

/** Whether this kernel has what crest needs (crest check); the log in imagesDir if one is named. */
export async function check(o: Partial<CommonOptions> = {}): Promise<{ ok: boolean }> {
  const client = SwrkClient.start();
  try {
    const resp = await client.request({ type: criu_req_type.CHECK, opts: { images_dir_fd: -1, log_to_stderr: o.logFile === undefined, ...(o.logFile ? { images_dir: o.imagesDir, log_file: o.logFile } : {}) } });
    return { ok: resp.success };
  } finally {
    await client.close();
  }
}

/** Which of criu's optional features crest offers here (criu's FEATURE_CHECK). */
export async function features(): Promise<{ memTrack: boolean; lazyPages: boolean; pidfdStore: boolean }> {
  const client = SwrkClient.start();
  try {
    const f = (await client.request({ type: criu_req_type.FEATURE_CHECK, features: { mem_track: true, lazy_pages: true, pidfd_store: true } })).features ?? {};
    return { memTrack: f.mem_track ?? false, lazyPages: f.lazy_pages ?? false, pidfdStore: f.pidfd_store ?? false };
  } finally {
    await client.close();
  }
}

