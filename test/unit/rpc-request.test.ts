// criu_opts onto the Options model (faces/rpc/request.ts): the client's fds
// as /proc/<client>/fd/N paths, the request's options, criu's defaults
// (criu.log), the swrk-only fields, what crest refuses by name, and the
// request's config_file having the last word.
import { test } from "node:test";
import assert from "node:assert/strict";
import { translate } from "../../src/faces/rpc/request.js";
import { criu_cg_mode, criu_network_lock_method, type criu_opts } from "../../src/images/index.js";

const peer = { pid: 4242, uid: 0, gid: 0 };
const noConfigs = { env: {}, read: () => null };
const req = (o: Partial<criu_opts>): criu_opts => ({ images_dir_fd: -1, veths: [], exec_cmd: [], ext_mnt: [], cg_root: [], inherit_fd: [], skip_mnt: [], enable_fs: [], unix_sk_ino: [], irmap_scan_paths: [], external: [], join_ns: [], cgroup_dump_controller: [], ...o });

test("rpc request: the client's fds, its options, criu's default log name", () => {
  const t = translate("dump", req({ images_dir_fd: 7, work_dir_fd: 8, pid: 99, leave_running: true, tcp_established: true, network_lock: criu_network_lock_method.NFTABLES, file_locks: true, log_level: 4, notify_scripts: true, ghost_limit: 4096, timeout: 3 }), peer, "swrk", noConfigs);
  assert.deepEqual(t.refused, []);
  assert.equal(t.notify, true);
  const o = t.options;
  assert.deepEqual([o.images.dir, o.images.workDir, o.dump.tree, o.dump.leaveRunning], ["/proc/4242/fd/7", "/proc/4242/fd/8", 99, true]);
  assert.deepEqual([o.net.tcpEstablished, o.net.lock, o.features.fileLocks, o.log.level, o.log.file, o.dump.ghostLimit, o.dump.timeout], [true, "nftables", true, 4, "criu.log", 4096, 3]);
});

test("rpc request: log_file without subdirectories, log_to_stderr, images_dir as a path", () => {
  assert.equal(translate("dump", req({ images_dir: "/x", log_file: "d.log" }), peer, "swrk", noConfigs).options.log.file, "d.log");
  assert.match(translate("dump", req({ images_dir: "/x", log_file: "../d.log" }), peer, "swrk", noConfigs).refused.join(), /no subdirectories are allowed in log_file/);
  assert.equal(translate("dump", req({ images_dir: "/x", log_to_stderr: true }), peer, "swrk", noConfigs).options.log.file, undefined);
  assert.match(translate("restore", req({}), peer, "swrk", noConfigs).refused.join(), /Neither images_dir_fd nor images_dir/);
  assert.deepEqual(translate("check", req({}), peer, "swrk", noConfigs).refused, [], "check needs no images");
});

test("rpc request: rst_sibling and inherit_fd only through swrk; options crest lacks refused by name", () => {
  const o = req({ images_dir: "/x", rst_sibling: true, inherit_fd: [{ key: "pipe:[12]", fd: 5 }] });
  const swrk = translate("restore", o, peer, "swrk", noConfigs);
  assert.deepEqual([swrk.options.restore.sibling, swrk.options.inheritFd], [true, [{ fd: 5, key: "pipe:[12]" }]]);
  const svc = translate("restore", o, peer, "service", noConfigs);
  assert.equal(svc.refused.length, 2);
  assert.match(svc.refused.join("\n"), /rst_sibling is not allowed in the standalone service[^]*inherit_fd is not allowed/);
  const lacks = translate("dump", req({ images_dir: "/x", weak_sysctls: true, lsm_profile: "p", cpu_cap: 0xffffffff, root: "/r" }), peer, "swrk", noConfigs);
  assert.deepEqual(lacks.refused.map((r) => r.split(":")[0]), ["criu_opts.weak_sysctls", "criu_opts.lsm_profile"], "cpu_cap at criu's default is no request");
});

test("rpc request: join_ns entries become --join-ns", () => {
  const t = translate("restore", req({ images_dir: "/x", join_ns: [{ ns: "net", ns_file: "/run/netns/a" }, { ns: "user", ns_file: "5", extra_opt: "0,0" }] }), peer, "swrk", noConfigs);
  assert.deepEqual(t.options.restore.joinNs, [{ kind: "net", file: "/run/netns/a" }, { kind: "user", file: "5", extra: "0,0" }]);
});

