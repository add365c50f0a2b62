// npm run demo:vnc: CRIU's VNC scenario (its wiki page "VNC") with crest.
// A VNC server, a window manager, an xterm with a shell and an X client
// drawing through MIT-SHM run as one tree in new PID and IPC namespaces; a
// TigerVNC viewer on an Xvfb display is connected to it over TCP. The tree is
// dumped and restored three times with the wiki's options while the viewer
// stays connected; screenshots of the viewer before each dump, during the
// downtime and after each restore are written as PNG files, with the
// timings: dump, frozen, restore, and the downtime as the viewer saw it (how
// long the picture stood still: the X client redraws a counter strip every
// 50 ms, and the demo watches it in the viewer).
//
//   npm run demo:vnc [-- --no-xterm]
//
// --no-xterm leaves the terminal out (for a crest without terminal support).
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { sleepMs } from "../src/sys/syscalls.js";
import { waitFor } from "../test/cr/harness.js";
import { missingPrograms, treeOf, VncSession } from "../test/vnc/scenario.js";
import { crop, type Picture, type Rect } from "../test/vnc/image.js";

const say = (s: string) => process.stdout.write(`${s}\n`);
const now = () => Number(process.hrtime.bigint()) / 1e6;
const xterm = !process.argv.includes("--no-xterm");
const CYCLES = 3;
const COLOURS = [0xd03030, 0x30b040, 0x3050e0, 0xe0c020];

if (process.getuid?.() !== 0) {
  say("crest needs root (it traces processes and creates PIDs): run the demo as root.");
  process.exit(1);
}
const missing = missingPrograms();
if (missing.names.length) {
  say(`The VNC demo needs ${missing.names.join(", ")}: install ${missing.packages.join(" ")} (on Debian, npm run demo:vnc installs them as root).`);
  process.exit(1);
}

/**
 * Watches the counter strip of the MIT-SHM client's window in the viewer:
 * the times its picture changed. The longest time without a change around a
 * checkpoint is the downtime as the viewer saw it.
 */
class StripWatch {
  readonly changes: number[] = [];
  private last = "";
  private samples = 0;
  private first = 0;

  constructor(private readonly s: VncSession, private readonly area: Rect) {}

  sample(): void {
    const t = now();
    const key = createHash("sha1").update(this.s.screenshot(this.area).rgb).digest("hex");
    if (!this.samples++) this.first = t;
    if (key !== this.last) this.changes.push(t);
    this.last = key;
  }

  /** The mean time between two looks. */
  period(): number {
    return this.samples > 1 ? (now() - this.first) / (this.samples - 1) : NaN;
  }

  /** The longest run without a change that began at or after `from` (ms), ended by a change. */
  longestStill(from: number): number {
    let longest = 0;
    for (let i = 1; i < this.changes.length; i++) {
      if (this.changes[i]! < from) continue;
      longest = Math.max(longest, this.changes[i]! - this.changes[i - 1]!);
    }
    return longest;
  }
}

