// Screenshots of the VNC scenario: X window dumps (xwd's format) read into
// RGB pixels, compared, cut, and written as PNG, with nothing but Node.
import { deflateSync } from "node:zlib";

/** An RGB picture, 3 bytes per pixel, rows top to bottom. */
export interface Picture {
  width: number;
  height: number;
  rgb: Buffer;
}

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Where the bits of a colour are in a pixel value. */
function channel(mask: number): (v: number) => number {
  if (!mask) return () => 0;
  let shift = 0;
  while (!((mask >>> shift) & 1)) shift++;
  const max = mask >>> shift;
  return (v) => Math.round((((v & mask) >>> shift) * 255) / max);
}

/**
 * Reads an XWD file (X11 window dump, version 7: a big-endian header of 25
 * words, the window's name, the colour map, then the pixels). Only what X
 * servers give for true-colour screens of 24 or 32 bits per pixel. With
 * `area`, only that part (the demo watches a strip many times a second).
 */
export function parseXwd(buf: Buffer, area?: Rect): Picture {
  if (buf.length < 100) throw new Error(`not an XWD file: ${buf.length} bytes`);
  const h = (i: number) => buf.readUInt32BE(i * 4);
  const headerSize = h(0), version = h(1), format = h(2), width = h(4), height = h(5), byteOrder = h(7);
  const bpp = h(11), bytesPerLine = h(12), visualClass = h(13), ncolors = h(19);
  if (version !== 7) throw new Error(`XWD version ${version}, expected 7`);
  if (format !== 2) throw new Error(`XWD pixmap format ${format}, expected 2 (ZPixmap)`);
  if (visualClass !== 4 && visualClass !== 5) throw new Error(`XWD visual class ${visualClass}: only TrueColor and DirectColor are read`);
  if (bpp !== 32 && bpp !== 24) throw new Error(`XWD with ${bpp} bits per pixel: only 24 and 32 are read`);
  const [r, g, b] = [channel(h(14)), channel(h(15)), channel(h(16))];
  const start = headerSize + ncolors * 12;
  if (buf.length < start + bytesPerLine * height) throw new Error(`XWD file cut short: ${buf.length} bytes for ${width}x${height}`);
  const a = area ?? { x: 0, y: 0, width, height };
  if (a.x < 0 || a.y < 0 || a.x + a.width > width || a.y + a.height > height) throw new Error(`area ${a.width}x${a.height}+${a.x}+${a.y} is outside the ${width}x${height} dump`);
  const rgb = Buffer.alloc(a.width * a.height * 3);
  const step = bpp / 8;
  for (let y = 0; y < a.height; y++) {
    let at = start + (a.y + y) * bytesPerLine + a.x * step;
    for (let x = 0; x < a.width; x++, at += step) {
      const v = step === 4
        ? (byteOrder === 0 ? buf.readUInt32LE(at) : buf.readUInt32BE(at))
        : (byteOrder === 0 ? buf.readUIntLE(at, 3) : buf.readUIntBE(at, 3));
      const o = (y * a.width + x) * 3;
      rgb[o] = r(v);
      rgb[o + 1] = g(v);
      rgb[o + 2] = b(v);
    }
  }
  return { width: a.width, height: a.height, rgb };
}

/** The pixel at (x, y) as RRGGBB. */
export function pixelAt(p: Picture, x: number, y: number): number {
  if (x < 0 || y < 0 || x >= p.width || y >= p.height) throw new Error(`pixel (${x}, ${y}) is outside the ${p.width}x${p.height} picture`);
  const o = (y * p.width + x) * 3;
  return (p.rgb[o]! << 16) | (p.rgb[o + 1]! << 8) | p.rgb[o + 2]!;
}


/** A part of a picture. */
export function crop(p: Picture, r: Rect): Picture {
  const out = Buffer.alloc(r.width * r.height * 3);
  for (let y = 0; y < r.height; y++) {
    const from = ((r.y + y) * p.width + r.x) * 3;
    p.rgb.copy(out, y * r.width * 3, from, from + r.width * 3);
  }
  return { width: r.width, height: r.height, rgb: out };
}

/** How many pixels of the rectangle are within `tolerance` (per channel) of `colour`, as a fraction. */
export function shareOf(p: Picture, r: Rect, colour: number, tolerance = 8): number {
  let hits = 0;
  for (let y = r.y; y < r.y + r.height; y++) {
    for (let x = r.x; x < r.x + r.width; x++) {
      const v = pixelAt(p, x, y);
      if ([16, 8, 0].every((s) => Math.abs(((v >> s) & 0xff) - ((colour >> s) & 0xff)) <= tolerance)) hits++;
    }
  }
  return hits / (r.width * r.height);
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(b: Buffer): number {
  let c = 0xffffffff;
  for (const byte of b) c = CRC_TABLE[(c ^ byte) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** The picture as a PNG file (8-bit RGB, no filtering). */
export function png(p: Picture): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(p.width, 0);
  ihdr.writeUInt32BE(p.height, 4);
  ihdr[8] = 8; // bits per channel
  ihdr[9] = 2; // RGB
  const rows = Buffer.alloc((p.width * 3 + 1) * p.height);
  for (let y = 0; y < p.height; y++) p.rgb.copy(rows, y * (p.width * 3 + 1) + 1, y * p.width * 3, (y + 1) * p.width * 3);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(rows)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}
