// errno values of x86_64 Linux with their names, for messages that say what went wrong.
export const ERRNO: Record<number, string> = {
  1: "EPERM", 2: "ENOENT", 3: "ESRCH", 4: "EINTR", 5: "EIO", 6: "ENXIO", 7: "E2BIG", 8: "ENOEXEC",
  9: "EBADF", 10: "ECHILD", 11: "EAGAIN", 12: "ENOMEM", 13: "EACCES", 14: "EFAULT", 16: "EBUSY",
  17: "EEXIST", 18: "EXDEV", 19: "ENODEV", 20: "ENOTDIR", 21: "EISDIR", 22: "EINVAL", 23: "ENFILE",
  24: "EMFILE", 25: "ENOTTY", 26: "ETXTBSY", 27: "EFBIG", 28: "ENOSPC", 29: "ESPIPE", 30: "EROFS",
  32: "EPIPE", 34: "ERANGE", 36: "ENAMETOOLONG", 38: "ENOSYS", 39: "ENOTEMPTY", 40: "ELOOP",
  61: "ENODATA", 75: "EOVERFLOW", 95: "EOPNOTSUPP", 98: "EADDRINUSE", 99: "EADDRNOTAVAIL",
  104: "ECONNRESET", 110: "ETIMEDOUT", 111: "ECONNREFUSED", 512: "ERESTARTSYS", 513: "ERESTARTNOINTR",
  514: "ERESTARTNOHAND", 516: "ERESTART_RESTARTBLOCK",
};

export const EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EBADF = 9, ECHILD = 10, EAGAIN = 11, ETIMEDOUT = 110,
  EACCES = 13, EFAULT = 14, EBUSY = 16, EEXIST = 17, EINVAL = 22, ENOSYS = 38, ENOMEM = 12, ENOSPC = 28;
export const ERESTARTSYS = 512, ERESTARTNOINTR = 513, ERESTARTNOHAND = 514, ERESTART_RESTARTBLOCK = 516;

export function errnoName(e: number): string {
  return ERRNO[e] ?? `errno ${e}`;
}

/** A failed syscall: `what` says which call on which object, `errno` is the kernel's answer. */
export class SysError extends Error {
  constructor(readonly what: string, readonly errno: number) {
    super(`${what}: ${errnoName(errno)}`);
    this.name = "SysError";
  }
}

/** Returns r, or throws SysError when r is a negated errno. */
export function check(r: number, what: string | (() => string)): number {
  if (r < 0 && r > -4096) throw new SysError(typeof what === "string" ? what : what(), -r);
  return r;
}