test("rpc request: ps sends a dump's pages to a page server; with lazy_pages it is the port the dump serves them on; a client's own connection is refused", () => {
  const ps = translate("dump", req({ images_dir: "/x", ps: { address: "10.0.0.2", port: 1234 } }), peer, "swrk", noConfigs);
  assert.deepEqual([ps.refused, ps.options.service.pageServer, ps.options.service.address, ps.options.service.port, ps.options.restore.lazyPages], [[], true, "10.0.0.2", 1234, undefined]);
  const lazy = translate("dump", req({ images_dir: "/x", lazy_pages: true, ps: { address: "10.0.0.2", port: 27 } }), peer, "swrk", noConfigs);
  assert.deepEqual([lazy.refused, lazy.options.service.pageServer, lazy.options.service.address, lazy.options.service.port, lazy.options.restore.lazyPages], [[], undefined, undefined, 27, true]);
  assert.equal(translate("restore", req({ images_dir: "/x", lazy_pages: true }), peer, "swrk", noConfigs).options.restore.lazyPages, true);
  assert.match(translate("dump", req({ images_dir: "/x", ps: { port: 1, fd: 5 } }), peer, "swrk", noConfigs).refused.join(), /criu_opts.ps.fd/);
  const tls = translate("dump", req({ images_dir: "/x", ps: { port: 1 }, tls: true, tls_cacert: "ca.pem", tls_cert: "c.pem", tls_key: "k.pem", tls_no_cn_verify: true }), peer, "swrk", noConfigs);
  assert.deepEqual([tls.refused, tls.options.service.tls], [[], { on: true, cacert: "ca.pem", cert: "c.pem", key: "k.pem", noCnVerify: true }]);
});

test("rpc request: root, ext_mnt, skip_mnt and enable_fs fill the mount options (runc's way of naming its bind mounts)", () => {
  const t = translate("restore", req({ images_dir: "/x", root: "/r", ext_mnt: [{ key: "/etc/hosts", val: "/var/h" }], skip_mnt: ["/proc/kcore"], enable_fs: ["ramfs,nfsd"] }), peer, "swrk", noConfigs);
  assert.deepEqual(t.refused, []);
  assert.deepEqual([t.options.mnt, t.options.external], [{ root: "/r", skip: ["/proc/kcore"], enableFs: ["ramfs", "nfsd"], autoExternal: false, externalSharing: false, externalMasters: false }, ["mnt[/etc/hosts]:/var/h"]]);
});

test("rpc request: link_remap, force_irmap, auto_ext_mnt, ext_sharing, ext_masters and external mnt[] are taken, as LXC's command line", () => {
  const t = translate("dump", req({ images_dir: "/x", link_remap: true, force_irmap: true, irmap_scan_paths: ["/a"], auto_ext_mnt: true, ext_sharing: true, ext_masters: true }), peer, "swrk", noConfigs);
  assert.deepEqual(t.refused, []);
  assert.deepEqual(t.options.features.irmapScanPaths, ["/a"]);
  assert.deepEqual([t.options.features.linkRemap, t.options.features.forceIrmap], [true, true]);
  assert.deepEqual([t.options.mnt.autoExternal, t.options.mnt.externalSharing, t.options.mnt.externalMasters], [true, true, true]);
  const e = translate("dump", req({ images_dir: "/x", external: ["mnt[]:m", "mnt[]:q"] }), peer, "swrk", noConfigs);
  assert.deepEqual([e.options.mnt.autoExternal, e.options.mnt.externalMasters, e.options.external], [true, true, []]);
  assert.match(e.refused.join(), /criu_opts.external --external mnt\[\]:q: after mnt\[\]: criu takes m/);
});

test("rpc request: ext_unix_sk's inodes become external unix[INO]; the status fd is the client's", () => {
  const t = translate("dump", req({ images_dir: "/x", ext_unix_sk: true, unix_sk_ino: [{ inode: 77 }], external: ["unix[78]"], status_fd: 9 }), peer, "swrk", noConfigs);
  assert.deepEqual([t.options.extUnixSk, t.options.external, t.statusPath], [true, ["unix[77]", "unix[78]"], "/proc/4242/fd/9"]);
});

