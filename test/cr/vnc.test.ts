// CRIU's reference scenario (its wiki page "VNC"): a VNC server (Xvnc), a
// window manager (icewm) and a terminal (xterm with a shell), started in new
// PID and IPC namespaces and a session of their own, with a viewer connected
// over TCP from outside, dumped and restored with the wiki's options three
// times in a row while the viewer stays connected. An X client drawing
// through MIT-SHM (x11-shm) is in the tree too: the server's SysV segments,
// attached and marked for removal, must stay so. What the viewers show is
// read from screenshots of their Xvfb display; what is typed goes through
// the viewer. test/vnc/scenario.ts runs the pieces.
//
// Needs the X packages (scripts/debian-packages.mjs, PACKAGES.vnc); skipped
// with the list of what is missing when they are absent.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { IMG, readImage, fd_types } from "../../src/images/index.js";
import { SHM } from "../../src/sys/constants.js";
import { sleepMs } from "../../src/sys/syscalls.js";
import { critDecodeAll, waitFor } from "./harness.js";
import { missingPrograms, VncSession } from "../vnc/scenario.js";
import { crop, shareOf } from "../vnc/image.js";

const missing = missingPrograms();
const skip = missing.names.length
  ? `the VNC scenario needs ${missing.names.join(", ")}, which are not installed (Debian: apt-get install ${missing.packages.join(" ")}; npm test installs them as root)`
  : false;

/** The colours the MIT-SHM client fills its window with: one before the first dump, one after each restore. */
const COLOURS = [0xd03030, 0x30b040, 0x3050e0, 0xe0c020];
const CYCLES = 3;

/** The images of one dump hold what the scenario is about: icewm's /proc file, the marked segment, the viewer's connection. */
function checkImages(s: VncSession, dir: string, icewmVpid: number): void {
  assert.deepEqual(critDecodeAll(dir), [], "crit decodes every image");
  const files = readImage(dir, IMG.files);
  const netdev = files.find((f) => f.type === fd_types.REG && /^\/proc\/\d+\/net\/dev$/.test(f.reg!.name));
  if (s.opts.netStatus) {
    assert.ok(netdev, "icewm's /proc/PID/net/dev is in files.img");
    assert.equal(netdev.reg!.proc_vpid, icewmVpid, "it names icewm by its PID in the tree's namespace");
  }
  const shmImage = readdirSync(dir).find((f) => /^ipcns-shm-\d+\.img$/.test(f));
  assert.ok(shmImage, "the tree's IPC namespace has its SysV segments dumped");
  const segs = readImage(dir, IMG.ipcShm, Number(/\d+/.exec(shmImage)![0]));
  const client = segs.find((e) => Number(e.entry.size) === 2 * 240 * 160 * 4);
  assert.ok(client, `the MIT-SHM client's segment is among the IPC namespace's (${segs.map((e) => e.entry.size).join(", ")} bytes)`);
  assert.ok(client.entry.desc.mode & SHM.DEST, "it is dumped marked for removal (SHM_DEST)");
  assert.ok(readdirSync(dir).some((f) => /^tcp-stream-[0-9a-f]+\.img$/.test(f)), "the viewer's TCP connection is dumped (--tcp-established)");
}

/** The counter strip the MIT-SHM client redraws every 50 ms moves in viewer 0: the restored client draws, the server serves, the viewer shows. */
function stripMoves(s: VncSession): void {
  const win = s.shmWindow();
  const area = s.stripArea(0, win);
  const first = crop(s.screenshot(), area).rgb;
  waitFor("the counter strip to move in the viewer", () => !crop(s.screenshot(), area).rgb.equals(first), 5_000);
}

/** Types a line through the viewer and checks it arrived: in the xterm, the shell writes it to a file; in the MIT-SHM client, the keys are recorded. */
function typeAndCheck(s: VncSession, word: string): void {
  if (s.opts.xterm) {
    // The shell's working directory is the session's.
    const out = join(s.dir, `typed-${word}`);
    s.typeViaViewer("crest-xterm", `echo ${word} >typed-${word}\n`);
    waitFor(`the xterm's shell to write ${out}`, () => existsSync(out) && readFileSync(out, "utf8") === `${word}\n`, 10_000);
  } else {
    const typed = join(s.dir, "typed");
    s.typeViaViewer("crest-shm", `${word}\n`);
    waitFor(`the MIT-SHM client to record '${word}'`, () => existsSync(typed) && readFileSync(typed, "utf8").endsWith(`${word}\n`), 10_000);
  }
}

function scenario(xterm: boolean): void {
  const s = VncSession.start({ xterm, netStatus: true });
  try {
    s.connectViewer(0);
    s.paint(COLOURS[0]!);
    s.waitViewerShows(0, COLOURS[0]!);
    typeAndCheck(s, "before");
    const ports = s.viewerPorts();
    assert.equal(ports.length, 1, "one viewer is connected");
    const icewmVpid = (() => {
      const st = readFileSync(`/proc/${s.pidOf("icewm")}/status`, "utf8");
      return Number(/NSpid:.*\t(\d+)\n/.exec(st)![1]);
    })();

    for (let i = 0; i < CYCLES; i++) {
      const images = join(s.dir, `imgs-${i}`);
      const before = s.root;
      const d = s.dump(images);
      assert.match(d.logEnd, /Dumping finished successfully$/);
      assert.ok(s.viewerRunning(0), `the viewer is still running while the tree is dumped (cycle ${i + 1})`);
      // The viewer keeps the last picture: the tree is gone, its connection held by the network lock.
      assert.ok(shareOf(s.screenshot(), s.colourArea(0, s.shmWindow()), COLOURS[i]!) > 0.98, "the viewer shows the last picture during the downtime");
      checkImages(s, images, icewmVpid);

      const r = s.restore(images);
      assert.match(r.logEnd, /Restore finished successfully\. Resuming tasks\.$/);
      assert.notEqual(s.root, before, "the restored tree's root has a new PID outside its namespace");
      assert.ok(s.viewerRunning(0), "the viewer that stayed connected is still running");

      stripMoves(s);
      s.paint(COLOURS[i + 1]!);
      s.waitViewerShows(0, COLOURS[i + 1]!);
      // A new viewer, connected after the restore, sees the same.
      s.connectViewer(1);
      s.waitViewerShows(1, COLOURS[i + 1]!);
      s.disconnectViewer(1);
      typeAndCheck(s, `cycle${i + 1}`);
      // The next dump must not find a viewer's connection half closed in the tree's sockets before Xvnc noticed.
      sleepMs(200);
    }
    assert.deepEqual(s.viewerPorts(), ports, "the viewer that stayed is on the TCP connection it made before the first dump");
    assert.equal(s.shmClientVerdict(), "PASS", "the MIT-SHM client: its segment still marked for removal, attached by it and the server, the round trip through the server exact");
  } catch (e) {
    let shot = "";
    try {
      shot = `\nwhat the viewers showed then: ${s.saveScreenshot("failed")}`;
    } catch {
      // no Xvfb to look at
    }
    throw new Error(`${(e as Error).message}${shot}\nlogs of the session in ${s.dir}:\n${s.logs()}`);
  } finally {
    s.stop();
  }
}

test("VNC (CRIU's wiki scenario): Xvnc, icewm and an xterm with a shell in new PID and IPC namespaces, a viewer connected over TCP, three dumps and restores with the wiki's options; the viewer keeps working, a new one connects, typing reaches the shell", { skip }, () => {
  scenario(true);
});

test("VNC without a terminal: Xvnc, icewm and an MIT-SHM client, the same three cycles; typing reaches the client", { skip }, () => {
  scenario(false);
});
