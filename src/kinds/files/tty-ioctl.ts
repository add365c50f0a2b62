// Terminal ioctls crest runs on its own fds of a tree's terminals (a copy
// taken with pidfd_getfd on dump, the masters it makes on restore): termios
// (TCGETS2/TCSETS2: flags, line discipline, control characters and speeds),
// the locked termios, the window size and the int-valued ioctls, with the
// image entries they fill (termios_entry, winsize_entry). On a pty master the
// termios and window size ioctls act on the slave, whose settings they are.
import type { termios_entry, winsize_entry } from "../../images/index.js";
import { SYS, TERMIOS, TIOC } from "../../sys/constants.js";
import { check } from "../../sys/errno.js";
import { native } from "../../sys/native.js";

/** An ioctl on crest's fd; throws naming `what`. */
export function ioctl(fd: number, req: number, arg: Buffer | number, what: string): number {
  return check(native.syscall(SYS.ioctl, fd, req, arg), what);
}

/** An ioctl that fills an int (TIOCGPTN, TIOCGPKT, ...); its raw result (negative errno) on failure when `raw`. */
export function ioctlInt(fd: number, req: number, what: string): number {
  const b = Buffer.alloc(4);
  ioctl(fd, req, b, what);
  return b.readInt32LE(0);
}

/** The same, answering the negated errno instead of throwing (to tell ENOTTY and EIO apart). */
export function tryIoctlInt(fd: number, req: number): { value: number; err: number } {
  const b = Buffer.alloc(4);
  const r = native.syscall(SYS.ioctl, fd, req, b);
  return r < 0 ? { value: 0, err: -r } : { value: b.readInt32LE(0), err: 0 };
}

/** An ioctl that takes an int by pointer (TIOCSPTLCK, TIOCPKT, TIOCSPGRP). */
export function ioctlSetInt(fd: number, req: number, value: number, what: string): void {
  const b = Buffer.alloc(4);
  b.writeInt32LE(value, 0);
  ioctl(fd, req, b, what);
}

/*
 * criu keeps the control characters as its struct termios holds them: it
 * copies the c_cc bytes into termios_entry.c_cc (19 uint32s), four bytes to
 * an entry, little-endian, and back the same way on restore. crest writes
 * and reads them so (the 19 bytes in the first five entries, the rest 0), so
 * that either tool restores the other's images.
 */
/** criu writes 19 entries (its TERMIOS_NCC), as many as the kernel has control characters. */
const CC_ENTRIES = TERMIOS.NCCS;

function packCc(bytes: Uint8Array): number[] {
  const words = new Array<number>(CC_ENTRIES).fill(0);
  bytes.forEach((c, i) => (words[i >> 2] = (words[i >> 2]! | (c << (8 * (i & 3)))) >>> 0));
  return words;
}

/** Control character `i` (VINTR, VMIN, ...) of an image's termios. */
export function ccByte(t: termios_entry, i: number): number {
  return ((t.c_cc[i >> 2] ?? 0) >>> (8 * (i & 3))) & 0xff;
}

/** The termios with some control characters changed. */
export function withCc(t: termios_entry, set: Record<number, number>): termios_entry {
  const bytes = Uint8Array.from({ length: TERMIOS.NCCS }, (_, i) => set[i] ?? ccByte(t, i));
  return { ...t, c_cc: packCc(bytes) };
}

export function termiosFromBuffer(b: Buffer): termios_entry {
  const cc = packCc(b.subarray(17, 17 + TERMIOS.NCCS));
  return {
    c_iflag: b.readUInt32LE(0), c_oflag: b.readUInt32LE(4), c_cflag: b.readUInt32LE(8), c_lflag: b.readUInt32LE(12), c_line: b[16]!,
    c_ispeed: b.length >= TERMIOS.SIZE2 ? b.readUInt32LE(36) : 0, c_ospeed: b.length >= TERMIOS.SIZE2 ? b.readUInt32LE(40) : 0, c_cc: cc,
  };
}

