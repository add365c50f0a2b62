// The restore's one work queue of file opens. Each item opens one open file
// description (for one task); it may answer "not yet: I need description X
// open first" (a socket's peer, a pty's master), and is tried again once X
// is open. The queue runs until every item is done, or until nothing can
// move: then the error names every item still waiting and what for.
// Pure: what an item is and how it opens is the caller's.

/** An item could not open yet: it needs description `waitFor` (files.img id) first. */
export interface Waiting {
  waitFor: number;
  why: string;
}

/** Whether a kind's answer to open is "not yet" rather than the fd (a number, or one still queued). */
export const isWaiting = (got: object | number): got is Waiting => typeof got === "object" && "waitFor" in got;

export interface OpenItem {
  /** The files.img id this item opens. */
  readonly id: number;
  /** "file 12 (pipe) for fd 3 of task 42", for the error. */
  readonly what: string;
}

/** The queue is stuck: each item waits for a description nothing will open. */
export class StuckError extends Error {
  constructor(readonly waiting: ReadonlyArray<{ item: OpenItem; wait: Waiting }>) {
    super(`the restore cannot open ${waiting.length === 1 ? "a file" : `${waiting.length} files`}, each waiting for another: ` +
      waiting.map(({ item, wait }) => `${item.what} waits for file ${wait.waitFor} (${wait.why})`).join("; "));
    this.name = "StuckError";
  }
}

/**
 * Opens every item in order; an item that answers Waiting goes back in the
 * queue until the description it waits for is open (`isOpen`), then is
 * tried again (it may wait for something else next).
 */
export function runOpenQueue<T extends OpenItem>(items: readonly T[], open: (item: T) => Waiting | null, isOpen: (id: number) => boolean): void {
  let pending = items.map((item) => ({ item, wait: null as Waiting | null }));
  while (pending.length) {
    let moved = false;
    const next: typeof pending = [];
    for (const p of pending) {
      if (p.wait && !isOpen(p.wait.waitFor)) {
        next.push(p);
        continue;
      }
      const wait = open(p.item);
      if (wait) {
        // A new answer is progress too: the item got further than before.
        moved ||= !p.wait || wait.waitFor !== p.wait.waitFor;
        next.push({ item: p.item, wait });
      } else {
        moved = true;
      }
    }
    if (!moved) throw new StuckError(next.map((p) => ({ item: p.item, wait: p.wait! })));
    pending = next;
  }
}
