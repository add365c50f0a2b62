// The one model of what the user asked for. The command line, configuration
// files, RPC requests and the library API all fill an Options; the
// pipelines read nothing else. Grouped as criu's options are: where the
// images are, the log, what a dump and a restore do, check, the resources
// outside the tree (--external, --inherit-fd), and the optional behaviours.
import { realpathSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { DEFAULT_LOG_LEVEL } from "./log.js";

/** criu's DEFAULT_GHOST_LIMIT: 1 MiB. */
const DEFAULT_GHOST_LIMIT = 1 << 20;

export type Command =
  | "dump" | "pre-dump" | "restore" | "check" | "service" | "swrk" | "page-server"
  | "lazy-pages" | "dedup" | "cpuinfo" | "exec" | "show";

export interface ImagesOptions {
  /** -D/--images-dir */
  dir: string;
  /** -W/--work-dir: where the log and other relative outputs go (defaults to the images directory). */
  workDir?: string;
}

export interface LogOptions {
  /** -o/--log-file, relative to the work directory. */
  file?: string;
  /** -v[N] */
  level: number;
  /** --log-pid: each restored task logs to FILE.PID. */
  perPid: boolean;
  /** --display-stats: print the dump/restore statistics at the end. */
  displayStats: boolean;
}

export interface DumpOptions {
  /** -t/--tree: root of the tree to dump. */
  tree?: number;
  /** -R/--leave-running */
  leaveRunning: boolean;
  /** -s/--leave-stopped */
  leaveStopped: boolean;
  /** --timeout N: seconds the dump may spend freezing the tree. */
  timeout?: number;
  /** --ghost-limit SIZE: the largest deleted file (in bytes on disk) a dump keeps in a ghost image. */
  ghostLimit: number;
  /**
   * --pre-dump-mode splice|read: how criu's pre-dump copies memory. crest's
   * copies it after the tree runs on either way (tracking makes that safe).
   */
  preDumpMode?: "splice" | "read";
  /** --prev-images-dir DIR: the parent images (relative to the images directory, as the `parent` link holds it). */
  prevImagesDir?: string;
  /** --track-mem: track memory for a next dump (pre-dump always does); with parent images, pages not written since stay there. */
  trackMem: boolean;
  /** --auto-dedup: once the images are written, the pages they hold anew are punched out of the parent images (crest dedup). */
  autoDedup: boolean;
  /**
   * --precopy (crest's own): with --prev-images-dir and --track-mem, the pages
   * written since are copied once more while the tree runs, into a layer of
   * their own (precopy/), before the freeze (pipelines/dump/precopy.ts).
   */
  precopy?: boolean;
  /**
   * RPC self-dump: the inode of the connection the request came through. The
   * client's own end of it is dumped as criu's USK_SERVICE socket, which
   * comes back holding the dump's answer (restored = true).
   */
  rpcSocket?: number;
}

export interface RestoreOptions {
  /** -d/--restore-detached */
  detached: boolean;
  /** -S/--restore-sibling: the restored root becomes a sibling of crest (a child of crest's parent). */
  sibling: boolean;
  /** --pidfile: restore writes the restored root's PID there (dump leaves it alone). */
  pidfile?: string;
  /** --status-fd FD: a byte is written there when the restored tree is ready (then the fd is closed). */
  statusFd?: number;
  /** --no-verify (crest's own): the images are not checked against the manifest their dump wrote (images/manifest.ts). */
  noVerify: boolean;
  /** --lazy-pages: private anonymous memory is left to `crest lazy-pages`, which copies each page in on first touch. */
  lazyPages?: boolean;
  /** -J/--join-ns (repeatable): namespaces the restored root enters instead of crest's. */
  joinNs: JoinNs[];
}

/** --join-ns NS:{PID|NS_FILE}[,EXTRA]: the namespace of kind NS of process PID, or the namespace file. */
export interface JoinNs {
  kind: string;
  /** A PID (its /proc/PID/ns/NS) or a path to a namespace file, as given. */
  file: string;
  /** Given after the file (criu takes a UID and GID for a user namespace). */
  extra?: string;
}

export interface CheckOptions {
  /** --all (extra and experimental features too). */
  all: boolean;
  /** --extra */
  extra: boolean;
  /** --experimental */
  experimental: boolean;
  /** --feature NAME (or "list"). */
  feature?: string;
}

/** --inherit-fd fd[N]:KEY: the restored tree gets crest's fd N where it had the resource KEY. */
export interface InheritFd {
  fd: number;
  key: string;
}

/** How established TCP connections are blocked while they are dumped and until restored (criu's --network-lock). */
export type NetworkLockMethod = "iptables" | "nftables" | "skip";

/** crest service: where it listens (--address; criu's default ./criu_service.socket). */
export interface ServiceOptions {
  /** --address: the service's socket; the page server's address (criu's one `addr`). */
  address?: string;
  /** --port: the page server's TCP port. */
  port?: number;
  /** --page-server: dump and pre-dump send pagemaps and pages to the page server at --address:--port. */
  pageServer?: boolean;
  /** --tls and its files: the page server's connection in TLS (images/tls.ts). */
  tls?: TlsOptions;
}

/** criu's --tls, --tls-cacert, --tls-cacrl, --tls-cert, --tls-key, --tls-no-cn-verify (unset files: criu's defaults under /etc/pki). */
export interface TlsOptions {
  on?: boolean;
  cacert?: string;
  cacrl?: string;
  cert?: string;
  key?: string;
  /** Do not check the peer certificate's name against --address. */
  noCnVerify?: boolean;
}

/** Sockets and connections (criu's --tcp-established, --tcp-close, --skip-in-flight, --network-lock). */
export interface NetOptions {
  /** --tcp-established: dump established TCP connections (with TCP repair) instead of refusing them. */
  tcpEstablished: boolean;
  /** --tcp-close: dump connections without their state and restore them closed. */
  tcpClose: boolean;
  /** --skip-in-flight: connections a listener has not accepted yet are left out instead of refused. */
  skipInFlight: boolean;
  /** --network-lock METHOD; unset: nftables where the kernel and nft allow it, else iptables. */
  lock?: NetworkLockMethod;
  /**
   * --empty-ns net (runc asks it): the tree's network namespace is made
   * anew but left empty, its contents neither dumped nor restored (the
   * caller sets it up); only its lock goes back in.
   */
  emptyNs: boolean;
}

/** The optional behaviours criu turns on by option. */
export interface FeatureOptions {
  /** -l/--file-locks: dump and restore the file locks the tree holds (refused without it). */
  fileLocks: boolean;
  /**
   * -j/--shell-job: the tree is a job of an interactive shell (its session
   * leader and terminal are outside it); restored into crest's own session
   * and terminal.
   */
  shellJob: boolean;
  /**
   * criu_opts.orphan_pts_master (RPC only, as in criu; runc sets it on every
   * request): a pty slave whose master is outside the tree is dumped, and on
   * restore gets a new master that is handed to the client
   * (the orphan-pts-master notification, the fd passed with it).
   */
  orphanPtsMaster: boolean;
  /**
   * --evasive-devices (runc asks it): an fd of a device whose path now
   * leads to another file of the same device number is dumped by that path,
   * as criu does (a container's /dev is made anew at each start).
   */
  evasiveDevices: boolean;
  /**
   * --link-remap (LXC always asks it): an open file whose name was removed
   * while other names of it remain is linked back under a temporary name
   * beside its old one (link_remap.ID) at dump, opened by that name at
   * restore and the name removed again (criu's linked remap). Without it
   * such a file is refused, as criu refuses it.
   */
  linkRemap: boolean;
  /**
   * --force-irmap (LXC always asks it): an inotify watch's inode is found by
   * path even where its file handle opens (criu's irmap). crest always
   * writes the watched inode's path (f_handle.path), so it asks nothing more.
   */
  forceIrmap: boolean;
  /**
   * --irmap-scan-path DIR (repeatable): where criu's irmap looks for a
   * watched inode first. crest never scans (it reads the path through the
   * watch's file handle), so the hint is kept and needs nothing more.
   */
  irmapScanPaths: string[];
}

/** The tree's mount namespace (criu's --root, --skip-mnt, --enable-fs; external mounts are in `external`). */
export interface MountOptions {
  /** --root DIR: restore the tree's root mount from this directory (a bind of it). */
  root?: string;
  /** --skip-mnt PATH (repeatable): mounts at these paths are left out of the dump. */
  skip: string[];
  /** --enable-fs NAMES (repeatable, comma-separated; "all"): file systems mounted again by name and options alone. */
  enableFs: string[];
  /** --mntns-compat-mode: criu's older way of building mounts; crest has one (as mount-v2's), which builds the same mounts, and says so. */
  compatMode?: boolean;
  /**
   * --ext-mount-map auto (or --external mnt[]): a mount of the tree that is
   * a bind of a mount crest's own namespace has, and that no
   * --ext-mount-map names, is dumped as external under the path it has in
   * crest's namespace, and bound from there on restore (criu's
   * autodetected external mounts).
   */
  autoExternal: boolean;
  /** --enable-external-sharing: a shared mount is auto-detected too (kept in its peer group with the outside one). */
  externalSharing: boolean;
  /** --enable-external-masters: a slave mount is auto-detected too, if its master is the outside mount's group (or master). */
  externalMasters: boolean;
}

/** criu's --manage-cgroups modes: what a restore does with the dumped cgroup directories and their properties. */
export type CgroupMode = "ignore" | "none" | "props" | "soft" | "full" | "strict";
export const CGROUP_MODES: readonly CgroupMode[] = ["ignore", "none", "props", "soft", "full", "strict"];

/** A --cgroup-root: where a controller's (or, without one, every controller's) dumped root goes. */
export interface CgroupRoot {
  controller?: string;
  path: string;
}

/** Cgroups (criu's --manage-cgroups, --cgroup-root, --cgroup-yard, --cgroup-props*, --cgroup-dump-controller, --freeze-cgroup). */
export interface CgroupOptions {
  /** soft by default, as criu: directories crest creates get their properties, existing ones are left alone. */
  mode: CgroupMode;
  /** --cgroup-root [CONTROLLER:]/PATH (repeatable). */
  roots: CgroupRoot[];
  /** --cgroup-yard DIR: the hierarchies are mounted there already, one directory each (criu's names). */
  yard?: string;
  /** --cgroup-props TEXT and --cgroup-props-file FILE: more properties to dump, criu's YAML-like format. */
  props?: string;
  propsFile?: string;
  /** --cgroup-dump-controller NAME (repeatable): only these controllers are dumped. */
  dumpControllers: string[];
  /** --freeze-cgroup PATH: the dump freezes the tree through this freezer cgroup first. */
  freeze?: string;
}

export interface ConfigOptions {
  /** --no-default-config was given: /etc/criu/default.conf and ~/.criu/default.conf are not read. */
  noDefault: boolean;
  /** --config FILE, read after the default configuration files. */
  file?: string;
}

export interface Options {
  command: Command;
  images: ImagesOptions;
  log: LogOptions;
  dump: DumpOptions;
  restore: RestoreOptions;
  check: CheckOptions;
  /** --external (repeatable): resources outside the tree, as criu names them (mnt[KEY]:VAL, veth[IF]:OUT, tty[RDEV:DEV], ...). */
  external: string[];
  inheritFd: InheritFd[];
  /**
   * -x/--ext-unix-sk: a datagram socket connected to a named one outside the
   * tree is dumped (USK_EXTERN) and connected to that name again on restore.
   * (`-x INO` also adds `unix[INO]` to `external`, as criu.)
   */
  extUnixSk: boolean;
  features: FeatureOptions;
  net: NetOptions;
  service: ServiceOptions;
  /** --action-script (repeatable): run for each hook with CRTOOLS_SCRIPT_ACTION set. */
  actionScripts: string[];
  config: ConfigOptions;
  mnt: MountOptions;
  cgroups: CgroupOptions;
}

export function defaultOptions(command: Command): Options {
  return {
    command,
    images: { dir: "." },
    log: { level: DEFAULT_LOG_LEVEL, perPid: false, displayStats: false },
    dump: { leaveRunning: false, leaveStopped: false, ghostLimit: DEFAULT_GHOST_LIMIT, trackMem: false, autoDedup: false },
    restore: { detached: false, sibling: false, noVerify: false, joinNs: [] },
    check: { all: false, extra: false, experimental: false },
    external: [],
    inheritFd: [],
    extUnixSk: false,
    features: { fileLocks: false, shellJob: false, orphanPtsMaster: false, evasiveDevices: false, linkRemap: false, forceIrmap: false, irmapScanPaths: [] },
    net: { tcpEstablished: false, tcpClose: false, skipInFlight: false, emptyNs: false },
    service: {},
    actionScripts: [],
    config: { noDefault: false },
    mnt: { skip: [], enableFs: [], autoExternal: false, externalSharing: false, externalMasters: false },
    cgroups: { mode: "soft", roots: [], dumpControllers: [] },
  };
}

/** Resolves a path given on the command line the way criu does: relative to the work directory. */
export function workPath(opts: Options, p: string): string {
  return isAbsolute(p) ? p : join(opts.images.workDir ?? opts.images.dir, p);
}

/** The namespace kinds --join-ns takes (criu also takes time and user, and in its code mnt). */
export const JOINABLE: readonly string[] = ["net", "uts", "ipc"];

/**
 * What the model can hold that crest cannot carry out yet, one message per
 * item naming it, for every face to refuse before any work starts.
 */
export function unsupported(opts: Options): string[] {
  const why = opts.external.map(unsupportedExternal).filter((w): w is string => w !== undefined);
  for (const j of opts.restore.joinNs) {
    if (!JOINABLE.includes(j.kind)) {
      why.push(`--join-ns ${j.kind}:${j.file}: crest joins ${JOINABLE.join(", ")} namespaces so far${j.kind === "pid" ? " (criu cannot join a PID namespace either)" : ""}; restore without it, or with --external and --inherit-fd for a namespace the tree was dumped in`);
    } else if (j.extra !== undefined) {
      why.push(`--join-ns ${j.kind}:${j.file},${j.extra}: options after the namespace file are for a user namespace only`);
    }
  }
  if (opts.restore.lazyPages && opts.command === "pre-dump") {
    why.push("--lazy-pages on pre-dump: a pre-dump copies every page while the tree runs on, none is left for a lazy restore; pre-dump plainly, then dump --lazy-pages --prev-images-dir");
  }
  if (opts.restore.lazyPages && opts.command === "dump" && opts.service.pageServer) {
    why.push("--lazy-pages with --page-server on dump: the dump serves its lazy pages itself on --address:--port; send the other pages to a page server, or keep them lazy, not both");
  }
  if (opts.dump.autoDedup && opts.command === "restore") {
    why.push("--auto-dedup on restore: crest does not punch the pages out of the images as it restores them (criu does); restore without it, and run crest dedup -D DIR on the images to free the room their parents' old pages take");
  }
  if (opts.dump.autoDedup && opts.service.pageServer) {
    why.push("--auto-dedup with --page-server: the images are on the page server's side, which crest's dump cannot punch; run crest dedup there");
  }
  return why;
}

/**
 * --prev-images-dir, taken from the images directory as the parent link
 * will hold it, and resolved by the kernel, not by words: the images
 * directory may be an RPC client's /proc/PID/fd/N, whose ".." is the
 * directory's parent.
 */
export function parentImagesDir(opts: Options): string | null {
  const prev = opts.dump.prevImagesDir;
  if (prev === undefined) return null;
  const path = prev.startsWith("/") ? prev : `${opts.images.dir}/${prev}`;
  try {
    return realpathSync.native(path);
  } catch {
    return path;
  }
}

/**
 * Adds an --external value as criu's add_external: `mnt[]` with an optional
 * `:m` or `:s` (criu's ext_mount_parse_auto, which looks at that one letter)
 * turns on the auto-detection of external mounts (--ext-mount-map auto),
 * with external masters or sharing; anything else is kept as given.
 * Returns what is wrong with a malformed value.
 */
export function addExternal(o: Options, e: string): string | undefined {
  if (!e.startsWith("mnt[]")) {
    o.external.push(e);
    return undefined;
  }
  const rest = e.slice(5);
  if (rest.startsWith(":")) {
    if (rest[1] === "m") o.mnt.externalMasters = true;
    else if (rest[1] === "s") o.mnt.externalSharing = true;
    else if (rest.length > 1) return `--external ${e}: after mnt[]: criu takes m (external masters) or s (external sharing)`;
  }
  o.mnt.autoExternal = true;
  return undefined;
}

/** Why crest cannot take an --external object (criu's kinds but unix[INO] and tty[RDEV:DEV]); undefined if it can. */
export function unsupportedExternal(e: string): string | undefined {
  if (externalUnix(e) !== undefined || /^tty\[[0-9a-f]+:[0-9a-f]+\]$/.test(e)) return undefined;
  if (externalMount(e) !== undefined) return undefined;
  // LXC's restore passes "console:" (its console's name, empty without one): criu keeps it and no part of criu 4.2 looks the key up.
  if (/^console:/.test(e)) return undefined;
  // The tree's network namespace: a veth's peer outside it, or the whole namespace the caller owns.
  if (/^veth\[[^\]]+\]:[^@]+(@.*)?$/.test(e) || /^net\[\d+\]:.+$/.test(e) || /^macvlan\[[^\]]+\]:.+$/.test(e)) return undefined;
  return `--external ${e}: crest supports only unix[INO] (a unix socket whose peer is outside the tree), tty[RDEV:DEV] (a terminal), ` +
    "veth[IFNAME]:OUTSIDE[@BRIDGE] (a veth of the tree's network namespace and its peer's name outside), macvlan[IFNAME]:PARENT (a macvlan of the tree's " +
    "network namespace and its parent link outside), net[INO]:KEY (the tree's network namespace, the caller's) and mnt[KEY]:VAL (a mount) so far";
}

/** `unix[INO]` of --external (or --ext-unix-sk=INO): the inode of a socket of the tree whose peer may be outside; undefined for other kinds. */
export function externalUnix(e: string): number | undefined {
  const m = /^unix\[(\d+)\]$/.exec(e);
  return m ? Number(m[1]) : undefined;
}

/** Whether `--external unix[INO]` (or `--ext-unix-sk=INO`) names socket `ino`. */
export function isExternalUnix(opts: Options, ino: number): boolean {
  return opts.external.some((e) => externalUnix(e) === ino);
}

/**
 * `mnt[KEY]:VAL` of --external (or --ext-mount-map KEY:VAL): on dump KEY
 * is a mount point of the tree and VAL the name it gets in the image; on
 * restore KEY is that name and VAL the directory bound there. Undefined
 * for other kinds (mnt[] is addExternal's; dev[...] crest does not take yet).
 */
export function externalMount(e: string): { key: string; val: string } | undefined {
  // VAL may be empty (criu takes it so): a mount that needs it is refused where it is used.
  const m = /^mnt\[([^\]]+)\]:(.*)$/.exec(e);
  return m ? { key: m[1]!, val: m[2]! } : undefined;
}
