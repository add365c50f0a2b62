// The command line is parsed the way criu's getopt_long parses it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseArgs, UsageError } from "../../src/faces/cli/args.js";
import { externalMount, unsupported } from "../../src/options.js";

test("criu's dump and restore command lines", () => {
  const d = parseArgs(["dump", "-t", "17854", "--images-dir", "imgs/", "--log-file", "dump.log", "-v4", "-R"]);
  assert.equal(d.command, "dump");
  assert.equal(d.options.dump.tree, 17854);
  assert.equal(d.options.images.dir, "imgs/");
  assert.equal(d.options.log.file, "dump.log");
  assert.equal(d.options.log.level, 4);
  assert.equal(d.options.dump.leaveRunning, true);
  const r = parseArgs(["restore", "-D", "imgs", "-o", "rst.log", "-d", "--pidfile", "p"]);
  assert.equal(r.options.restore.detached, true);
  assert.equal(r.options.restore.pidfile, "p");
});

test("--opt=value, --opt value, options after the command, bundles", () => {
  const a = parseArgs(["--tree=5", "dump", "--images-dir", "x", "-Rv3"]);
  assert.equal(a.options.dump.tree, 5);
  assert.equal(a.options.images.dir, "x");
  assert.equal(a.options.dump.leaveRunning, true);
  assert.equal(a.options.log.level, 3);
});

test("verbosity the odd ways callers pass it", () => {
  assert.equal(parseArgs(["dump", "-v"]).options.log.level, 3);
  assert.equal(parseArgs(["dump", "-vvvv"]).options.log.level, 2 + 4);
  assert.equal(parseArgs(["dump", "--verbosity=4"]).options.log.level, 4);
  // zdtm passes "-verbosity=0": -v with the attached argument "erbosity=0", atoi() of which is 0.
  assert.equal(parseArgs(["check", "-verbosity=0"]).options.log.level, 0);
  assert.equal(parseArgs(["dump", "-v0"]).options.log.level, 0);
});

test("unique prefixes, no- forms, and refusals", () => {
  assert.equal(parseArgs(["restore", "--images", "d"]).options.images.dir, "d");
  assert.equal(parseArgs(["restore", "-d", "--no-restore-detached"]).options.restore.detached, false);
  assert.throws(() => parseArgs(["dump", "--bogus"]), /unknown option --bogus/);
  assert.deepEqual(parseArgs(["dump", "--weak-sysctls", "--lazy-pages"]).refused, ["--weak-sysctls"]);
  // Taken (restore --lazy-pages, dump --lazy-pages: remote lazy pages), refused on pre-dump and with a page server by unsupported().
  assert.deepEqual(unsupported(parseArgs(["dump", "--lazy-pages", "--port", "1234"]).options), []);
  assert.match(unsupported(parseArgs(["pre-dump", "--lazy-pages"]).options).join("\n"), /--lazy-pages on pre-dump: /);
  assert.match(unsupported(parseArgs(["dump", "--lazy-pages", "--page-server", "--address", "127.0.0.1"]).options).join("\n"), /--lazy-pages with --page-server on dump: /);
  assert.deepEqual(unsupported(parseArgs(["restore", "--lazy-pages"]).options), []);
  assert.equal(parseArgs(["restore", "--lazy-pages"]).options.restore.lazyPages, true);
  const net = parseArgs(["dump", "--tcp-established", "--skip-in-flight", "--tcp-close", "--network-lock", "iptables", "--empty-ns", "net"]);
  assert.deepEqual([net.refused, net.options.net], [[], { tcpEstablished: true, tcpClose: true, skipInFlight: true, lock: "iptables", emptyNs: true }]);
  assert.throws(() => parseArgs(["restore", "--empty-ns", "mnt"]), /--empty-ns mnt: only net is supported, as with criu/);
  assert.throws(() => parseArgs(["dump", "--network-lock", "pf"]), /Invalid value for --network-lock: pf/);
  assert.throws(() => parseArgs(["dump", "-t"]), /needs a value/);
  assert.throws(() => parseArgs(["dump", "-t", "abc"]), UsageError);
  assert.throws(() => parseArgs(["dump", "--leave-running=1"]), /takes no value/);
  assert.throws(() => parseArgs(["dump", "--tcp"]), /ambiguous/);
});

