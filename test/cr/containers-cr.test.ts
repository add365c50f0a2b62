// runc and podman (through runc) checkpoint and restore the counter container
// with crest as criu (or with CREST_CONTAINERS_CRIU, e.g. a real criu 4.2, to
// check the tests themselves), the count it serves over TCP checked before and
// after (test/containers/check.ts): in place; podman also through an archive
// (--export, `podman rm`, --import into a new container), and with a TCP
// connection from the host to the container's bridge address kept open across
// --tcp-established; runc and podman with a terminal in the container (its
// slave bind-mounted on /dev/console, its master the console socket's), what
// the restored init writes on it read back from the console socket's holder.
// crun is tried the same way and skipped, saying why, where
// it is built without CRIU (Debian's); a runtime not installed is skipped too.
// CREST_CT_SABOTAGE=1 starts the container afresh instead of restoring it:
// every test here must then fail. LXC's test is test/cr/containers-lxc.test.ts.
// docs/containers.md says what each runtime asks of criu.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { CREST_BIN, makeCriuDir } from "../containers/criu-dir.js";
import { checkpointRestore, keepsConnection, type Via } from "../containers/check.js";
import { PODMAN_TERMINAL, RUNC_TERMINAL, RUNTIMES, type Runtime } from "../containers/runtimes.js";

const CRIU = process.env.CREST_CONTAINERS_CRIU || CREST_BIN;
const AS = process.env.CREST_CONTAINERS_CRIU ? `${CRIU} as criu` : "crest as criu";
const runtime = (name: string): Runtime => RUNTIMES.find((r) => r.name === name)!;
const skip = (rt: Runtime) => rt.missing() ?? rt.noCheckpoint() ?? false;

/** A work directory kept for a look when the test fails (its images, criu's logs, the calls and RPC requests). */
function inWork<T>(tag: string, fn: (work: string) => T): T {
  const work = mkdtempSync(`/tmp/crest-ct-cr-${tag}-`);
  const r = fn(work);
  if (r instanceof Promise) return r.then((v) => { rmSync(work, { recursive: true, force: true }); return v; }) as T;
  rmSync(work, { recursive: true, force: true });
  return r;
}

for (const [name, via] of [["runc", {}], ["crun", {}], ["podman", {}], ["podman", { archive: true }]] as [string, Via][]) {
  const rt = runtime(name);
  const how = via.archive ? " through an exported archive imported into a new container" : "";
  test(`containers: ${name} checkpoints and restores the counter container${how} with ${AS}, the count going on`, { skip: skip(rt) }, () =>
    inWork(`${name}${via.archive ? "-archive" : ""}`, (work) => {
      const counts = checkpointRestore(rt, makeCriuDir(work, CRIU), work, `crest-cr-${name}-${process.pid}`, via);
      assert.ok(counts.after >= counts.before && counts.later > counts.after);
    }));
}

// runc's container with a terminal: its slave is bind-mounted on /dev/console, its master held by the console socket's
// holder; restored, the container gets a new master, handed to runc (orphan-pts-master) and on to the console socket.
// podman -t: the same through conmon's console socket, what the container writes read back with podman logs.
for (const rt of [RUNC_TERMINAL, PODMAN_TERMINAL]) {
  test(`containers: ${rt.name} checkpoints and restores a container with a terminal with ${AS}, the count going on and the terminal reaching the console socket`,
    { skip: skip(rt) }, () =>
      inWork(`${rt.name}-terminal`, (work) => {
        const counts = checkpointRestore(rt, makeCriuDir(work, CRIU), work, `crest-cr-${rt.name}-tty-${process.pid}`);
        assert.ok(counts.after >= counts.before && counts.later > counts.after);
      }));
}

// podman's container has an address on its bridge that the host reaches without NAT; runc's here has a loopback only.
// Through the published port (NAT) the connection is reset after the restore, with criu 4.2 too (docs/containers.md).
for (const via of [{}, { archive: true }] as Via[]) {
  const podman = runtime("podman");
  const how = via.archive ? " through an exported archive imported into a new container" : "";
  test(`containers: podman keeps an open TCP connection from the host across checkpoint and restore --tcp-established${how} with ${AS}`,
    { skip: skip(podman) }, () =>
      inWork(`podman-tcp${via.archive ? "-archive" : ""}`, async (work) => {
        const r = await keepsConnection(podman, makeCriuDir(work, CRIU), work, `crest-cr-podman-tcp-${process.pid}`, via);
        assert.ok(r.answered >= r.before);
      }));
}
