// LXC 5's `lxc-checkpoint -s` and `lxc-checkpoint -r` (the seed page's
// flow) on the counter container, with crest as the `criu` on LXC's PATH,
// LXC unchanged: the count it serves over TCP must go on after the restore
// (test/containers/check.ts). LXC always asks --link-remap, --ext-mount-map
// auto with --enable-external-sharing/-masters, --force-irmap, --enable-fs
// hugetlbfs/tracefs, --cgroup-root for each controller (hugetlb too, which
// this host does not mount) and --freeze-cgroup with a '//'; on restore
// --root (its mount point of the rootfs), --ext-mount-map console: and
// --external console:. CREST_CT_SABOTAGE=1 starts the container afresh
// instead of restoring it, and the test must fail.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { CREST_BIN, criuCalls, makeCriuDir } from "../containers/criu-dir.js";
import { checkpointRestore } from "../containers/check.js";
import { RUNTIMES } from "../containers/runtimes.js";

const lxc = RUNTIMES.find((r) => r.name === "lxc")!;

test("containers: lxc-checkpoint -s and -r with crest as criu, the count going on after the restore",
  { skip: lxc.missing() ?? lxc.noCheckpoint() ?? false }, () => {
    const work = mkdtempSync("/tmp/crest-ct-cr-lxc-");
    const criu = makeCriuDir(work, CREST_BIN);
    const counts = checkpointRestore(lxc, criu, work, `crest-lxc-${process.pid}`);
    assert.ok(counts.after >= counts.before && counts.later > counts.after);
    // What LXC asked, so that a change in LXC's arguments shows here: each option taken, none ignored.
    const calls = criuCalls(criu);
    const dump = calls.find((c) => c.startsWith("dump "))!;
    const restore = calls.find((c) => c.startsWith("restore "))!;
    for (const o of ["--link-remap", "--ext-mount-map auto", "--enable-external-sharing", "--enable-external-masters", "--force-irmap",
      "--enable-fs hugetlbfs", "--enable-fs tracefs", "--cgroup-root hugetlb:", "--freeze-cgroup /sys/fs/cgroup/freezer//lxc.payload."]) {
      assert.ok(dump.includes(o), `LXC's dump no longer asks ${o}: ${dump}`);
    }
    for (const o of ["--root /", "--ext-mount-map console:", "--external console:", "--link-remap", "--ext-mount-map auto"]) {
      assert.ok(restore.includes(o), `LXC's restore no longer asks ${o}: ${restore}`);
    }
    // The dump froze the tree through LXC's freezer cgroup, and the restore mounted its tree under LXC's --root.
    const images = join(work, "images");
    assert.match(readFileSync(join(images, "dump.log"), "utf8"), /Froze cgroup \/sys\/fs\/cgroup\/freezer\/\/lxc\.payload\./);
    assert.match(readFileSync(join(images, "restore.log"), "utf8"), /mount namespace: \d+ mounts restored/);
    rmSync(work, { recursive: true, force: true });
  });
