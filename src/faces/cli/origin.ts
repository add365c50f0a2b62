// Where in crest an error was raised, for the one line a failed command
// logs, as criu's "Error (criu/files.c:123): ..." does: the first frame of
// the error's stack in crest's code, mapped through the source map of the
// file it ran from (tsc's for the modules, esbuild's for the startup
// snapshot's bundle) back to the TypeScript source and line.
import { readFileSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import { projectRoot } from "../../sys/native.js";

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** Decodes one segment of a source map's mappings: base64 VLQ numbers. */
function vlqs(seg: string): number[] {
  const out: number[] = [];
  let value = 0, shift = 0;
  for (const ch of seg) {
    const digit = B64.indexOf(ch);
    if (digit < 0) return [];
    value += (digit & 31) << shift;
    if (digit & 32) {
      shift += 5;
    } else {
      out.push(value & 1 ? -(value >>> 1) : value >>> 1);
      value = shift = 0;
    }
  }
  return out;
}

interface SourceMap {
  sources: string[];
  sourceRoot?: string;
  mappings: string;
}

/** The original source file and 1-based line of generated (line, column), both 1-based; null where unmapped. */
export function originalPosition(map: SourceMap, line: number, column: number): { source: string; line: number } | null {
  let src = 0, srcLine = 0, best: { source: string; line: number } | null = null;
  const lines = map.mappings.split(";");
  for (let l = 0; l < line && l < lines.length; l++) {
    let col = 0;
    for (const seg of lines[l]!.split(",")) {
      const v = vlqs(seg);
      if (!v.length) continue;
      col += v[0]!;
      if (v.length < 4) continue;
      src += v[1]!;
      srcLine += v[2]!;
      if (l === line - 1 && col <= column - 1) best = { source: map.sources[src]!, line: srcLine + 1 };
    }
  }
  return best;
}

/** The first frame of e's stack in crest's own files: "kinds/files/regfile.ts:85", or undefined. */
export function errorOrigin(e: Error): string | undefined {
  const root = projectRoot();
  // Frames end in "(PATH:LINE:COL)" or "PATH:LINE:COL"; the modules' paths are file:// URLs.
  for (const m of (e.stack ?? "").matchAll(/(?:file:\/\/)?(\/[^\s():]+):(\d+):(\d+)\)?$/gm)) {
    const file = decodeURIComponent(m[1]!);
    if (!file.startsWith(root) || file.includes("/node_modules/")) continue;
    try {
      const map = JSON.parse(readFileSync(`${file}.map`, "utf8")) as SourceMap;
      const pos = originalPosition(map, Number(m[2]), Number(m[3]));
      if (!pos) continue;
      const source = resolve(dirname(file), map.sourceRoot ?? "", pos.source);
      return `${relative(`${root}src`, source)}:${pos.line}`;
    } catch {
      return `${relative(root, file)}:${m[2]}`;
    }
  }
  return undefined;
}
