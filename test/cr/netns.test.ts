// A tree in a network namespace of its own (crest run --ns ...,net): its
// links, addresses, routes, rules, sysctls and nftables ruleset come back,
// the veth's peer is made again outside with the name --external
// veth[IFNAME]:OUTSIDE gives it, and a TCP connection from this namespace to
// a server inside keeps streaming across the checkpoint (--tcp-established;
// the namespace itself is the network lock). A restore that fails leaves no
// veth behind; a link crest does not keep is refused by name with the tree
// running on; a namespace the caller owns is joined (--external net[INO]:KEY,
// --inherit-fd fd[N]:KEY) instead of being made.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, closeSync, openSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  CREST, crest, critDecodeAll, cycle, dumpLog, dumpWorkload, finish, hasLink, imagesDir, inNetns, onHost, procState,
  restoreWorkload, startWorkload, stop, vethTo, waitFor, type Workload,
} from "./harness.js";
import { IMG, readImage } from "../../src/images/index.js";

const NS = "pid,ipc,uts,net";

/** A short name for this run's outside veth (IFNAMSIZ is 16). */
const vethName = (tag: string) => `crv${tag}${process.pid % 10000}`;

function removeLink(name: string): void {
  if (hasLink(name)) spawnSync("ip", ["link", "del", name]);
}

/**
 * The network-setup action script a caller of criu writes: the outside end
 * gets its address back once the namespace exists. It also notes every hook
 * it is run for in hooks.log.
 */
function setupScript(w: Workload, outside: string, cidr: string): string {
  const path = join(w.dir, "net-setup.sh");
  writeFileSync(path, `#!/bin/sh\necho "$CRTOOLS_SCRIPT_ACTION" >> ${join(w.dir, "hooks.log")}\n` +
    `[ "$CRTOOLS_SCRIPT_ACTION" = post-setup-namespaces ] || exit 0\nip addr add ${cidr} dev ${outside} && ip link set ${outside} up\n`);
  chmodSync(path, 0o755);
  return path;
}