test("-R and -s: the last one wins, as in criu", () => {
  const a = parseArgs(["dump", "-R", "-s"]);
  assert.equal(a.options.dump.leaveStopped, true);
  assert.equal(a.options.dump.leaveRunning, false);
});

test("every option criu sets, in every form: applied, or refused by name", () => {
  const o = parseArgs(["restore", "-d", "-S", "--timeout", "3", "--display-stats", "--log-pid", "--status-fd=7",
    "--action-script", "a.sh", "--action-script=b.sh", "--pre-dump-mode", "read"]).options;
  assert.equal(o.restore.sibling, true);
  assert.equal(o.dump.timeout, 3);
  assert.equal(o.log.displayStats, true);
  assert.equal(o.log.perPid, true);
  assert.equal(o.restore.statusFd, 7);
  assert.deepEqual(o.actionScripts, ["a.sh", "b.sh"], "repeated options add up");
  assert.equal(o.dump.preDumpMode, "read");
  assert.equal(parseArgs(["dump", "--display-stats", "--no-display-stats"]).options.log.displayStats, false);
  assert.throws(() => parseArgs(["dump", "--status-fd", "x"]), /Unable to parse a value of --status-fd/);
  assert.throws(() => parseArgs(["dump", "--pre-dump-mode", "copy"]), /--pre-dump-mode/);
  assert.throws(() => parseArgs(["dump", "--ms"]), /deprecated/);
  assert.deepEqual(parseArgs(["dump", "-j", "--weak-sysctls"]).refused, ["--weak-sysctls"]);
  assert.equal(parseArgs(["dump", "--auto-dedup"]).options.dump.autoDedup, true);
  assert.equal(parseArgs(["dump", "-j"]).options.features.shellJob, true);
  assert.equal(parseArgs(["dump", "-j", "--no-shell-job"]).options.features.shellJob, false);
});

test("check's options", () => {
  const a = parseArgs(["check", "--all"]).options;
  assert.deepEqual([a.check.all, a.check.extra, a.check.experimental], [true, true, true]);
  const f = parseArgs(["check", "--extra", "--feature", "list"]).options;
  assert.deepEqual([f.check.extra, f.check.experimental, f.check.feature], [true, false, "list"]);
});