export function termiosToBuffer(t: termios_entry, size: number = TERMIOS.SIZE2): Buffer {
  const b = Buffer.alloc(size);
  b.writeUInt32LE(t.c_iflag >>> 0, 0);
  b.writeUInt32LE(t.c_oflag >>> 0, 4);
  b.writeUInt32LE(t.c_cflag >>> 0, 8);
  b.writeUInt32LE(t.c_lflag >>> 0, 12);
  b[16] = t.c_line & 0xff;
  for (let i = 0; i < TERMIOS.NCCS; i++) b[17 + i] = ccByte(t, i);
  if (size >= TERMIOS.SIZE2) {
    b.writeUInt32LE(t.c_ispeed >>> 0, 36);
    b.writeUInt32LE(t.c_ospeed >>> 0, 40);
  }
  return b;
}

export function getTermios(fd: number, what: string): termios_entry {
  const b = Buffer.alloc(TERMIOS.SIZE2);
  ioctl(fd, TIOC.TCGETS2, b, `read the termios of ${what}`);
  return termiosFromBuffer(b);
}

/**
 * Sets termios with TCSETS2 when the image has speeds (crest's), with
 * TCSETS when it has none (criu's images leave them 0: the speed is in
 * c_cflag). TCSETS, never TCSETSW/F: nothing queued is waited for or flushed.
 */
export function setTermios(fd: number, t: termios_entry, what: string): void {
  if (t.c_ispeed || t.c_ospeed) ioctl(fd, TIOC.TCSETS2, termiosToBuffer(t), `set the termios of ${what}`);
  else ioctl(fd, TIOC.TCSETS, termiosToBuffer(t, TERMIOS.SIZE), `set the termios of ${what}`);
}

export function getLockedTermios(fd: number, what: string): termios_entry {
  const b = Buffer.alloc(TERMIOS.SIZE);
  ioctl(fd, TIOC.GLCKTRMIOS, b, `read the locked termios of ${what}`);
  return termiosFromBuffer(b);
}

/** TIOCSLCKTRMIOS needs CAP_SYS_ADMIN; like criu, a value already in place is not set again. */
export function setLockedTermios(fd: number, t: termios_entry, what: string): void {
  const now = getLockedTermios(fd, what);
  if (sameTermios(now, t)) return;
  ioctl(fd, TIOC.SLCKTRMIOS, termiosToBuffer(t, TERMIOS.SIZE), `set the locked termios of ${what}`);
}

function sameTermios(a: termios_entry, b: termios_entry): boolean {
  return a.c_iflag === b.c_iflag && a.c_oflag === b.c_oflag && a.c_cflag === b.c_cflag && a.c_lflag === b.c_lflag && a.c_line === b.c_line &&
    Array.from({ length: TERMIOS.NCCS }, (_, i) => i).every((i) => ccByte(a, i) === ccByte(b, i));
}

export function getWinsize(fd: number, what: string): winsize_entry {
  const b = Buffer.alloc(8);
  ioctl(fd, TIOC.GWINSZ, b, `read the window size of ${what}`);
  return { ws_row: b.readUInt16LE(0), ws_col: b.readUInt16LE(2), ws_xpixel: b.readUInt16LE(4), ws_ypixel: b.readUInt16LE(6) };
}

export function setWinsize(fd: number, w: winsize_entry, what: string): void {
  const b = Buffer.alloc(8);
  b.writeUInt16LE(w.ws_row & 0xffff, 0);
  b.writeUInt16LE(w.ws_col & 0xffff, 2);
  b.writeUInt16LE(w.ws_xpixel & 0xffff, 4);
  b.writeUInt16LE(w.ws_ypixel & 0xffff, 6);
  ioctl(fd, TIOC.SWINSZ, b, `set the window size of ${what}`);
}

/** Bytes the tty's reader could read now (FIONREAD: in canonical mode only whole lines count). */
export function inq(fd: number, what: string): number {
  return ioctlInt(fd, TIOC.INQ, `count the bytes queued on ${what}`);
}
