// The restore's file-open queue (kinds/files/open-queue.ts): items that wait
// for another description are tried again once it is open; a queue where
// nothing can move names every item still waiting and what for.
import { test } from "node:test";
import assert from "node:assert/strict";
import { runOpenQueue, StuckError, type OpenItem, type Waiting } from "../../src/kinds/files/open-queue.js";

interface Item extends OpenItem {
  /** What it needs open before it can open. */
  needs?: number;
}

function run(items: Item[]): number[] {
  const open = new Set<number>();
  const order: number[] = [];
  runOpenQueue(items, (item): Waiting | null => {
    if (item.needs !== undefined && !open.has(item.needs)) return { waitFor: item.needs, why: `the peer of ${item.id}` };
    open.add(item.id);
    order.push(item.id);
    return null;
  }, (id) => open.has(id));
  return order;
}

const item = (id: number, needs?: number): Item => ({ id, what: `file ${id}`, ...(needs !== undefined ? { needs } : {}) });

test("items open in order when none waits", () => {
  assert.deepEqual(run([item(1), item(2), item(3)]), [1, 2, 3]);
});

test("an item waiting for a later one opens right after it, the rest keep their order", () => {
  assert.deepEqual(run([item(1, 3), item(2), item(3), item(4)]), [2, 3, 4, 1]);
});

test("a chain of waits resolves whatever the order", () => {
  assert.deepEqual(run([item(1, 2), item(2, 3), item(3, 4), item(4)]), [4, 3, 2, 1]);
});

test("items waiting on each other are stuck: the error names each and what it waits for", () => {
  assert.throws(() => run([item(1), item(2, 3), item(3, 2)]), (e: unknown) => {
    assert.ok(e instanceof StuckError);
    assert.deepEqual(e.waiting.map((w) => [w.item.id, w.wait.waitFor]), [[2, 3], [3, 2]]);
    assert.match(e.message, /file 2 waits for file 3 \(the peer of 2\); file 3 waits for file 2 \(the peer of 3\)/);
    return true;
  });
});

test("an item waiting for a description nothing opens is stuck, not looping", () => {
  assert.throws(() => run([item(1, 99)]), /file 1 waits for file 99/);
});

test("an item that answers a new wait after the first is tried again until done", () => {
  const open = new Set<number>();
  let tries = 0;
  // Item 1 needs 2, then (once 2 is open) 3.
  runOpenQueue([item(1), item(2), item(3)], (it) => {
    if (it.id === 1) {
      tries++;
      if (!open.has(2)) return { waitFor: 2, why: "first" };
      if (!open.has(3)) return { waitFor: 3, why: "second" };
    }
    open.add(it.id);
    return null;
  }, (id) => open.has(id));
  assert.ok(open.has(1) && open.has(2) && open.has(3));
  assert.ok(tries <= 3, `item 1 tried ${tries} times`);
});