test("netns: lo, a veth to the host with an address and a route, a rule, sysctls, an nftables rule and a TCP connection from the host come back", () => {
  const outside = vethName("t");
  removeLink(outside);
  const server = startWorkload("sk-tcp-stream", ["server", "0.0.0.0"], { ns: NS });
  let client: Workload | undefined;
  try {
    vethTo(server.pid, { outside, inside: "eth0", outsideCidr: "10.211.0.1/24", insideCidr: "10.211.0.2/24" });
    inNetns(server.pid, ["ip", "route", "add", "10.212.0.0/24", "via", "10.211.0.1"]);
    inNetns(server.pid, ["ip", "rule", "add", "from", "10.211.0.7", "table", "100"]);
    inNetns(server.pid, ["sysctl", "-qw", "net.ipv4.conf.eth0.rp_filter=2", "net.unix.max_dgram_qlen=77"]);
    inNetns(server.pid, ["nft", "-f", "-"], "table inet wl {\n chain in {\n  type filter hook input priority 0; policy accept;\n  tcp dport 9 drop\n }\n}\n");
    const port = waitFor("the server's port", () => {
      try {
        return readFileSync(join(server.dir, "port"), "utf8").trim();
      } catch {
        return "";
      }
    });
    client = startWorkload("sk-tcp-stream", ["client", port, "10.211.0.2"]);

    const script = setupScript(server, outside, "10.211.0.1/24");
    dumpWorkload(server, ["--tcp-established", "--action-script", script]);
    // As criu: the namespace is locked between the network-lock scripts and the dump of its firewall.
    assert.match(readFileSync(join(server.dir, "hooks.log"), "utf8"), /^pre-dump\nnetwork-lock\npost-dump\n$/);
    assert.deepEqual(critDecodeAll(imagesDir(server)), [], "crit decodes every image it knows");
    const netdev = readImage(imagesDir(server), IMG.netdev, readImage(imagesDir(server), IMG.ids, 1)[0]!.net_ns_id!);
    assert.deepEqual(netdev.map((l) => [l.name, l.type]), [["lo", 1], ["eth0", 2]]);
    assert.match(dumpLog(server), /Locked the tree's network namespace with nftables/);
    // The namespace died with the tree, and its veth with it.
    waitFor(`${outside} to go with the dumped namespace`, () => !hasLink(outside));

    // Without the peer's name the restore is refused before anything exists.
    const refused = crest(["restore", "-D", imagesDir(server), "-o", "refused.log", "-d", "--tcp-established"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /veth eth0 of the tree's network namespace has its peer outside: restore with --external veth\[eth0\]:NAME/);

    // A peer name taken here is refused before anything exists.
    onHost(["ip", "link", "add", outside, "type", "bridge"]);
    const taken = crest(["restore", "-D", imagesDir(server), "-o", "taken.log", "-d", "--tcp-established", "--external", `veth[eth0]:${outside}`]);
    onHost(["ip", "link", "del", outside]);
    assert.equal(taken.code, 1);
    assert.match(taken.stderr, new RegExp(`the peer of veth eth0 is to be named ${outside} .*crest's network namespace has a link of that name already`));

    // A restore failing once the tree exists leaves no veth behind, and the images can still be restored.
    const failed = crest(["restore", "-D", imagesDir(server), "-o", "failed.log", "-d", "--tcp-established", "--external", `veth[eth0]:${outside}`],
      { CREST_FAULT: "restore:forked" });
    assert.equal(failed.code, 1, failed.stderr);
    assert.ok(!hasLink(outside), "the failed restore removed the veth it made");

    writeFileSync(join(server.dir, "hooks.log"), "");
    restoreWorkload(server, ["--tcp-established", "--external", `veth[eth0]:${outside}`, "--action-script", script]);
    assert.match(readFileSync(join(server.dir, "hooks.log"), "utf8"), /post-setup-namespaces\n[\s\S]*post-restore\nnetwork-unlock\npre-resume\n/);
    assert.notEqual(statSync(`/proc/${server.pid}/ns/net`).ino, statSync("/proc/self/ns/net").ino, "a namespace of its own");
    assert.match(inNetns(server.pid, ["ip", "-br", "link"]), /^lo +UNKNOWN[\s\S]*^eth0@\S+ +UP/m);
    assert.match(inNetns(server.pid, ["ip", "-br", "-4", "addr", "show", "eth0"]), /10\.211\.0\.2\/24/);
    assert.match(inNetns(server.pid, ["ip", "route"]), /10\.212\.0\.0\/24 via 10\.211\.0\.1 dev eth0/);
    assert.match(inNetns(server.pid, ["ip", "rule"]), /from 10\.211\.0\.7 lookup 100/);
    assert.equal(inNetns(server.pid, ["sysctl", "-n", "net.ipv4.conf.eth0.rp_filter", "net.unix.max_dgram_qlen"]), "2\n77\n");
    const ruleset = inNetns(server.pid, ["nft", "list", "ruleset"]);
    assert.match(ruleset, /table inet wl[\s\S]*tcp dport 9 drop/);
    assert.doesNotMatch(ruleset, /CRIU-/, "the lock was lifted");
    assert.ok(hasLink(outside));
    // The connection streams on both ways: the client gets 64 KB more, then both ends close cleanly.
    assert.equal(finish(client), "PASS");
    assert.equal(finish(server), "PASS");
  } finally {
    if (client) stop(client);
    stop(server);
    removeLink(outside);
  }
});

test("netns: a link crest does not keep (an ifb) is refused by name, and the tree runs on", () => {
  const w = startWorkload("loop", [], { ns: NS });
  try {
    inNetns(w.pid, ["ip", "link", "add", "ifb7", "type", "ifb"]);
    const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /network link ifb7 \(index \d+, kind ifb\) of the network namespace net:\[\d+\] of process \d+ is not supported/);
    assert.equal(procState(w.pid).tracer, 0);
    assert.doesNotMatch(inNetns(w.pid, ["nft", "list", "ruleset"]), /CRIU-/, "the lock was lifted");
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

// runc asks for podman's container both: the namespace podman owns is external, and --empty-ns net (runc always asks
// it); the external namespace is joined all the same, as criu does.
for (const extra of [[], ["--empty-ns", "net"]]) {
test(`netns: a namespace the caller owns is external: not dumped, and joined again from --inherit-fd${extra.length ? `, with ${extra.join(" ")} too` : ""}`, () => {
  const w = startWorkload("loop", [], { ns: NS });
  // The caller (a container runtime) keeps the namespace alive across the checkpoint.
  const held = openSync(`/proc/${w.pid}/ns/net`, "r");
  try {
    inNetns(w.pid, ["ip", "link", "set", "lo", "up"]);
    const ino = statSync(`/proc/${w.pid}/ns/net`).ino;
    dumpWorkload(w, ["--external", `net[${ino}]:extnet`, ...extra]);
    assert.deepEqual(critDecodeAll(imagesDir(w)), []);
    const nsId = readImage(imagesDir(w), IMG.ids, 1)[0]!.net_ns_id!;
    assert.equal(readImage(imagesDir(w), IMG.netns, nsId)[0]!.ext_key, "extnet");
    assert.throws(() => readImage(imagesDir(w), IMG.netdev, nsId), "the caller's namespace is not dumped");
    // crest's fd 3 is the namespace.
    const pidfile = join(w.dir, "restored.pid");
    const r = spawnSync(CREST, ["restore", "-D", imagesDir(w), "-o", "restore.log", "-v4", "-d", "--pidfile", pidfile, "--inherit-fd", "fd[3]:extnet", ...extra],
      { stdio: ["ignore", "pipe", "pipe", held], encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    w.pid = Number(readFileSync(pidfile, "utf8"));
    assert.equal(statSync(`/proc/${w.pid}/ns/net`).ino, ino, "the root joined the caller's namespace");
    assert.doesNotMatch(inNetns(w.pid, ["nft", "list", "ruleset"]), /CRIU-/, "the lock was lifted");
    assert.equal(finish(w), "PASS");
  } finally {
    closeSync(held);
    stop(w);
  }
});
}

// The socket kinds inside the namespace: sock_diag runs there, and the lock is the namespace's.
for (const name of ["sk-unix", "sk-netlink", "sk-packet"]) {
  test(`netns: ${name} in a network namespace of its own`, () => cycle(name, [], undefined, { ns: NS, loUp: true }));
}

test("netns: sk-inet (TCP and UDP over IPv4 and IPv6 on the namespace's loopback, data in flight) with --tcp-established", () => {
  const w = startWorkload("sk-inet", ["all"], { ns: NS, loUp: true });
  try {
    dumpWorkload(w, ["--tcp-established"]);
    assert.deepEqual(critDecodeAll(imagesDir(w)), []);
    restoreWorkload(w, ["--tcp-established"]);
    assert.doesNotMatch(inNetns(w.pid, ["nft", "list", "ruleset"]), /CRIU-/, "the lock was lifted");
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

// runc's way: the namespace is made anew and left empty (its contents neither dumped nor restored), the caller sets it
// up from its setup-namespaces hook (runc configures its network there); the lock goes back in until the resume.
test("netns: --empty-ns net leaves the new namespace to the caller's setup-namespaces hook; the connections stay locked until the resume", () => {
  const w = startWorkload("sk-inet", ["all"], { ns: NS, loUp: true });
  try {
    dumpWorkload(w, ["--tcp-established", "--empty-ns", "net"]);
    const dir = imagesDir(w);
    assert.deepEqual(critDecodeAll(dir), []);
    assert.equal(readdirSync(dir).filter((f) => /^(netdev|ifaddr|route|nftables)-/.test(f)).length, 0, "nothing of the namespace is dumped");
    const script = join(w.dir, "setup-ns.sh");
    writeFileSync(script, '#!/bin/sh\n[ "$CRTOOLS_SCRIPT_ACTION" = setup-namespaces ] || exit 0\n' +
      `echo "$CRTOOLS_INIT_PID" > ${join(w.dir, "setup.pid")}\nexec nsenter -t "$CRTOOLS_INIT_PID" -n ip link set lo up\n`);
    chmodSync(script, 0o755);
    restoreWorkload(w, ["--tcp-established", "--empty-ns", "net", "--action-script", script]);
    assert.equal(Number(readFileSync(join(w.dir, "setup.pid"), "utf8")), w.pid, "the hook ran for the restored root");
    assert.match(dumpLog(w, "restore.log"), /left empty \(--empty-ns net\), locked with nftables until the resume/);
    assert.doesNotMatch(inNetns(w.pid, ["nft", "list", "ruleset"]), /CRIU-/, "the lock was lifted");
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});
