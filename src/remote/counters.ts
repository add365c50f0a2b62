// How much remote control a command used: the syscalls crest ran inside
// tasks and the ptrace stops it waited for. --display-stats prints them, the
// benchmark reports them per task.
export const remoteCounters = { syscalls: 0, stops: 0 };

/** The remote control each part of a pipeline took, by name, for the log. */
export class RemoteTally {
  private readonly by = new Map<string, { syscalls: number; stops: number }>();

  /** Runs fn and adds what it took to `name`'s count. */
  count<T>(name: string, fn: () => T): T {
    const s0 = remoteCounters.syscalls, t0 = remoteCounters.stops;
    try {
      return fn();
    } finally {
      const c = this.by.get(name) ?? { syscalls: 0, stops: 0 };
      c.syscalls += remoteCounters.syscalls - s0;
      c.stops += remoteCounters.stops - t0;
      this.by.set(name, c);
    }
  }

  /** "memory 120/40, files 30/12, ...": syscalls/stops by name, most stops first. */
  toString(): string {
    return [...this.by].sort((a, b) => b[1].stops - a[1].stops).map(([n, c]) => `${n} ${c.syscalls}/${c.stops}`).join(", ");
  }
}
