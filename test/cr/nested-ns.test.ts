// Nested namespaces: a task of the tree in a network namespace other than
// the root's (one it unshared, and its child born there). The namespace is
// dumped under its own id (netdev-N.img, ifaddr-N.img, ... as criu names
// them) and made again before any task needs it (by the root, in a tree
// with a user namespace of its own, which owns it); its sockets (a
// TCP listener, unix sockets, an abstract name) come back in it, and a
// socket the task made before it unshared comes back in the root's, and a
// veth pair between the root's namespace and the nested one comes back
// whole (its root end a port of a bridge), and a route through a link
// without carrier at dump comes back (the kernel's linkdown mark cleared for
// `ip route restore`, set again by the kernel). Both with the root in crest's
// namespace and in one of its own; the veth pair also in a tree with a user
// namespace of its own.
// Refused by name, the tree running on: a socket of a namespace no task is
// in.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import {
  crest, critDecodeAll, cycle, dumpLog, dumpWorkload, finish, hasLink, imagesDir, inNetns, procState, restoreWorkload,
  startWorkload, stop, vethTo, type Workload,
} from "./harness.js";
import { IMG, readImage } from "../../src/images/index.js";

const NS = "pid,ipc,uts,net";

/** The root's first child (netns-nested forks "inner" first). */
function inner(w: Workload): number {
  return Number(readFileSync(`/proc/${w.pid}/task/${w.pid}/children`, "utf8").trim().split(" ")[0]);
}

/** Each task's net_ns_id in the images, in pstree order. */
function netnsIds(w: Workload): number[] {
  const dir = imagesDir(w);
  return readImage(dir, IMG.pstree).map((e) => readImage(dir, IMG.ids, e.pid)[0]!.net_ns_id!);
}

/** The images of a nested namespace: its own netdev-N.img with lo, besides the root's. */
function checkImages(w: Workload): void {
  const [root, inn, outer, innerChild] = netnsIds(w);
  assert.notEqual(inn, root, "inner has a namespace id of its own");
  assert.equal(innerChild, inn, "inner's child shares it");
  assert.equal(outer, root, "outer shares the root's");
  const links = readImage(imagesDir(w), IMG.netdev, inn!);
  assert.deepEqual(links.map((l) => l.name), ["lo"]);
  assert.match(dumpLog(w), /Dumped the nested network namespace net:\[\d+\] of process \d+: links lo/);
}

test("nested netns: a child's own network namespace (lo up, an address, a TCP listener, unix sockets; a socket made before the unshare stays in the root's) comes back, the root in crest's namespace", () => {
  cycle("netns-nested", [], checkImages);
});

test("nested netns: the same with the root in a network namespace of its own", () => {
  cycle("netns-nested", [], checkImages, { ns: NS, loUp: true });
});

