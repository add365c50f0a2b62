// Data queued in a pty pair, both directions (tty-data.img, tty_data_entry,
// as criu: the entry of a tty_info id holds what a reader of that side
// could read): input the master wrote that the slave's reader has not read
// (in the slave's line discipline, a partial line of canonical mode
// included), and output the slave wrote that the master's reader has not.
//
// Reading takes the data, so a dump puts it back (a tree that runs on, or a
// dump that fails, has it as before), and a restore puts it in the new pair.
// Putting back goes through TIOCSTI, one byte at a time, straight into the
// line discipline of the side that had it (synchronously: no flush work
// runs later with other settings): the slave's with echo, signals, the
// extended characters and the input mappings off for that moment (the bytes
// were processed when they first came in; the line structure of canonical
// mode is rebuilt by the newlines, so a partial line stays partial), the
// master's as it is (a master's own termios is always raw).
//
// Reading the slave's queue switches canonical mode off for a moment (the
// kernel then makes every byte readable, a partial line too), VMIN and VTIME
// 0 so a read never waits. A master in packet mode prefixes each read with
// a status byte (TIOCPKT_DATA, 0), dropped; a status pending on it (a flush
// or flow-control event not read yet) is refused, as it cannot be put back.
// Not kept: which byte of a canonical queue was an end-of-file mark (^D; it
// comes back as a NUL), and a line discipline other than n_tty.
import { SYS, TIOC, TTY_IFLAG, TTY_LFLAG, VMIN, VTIME } from "../../sys/constants.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";
import type { termios_entry } from "../../images/index.js";
import { UnsupportedError } from "../context.js";
import { getTermios, inq, ioctl, setTermios, withCc } from "./tty-ioctl.js";

/** The most one direction may hold: what one line discipline buffer takes back (N_TTY_BUF_SIZE - 1). */
export const TTY_DATA_MAX = 4095;

const POLLIN = 1, POLLPRI = 2;

function poll(fd: number, what: string): number {
  const p = Buffer.alloc(8);
  p.writeInt32LE(fd, 0);
  p.writeInt16LE(POLLIN | POLLPRI, 4);
  check(native.syscall(SYS.poll, p, 1, 0), `poll ${what}`);
  return p.readInt16LE(6);
}

function readAll(fd: number, what: string, more: () => boolean, strip: number): Buffer {
  const parts: Buffer[] = [];
  let total = 0;
  const buf = Buffer.alloc(65536);
  while (more()) {
    const n = native.syscall(SYS.read, fd, buf, buf.length);
    // EIO: the other side is closed and nothing is left; EAGAIN: nothing left.
    if (n <= 0) break;
    parts.push(Buffer.from(buf.subarray(strip, n)));
    total += n - strip;
    if (total > TTY_DATA_MAX) {
      throw new UnsupportedError(`${what} has more than ${TTY_DATA_MAX} bytes queued; crest keeps at most that much in one direction of a terminal (let its reader read them first)`);
    }
  }
  return Buffer.concat(parts);
}

/**
 * Takes what the slave's reader could read (input from the master), through
 * crest's fd `slave` of it; termios is back as it was when this returns.
 */
export function takeSlaveInput(slave: number, what: string): Buffer {
  const t = getTermios(slave, what);
  setTermios(slave, { ...withCc(t, { [VMIN]: 0, [VTIME]: 0 }), c_lflag: t.c_lflag & ~TTY_LFLAG.ICANON }, what);
  try {
    return readAll(slave, `the input queue of ${what}`, () => true, 0);
  } finally {
    setTermios(slave, t, what);
  }
}

/** Takes what the master's reader could read (the slave's output), through crest's fd `master`. */
export function takeMasterOutput(master: number, packet: boolean, what: string): Buffer {
  if (packet && poll(master, what) & POLLPRI) {
    throw new UnsupportedError(`${what} is in packet mode with a status byte pending (TIOCPKT: a flush or flow-control event its reader has not read); crest cannot put it back: let the reader read it first`);
  }
  return readAll(master, `the output queue of ${what}`, () => (poll(master, what) & POLLIN) !== 0, packet ? 1 : 0);
}

function inject(fd: number, data: Buffer, what: string): void {
  const one = Buffer.alloc(1);
  for (const byte of data) {
    one[0] = byte;
    ioctl(fd, TIOC.STI, one, `put a byte back into ${what}`);
  }
}

/**
 * Puts input back into the slave's line discipline (crest's fd `slave`),
 * processed as it was when it first came in, but not echoed nor mapped again;
 * `t` is the termios the slave has (and keeps) around it.
 */
export function putSlaveInput(slave: number, data: Buffer, t: termios_entry, what: string): void {
  if (!data.length) return;
  const L = TTY_LFLAG, I = TTY_IFLAG;
  const quiet = L.ECHO | L.ECHOE | L.ECHOK | L.ECHONL | L.ECHOCTL | L.ECHOPRT | L.ECHOKE | L.ISIG | L.IEXTEN;
  setTermios(slave, { ...t, c_lflag: t.c_lflag & ~quiet, c_iflag: t.c_iflag & ~(I.INLCR | I.IGNCR | I.ICRNL | I.IUCLC | I.ISTRIP) }, what);
  try {
    inject(slave, data, `the input queue of ${what}`);
  } finally {
    setTermios(slave, t, what);
  }
}

/** Puts the slave's output back where the master's reader reads it (crest's fd `master`). */
export function putMasterOutput(master: number, data: Buffer, what: string): void {
  if (!data.length) return;
  inject(master, data, `the output queue of ${what}`);
  // A master's line discipline is raw: every byte is readable at once.
  const n = inq(master, what);
  if (n < data.length) throw new Error(`only ${n} of the ${data.length} bytes queued for the reader of ${what} could be put back`);
}
