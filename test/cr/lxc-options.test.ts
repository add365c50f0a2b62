// What LXC's lxc-checkpoint asks of criu besides what runc asks, each on a
// workload of its own: --link-remap (a file removed while another name of
// it remains, linked back under a temporary name at dump, that name removed
// after the restore) and --ext-mount-map auto with
// --enable-external-sharing/-masters (mounts of the tree that show a file
// system crest's own namespace shows, dumped as external and bound from
// there on restore). The whole LXC cycle is containers-lxc.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readImage, IMG } from "../../src/images/index.js";
import { remap_type } from "../../src/images/index.js";
import {
  assertDumpRefused, crest, critDecodeAll, dumpLog, dumpWorkload, finish, imagesDir, procState, restoreWorkload, startWorkload, stop, type Workload,
} from "./harness.js";

const linkNames = (dir: string) => readdirSync(join(dir, "l")).filter((n) => n.startsWith("link_remap.")).sort();

test("--link-remap: files removed while another link remains are linked back at dump, reopened and the names removed at restore", () => {
  const w = startWorkload("files-linkremap");
  try {
    dumpWorkload(w, ["--link-remap"]);
    assert.deepEqual(critDecodeAll(imagesDir(w)), []);
    const remaps = readImage(imagesDir(w), IMG.remapFpath, undefined);
    assert.equal(remaps.length, 3, "the fd of first, its mapping and the fd of deep");
    assert.ok(remaps.every((r) => r.remap_type === remap_type.LINKED));
    const files = new Map(readImage(imagesDir(w), IMG.files, undefined).map((f) => [f.id, f.reg?.name]));
    const linked = remaps.map((r) => files.get(r.remap_id)).sort();
    // One name per files.img entry, as criu makes them; deep's directory is gone, so its name is made one directory up, as criu does.
    assert.deepEqual(linked.map((n) => n?.replace(/\.\d+$/, "")), [`${w.dir}/l/link_remap`, `${w.dir}/l/link_remap`, `${w.dir}/l/link_remap`]);
    assert.deepEqual(linkNames(w.dir), linked.map((n) => n!.slice(`${w.dir}/l/`.length)).sort(), "the names stay on disk for the restore");
    // first: other and its two link remaps (its fd and its mapping).
    assert.deepEqual(linked.map((n) => statSync(n!).nlink).sort(), [2, 3, 3]);
    restoreWorkload(w, ["--link-remap"]);
    assert.deepEqual(linkNames(w.dir), [], "the restore removed the names");
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("--link-remap missing: the dump is refused by name and the tree runs on", () => {
  assertDumpRefused("files-linkremap", [], /\/l\/first, a path that was removed while the file still has 1 other link\(s\); give --link-remap/);
});

test("--link-remap: a removed file of an overlay's lower layer (a container image's) cannot be linked back: refused by name, the tree runs on", () => {
  const d = mkdtempSync("/tmp/crest-ovl-");
  for (const sub of ["lower", "upper", "work", "merged"]) mkdirSync(join(d, sub));
  writeFileSync(join(d, "lower", "f"), "from the image");
  execFileSync("mount", ["-t", "overlay", "crest-ovl", "-o", `lowerdir=${d}/lower,upperdir=${d}/upper,workdir=${d}/work`, join(d, "merged")]);
  try {
    const w = startWorkload("files-linkremap", ["lower", join(d, "merged", "f")]);
    try {
      const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log", "--link-remap"]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /merged\/f, removed while 1 other link\(s\) remain, but crest cannot link it back in \S+merged \(errno 18: the file is on another file system/);
      assert.equal(procState(w.pid).tracer, 0);
      assert.deepEqual(readdirSync(join(d, "merged")), [], "no name made");
      assert.equal(finish(w), "PASS");
    } finally {
      stop(w);
    }
  } finally {
    spawnSync("umount", [join(d, "merged")]);
    rmSync(d, { recursive: true, force: true });
  }
});

test("--link-remap: a dump that fails removes the names it made, the tree running on", () => {
  const w = startWorkload("files-linkremap");
  try {
    const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log", "-v4", "--link-remap"], { CREST_FAULT: "dump:images" });
    assert.equal(r.code, 1);
    assert.match(dumpLog(w), /linked back as \S+link_remap/);
    assert.deepEqual(linkNames(w.dir), []);
    assert.equal(procState(w.pid).tracer, 0);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

for (const n of [1, 2]) {
  test(`--link-remap: sabotage ${n} is caught`, () => {
    const w = startWorkload("files-linkremap", [], { env: [`CREST_WL_SABOTAGE=${n}`] });
    try {
      dumpWorkload(w, ["--link-remap"]);
      restoreWorkload(w, ["--link-remap"]);
      assert.match(finish(w), /^FAIL/);
    } finally {
      stop(w);
    }
  });
}

/** mountinfo without mount ids, devices and peer group numbers, sorted (as mntns.test.ts compares). */
function normalMountinfo(pid: number): string[] {
  const lines = readFileSync(`/proc/${pid}/mountinfo`, "utf8").trim().split("\n").map((l) => l.split(" "));
  const mp = new Map(lines.map((w) => [w[0]!, w[4]!]));
  return lines.map((w) => [w[4], mp.get(w[1]!) ?? "-", w[3], ...w.slice(5)].join(" ").replace(/\b(shared|master):\d+/g, "$1")).sort();
}

test("--ext-mount-map auto: mounts of file systems crest's namespace shows are dumped as external and bound from there on restore", () => {
  const w = startWorkload("mntns", [], { ns: "mnt,ipc" });
  try {
    const before = normalMountinfo(w.pid);
    const auto = ["--ext-mount-map", "auto", "--enable-external-sharing", "--enable-external-masters"];
    dumpWorkload(w, auto);
    assert.deepEqual(critDecodeAll(imagesDir(w)), []);
    const ids = readImage(imagesDir(w), IMG.ids, w.pid)[0]!;
    const mnts = readImage(imagesDir(w), IMG.mnts, ids.mnt_ns_id!);
    const byPoint = new Map(mnts.map((m) => [m.mountpoint, m]));
    // hb binds a directory of the root file system crest's "/" shows; sysfs and cgroup2 are crest's own too.
    const hb = byPoint.get(`${w.dir}/hb`)!;
    assert.deepEqual([hb.ext_key, hb.source], ["CRIU:AUTOGENERATED", `/${w.dir.slice(1)}/src`]);
    assert.equal(byPoint.get(`${w.dir}/sys`)?.ext_key, "CRIU:AUTOGENERATED");
    // The workload's own tmpfs and its root are not.
    assert.equal(byPoint.get(`${w.dir}/t`)?.ext_key, undefined);
    assert.equal(byPoint.get("/")?.ext_key, undefined);
    assert.match(dumpLog(w), /autodetected external mount \/\S+\/src for \S+\/hb/);

    const r = crest(["restore", "-D", imagesDir(w), "-o", "restore.log", "-d", "--root", "/"]);
    assert.equal(r.code, 1, "without --ext-mount-map auto the restore is refused, as criu refuses it");
    assert.match(r.stderr, /is an autodetected external mount \(of \/\S*\); restore with --ext-mount-map auto/);

    restoreWorkload(w, ["--root", "/", ...auto]);
    assert.deepEqual(normalMountinfo(w.pid), before);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("--ext-mount-map auto: on a tree in crest's own mount namespace: no mount images, the tree restored as without it", () => {
  const w = startWorkload("files-linkremap");
  try {
    // A tree in crest's own mount namespace: no mountpoints image at all, with or without auto.
    dumpWorkload(w, ["--link-remap", "--ext-mount-map", "auto"]);
    assert.equal(existsSync(imagesDir(w)) && readdirSync(imagesDir(w)).some((f) => f.startsWith("mountpoints-")), false);
    restoreWorkload(w, ["--link-remap", "--ext-mount-map", "auto"]);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("--ext-mount-map auto: sabotage 2 (a bind unmounted before the check) is caught", () => {
  const w = startWorkload("mntns", [], { ns: "mnt,ipc", env: ["CREST_WL_SABOTAGE=2"] });
  try {
    const auto = ["--ext-mount-map", "auto", "--enable-external-sharing", "--enable-external-masters"];
    dumpWorkload(w, auto);
    restoreWorkload(w, ["--root", "/", ...auto]);
    assert.match(finish(w), /^FAIL/);
  } finally {
    stop(w);
  }
});

test("--enable-external-sharing: a mount of the tree in a peer group of crest's namespace stays in that group after the restore, propagation live", () => {
  const host = mkdtempSync("/tmp/crest-extshare-");
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "crest-extshare", host]);
  execFileSync("mount", ["--make-shared", host]);
  writeFileSync(join(host, "f"), "shared with the host");
  let w: Workload | undefined;
  const group = (pid: number | "self") => / shared:(\d+)/.exec(readFileSync(`/proc/${pid}/mountinfo`, "utf8").split("\n").find((l) => l.split(" ")[4] === host) ?? "")?.[1];
  try {
    // A copy of crest's mount namespace: every mount in it but its root shows a file system crest's namespace shows.
    w = startWorkload("loop", [], { ns: "mnt" });
    const hostGroup = group("self");
    assert.ok(hostGroup && group(w.pid) === hostGroup, "the copy is a peer of crest's mount");
    const auto = ["--ext-mount-map", "auto", "--enable-external-sharing", "--enable-external-masters"];
    dumpWorkload(w, auto);
    const ids = readImage(imagesDir(w), IMG.ids, w.pid)[0]!;
    const m = readImage(imagesDir(w), IMG.mnts, ids.mnt_ns_id!).find((e) => e.mountpoint === host)!;
    assert.deepEqual([m.ext_key, m.source, m.internal_sharing ?? false], ["CRIU:AUTOGENERATED", host.slice(1), false]);
    restoreWorkload(w, ["--root", "/", ...auto]);
    assert.equal(group(w.pid), hostGroup, "the restored mount is in crest's mount's peer group again");
    assert.equal(readFileSync(`/proc/${w.pid}/root${host}/f`, "utf8"), "shared with the host");
    // Propagation both ways: a mount made on crest's side shows in the tree's namespace.
    mkdirSync(join(host, "sub"));
    execFileSync("mount", ["-t", "tmpfs", "crest-extshare-sub", join(host, "sub")]);
    assert.match(readFileSync(`/proc/${w.pid}/mountinfo`, "utf8"), new RegExp(` ${host}/sub .* - tmpfs crest-extshare-sub `));
    assert.equal(finish(w), "PASS");
  } finally {
    if (w) stop(w);
    spawnSync("umount", ["-R", host]);
    rmSync(host, { recursive: true, force: true });
  }
});

test("--force-irmap (and --irmap-scan-path): inotify watches dumped with their paths and restored, as without it", () => {
  const w = startWorkload("fds-inotify");
  try {
    dumpWorkload(w, ["--force-irmap", "--irmap-scan-path", w.dir]);
    const inotify = readImage(imagesDir(w), IMG.files, undefined).find((f) => f.ify);
    assert.ok(inotify?.ify?.wd.length, "an inotify entry with its watches");
    assert.ok(inotify.ify.wd.every((wd) => wd.f_handle.path?.startsWith("/")), "every watch has the path of its inode");
    restoreWorkload(w);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});
