// The Debian packages crest's build and tests need, installed with apt-get
// when missing (as root), so that the README's two commands work on a fresh
// Debian machine. Not root, or no apt-get: it says what to install and fails.
// Not Debian (no dpkg-query): nothing is checked, the tools speak for themselves.
//
//   node scripts/debian-packages.mjs [build] [test] [vnc] [containers]   (all when none is named)
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const PACKAGES = {
  // The native binding, the stub and the test workloads are C, built here.
  build: ["gcc", "make", "libc6-dev"],
  // Debian's crit (in criu, a python program using python3-protobuf) decodes the tests' images;
  // the TCP tests lock the network with nft and with iptables-restore, as crest does for --tcp-established;
  // the RPC tests drive crest with pycriu (in criu) and with go-criu, built offline with Debian's Go;
  // tmux runs the shell-job test's two terminals; iproute2's ip saves and restores a network namespace's
  // addresses, routes and rules, as criu does; openssl makes the page server's TLS test certificates.
  test: ["criu", "python3-protobuf", "nftables", "iptables", "iproute2", "golang-go", "golang-github-checkpoint-restore-go-criu-dev", "tmux", "openssl"],
  // CRIU's VNC scenario (test/cr/vnc.test.ts, npm run demo:vnc, the bench's VNC row): the VNC server,
  // the window manager and terminal in the tree; Xvfb, the viewer, xdotool, xwininfo and xwd outside it.
  vnc: ["tigervnc-standalone-server", "icewm", "xterm", "xvfb", "tigervnc-viewer", "xdotool", "x11-utils", "x11-apps"],
  // The container runtimes that checkpoint through criu (test/containers/, docs/containers.md): runc, crun,
  // podman (run with runc) and LXC, the containers' root file system from busybox-static, entered with
  // util-linux's nsenter. npm test installs them (test/cr/containers-cr.test.ts runs runc's and podman's checkpoints).
  // netavark is podman's network stack here (a Recommends of podman's; named, as apt may be told to skip those).
  containers: ["runc", "crun", "podman", "netavark", "lxc", "busybox-static", "util-linux"],
};

function installed(pkg) {
  const r = spawnSync("dpkg-query", ["-W", "-f=${db:Status-Status}", pkg], { encoding: "utf8" });
  return r.status === 0 && r.stdout === "installed";
}

function aptGet(args) {
  const r = spawnSync("apt-get", args, { stdio: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  if (r.status !== 0) {
    console.error(`apt-get ${args.join(" ")} failed (${r.status ?? r.signal})`);
    process.exit(1);
  }
}

/** Installs what of pkgs is missing, for `what` ("crest's tests", in messages); exits 1 when it cannot. */
export function ensurePackages(what, pkgs) {
  if (!existsSync("/usr/bin/dpkg-query")) return;
  const missing = pkgs.filter((p) => !installed(p));
  if (!missing.length) return;
  const list = missing.join(" ");
  if (process.getuid?.() !== 0 || !existsSync("/usr/bin/apt-get")) {
    console.error(`For ${what}, the Debian packages ${list} are needed and not installed: as root, run apt-get install ${list}`);
    process.exit(1);
  }
  console.log(`For ${what}, installing the Debian packages ${list} with apt-get`);
  aptGet(["update", "-qq"]);
  aptGet(["install", "-y", "-qq", ...missing]);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const groups = process.argv.length > 2 ? process.argv.slice(2) : Object.keys(PACKAGES);
  for (const g of groups) {
    if (!(g in PACKAGES)) {
      console.error(`unknown group ${g}: ${Object.keys(PACKAGES).join(" or ")}`);
      process.exit(2);
    }
  }
  ensurePackages(`crest (${groups.join(", ")})`, [...new Set(groups.flatMap((g) => PACKAGES[g]))]);
}
