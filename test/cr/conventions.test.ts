// criu's conventions that tools rely on, on real processes: action scripts
// with their hooks and environment, --status-fd, --log-pid, and options that
// come from a configuration file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { alive, CREST, crest, dumpWorkload, finish, imagesDir, procState, restoreWorkload, startWorkload, stop, waitFor, waitGone } from "./harness.js";

/** A script that records each hook it runs for, with the root's PID and the images it can see. */
function recorder(dir: string, name: string, failAt?: string): { path: string; calls: () => string[] } {
  const path = join(dir, `${name}.sh`);
  const out = join(dir, `${name}.calls`);
  writeFileSync(path, `#!/bin/sh
echo "$CRTOOLS_SCRIPT_ACTION pid=$CRTOOLS_INIT_PID inventory=$(test -e "$CRTOOLS_IMAGE_DIR/inventory.img" && echo yes || echo no)" >> ${out}
${failAt ? `[ "$CRTOOLS_SCRIPT_ACTION" = ${failAt} ] && exit 3` : ""}
exit 0
`);
  chmodSync(path, 0o755);
  return { path, calls: () => (existsSync(out) ? readFileSync(out, "utf8").trim().split("\n") : []) };
}

test("--action-script: criu's hooks in order, with CRTOOLS_SCRIPT_ACTION, CRTOOLS_INIT_PID and CRTOOLS_IMAGE_DIR", () => {
  const w = startWorkload("loop");
  try {
    const s = recorder(w.dir, "hooks");
    dumpWorkload(w, ["--action-script", s.path]);
    assert.deepEqual(s.calls(), [`pre-dump pid=${w.pid} inventory=no`, `post-dump pid=${w.pid} inventory=yes`]);
    const r = restoreWorkload(w, ["--action-script", s.path]);
    assert.equal(r.code, 0);
    assert.deepEqual(s.calls().slice(2).map((c) => c.split(" ")[0]),
      ["pre-restore", "setup-namespaces", "post-setup-namespaces", "post-restore", "pre-resume", "post-resume"]);
    assert.equal(s.calls()[2], "pre-restore pid= inventory=yes", "no PID before the tree exists");
    assert.ok(s.calls().slice(3).every((c) => c.includes(`pid=${w.pid} `)), s.calls().join("\n"));
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("a failing post-dump script fails the dump and the process runs on untouched", () => {
  const w = startWorkload("loop");
  try {
    const s = recorder(w.dir, "fail", "post-dump");
    const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "--action-script", s.path]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /post-dump action script failed.*exit code 3/);
    assert.match(r.stderr, /Dumping FAILED/);
    assert.ok(alive(w.pid));
    assert.equal(procState(w.pid).tracer, 0);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("a failing pre-resume script fails the restore and nothing is left running", () => {
  const w = startWorkload("loop");
  try {
    dumpWorkload(w);
    const s = recorder(w.dir, "fail", "pre-resume");
    const r = crest(["restore", "-D", imagesDir(w), "-d", "--action-script", s.path]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /pre-resume action script failed/);
    assert.equal(alive(w.pid), false);
    restoreWorkload(w);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

/** crest with a pipe as its fd 3; resolves with its exit code and what it wrote to fd 3 (as it came). */
function crestWithFd3(args: string[], onByte: () => void): Promise<{ code: number; stderr: string; fd3: number[] }> {
  return new Promise((resolve) => {
    const p = spawn(CREST, args, { stdio: ["ignore", "ignore", "pipe", "pipe"] });
    const fd3: number[] = [];
    let stderr = "";
    p.stderr!.on("data", (d) => (stderr += d));
    (p.stdio[3] as Readable).on("data", (d: Buffer) => {
      fd3.push(...d);
      onByte();
    });
    p.on("close", (code) => resolve({ code: code ?? -1, stderr, fd3 }));
  });
}

test("--status-fd: one zero byte once the restored tree runs, while a foreground restore still waits", async () => {
  const w = startWorkload("loop");
  try {
    dumpWorkload(w);
    let running = false;
    const done = crestWithFd3(["restore", "-D", imagesDir(w), "--status-fd", "3"], () => {
      // The byte comes while crest still waits for its task: the task runs, untraced.
      running = alive(w.pid) && procState(w.pid).tracer === 0;
      process.kill(w.pid, "SIGTERM");
    });
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.fd3, [0]);
    assert.ok(running, "the tree was running when the byte came");
    assert.match(readFileSync(w.status, "utf8"), /^PASS/);
    waitGone(w.pid);

    const bad = crest(["restore", "-D", imagesDir(w), "-d", "--status-fd", "99"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--status-fd 99 is not an open file descriptor/);
    assert.equal(alive(w.pid), false);
  } finally {
    stop(w);
  }
});

test("--log-pid: each restored task logs to FILE.PID; without it, its lines carry its PID", () => {
  const w = startWorkload("tree");
  try {
    dumpWorkload(w);
    const dir = imagesDir(w);
    restoreWorkload(w, ["-o", "rst.log", "--log-pid"]);
    const perPid = readdirSync(dir).filter((f) => /^rst\.log\.\d+$/.test(f));
    assert.ok(perPid.includes(`rst.log.${w.pid}`), perPid.join(" "));
    assert.ok(perPid.length > 1, "one file per task");
    assert.match(readFileSync(join(dir, `rst.log.${w.pid}`), "utf8"), new RegExp(`Restoring process ${w.pid} `));
    assert.match(readFileSync(join(dir, "rst.log"), "utf8"), /Restore finished successfully/);
    assert.equal(finish(w), "PASS");

    restoreWorkload(w, ["-o", "plain.log"]);
    assert.match(readFileSync(join(dir, "plain.log"), "utf8"), new RegExp(`\\) +${w.pid}: Restoring process ${w.pid} `));
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("options from $CRIU_CONFIG_FILE and --config apply; the command line overrides them", () => {
  const w = startWorkload("loop");
  try {
    const conf = join(w.dir, "crest.conf");
    writeFileSync(conf, "# as criu reads it\nlog-file from-config.log\nverbosity 4\nleave-running\n");
    const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w)], { CRIU_CONFIG_FILE: conf });
    assert.equal(r.code, 0, r.stderr);
    assert.match(readFileSync(join(imagesDir(w), "from-config.log"), "utf8"), /dumping memory of.*\n[^]*Dumping finished successfully\n$/);
    assert.ok(alive(w.pid), "leave-running came from the file");
    const r2 = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "--config", conf, "-o", "cli.log"]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.ok(existsSync(join(imagesDir(w), "cli.log")));
    waitFor("the process to carry on", () => alive(w.pid));
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});

test("an option crest does not support is refused by name in the log too, and nothing is touched", () => {
  const w = startWorkload("loop");
  try {
    const r = crest(["dump", "-t", String(w.pid), "-D", imagesDir(w), "-o", "dump.log", "--weak-sysctls"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /option --weak-sysctls is not supported by crest yet/);
    assert.match(readFileSync(join(imagesDir(w), "dump.log"), "utf8"), /option --weak-sysctls is not supported by crest yet\n.*Dumping FAILED\.\n$/);
    assert.equal(procState(w.pid).tracer, 0);
    assert.equal(finish(w), "PASS");
  } finally {
    stop(w);
  }
});
