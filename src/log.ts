// criu-style logging: levels 0..4 (msg, error, warn, info, debug) written to
// the log file (truncated, as criu does) or stderr; from level 3 on, lines are
// stamped with seconds since start. Messages (level 0) go to stdout, plain.
// Errors always reach stderr too, so a failed run says why on the terminal.
import { closeSync, openSync, writeSync } from "node:fs";

export const LOG = { MSG: 0, ERROR: 1, WARN: 2, INFO: 3, DEBUG: 4 } as const;
export const DEFAULT_LOG_LEVEL = 2;

export class Logger {
  private fd: number;
  private readonly ownsFd: boolean;
  private readonly t0 = process.hrtime.bigint();

  constructor(readonly level: number = DEFAULT_LOG_LEVEL, file?: string) {
    if (file && file !== "-") {
      this.fd = openSync(file, "w", 0o600);
      this.ownsFd = true;
    } else {
      this.fd = 2;
      this.ownsFd = false;
    }
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
    writeSync(this.fd, `${this.level >= LOG.INFO ? this.stamp() : ""}${text}\n`);
  }

  msg(text: string): void { this.write(LOG.MSG, text); }
  error(text: string): void { this.write(LOG.ERROR, `Error: ${text}`); }
  warn(text: string): void { this.write(LOG.WARN, `Warn: ${text}`); }
  info(text: string): void { this.write(LOG.INFO, text); }
  debug(text: string): void { this.write(LOG.DEBUG, text); }

  /** Whether debug lines would be written (to skip building expensive ones). */
  get debugOn(): boolean { return this.level >= LOG.DEBUG; }

  close(): void {
    if (this.ownsFd) closeSync(this.fd);
    this.fd = 2;
  }
}