test("--external, --ext-unix-sk and --inherit-fd fill the model (--external kinds but unix[INO], tty[RDEV:DEV] and mnt[KEY]:VAL are refused by name: options.unsupported)", () => {
  const o = parseArgs(["restore", "--external", "mnt[m]:/x", "--inherit-fd", "fd[3]:pipe:[123]", "--external=tty[8800:0]", "--external", "unix[77]", "--external", "dev[1/2]:loop"]).options;
  assert.deepEqual(o.external, ["mnt[m]:/x", "tty[8800:0]", "unix[77]", "dev[1/2]:loop"]);
  assert.deepEqual(o.inheritFd, [{ fd: 3, key: "pipe:[123]" }]);
  assert.equal(o.extUnixSk, false);
  assert.deepEqual(unsupported(o), [
    "--external dev[1/2]:loop: crest supports only unix[INO] (a unix socket whose peer is outside the tree), tty[RDEV:DEV] (a terminal), " +
      "veth[IFNAME]:OUTSIDE[@BRIDGE] (a veth of the tree's network namespace and its peer's name outside), macvlan[IFNAME]:PARENT (a macvlan of the tree's " +
      "network namespace and its parent link outside), net[INO]:KEY (the tree's network namespace, the caller's) and mnt[KEY]:VAL (a mount) so far",
  ]);
  assert.deepEqual(unsupported(parseArgs(["restore"]).options), []);
  // Mounts: crest builds them as criu's mount-v2 does; the compatibility mode is refused, its "no-" form is what crest does.
  assert.deepEqual(unsupported(parseArgs(["restore", "--no-mntns-compat-mode", "--root", "/r", "-M", "k:/v"]).options), []);
  assert.deepEqual(unsupported(parseArgs(["restore", "--mntns-compat-mode"]).options), [], "--mntns-compat-mode builds the same mounts: taken");
  assert.deepEqual(parseArgs(["restore", "--ext-mount-map", "k:/v"]).options.external, ["mnt[k]:/v"]);
  // criu's autodetection of external mounts: a flag of the mount options (LXC passes it), as are its sharing and masters.
  assert.deepEqual(parseArgs(["dump", "--ext-mount-map", "auto"]).refused, []);
  // The tree's network namespace: a veth's peer outside (also criu's older --veth-pair IN=OUT) and the caller's namespace.
  const n = parseArgs(["restore", "--external", "veth[eth0]:vh0", "--veth-pair", "eth1=vh1", "--external", "net[4026531840]:extnet"]).options;
  assert.deepEqual(n.external, ["veth[eth0]:vh0", "veth[eth1]:vh1", "net[4026531840]:extnet"]);
  assert.deepEqual(unsupported(n), []);
  assert.throws(() => parseArgs(["restore", "--inherit-fd", "3:pipe"]), /bad --inherit-fd value '3:pipe': it must be fd\[N\]:KEY/);
  // The example of criu's "External UNIX socket" page, and -x's inode lists.
  const x = parseArgs(["restore", "-d", "-D", "images", "-o", "restore.log", "--pidfile", "restore.pid", "-v4", "-x", "--inherit-fd", "fd[3]:socket:[11890815]"]).options;
  assert.deepEqual([x.extUnixSk, x.external, x.inheritFd, x.log.level], [true, [], [{ fd: 3, key: "socket:[11890815]" }], 4]);
  assert.deepEqual(parseArgs(["dump", "--ext-unix-sk=12,34"]).options.external, ["unix[12]", "unix[34]"]);
  assert.deepEqual(parseArgs(["dump", "-x56"]).options.external, ["unix[56]"]);
  assert.throws(() => parseArgs(["dump", "--ext-unix-sk=abc"]), /Can't parse unix socket inode from optarg: abc/);
});

test("zdtm's command lines parse as criu parses them", () => {
  const d = parseArgs(["dump", "--no-default-config", "--no-default-config", "--log-file", "dump.log", "--images-dir", "/d",
    "--verbosity=4", "--tree", "42", "--pidfile", "/p", "--timeout", "10", "--pre-dump-mode", "splice"]);
  assert.deepEqual([d.command, d.options.dump.tree, d.options.log.level, d.options.dump.timeout, d.options.config.noDefault], ["dump", 42, 4, 10, true]);
  const r = parseArgs(["restore", "--no-default-config", "--log-file", "restore.log", "--images-dir", "/d", "--verbosity=4",
    "--pidfile", "/p", "--restore-detached"]);
  assert.deepEqual([r.command, r.options.restore.detached, r.options.restore.pidfile], ["restore", true, "/p"]);
  const c = parseArgs(["check", "--no-default-config", "-verbosity=0", "--feature", "mnt_id"]);
  assert.deepEqual([c.command, c.options.log.level, c.options.check.feature], ["check", 0, "mnt_id"]);
});

test("--help wins over anything broken; --version; words after the command", () => {
  const h = parseArgs(["dump", "--bogus", "-h"]);
  assert.equal(h.help, true);
  assert.equal(parseArgs(["-V"]).version, true);
  assert.deepEqual(parseArgs(["cpuinfo", "dump"]).rest, ["dump"]);
});

test("--ghost-limit takes criu's sizes; --ghost-fiemap is accepted (crest finds holes with SEEK_DATA anyway)", () => {
  assert.equal(parseArgs(["dump"]).options.dump.ghostLimit, 1 << 20);
  assert.equal(parseArgs(["dump", "--ghost-limit", "8M"]).options.dump.ghostLimit, 8 << 20);
  assert.equal(parseArgs(["dump", "--ghost-limit=512K"]).options.dump.ghostLimit, 512 << 10);
  assert.equal(parseArgs(["dump", "--ghost-limit", "1G"]).options.dump.ghostLimit, 1 << 30);
  assert.equal(parseArgs(["dump", "--ghost-limit", "4096"]).options.dump.ghostLimit, 4096);
  assert.throws(() => parseArgs(["dump", "--ghost-limit", "lots"]), /bad size 'lots'/);
  assert.deepEqual(parseArgs(["dump", "--ghost-limit", "8M", "--no-ghost-fiemap"]).refused, []);
});

test("LXC's options: --link-remap, --force-irmap, --ext-mount-map auto and its sharing/masters, console: with an empty value", () => {
  const d = parseArgs(["dump", "--link-remap", "--force-irmap", "--ext-mount-map", "auto", "--enable-external-sharing", "--enable-external-masters",
    "--enable-fs", "hugetlbfs", "--enable-fs", "tracefs", "--freeze-cgroup", "/sys/fs/cgroup/freezer//lxc.payload.c1", "--cgroup-root", "hugetlb:/lxc.payload.c1"]);
  assert.deepEqual(d.refused, []);
  const o = d.options;
  assert.deepEqual([o.features.linkRemap, o.features.forceIrmap], [true, true]);
  assert.deepEqual(parseArgs(["dump", "--force-irmap", "--irmap-scan-path", "/zdtm/static"]).options.features.irmapScanPaths, ["/zdtm/static"]);
  assert.deepEqual([o.mnt.autoExternal, o.mnt.externalSharing, o.mnt.externalMasters], [true, true, true]);
  assert.deepEqual(o.mnt.enableFs, ["hugetlbfs", "tracefs"]);
  assert.deepEqual(o.cgroups.roots, [{ controller: "hugetlb", path: "/lxc.payload.c1" }]);
  assert.equal(o.cgroups.freeze, "/sys/fs/cgroup/freezer//lxc.payload.c1");
  // Off by default, and the no- forms of the booleans.
  const n = parseArgs(["dump", "--link-remap", "--no-link-remap", "--force-irmap", "--no-force-irmap"]).options;
  assert.deepEqual([n.features.linkRemap, n.features.forceIrmap, n.mnt.autoExternal, n.mnt.externalSharing, n.mnt.externalMasters], [false, false, false, false, false]);
  // LXC's restore: the console's mount key with an empty directory, and the console as an external key criu never looks up.
  const r = parseArgs(["restore", "--root", "/usr/lib/x86_64-linux-gnu/lxc/rootfs", "--ext-mount-map", "console:", "--external", "console:"]);
  assert.deepEqual(r.refused, []);
  assert.deepEqual(r.options.external, ["mnt[console]:", "console:"]);
  assert.deepEqual(unsupported(r.options), []);
  assert.deepEqual(externalMount("mnt[console]:"), { key: "console", val: "" });
  assert.throws(() => parseArgs(["restore", "--ext-mount-map", ":x"]), /--ext-mount-map :x: crest takes KEY:VAL or auto/);
  assert.throws(() => parseArgs(["restore", "--ext-mount-map", "novalue"]), /--ext-mount-map novalue/);
  // criu's --external mnt[] form of the autodetection: one letter after the colon, m(asters) or s(haring).
  const m = parseArgs(["dump", "--external", "mnt[]:m"]).options;
  assert.deepEqual([m.mnt.autoExternal, m.mnt.externalMasters, m.mnt.externalSharing, m.external], [true, true, false, []]);
  const s = parseArgs(["dump", "--external", "mnt[]:s"]).options;
  assert.deepEqual([s.mnt.autoExternal, s.mnt.externalMasters, s.mnt.externalSharing], [true, false, true]);
  assert.equal(parseArgs(["dump", "--external", "mnt[]"]).options.mnt.autoExternal, true);
  assert.throws(() => parseArgs(["dump", "--external", "mnt[]:x"]), /after mnt\[\]: criu takes m \(external masters\) or s \(external sharing\)/);
});

test("-J/--join-ns NS:{PID|NS_FILE}[,EXTRA] fills the model; kinds crest cannot join and extras are refused by name (options.unsupported)", () => {
  const o = parseArgs(["restore", "-J", "net:123", "--join-ns", "uts:/run/uts", "--join-ns=ipc:7"]).options;
  assert.deepEqual(o.restore.joinNs, [{ kind: "net", file: "123" }, { kind: "uts", file: "/run/uts" }, { kind: "ipc", file: "7" }]);
  assert.deepEqual(unsupported(o), []);
  const u = parseArgs(["restore", "--join-ns", "user:9,0,0", "--join-ns", "pid:1", "--join-ns", "net:3,1"]).options;
  assert.deepEqual(u.restore.joinNs[0], { kind: "user", file: "9", extra: "0,0" });
  const why = unsupported(u).join("\n");
  assert.match(why, /--join-ns user:9: crest joins net, uts, ipc namespaces so far/);
  assert.match(why, /--join-ns pid:1: .*criu cannot join a PID namespace either/);
  assert.match(why, /--join-ns net:3,1: options after the namespace file are for a user namespace only/);
  assert.throws(() => parseArgs(["restore", "--join-ns", "net"]), /bad --join-ns value 'net'/);
});
