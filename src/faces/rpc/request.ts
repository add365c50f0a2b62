// A request's criu_opts onto the one Options model, as criu's
// setup_opts_from_req reads them: the configuration files first (global,
// user, CRIU_CONFIG_FILE), then the request's fields, then the request's own
// config_file, which overrides them. Paths the client names by fd
// (images_dir_fd, work_dir_fd, status_fd) are the client's: reached
// through /proc/<client>/fd/N, so they work across mount namespaces and with
// the client's own rights to them. A field crest cannot carry out is refused
// by name, never ignored. Pure, but for reading the configuration files.
import type { criu_opts } from "../../images/index.js";
import { CLONE } from "../../sys/constants.js";
import { criu_cg_mode, criu_network_lock_method, criu_pre_dump_mode } from "../../images/index.js";
import { addExternal, defaultOptions, type CgroupMode, type Command, type Options } from "../../options.js";
import { applyConfigFile, parseArgs } from "../cli/args.js";
import type { ConfigEnv } from "../cli/config.js";
import type { Peer } from "./wire.js";

/** How crest serves the connection: swrk (a client's own child, as go-criu, libcriu and pycriu start it) or the service. */
export type Mode = "swrk" | "service";

export interface Translated {
  options: Options;
  /** Send NOTIFY for each hook and wait for the client's answer (notify_scripts). */
  notify: boolean;
  /** What crest refuses, one message each. */
  refused: string[];
  /** The client's status fd, as a path to open for writing (status_fd). */
  statusPath?: string;
}

/** criu_opts fields crest has no counterpart for yet: refused when set to anything but criu's default. */
const UNSUPPORTED: ReadonlyArray<[keyof criu_opts, string]> = [
  ["exec_cmd", "--exec-cmd"],
  ["weak_sysctls", "--weak-sysctls"], ["lsm_profile", "an LSM profile"],
  ["pidfd_store_sk", "the pidfd store (pidfd_store_sk)"], ["lsm_mount_context", "an LSM mount context"],
  ["skip_file_rwx_check", "--skip-file-rwx-check"], ["unprivileged", "--unprivileged"],
];

/** criu_cg_mode to the model's modes (DEFAULT is soft, as criu's CG_MODE_DEFAULT). */
const CG_MODES: Partial<Record<criu_cg_mode, CgroupMode>> = {
  [criu_cg_mode.IGNORE]: "ignore", [criu_cg_mode.CG_NONE]: "none", [criu_cg_mode.PROPS]: "props",
  [criu_cg_mode.SOFT]: "soft", [criu_cg_mode.FULL]: "full", [criu_cg_mode.STRICT]: "strict", [criu_cg_mode.DEFAULT]: "soft",
};

/** criu's defaults for fields that are set to them by clients that fill every field. */
const DEFAULTS: Partial<Record<keyof criu_opts, unknown>> = { cpu_cap: 0xffffffff };

function isSet(v: unknown, dflt: unknown): boolean {
  if (v === undefined || v === null || v === false) return false;
  if (Array.isArray(v)) return v.length > 0;
  return v !== dflt;
}

const fdPath = (peer: Peer, fd: number) => `/proc/${peer.pid}/fd/${fd}`;

