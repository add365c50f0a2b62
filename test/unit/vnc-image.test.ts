// The VNC scenario's screenshots (test/vnc/image.ts): X window dumps read
// into pixels, and PNG files written, checked on pictures made here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { inflateSync } from "node:zlib";
import { crop, parseXwd, pixelAt, png, shareOf, type Picture } from "../vnc/image.js";

/** An XWD file as X servers write one: 32 bits per pixel, true colour, `order` 0 LSBFirst or 1 MSBFirst, rows padded. */
function xwd(width: number, height: number, pixel: (x: number, y: number) => number, order = 0): Buffer {
  const name = Buffer.from("root\0\0\0\0");
  const header = Buffer.alloc(100);
  const bytesPerLine = width * 4 + 8;
  const words = [100 + name.length, 7, 2, 24, width, height, 0, order, 32, order, 32, 32, bytesPerLine, 4, 0xff0000, 0xff00, 0xff, 8, 256, 0, width, height, 0, 0, 0];
  words.forEach((w, i) => header.writeUInt32BE(w, i * 4));
  const data = Buffer.alloc(bytesPerLine * height, 0xee);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (order === 0) data.writeUInt32LE(pixel(x, y) >>> 0, y * bytesPerLine + x * 4);
      else data.writeUInt32BE(pixel(x, y) >>> 0, y * bytesPerLine + x * 4);
    }
  }
  return Buffer.concat([header, name, data]);
}

const gradient = (x: number, y: number) => ((x * 40) << 16) | ((y * 50) << 8) | ((x + y) * 10) | 0xff000000;

test("parseXwd reads a 32-bit true-colour dump in either byte order, rows padded, the unused byte ignored", () => {
  for (const order of [0, 1]) {
    const p = parseXwd(xwd(5, 4, gradient, order));
    assert.equal(p.width, 5);
    assert.equal(p.height, 4);
    for (let y = 0; y < 4; y++) for (let x = 0; x < 5; x++) assert.equal(pixelAt(p, x, y), gradient(x, y) & 0xffffff, `(${x}, ${y}) in byte order ${order}`);
  }
});

test("parseXwd reads only the area asked for", () => {
  const f = xwd(6, 5, gradient);
  const part = parseXwd(f, { x: 2, y: 1, width: 3, height: 2 });
  assert.deepEqual([part.width, part.height], [3, 2]);
  for (let y = 0; y < 2; y++) for (let x = 0; x < 3; x++) assert.equal(pixelAt(part, x, y), gradient(x + 2, y + 1) & 0xffffff);
  assert.throws(() => parseXwd(f, { x: 4, y: 0, width: 3, height: 1 }), /outside the 6x5 dump/);
});

test("parseXwd refuses what it does not read, naming it", () => {
  const f = xwd(2, 2, gradient);
  f.writeUInt32BE(6, 4);
  assert.throws(() => parseXwd(f), /XWD version 6, expected 7/);
  const g = xwd(2, 2, gradient);
  g.writeUInt32BE(3, 13 * 4);
  assert.throws(() => parseXwd(g), /visual class 3/);
  assert.throws(() => parseXwd(xwd(4, 4, gradient).subarray(0, 150)), /cut short/);
});

test("crop and shareOf look at a part of a picture", () => {
  const p = parseXwd(xwd(10, 10, (x, y) => (x < 5 && y < 5 ? 0x102030 : 0xffffff)));
  assert.equal(shareOf(p, { x: 0, y: 0, width: 5, height: 5 }, 0x102030), 1);
  assert.equal(shareOf(p, { x: 0, y: 0, width: 10, height: 10 }, 0x102030), 0.25);
  assert.equal(shareOf(p, { x: 0, y: 0, width: 5, height: 5 }, 0x142434, 4), 1, "within the tolerance");
  assert.equal(shareOf(p, { x: 0, y: 0, width: 5, height: 5 }, 0x152434, 4), 0, "outside it");
  const c = crop(p, { x: 3, y: 4, width: 4, height: 2 });
  assert.deepEqual([c.width, c.height, pixelAt(c, 1, 0), pixelAt(c, 2, 0), pixelAt(c, 1, 1)], [4, 2, 0x102030, 0xffffff, 0xffffff]);
  assert.throws(() => pixelAt(c, 4, 0), /outside the 4x2 picture/);
});

test("png writes an 8-bit RGB PNG whose chunks carry their CRCs and whose rows are the picture's", () => {
  const p: Picture = { width: 3, height: 2, rgb: Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]) };
  const f = png(p);
  assert.deepEqual([...f.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const chunks: Array<{ type: string; data: Buffer; crc: number }> = [];
  for (let at = 8; at < f.length;) {
    const len = f.readUInt32BE(at);
    chunks.push({ type: f.toString("latin1", at + 4, at + 8), data: f.subarray(at + 8, at + 8 + len), crc: f.readUInt32BE(at + 8 + len) });
    at += 12 + len;
  }
  assert.deepEqual(chunks.map((c) => c.type), ["IHDR", "IDAT", "IEND"]);
  // IEND's CRC is the same in every PNG.
  assert.equal(chunks[2]!.crc, 0xae426082);
  const ihdr = chunks[0]!.data;
  assert.deepEqual([ihdr.readUInt32BE(0), ihdr.readUInt32BE(4), ihdr[8], ihdr[9], ihdr[10], ihdr[11], ihdr[12]], [3, 2, 8, 2, 0, 0, 0]);
  assert.deepEqual([...inflateSync(chunks[1]!.data)], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 10, 11, 12, 13, 14, 15, 16, 17, 18]);
});
