// criu-style logging: levels 0..4 (msg, error, warn, info, debug) written to
// the log file (truncated, as criu does) or stderr; from level 3 on, lines are
// stamped with seconds since start. Messages (level 0) go to stdout, plain.
// Errors always reach stderr too, so a failed run says why on the terminal.
import { closeSync, openSync, writeSync } from "node:fs";

const LOG = { MSG: 0, ERROR: 1, WARN: 2, INFO: 3, DEBUG: 4 } as const;
export const DEFAULT_LOG_LEVEL = 2;

export class Logger {
  private fd: number;
  private readonly ownsFd: boolean;

  constructor(readonly level: number = DEFAULT_LOG_LEVEL, readonly file?: string,
    private readonly prefix = "", private readonly t0 = process.hrtime.bigint()) {
    if (file && file !== "-") {
      this.fd = openSync(file, "w", 0o600);
      this.ownsFd = true;
    } else {
      this.fd = 2;
      this.ownsFd = false;
    }
  }

  /**
   * The log of one restored task. criu restores each task in its own
   * process, which logs with its PID before each line, or with --log-pid to
   * FILE.PID of its own; crest keeps both forms. Close it when done.
   */
  forTask(pid: number, ownFile: boolean): Logger {
    if (ownFile && this.file && this.file !== "-") return new Logger(this.level, `${this.file}.${pid}`, "", this.t0);
    const l = new Logger(this.level, undefined, `${String(pid).padStart(6)}: `, this.t0);
    l.fd = this.fd;
    return l;
  }

  private stamp(): string {
    const us = Number((process.hrtime.bigint() - this.t0) / 1000n);
    const s = Math.floor(us / 1e6).toString().padStart(2, "0");
    return `(${s}.${(us % 1e6).toString().padStart(6, "0")}) `;
  }

  private write(level: number, text: string): void {
    if (level === LOG.MSG) {
      writeSync(1, `${text}\n`);
      return;
    }
    if (level === LOG.ERROR && this.fd !== 2) writeSync(2, `${text}\n`);
    if (level > this.level) return;
    writeSync(this.fd, `${this.level >= LOG.INFO ? this.stamp() : ""}${this.prefix}${text}\n`);
  }

  msg(text: string): void { this.write(LOG.MSG, text); }
  /** `origin`: where it was raised ("kinds/files/regfile.ts:85"), as criu's "Error (criu/files.c:123): ..." lines say. */
  error(text: string, origin?: string): void { this.write(LOG.ERROR, `Error${origin ? ` (${origin})` : ""}: ${text}`); }
  warn(text: string): void { this.write(LOG.WARN, `Warn: ${text}`); }
  info(text: string): void { this.write(LOG.INFO, text); }
  debug(text: string): void { this.write(LOG.DEBUG, text); }


  close(): void {
    if (this.ownsFd) closeSync(this.fd);
    this.fd = 2;
  }
}
