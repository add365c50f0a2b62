// The containers' root file system and what each runtime makes of it, from
// Debian's packages only (nothing downloaded): a busybox-static rootfs
// (make-rootfs.sh), an OCI bundle for runc and crun (`runc spec`, adjusted),
// a podman image imported from it, an LXC container on a directory rootfs.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** This directory in the source tree (the shell scripts are not compiled). */
export const CONTAINERS_SRC = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "test", "containers");

/** The port the container's program serves its count on, inside the container. */
export const COUNTER_PORT = 8080;

/** A busybox-static rootfs with /counter.sh in dir (made, or refreshed). */
export function makeRootfs(dir: string): string {
  execFileSync(join(CONTAINERS_SRC, "make-rootfs.sh"), [dir], { stdio: ["ignore", "ignore", "pipe"] });
  return dir;
}

interface OciSpec {
  process: { terminal: boolean; args: string[]; env: string[]; rlimits?: unknown[] };
  root: { path: string; readonly: boolean };
  hostname: string;
  linux: { namespaces: Array<{ type: string; path?: string }> };
}

/**
 * An OCI bundle in dir for runc or crun: `runc spec`'s default (new pid,
 * network, ipc, uts and mount namespaces, runc's mounts and masked paths),
 * with /counter.sh as its process, no terminal (its stdio are the caller's
 * pipes; with `terminal`, a terminal whose master runc sends to a console
 * socket, its slave bind-mounted on /dev/console) and a writable root, where
 * the count is kept for httpd to serve.
 */
export function ociBundle(dir: string, terminal = false): string {
  mkdirSync(dir, { recursive: true });
  makeRootfs(join(dir, "rootfs"));
  const config = join(dir, "config.json");
  if (existsSync(config)) execFileSync("rm", ["-f", config]);
  execFileSync("runc", ["spec", "--bundle", dir]);
  const spec = JSON.parse(readFileSync(config, "utf8")) as OciSpec;
  spec.process.terminal = terminal;
  spec.process.args = ["/counter.sh"];
  spec.process.env.push(`PORT=${COUNTER_PORT}`);
  spec.root.readonly = false;
  spec.hostname = "crest-ct";
  writeFileSync(config, JSON.stringify(spec, null, 1));
  return dir;
}

/** The podman image of the rootfs (`podman import`, CMD /counter.sh), imported afresh each time: 2 MB, and never stale. */
export const PODMAN_IMAGE = "localhost/crest-busybox:counter";

export function podmanImage(work: string): string {
  const root = makeRootfs(join(work, "podman-rootfs"));
  const tar = join(work, "rootfs.tar");
  execFileSync("tar", ["-C", root, "-cf", tar, "."]);
  // The previous import, unless a container still uses it (no -f: that would remove the container), so that imports do not pile up.
  spawnSync("podman", ["rmi", PODMAN_IMAGE], { stdio: "ignore" });
  execFileSync("podman", ["import", "--change", 'CMD ["/counter.sh"]', tar, PODMAN_IMAGE], { stdio: ["ignore", "ignore", "pipe"] });
  return PODMAN_IMAGE;
}

/**
 * An LXC container NAME under lxcpath (lxc-start -P), on a directory rootfs:
 * its own network namespace with a loopback only (lxc.net.0.type = empty),
 * no console and no ttys (lxc-checkpoint wants none), LXC's usual
 * proc/sys/cgroup mounts, the debug log beside its config.
 */
export function lxcContainer(lxcpath: string, name: string): string {
  const dir = join(lxcpath, name);
  mkdirSync(dir, { recursive: true });
  const root = makeRootfs(join(dir, "rootfs"));
  writeFileSync(join(dir, "config"), [
    `lxc.uts.name = ${name}`,
    `lxc.rootfs.path = dir:${root}`,
    "lxc.init.cmd = /counter.sh",
    `lxc.environment = PORT=${COUNTER_PORT}`,
    "lxc.net.0.type = empty",
    "lxc.mount.auto = proc:mixed sys:ro cgroup:mixed",
    "lxc.console.path = none",
    "lxc.tty.max = 0",
    "lxc.pty.max = 0",
    "lxc.autodev = 1",
    "lxc.log.level = DEBUG",
    `lxc.log.file = ${join(dir, "lxc.log")}`,
    "",
  ].join("\n"));
  return dir;
}
