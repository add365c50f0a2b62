// One checkpoint and restore of the counter container through a runtime,
// checked as a user would: the count it serves over TCP before, the container
// stopped by the checkpoint, the same count or more after the restore (a
// restarted container would count from 1 again), and counting on.
// CREST_CT_SABOTAGE=1 starts the container afresh instead of restoring it,
// to show the checks fail on a container that lost its state.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { errorLines, rpcRequests, criuCalls, type CriuDir } from "./criu-dir.js";
import { COUNTER_PORT } from "./rootfs.js";
import { waitFor, type Container, type CrOptions, type Runtime } from "./runtimes.js";

/** The count reached before the checkpoint: far enough from 1 that a restart shows. */
const BEFORE = 5;

export interface Counts {
  before: number;
  after: number;
  later: number;
}

/** What the runtime asked of criu, for a failure's message. */
function asked(criu: CriuDir): string {
  return [...criuCalls(criu).map((c) => `criu ${c}`), ...rpcRequests(criu).map((r) => `RPC ${r}`)].join("\n");
}

/** How the checkpoint travels: in place, or (podman) exported to an archive and imported into a new container. */
export interface Via {
  archive?: boolean;
}

/** The checkpoint's options for `via`; an archive's container is removed once it is exported. */
function archived(rt: Runtime, work: string, via: Via): CrOptions {
  if (!via.archive) return {};
  assert.ok(rt.archives, `${rt.name} does not export checkpoints to archives`);
  return { archive: join(work, "checkpoint.tar.gz") };
}

/** After an export: the container removed (podman rm), to come back from the archive alone. */
function removeExported(rt: Runtime, ct: Container, o: CrOptions): void {
  if (!o.archive) return;
  assert.ok(existsSync(o.archive) && statSync(o.archive).size > 0, `${rt.name} exported no archive to ${o.archive}`);
  rt.remove(ct);
  waitFor(`${ct.name} to be removed`, () => !ct.running() && ct.count() === null);
}

export function checkpointRestore(rt: Runtime, criu: CriuDir, work: string, name: string, via: Via = {}): Counts {
  const images = join(work, "images");
  mkdirSync(images, { recursive: true });
  const o = archived(rt, work, via);
  let ct = rt.start(work, name);
  try {
    const before = waitFor(`${name}'s count to reach ${BEFORE}`, () => { const c = ct.count(); return c !== null && c >= BEFORE && c; });
    const dump = rt.checkpoint(ct, criu, images, o);
    assert.equal(dump.code, 0, `${rt.name} checkpoint failed:\n${dump.output}\n${errorLines(rt.criuLog(ct, images, "dump")).join("\n")}\nasked:\n${asked(criu)}`);
    assert.equal(ct.running(), false, `${name} still runs after its checkpoint`);
    ct = restoreOrRestart(rt, ct, criu, images, o, "restore");
    assert.equal(ct.running(), true, `${name} does not run after its restore`);
    const after = waitFor(`${name}'s count after the restore`, () => ct.count());
    assert.ok(after >= before, `${name} counts from ${after} after its restore, it had counted to ${before}: its state was lost`);
    const later = waitFor(`${name} to count on`, () => { const c = ct.count(); return c !== null && c > after && c; });
    if (ct.console) terminalReaches(ct);
    return { before, after, later };
  } finally {
    rt.remove(ct);
  }
}

/**
 * After the checkpoint: the exported archive removed with its container,
 * then the restore, checked; or, with CREST_CT_SABOTAGE=1, the container
 * started afresh instead (the checks after must then fail). The container
 * that runs now.
 */
function restoreOrRestart(rt: Runtime, ct: Container, criu: CriuDir, images: string, o: CrOptions, what: string): Container {
  removeExported(rt, ct, o);
  if (process.env.CREST_CT_SABOTAGE === "1") {
    rt.remove(ct);
    return rt.start(ct.work, ct.name);
  }
  const restore = rt.restore(ct, criu, images, o);
  assert.equal(restore.code, 0, `${rt.name} ${what} failed:\n${restore.output}\n${errorLines(rt.criuLog(ct, images, "restore")).join("\n")}\nasked:\n${asked(criu)}`);
  return ct;
}

/**
 * A container with a terminal: what its init writes on it after the restore
 * reaches the holder of the terminal's master (runc's console socket, given
 * the new master by criu's orphan-pts-master).
 */
function terminalReaches(ct: Container): void {
  const mark = `crest-terminal-check-${process.pid}-${Date.now()}`;
  // The init's stdout, reopened from here: the restored pty's slave.
  writeFileSync(`/proc/${ct.pid()}/fd/1`, `${mark}\n`);
  waitFor(`${ct.name}'s terminal to reach its console socket (${mark})`, () => ct.console!().includes(mark), 10_000);
}

/**
 * An open TCP connection from the host to the container, kept across a
 * checkpoint and restore with --tcp-established: half an HTTP request sent
 * before the checkpoint, the rest after the restore, and httpd's answer (the
 * count) read on the same connection.
 */
export async function keepsConnection(rt: Runtime, criu: CriuDir, work: string, name: string, via: Via = {}): Promise<{ before: number; answered: number }> {
  const images = join(work, "images");
  mkdirSync(images, { recursive: true });
  const o: CrOptions = { ...archived(rt, work, via), tcpEstablished: true };
  let ct = rt.start(work, name);
  try {
    assert.ok(ct.address, `${rt.name}'s containers have no address the host reaches`);
    const before = waitFor(`${name}'s count to reach ${BEFORE}`, () => { const c = ct.count(); return c !== null && c >= BEFORE && c; });
    const sock = await connected(ct.address(), COUNTER_PORT);
    const reply = collect(sock);
    sock.write("GET /count HTTP/1.0\r\n");
    const dump = rt.checkpoint(ct, criu, images, o);
    assert.equal(dump.code, 0, `${rt.name} checkpoint --tcp-established failed:\n${dump.output}\n${errorLines(rt.criuLog(ct, images, "dump")).join("\n")}\nasked:\n${asked(criu)}`);
    ct = restoreOrRestart(rt, ct, criu, images, o, "restore --tcp-established");
    sock.write("\r\n");
    const text = await reply;
    const m = /^HTTP\/1\.[01] 200 [^]*\r\n\r\n(\d+)\n?$/.exec(text);
    assert.ok(m, `the connection opened before the checkpoint got ${JSON.stringify(text)} after the restore`);
    const answered = Number(m[1]);
    assert.ok(answered >= before, `the restored container answered the count ${answered}, it had counted to ${before}`);
    return { before, answered };
  } finally {
    rt.remove(ct);
  }
}

function connected(host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port }, () => resolve(s));
    s.once("error", reject);
  });
}

/** Everything the peer sends until it closes; an error (a reset) is what was read and why. */
function collect(s: Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    s.setEncoding("utf8");
    s.on("data", (d: string) => (text += d));
    s.on("error", (e) => resolve(`${text}[${e.message}]`));
    s.on("end", () => resolve(text));
    s.setTimeout(30_000, () => { s.destroy(); resolve(`${text}[no answer in 30 s]`); });
  });
}