test("rpc request: veth pairs become external veth[IN]:OUT, as --external and --veth-pair (runc and podman pass a container's veth so)", () => {
  const t = translate("restore", req({ images_dir: "/x", veths: [{ if_in: "eth0", if_out: "vethab12" }], external: ["net[4026531840]:extnet"] }), peer, "swrk", noConfigs);
  assert.deepEqual(t.refused, []);
  assert.deepEqual(t.options.external, ["net[4026531840]:extnet", "veth[eth0]:vethab12"]);
});

test("rpc request: the configuration files first, the request next, its config_file last", () => {
  const files: Record<string, string> = { "/etc/criu/default.conf": "tcp-established\nlog-file global.log\n", "/runc.conf": "tcp-close\nfile-locks\n" };
  const configs = { env: {}, read: (p: string) => files[p] ?? null };
  const t = translate("dump", req({ images_dir: "/x", tcp_established: false, config_file: "/runc.conf" }), peer, "swrk", configs);
  assert.deepEqual(t.refused, []);
  assert.deepEqual([t.options.net.tcpEstablished, t.options.net.tcpClose, t.options.features.fileLocks, t.options.log.file], [false, true, true, "global.log"]);
  // A config_file that does not exist is none, as criu's parse_config has it (runc always names /etc/criu/runc.conf).
  const none = translate("dump", req({ images_dir: "/x", config_file: "/nope.conf" }), peer, "swrk", configs);
  assert.deepEqual([none.refused, none.options.log.file], [[], "global.log"]);
});

test("rpc request: cgroups as runc sends them (manage_cgroups, the mode over it, roots, yard, props, dump controllers, freeze_cgroup)", () => {
  const runc = translate("dump", req({ images_dir: "/x", manage_cgroups: true, manage_cgroups_mode: criu_cg_mode.FULL, freeze_cgroup: "/sys/fs/cgroup/freezer/c1" }), peer, "swrk", noConfigs);
  assert.deepEqual(runc.refused, []);
  assert.deepEqual([runc.options.cgroups.mode, runc.options.cgroups.freeze], ["full", "/sys/fs/cgroup/freezer/c1"]);
  assert.equal(translate("dump", req({ images_dir: "/x", manage_cgroups: false }), peer, "swrk", noConfigs).options.cgroups.mode, "ignore", "the old boolean off: ignore");
  assert.equal(translate("dump", req({ images_dir: "/x", manage_cgroups_mode: criu_cg_mode.DEFAULT }), peer, "swrk", noConfigs).options.cgroups.mode, "soft");
  const all = translate("restore", req({
    images_dir: "/x", manage_cgroups_mode: criu_cg_mode.STRICT, cg_root: [{ ctrl: "memory", path: "/new" }, { path: "/all" }], cgroup_yard: "/yard",
    cgroup_props: '"pids":\n - "strategy": "merge"\n - "properties": []\n', cgroup_props_file: "/p.yaml", cgroup_dump_controller: ["memory", "pids"],
  }), peer, "swrk", noConfigs);
  assert.deepEqual(all.refused, []);
  const c = all.options.cgroups;
  assert.deepEqual([c.mode, c.roots, c.yard, c.propsFile, c.dumpControllers], ["strict", [{ controller: "memory", path: "/new" }, { path: "/all" }], "/yard", "/p.yaml", ["memory", "pids"]]);
  assert.match(c.props!, /"pids"/);
});

test("rpc request: empty_ns CLONE_NEWNET (runc sets it on every request) leaves the network namespace empty; other namespaces are refused by name", () => {
  const t = translate("restore", req({ images_dir: "/x", empty_ns: 0x40000000 }), peer, "swrk", noConfigs);
  assert.deepEqual([t.refused, t.options.net.emptyNs], [[], true]);
  const u = translate("restore", req({ images_dir: "/x", empty_ns: 0x40000000 | 0x20000 }), peer, "swrk", noConfigs);
  assert.match(u.refused.join("\n"), /criu_opts.empty_ns 0x40020000: only CLONE_NEWNET \(net\) can be left empty/);
});
