// termios_entry.c_cc as criu 4.2 writes it: the control characters' bytes
// packed four to an entry. The words are those of a tty-info.img criu 4.2
// wrote here for the tty-pty workload's first pty (VERASE ^H, VKILL ^X,
// VMIN 3, VEOL '#').
import { test } from "node:test";
import assert from "node:assert/strict";
import { ccByte, termiosFromBuffer, termiosToBuffer, withCc } from "../../src/kinds/files/tty-ioctl.js";
import { TERMIOS, VMIN, VTIME } from "../../src/sys/constants.js";

const criuWords = [403184643, 196612, 588911377, 370609938, 0, 0, 0, 0];
const bytes = [3, 28, 8, 24, 4, 0, 3, 0, 17, 19, 26, 35, 18, 15, 23, 22, 0, 0, 0];

test("tty termios: criu's packed c_cc reads as the control characters", () => {
  const t = { c_iflag: 1024, c_oflag: 5, c_cflag: 191, c_lflag: 35387, c_line: 0, c_ispeed: 0, c_ospeed: 0, c_cc: criuWords };
  assert.deepEqual(bytes.map((_, i) => ccByte(t, i)), bytes);
  const b = termiosToBuffer(t, TERMIOS.SIZE);
  assert.deepEqual([...b.subarray(17, 17 + TERMIOS.NCCS)], bytes);
});

test("tty termios: a termios read from the kernel is written as criu writes it, and back", () => {
  const b = Buffer.alloc(TERMIOS.SIZE2);
  b.writeUInt32LE(35387, 12);
  Buffer.from(bytes).copy(b, 17);
  const t = termiosFromBuffer(b);
  assert.equal(t.c_cc.length, TERMIOS.NCCS, "19 entries, as criu's n_c_cc");
  assert.deepEqual(t.c_cc.slice(0, 8), criuWords);
  assert.ok(t.c_cc.slice(5).every((w) => w === 0));
  assert.deepEqual(termiosToBuffer(t), b);
  const raw = withCc(t, { [VMIN]: 0, [VTIME]: 0 });
  assert.equal(ccByte(raw, VMIN), 0);
  assert.equal(ccByte(raw, VTIME), 0);
  assert.equal(ccByte(raw, 11), 35, "the others kept");
});
