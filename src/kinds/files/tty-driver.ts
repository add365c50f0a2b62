// Which tty driver a character device belongs to, from its device number,
// as criu tells them apart (get_tty_driver), and the tty_info id criu gives
// it: index * 2, plus 1 for a pty master. Ptys are named by their index;
// the other kinds by criu's fixed indexes (one tty_info each).
import { TtyType } from "../../images/index.js";
import { TTY_MAJOR } from "../../sys/constants.js";
import { devMajor, devMinor } from "../../sys/dev.js";

export interface TtyDriver {
  type: TtyType;
  /** A pty master (its index is asked with TIOCGPTN); a pty slave's comes from its minor. */
  master: boolean;
  name: string;
  /** The fixed index of the kinds that have one (criu's CONSOLE_INDEX, ...). */
  index?: number;
}

/** criu's indexes for terminals that are not ptys, and for external ones. */
export const CONSOLE_INDEX = 1002, VT_INDEX = 1004, CTTY_INDEX = 1006, STTY_INDEX = 1010, ETTY_INDEX = 1012;

/** The driver of a character device, or undefined for one that is not a terminal crest knows. */
export function ttyDriver(rdev: number): TtyDriver | undefined {
  const major = devMajor(rdev), minor = devMinor(rdev);
  if (major === TTY_MAJOR.AUX) {
    if (minor === 2) return { type: TtyType.PTY, master: true, name: "pty master" };
    if (minor === 1) return { type: TtyType.CONSOLE, master: false, name: "console", index: CONSOLE_INDEX };
    if (minor === 0) return { type: TtyType.CTTY, master: false, name: "controlling terminal (/dev/tty)", index: CTTY_INDEX };
    return undefined;
  }
  if (major === TTY_MAJOR.TTY) return minor >= 1 && minor <= 63 ? { type: TtyType.VT, master: false, name: "virtual console", index: VT_INDEX } : undefined;
  if (major === TTY_MAJOR.USB_SERIAL || major === TTY_MAJOR.LOW_DENSE_SERIAL) return { type: TtyType.SERIAL, master: false, name: "serial terminal", index: STTY_INDEX };
  if (major >= TTY_MAJOR.PTM && major < TTY_MAJOR.PTM + TTY_MAJOR.PTY_COUNT) return { type: TtyType.PTY, master: true, name: "pty master" };
  if (major >= TTY_MAJOR.PTS && major < TTY_MAJOR.PTS + TTY_MAJOR.PTY_COUNT) return { type: TtyType.PTY, master: false, name: "pty slave" };
  return undefined;
}

/** A pty slave's index: its minor, 256 per major from the first slave major. */
export const ptsIndex = (rdev: number): number => (devMajor(rdev) - TTY_MAJOR.PTS) * 256 + devMinor(rdev);

export const ttyInfoId = (index: number, master: boolean): number => index * 2 + (master ? 1 : 0);

/** criu's name of a terminal for --external and --inherit-fd: tty[RDEV:DEV], both in hex. */
export const ttyKey = (rdev: number, dev: number): string => `tty[${rdev.toString(16)}:${dev.toString(16)}]`;

/** "3:2"-style, for messages. */
export const devName = (rdev: number): string => `${devMajor(rdev)}:${devMinor(rdev)}`;
