// The pure parts of the time and user namespace kinds: /proc/PID/timens_offsets
// and uid_map / gid_map as the kernel prints them, and ids mapped through a map.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseTimensOffsets } from "../../src/kinds/namespaces/time.js";
import { idInside, parseIdMap } from "../../src/kinds/namespaces/user.js";

test("timens_offsets: names or clock ids, negative seconds, in nanoseconds", () => {
  assert.deepEqual(parseTimensOffsets("monotonic      864000         0\nboottime      1728000         0\n", "x"), {
    monotonic: 864000n * 1_000_000_000n, boottime: 1728000n * 1_000_000_000n,
  });
  assert.deepEqual(parseTimensOffsets("1 -4 818889531\n7 0 5\n", "x"), { monotonic: -4n * 1_000_000_000n + 818889531n, boottime: 5n });
  assert.throws(() => parseTimensOffsets("monotonic 1 0\n", "offsets"), /offsets: the monotonic or boottime offset is missing/);
  assert.throws(() => parseTimensOffsets("realtime 1 0\nboottime 0 0\n", "offsets"), /unknown clock 'realtime'/);
});

test("uid_map: extents, ids inside and outside them", () => {
  const map = parseIdMap("         0      20000      20000\n    100000     200000      50000\n", "uid_map");
  assert.deepEqual(map, [{ first: 0, lower_first: 20000, count: 20000 }, { first: 100000, lower_first: 200000, count: 50000 }]);
  assert.equal(idInside(map, 20000), 0);
  assert.equal(idInside(map, 38943), 18943);
  assert.equal(idInside(map, 249999), 149999);
  assert.equal(idInside(map, 40000), undefined, "past the first extent");
  assert.equal(idInside(map, 0), undefined, "the first namespace's root is not mapped");
  assert.throws(() => parseIdMap("0 1\n", "gid_map"), /gid_map: cannot parse '0 1'/);
});