const out = mkdtempSync("/tmp/crest-demo-vnc-");
const shots = join(out, "screenshots");
mkdirSync(shots);
const s = VncSession.start({ xterm, netStatus: true, dir: out });
try {
  say("The VNC session runs as one tree in new PID and IPC namespaces (crest run --ns pid,ipc -- sh test/vnc/vnc-session.sh ...):");
  for (const pid of treeOf(s.root)) {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const name = /Name:\s*(\S+)/.exec(status)![1];
    const inside = /NSpid:.*\t(\d+)\n/.exec(status)![1];
    say(`  PID ${String(pid).padStart(6)} (${inside.padStart(2)} inside)  ${name}`);
  }
  say(`  Xvnc serves display :${s.display} and VNC on TCP port ${s.port}; a TigerVNC viewer runs on Xvfb :${s.viewerDisplay}, outside the tree.`);
  s.connectViewer(0);
  const viewer = s.viewerRect(0)!;
  const shot = (name: string, p?: Picture) => s.saveScreenshot(join("screenshots", name), crop(p ?? s.screenshot(), viewer));
  const target = xterm ? "crest-xterm" : "crest-shm";
  /** Types a line through the viewer: into the xterm's shell (which echoes it on the terminal and into a file), or the MIT-SHM client (which records it). */
  const typeLine = (line: string) => {
    // The shell's working directory is the session's.
    const file = join(out, xterm ? "typed-xterm" : "typed");
    s.typeViaViewer(target, xterm ? `echo '${line}' | tee -a typed-xterm\n` : `${line}\n`);
    waitFor(`'${line}' to arrive`, () => existsSync(file) && readFileSync(file, "utf8").endsWith(`${line}\n`), 20_000);
  };

  s.paint(COLOURS[0]!);
  s.waitViewerShows(0, COLOURS[0]!);
  typeLine("typed before the first checkpoint");
  sleepMs(300);
  const ports = s.viewerPorts();
  say(`  The viewer is connected from local port ${ports.join(", ")}.`);
  const files: string[] = [shot("0-before-first-dump")];
  const rows: string[] = [];
  let logs = { dump: "", restore: "" };

  const area = s.stripArea(0, s.shmWindow());
  for (let i = 1; i <= CYCLES; i++) {
    const images = join(out, `imgs-${i}`);
    const watch = new StripWatch(s, area);
    // The strip moving before the dump: the baseline the downtime is measured against.
    const t0 = now();
    while (now() - t0 < 400) watch.sample();
    const d = s.dump(images, undefined, () => watch.sample());
    files.push(shot(`${i}-during-downtime`));
    const r = s.restore(images, undefined, () => watch.sample());
    waitFor("the viewer to move on after the restore", () => {
      watch.sample();
      return watch.changes[watch.changes.length - 1]! > t0 + 400 + d.ms + r.ms;
    }, 20_000);
    const downtime = watch.longestStill(t0);
    s.paint(COLOURS[i]!);
    s.waitViewerShows(0, COLOURS[i]!);
    typeLine(`typed after restore ${i}`);
    sleepMs(300);
    files.push(shot(`${i}-after-restore`));
    rows.push(`  ${String(i).padStart(5)}  ${d.ms.toFixed(0).padStart(7)} ms  ${d.frozenMs.toFixed(0).padStart(7)} ms  ${r.ms.toFixed(0).padStart(8)} ms  ${downtime.toFixed(0).padStart(9)} ms (looked every ${watch.period().toFixed(0)} ms)`);
    logs = { dump: d.logEnd, restore: r.logEnd };
  }

  s.connectViewer(1);
  s.waitViewerShows(1, COLOURS[CYCLES]!);
  files.push(s.saveScreenshot(join("screenshots", "new-viewer-beside-the-old-one")));
  const samePorts = JSON.stringify(s.viewerPorts().filter((p) => ports.includes(p))) === JSON.stringify(ports);
  s.disconnectViewer(1);

  say(`\nTimings (crest dump -t PID --images-dir imgs/ --log-file dump.log -v4 --tcp-established;`);
  say(`         crest restore --images-dir imgs/ --log-file rst.log -v4 --tcp-established -d):`);
  say("  cycle      dump      frozen     restore   downtime as the viewer saw it");
  for (const r of rows) say(r);
  say(`\nThe log endings (cycle ${CYCLES}):`);
  say(`  dump.log: ${logs.dump}`);
  say(`  rst.log:  ${logs.restore}`);
  say(`\nThe viewer stayed on ${samePorts ? "the same TCP connection (same local port) throughout" : "ANOTHER connection: it reconnected"}; a new viewer connected after the last restore shows the same screen.`);
  say(`The MIT-SHM client's own check (its SysV segment still attached by it and by Xvnc, still marked for removal, the round trip through the server exact): ${s.shmClientVerdict()}`);
  say("\nScreenshots of the viewer:");
  for (const f of files) say(`  ${f}`);
  say(`\nEverything (images, logs) is in ${out}.`);
} catch (e) {
  say(`\nThe demo failed: ${(e as Error).message}\n${s.logs()}`);
  process.exitCode = 1;
} finally {
  s.stop();
}