/** The Options a request asks for, and what crest refuses of it. */
export function translate(command: Command, o: criu_opts | undefined, peer: Peer, mode: Mode, configs: ConfigEnv): Translated {
  // The configuration files the command line would read, then the request.
  const base = parseArgs([command], configs);
  const options = base.command === command ? base.options : defaultOptions(command);
  const refused = base.refused.map((f) => `option ${f} is not supported by crest yet`);
  if (!o) return { options, notify: false, refused };
  for (const [field, what] of UNSUPPORTED) {
    if (isSet(o[field], DEFAULTS[field])) refused.push(`criu_opts.${field}: ${what} is not supported by crest yet`);
  }
  if (o.cpu_cap !== undefined && o.cpu_cap !== 0xffffffff) refused.push("criu_opts.cpu_cap: CPU capability checks are not supported by crest yet");

  if (o.pid !== undefined && o.pid !== 0) options.dump.tree = o.pid;
  if (o.leave_running) options.dump.leaveRunning = true;
  if (o.leave_stopped) options.dump.leaveStopped = true;
  if (o.ext_unix_sk !== undefined) {
    options.extUnixSk = o.ext_unix_sk;
    for (const sk of o.unix_sk_ino) options.external.push(`unix[${sk.inode}]`);
  }
  if (o.tcp_established !== undefined) options.net.tcpEstablished = o.tcp_established;
  if (o.tcp_skip_in_flight !== undefined) options.net.skipInFlight = o.tcp_skip_in_flight;
  if (o.tcp_close !== undefined) options.net.tcpClose = o.tcp_close;
  if (o.network_lock !== undefined) {
    options.net.lock = o.network_lock === criu_network_lock_method.NFTABLES ? "nftables" : o.network_lock === criu_network_lock_method.SKIP ? "skip" : "iptables";
  }
  if (o.file_locks !== undefined) options.features.fileLocks = o.file_locks;
  if (o.shell_job !== undefined) options.features.shellJob = o.shell_job;
  if (o.orphan_pts_master !== undefined) options.features.orphanPtsMaster = o.orphan_pts_master;
  if (o.evasive_devices !== undefined) options.features.evasiveDevices = o.evasive_devices;
  if (o.ghost_limit !== undefined) options.dump.ghostLimit = o.ghost_limit;
  if (o.timeout !== undefined) options.dump.timeout = o.timeout;
  if (o.parent_img) options.dump.prevImagesDir = o.parent_img;
  if (o.track_mem !== undefined) options.dump.trackMem = o.track_mem;
  if (o.auto_dedup !== undefined) options.dump.autoDedup = o.auto_dedup;
  if (o.crest_precopy !== undefined) options.dump.precopy = o.crest_precopy;
  if (o.pre_dump_mode !== undefined) options.dump.preDumpMode = o.pre_dump_mode === criu_pre_dump_mode.VM_READ ? "read" : "splice";
  if (o.display_stats !== undefined) options.log.displayStats = o.display_stats;
  // The page server's connection in TLS, as criu's --tls and its files.
  if (o.tls || o.tls_cacert || o.tls_cacrl || o.tls_cert || o.tls_key || o.tls_no_cn_verify) {
    const tls = (options.service.tls ??= {});
    if (o.tls) tls.on = true;
    if (o.tls_cacert) tls.cacert = o.tls_cacert;
    if (o.tls_cacrl) tls.cacrl = o.tls_cacrl;
    if (o.tls_cert) tls.cert = o.tls_cert;
    if (o.tls_key) tls.key = o.tls_key;
    if (o.tls_no_cn_verify) tls.noCnVerify = true;
  }
  // As criu's setup_opts_from_req: lazy_pages is restore --lazy-pages, or a dump serving its lazy pages on ps.port;
  // otherwise ps sends a dump's pages to the page server at ps.address:ps.port.
  if (o.lazy_pages) options.restore.lazyPages = true;
  if (o.ps) {
    options.service.port = o.ps.port;
    if (!o.lazy_pages) {
      options.service.pageServer = true;
      if (o.ps.address) options.service.address = o.ps.address;
      if (o.ps.fd !== undefined) refused.push("criu_opts.ps.fd: a page server connection the client made is not supported by crest yet; give ps.address and ps.port");
    }
  }
  for (const e of o.external) {
    const bad = addExternal(options, e);
    if (bad) refused.push(`criu_opts.external ${bad}`);
  }
  if (o.link_remap !== undefined) options.features.linkRemap = o.link_remap;
  if (o.force_irmap !== undefined) options.features.forceIrmap = o.force_irmap;
  options.features.irmapScanPaths.push(...o.irmap_scan_paths);
  // Cgroups as criu's setup_opts_from_req: the old boolean first, the mode over it.
  if (o.manage_cgroups !== undefined) options.cgroups.mode = o.manage_cgroups ? "soft" : "ignore";
  if (o.manage_cgroups_mode !== undefined) options.cgroups.mode = CG_MODES[o.manage_cgroups_mode] ?? "soft";
  for (const r of o.cg_root) options.cgroups.roots.push({ ...(r.ctrl !== undefined ? { controller: r.ctrl } : {}), path: r.path });
  if (o.freeze_cgroup) options.cgroups.freeze = o.freeze_cgroup;
  if (o.cgroup_props) options.cgroups.props = o.cgroup_props;
  if (o.cgroup_props_file) options.cgroups.propsFile = o.cgroup_props_file;
  options.cgroups.dumpControllers.push(...o.cgroup_dump_controller);
  if (o.cgroup_yard) options.cgroups.yard = o.cgroup_yard;
  // As criu's setup_opts_from_req: CLONE_NEWNET is the only namespace that can be left empty.
  if (o.empty_ns) {
    if (o.empty_ns & ~CLONE.NEWNET) refused.push(`criu_opts.empty_ns 0x${o.empty_ns.toString(16)}: only CLONE_NEWNET (net) can be left empty, as with criu`);
    options.net.emptyNs = (o.empty_ns & CLONE.NEWNET) !== 0;
  }
  // criu's veth pairs: a veth of the tree's network namespace and the name of its peer outside.
  for (const v of o.veths) options.external.push(`veth[${v.if_in}]:${v.if_out}`);
  // The tree's mount namespace (kinds/namespaces/mnt.ts): ext_mnt is --ext-mount-map KEY:VAL, as criu's ext_mount_add.
  if (o.root) options.mnt.root = o.root;
  if (o.mntns_compat_mode) options.mnt.compatMode = true;
  for (const m of o.ext_mnt) options.external.push(`mnt[${m.key}]:${m.val}`);
  // criu's auto_ext_mnt, ext_sharing, ext_masters: --ext-mount-map auto, --enable-external-sharing/-masters.
  if (o.auto_ext_mnt) options.mnt.autoExternal = true;
  if (o.ext_sharing) options.mnt.externalSharing = true;
  if (o.ext_masters) options.mnt.externalMasters = true;
  options.mnt.skip.push(...o.skip_mnt);
  options.mnt.enableFs.push(...o.enable_fs.flatMap((n) => n.split(",")).filter((n) => n !== ""));
  // Only a client's own child sees the client's fds and may become its sibling.
  if (o.rst_sibling !== undefined) {
    if (mode === "swrk") options.restore.sibling = o.rst_sibling;
    else refused.push("criu_opts.rst_sibling is not allowed in the standalone service (only `swrk` restores a sibling of its client)");
  }
  options.restore.joinNs.push(...o.join_ns.map((j) => ({ kind: j.ns, file: j.ns_file, ...(j.extra_opt !== undefined ? { extra: j.extra_opt } : {}) })));
  if (o.inherit_fd.length) {
    if (mode === "swrk") options.inheritFd.push(...o.inherit_fd.map((i) => ({ fd: i.fd, key: i.key })));
    else refused.push("criu_opts.inherit_fd is not allowed in the standalone service (only `swrk` shares its client's fds)");
  }

  // Where the images and the log are.
  if (o.images_dir_fd !== undefined && o.images_dir_fd !== -1) options.images.dir = fdPath(peer, o.images_dir_fd);
  else if (o.images_dir) options.images.dir = o.images_dir;
  else if (command !== "check") refused.push("Neither images_dir_fd nor images_dir was passed by the RPC client");
  if (o.work_dir_fd !== undefined) options.images.workDir = fdPath(peer, o.work_dir_fd);
  if (o.log_file !== undefined) {
    if (o.log_file.includes("/")) refused.push(`criu_opts.log_file ${JSON.stringify(o.log_file)}: no subdirectories are allowed in log_file`);
    else options.log.file = o.log_file;
  } else if (o.log_to_stderr) {
    options.log.file = undefined;
  } else {
    // criu's DEFAULT_LOG_FILENAME, in the work directory.
    options.log.file ??= "criu.log";
  }
  options.log.level = o.log_level ?? 2;

  // The request's own configuration file has the last word (criu: e.g. runc.conf). One that does not
  // exist is no configuration, as with criu: runc names /etc/criu/runc.conf in every request.
  if (o.config_file !== undefined) {
    const text = configs.read(o.config_file);
    if (text !== null) refused.push(...applyConfigFile(options, o.config_file, text).map((f) => `option ${f} is not supported by crest yet`));
  }
  return {
    options, notify: o.notify_scripts ?? false, refused,
    ...(o.status_fd !== undefined ? { statusPath: fdPath(peer, o.status_fd) } : {}),
  };
}