test("nested netns: a veth from the nested namespace to crest's comes back with --external veth[IFNAME]:OUTSIDE", () => {
  const outside = `crn${process.pid % 10000}`;
  if (hasLink(outside)) spawnSync("ip", ["link", "del", outside]);
  const w = startWorkload("netns-nested");
  try {
    const pid = inner(w);
    vethTo(pid, { outside, inside: "eth0", outsideCidr: "10.214.0.1/24", insideCidr: "10.214.0.2/24" });
    inNetns(pid, ["ip", "route", "add", "10.215.0.0/24", "via", "10.214.0.1"]);
    dumpWorkload(w);
    assert.deepEqual(critDecodeAll(imagesDir(w)), []);
    assert.ok(!hasLink(outside), "the pair went with the dumped namespace");
    const refused = crest(["restore", "-D", imagesDir(w), "-o", "refused.log", "-d"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /veth eth0 of the nested network namespace of process \d+ has its peer outside: restore with --external veth\[eth0\]:NAME/);
    restoreWorkload(w, ["--external", `veth[eth0]:${outside}`]);
    const after = inner(w);
    assert.notEqual(statSync(`/proc/${after}/ns/net`).ino, statSync("/proc/self/ns/net").ino);
    assert.match(inNetns(after, ["ip", "-br", "-4", "addr", "show", "eth0"]), /10\.214\.0\.2\/24/);
    assert.match(inNetns(after, ["ip", "route"]), /10\.215\.0\.0\/24 via 10\.214\.0\.1 dev eth0/);
    assert.doesNotMatch(inNetns(after, ["nft", "list", "ruleset"]), /CRIU-|CREST-RESTORE/, "the locks were lifted");
    assert.ok(hasLink(outside), "the peer is back here");
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
    if (hasLink(outside)) spawnSync("ip", ["link", "del", outside]);
  }
});

/** A fresh bridge in crest's namespace, with `others` (links a test makes here) gone; returns what removes them all again. */
function bridgeHere(bridge: string, ...others: string[]): () => void {
  const remove = () => {
    for (const l of [...others, bridge]) if (hasLink(l)) spawnSync("ip", ["link", "del", l]);
  };
  remove();
  assert.equal(spawnSync("ip", ["link", "add", bridge, "type", "bridge"]).status, 0);
  return remove;
}

test("nested netns: --external veth[IFNAME]:OUTSIDE@BRIDGE puts the peer into that bridge of crest's namespace, up, as criu does; a bridge that is not there fails the restore first", () => {
  const outside = `crb${process.pid % 10000}`, bridge = `crbr${process.pid % 10000}`;
  const removeLinks = bridgeHere(bridge, outside);
  const w = startWorkload("netns-nested");
  try {
    const pid = inner(w);
    vethTo(pid, { outside, inside: "eth0", outsideCidr: "10.216.0.1/24", insideCidr: "10.216.0.2/24" });
    dumpWorkload(w);
    const refused = crest(["restore", "-D", imagesDir(w), "-o", "refused.log", "-d", "--external", `veth[eth0]:${outside}@nosuchbr0`]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, new RegExp(`--external veth\\[eth0\\]:${outside}@nosuchbr0: crest's network namespace has no bridge nosuchbr0`));
    assert.ok(!hasLink(outside), "nothing was made");
    restoreWorkload(w, ["--external", `veth[eth0]:${outside}@${bridge}`]);
    const link = spawnSync("ip", ["-o", "link", "show", outside], { encoding: "utf8" }).stdout;
    assert.match(link, new RegExp(`master ${bridge}`), "the peer is in the bridge");
    assert.match(link, /<[^>]*\bUP\b[^>]*>/, "and up");
    assert.match(inNetns(inner(w), ["ip", "-br", "-4", "addr", "show", "eth0"]), /10\.216\.0\.2\/24/);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
    removeLinks();
  }
});

test("nested netns: a macvlan on a link of crest's namespace comes back on the one --external macvlan[IFNAME]:PARENT names, mode and address kept", () => {
  const parent = `crmp${process.pid % 10000}`, tmp = `crmt${process.pid % 10000}`;
  const removeLinks = bridgeHere(parent, tmp);
  const w = startWorkload("netns-nested");
  try {
    const pid = inner(w);
    for (const argv of [["link", "add", tmp, "link", parent, "type", "macvlan", "mode", "private"], ["link", "set", tmp, "netns", String(pid)]]) {
      assert.equal(spawnSync("ip", argv).status, 0, `ip ${argv.join(" ")}`);
    }
    inNetns(pid, ["ip", "link", "set", tmp, "name", "mv0"]);
    inNetns(pid, ["ip", "addr", "add", "10.218.0.2/24", "dev", "mv0"]);
    inNetns(pid, ["ip", "link", "set", "mv0", "up"]);
    const before = inNetns(pid, ["ip", "-o", "link", "show", "mv0"]).match(/link\/ether (\S+)/)![1];
    dumpWorkload(w);
    assert.deepEqual(critDecodeAll(imagesDir(w)), []);
    const refused = crest(["restore", "-D", imagesDir(w), "-o", "refused.log", "-d"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /macvlan mv0 of the nested network namespace of process \d+ has its parent link outside: restore with --external macvlan\[mv0\]:PARENT/);
    restoreWorkload(w, ["--external", `macvlan[mv0]:${parent}`]);
    const after = inner(w);
    const link = inNetns(after, ["ip", "-d", "-o", "link", "show", "mv0"]);
    assert.match(link, /macvlan mode private/);
    assert.match(link, new RegExp(`link/ether ${before}`), "the same address");
    assert.match(inNetns(after, ["ip", "-br", "-4", "addr", "show", "mv0"]), /10\.218\.0\.2\/24/);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
    removeLinks();
  }
});

test("nested netns: a socket of a namespace no task of the tree is in is refused by name, and the tree runs on", () => {
  const w = startWorkload("netns-nested", ["orphan"]);
  try {
    const pid = inner(w);
    const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`fd \\d+ of process ${pid} .*belongs to network namespace net:\\[\\d+\\], which no task of the tree is in`));
    assert.equal(procState(w.pid).tracer, 0);
    assert.doesNotMatch(inNetns(pid, ["nft", "list", "ruleset"]), /CRIU-/, "the nested namespace's lock was lifted");
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

/** A TCP exchange from the namespace of process `from` to ADDR:PORT served in the namespace of process `at` (node on both ends). */
function tcpAcross(at: number, from: number, addr: string, port: number): string {
  const server = spawn("nsenter", [`--net=/proc/${at}/ns/net`, "--", process.execPath, "-e",
    `require("net").createServer((s) => s.end("pong")).listen(${port}, "${addr}"); setTimeout(() => process.exit(0), 8000);`], { stdio: "ignore" });
  try {
    const client = `const s = require("net").connect(${port}, "${addr}"); let d = ""; s.on("data", (x) => d += x); ` +
      `s.on("end", () => { console.log(d); process.exit(0); }); s.on("error", () => process.exit(1)); setTimeout(() => process.exit(2), 2000);`;
    for (let i = 0; i < 20; i++) {
      const r = spawnSync("nsenter", [`--net=/proc/${from}/ns/net`, "--", process.execPath, "-e", client], { encoding: "utf8" });
      if (r.status === 0) return r.stdout.trim();
      spawnSync("sleep", ["0.2"]);
    }
    return "";
  } finally {
    server.kill();
  }
}

/** A link's ifindex, peer index and the nsid of its peer's namespace, as `ip -j` shows them in the namespace of `pid`. */
function linkOf(pid: number, name: string): { ifindex: number; link_index?: number; link_netnsid?: number; address?: string } {
  return JSON.parse(inNetns(pid, ["ip", "-j", "link", "show", name]))[0];
}

/** route-N.img of namespace `id` as `ip route showdump` prints it (device names as this namespace knows their indexes). */
function savedRoutes(w: Workload, id: number): string {
  const r = spawnSync("ip", ["route", "showdump"], { input: readFileSync(`${imagesDir(w)}/route-${id}.img`), encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

/**
 * A veth pair between the root's namespace and inner's (vin 10.217.0.2/24 in inner's, vout in the root's a port of br0 with
 * 10.217.0.1/24), set up in the running netns-nested ("veth" mode: the workload checks vin and a connection over the pair).
 */
function vethBetween(w: Workload): number {
  const pid = inner(w);
  inNetns(pid, ["ip", "link", "add", "vin", "type", "veth", "peer", "name", "vout", "netns", `/proc/${w.pid}/ns/net`]);
  inNetns(pid, ["ip", "addr", "add", "10.217.0.2/24", "dev", "vin"]);
  inNetns(pid, ["ip", "link", "set", "vin", "up"]);
  // The root's end is a port of a bridge, which has the address.
  inNetns(w.pid, ["ip", "link", "add", "br0", "type", "bridge"]);
  inNetns(w.pid, ["ip", "link", "set", "vout", "master", "br0"]);
  inNetns(w.pid, ["ip", "addr", "add", "10.217.0.1/24", "dev", "br0"]);
  inNetns(w.pid, ["ip", "link", "set", "vout", "up"]);
  inNetns(w.pid, ["ip", "link", "set", "br0", "up"]);
  return pid;
}

/** The user namespace that owns the network namespace of `pid` (lsns's ONS column), and the one `pid` is in. */
function netnsOwner(pid: number): { owner: number; user: number } {
  const r = spawnSync("lsns", ["-n", "-o", "NS,ONS", "-t", "net"], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const net = statSync(`/proc/${pid}/ns/net`).ino;
  const row = r.stdout.split("\n").map((l) => l.trim().split(/\s+/).map(Number)).find(([ns]) => ns === net);
  assert.ok(row, `lsns lists net:[${net}]`);
  return { owner: row[1]!, user: statSync(`/proc/${pid}/ns/user`).ino };
}

for (const [ns, port, what] of [[NS, 7071, "the root in crest's user namespace"], [`user,${NS}`, 7081, "in a tree with a user namespace of its own (the namespaces its, made by its root)"]] as const) {
  test(`nested netns: a veth pair between the root's namespace and a nested one comes back whole, the two ends peers with their indexes and addresses, the root's end a port of a bridge, ${what}`, () => {
    const w = startWorkload("netns-nested", ["veth"], { ns, loUp: true });
    try {
      let pid = vethBetween(w);
      assert.equal(tcpAcross(w.pid, pid, "10.217.0.1", port), "pong", "the pair carries traffic before the dump");
      const before = { vin: linkOf(pid, "vin"), vout: linkOf(w.pid, "vout") };
      // The kernel's linkwatch runs a link's carrier change at most once a second: after a second of quiet, a carrier lost
      // during the dump (vout taken down before inner's namespace is read) would mark vin's route linkdown at once.
      spawnSync("sleep", ["1.1"]);
      dumpWorkload(w);
      assert.deepEqual(critDecodeAll(imagesDir(w)), []);
      const [rootNs, innerNs] = netnsIds(w);
      const vin = readImage(imagesDir(w), IMG.netdev, innerNs!).find((l) => l.name === "vin")!;
      const vout = readImage(imagesDir(w), IMG.netdev, rootNs!).find((l) => l.name === "vout")!;
      assert.equal(vin.peer_nsid, rootNs, "vin's peer is in the root's namespace (peer_nsid)");
      assert.equal(vout.peer_nsid, innerNs, "vout's peer is in inner's namespace");
      assert.equal(vin.peer_ifindex, vout.ifindex);
      assert.match(dumpLog(w), /veth vin of the nested network namespace .* has its peer vout in the network namespace/);
      // The dump reads every namespace before it takes any link down: vin had its carrier, its route is not linkdown.
      assert.doesNotMatch(savedRoutes(w, innerNs!), /linkdown/);
      assert.match(savedRoutes(w, innerNs!), /10\.217\.0\.0\/24 dev/);
      // No --external veth[] needed: both ends are the tree's.
      restoreWorkload(w);
      pid = inner(w);
      const after = { vin: linkOf(pid, "vin"), vout: linkOf(w.pid, "vout") };
      assert.equal(after.vin.ifindex, before.vin.ifindex);
      assert.equal(after.vout.ifindex, before.vout.ifindex);
      assert.equal(after.vin.link_index, after.vout.ifindex, "vin's peer is vout");
      assert.equal(after.vout.link_index, after.vin.ifindex, "vout's peer is vin");
      assert.equal(after.vin.address, before.vin.address);
      assert.equal(after.vout.address, before.vout.address);
      assert.match(inNetns(pid, ["ip", "-br", "-4", "addr", "show", "vin"]), /UP\s+10\.217\.0\.2\/24/);
      assert.equal((linkOf(w.pid, "vout") as { master?: string }).master, "br0", "vout is a port of br0 again");
      assert.match(inNetns(w.pid, ["ip", "-br", "-4", "addr", "show", "br0"]), /UP\s+10\.217\.0\.1\/24/);
      // Both namespaces belong to the tasks' user namespace (the tree's, or crest's).
      for (const p of [pid, w.pid]) {
        const o = netnsOwner(p);
        assert.equal(o.owner, o.user, `the network namespace of process ${p} is owned by its user namespace`);
      }
      if (ns.startsWith("user")) assert.match(dumpLog(w, "restore.log"), /Process \d+ made 1 network namespace\(s\) of the tree's user namespace/);
      assert.equal(tcpAcross(w.pid, pid, "10.217.0.1", port + 1), "pong", "the pair carries traffic after the restore");
      for (const p of [pid, w.pid]) assert.doesNotMatch(inNetns(p, ["nft", "list", "ruleset"]), /CRIU-|CREST-RESTORE/, "each lock was lifted");
      // The workload's own checks: vin up with its address, a connection over the pair to the root.
      assert.equal(finish(w), "PASS");
    } finally {
      stop(w);
    }
  });
}

test("nested netns: sabotage 5 (inner takes vin down) is seen after a restore of a veth pair in a tree with a user namespace of its own", () => {
  const w = startWorkload("netns-nested", ["veth"], { ns: `user,${NS}`, loUp: true, env: ["CREST_WL_SABOTAGE=5"] });
  try {
    vethBetween(w);
    dumpWorkload(w);
    restoreWorkload(w);
    const out = finish(w);
    assert.match(out, /inner: vin is down/);
    assert.match(out, /inner: connect over the veth pair to 10\.217\.0\.1:\d+/);
  } finally {
    stop(w);
  }
});

/** Polls `ip route` in the namespace of `pid` until `re` matches it (3 s at most); returns the last output. */
function routesWhen(pid: number, re: RegExp): string {
  let out = "";
  for (let i = 0; i < 30; i++) {
    out = inNetns(pid, ["ip", "route"]);
    if (re.test(out)) break;
    spawnSync("sleep", ["0.1"]);
  }
  return out;
}

test("nested netns: a route through a link without carrier at dump (its veth peer down) comes back, linkdown again until the peer is up", () => {
  const w = startWorkload("netns-nested", [], { ns: NS, loUp: true });
  try {
    let pid = inner(w);
    inNetns(pid, ["ip", "link", "add", "vin", "type", "veth", "peer", "name", "vout", "netns", `/proc/${w.pid}/ns/net`]);
    inNetns(pid, ["ip", "addr", "add", "10.218.0.2/24", "dev", "vin"]);
    inNetns(pid, ["ip", "link", "set", "vin", "up"]);
    // The root's end has its address but stays down: vin has no carrier, the kernel marks its route linkdown.
    inNetns(w.pid, ["ip", "addr", "add", "10.218.0.1/24", "dev", "vout"]);
    assert.match(routesWhen(pid, /linkdown/), /10\.218\.0\.0\/24 dev vin .*linkdown/);
    dumpWorkload(w);
    assert.deepEqual(critDecodeAll(imagesDir(w)), []);
    // The image keeps what the dump read, the kernel's state with it.
    const innerNs = netnsIds(w)[1]!;
    assert.match(savedRoutes(w, innerNs), /10\.218\.0\.0\/24 dev \S+ .*linkdown/);
    restoreWorkload(w);
    assert.match(dumpLog(w, "restore.log"), new RegExp(`route-${innerNs}\\.img: 1 of 1 routes had the kernel's linkdown or dead state`));
    pid = inner(w);
    // The kernel marks the route again itself (as its linkwatch sees vin without carrier: within a second).
    assert.match(routesWhen(pid, /linkdown/), /10\.218\.0\.0\/24 dev vin proto kernel scope link src 10\.218\.0\.2 linkdown/);
    assert.match(inNetns(w.pid, ["ip", "-br", "link", "show", "vout"]), /DOWN/, "vout comes back down, as dumped");
    // A live route: the peer up gives vin its carrier, and the kernel lifts the mark.
    inNetns(w.pid, ["ip", "link", "set", "vout", "up"]);
    assert.doesNotMatch(routesWhen(pid, /^(?![\s\S]*linkdown)/), /linkdown/);
    assert.equal(tcpAcross(w.pid, pid, "10.218.0.1", 7073), "pong", "the pair carries traffic once its root end is up");
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("nested netns: a restore that fails removes the veth it made for the nested namespace, and the images restore after", () => {
  const outside = `crf${process.pid % 10000}`;
  if (hasLink(outside)) spawnSync("ip", ["link", "del", outside]);
  const w = startWorkload("netns-nested");
  try {
    vethTo(inner(w), { outside, inside: "eth0", outsideCidr: "10.216.0.1/24", insideCidr: "10.216.0.2/24" });
    dumpWorkload(w);
    const failed = crest(["restore", "-D", imagesDir(w), "-o", "failed.log", "-d", "--external", `veth[eth0]:${outside}`], { CREST_FAULT: "restore:forked" });
    assert.equal(failed.code, 1, failed.stderr);
    assert.ok(!hasLink(outside), "the failed restore removed the veth it made");
    restoreWorkload(w, ["--external", `veth[eth0]:${outside}`]);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
    if (hasLink(outside)) spawnSync("ip", ["link", "del", outside]);
  }
});

// Each check of the workload can fail: its sabotage items, after a real restore.
for (const [item, what] of [[1, /inner: lo is down/], [2, /inner-child: net:\[\d+\], expected inner's|the TCP listener is in net:\[\d+\], the task in/], [3, /answers in the root's namespace/], [4, /the socket made before the unshare is in net:\[\d+\], expected the root's/]] as const) {
  test(`nested netns: sabotage ${item} is seen after a restore`, () => {
    const w = startWorkload("netns-nested", [], { env: [`CREST_WL_SABOTAGE=${item}`] });
    try {
      dumpWorkload(w);
      restoreWorkload(w);
      assert.match(finish(w), what);
    } finally {
      stop(w);
    }
  });
}

test("nested netns: an established TCP connection inside the nested namespace, with data in flight, comes back with --tcp-established", () => {
  const w = startWorkload("netns-nested", ["tcp"]);
  try {
    const dumped = dumpWorkload(w, ["--tcp-established"]);
    assert.equal(dumped.code, 0);
    assert.deepEqual(critDecodeAll(imagesDir(w)), []);
    // The nested namespace is locked whole: no per-connection rule in crest's namespace.
    assert.match(dumpLog(w), /Locked the nested network namespace net:\[\d+\] of process \d+ with nftables/);
    assert.doesNotMatch(dumpLog(w), /Locked the network of \d+ TCP connection/);
    restoreWorkload(w, ["--tcp-established"]);
    assert.match(dumpLog(w, "restore.log"), /Unlocked the nested network namespace \d+ \(nftables\)/);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("nested netns: in a tree with its own user namespace, the nested namespace is made by the root there and comes back", () => {
  cycle("netns-nested", [], checkImages, { ns: `user,${NS}`, loUp: true });
});
