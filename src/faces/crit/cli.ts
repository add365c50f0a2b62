// `crest crit`: CRIU's crit command line (decode, encode, info, show, x) on
// crest's image layer; no Python, no protobuf library. The JSON is crit's
// (see image-json.ts), the explorers' text is crit's (explore.ts).

import { fstatSync, mkdtempSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dumpJson, parseJson, type Json } from "../../images/index.js";
import { fileOutput, type ImageOutput } from "../../images/file.js";
import { CritError, decodeImage, encodeImage, imageInfo } from "./image-json.js";
import { explore, EXPLORERS } from "./explore.js";

export const CRIT_USAGE = `usage: crest crit [-h] {decode,encode,info,x,show} ...

CRiu Image Tool, in crest (criu's crit command line and JSON)

  decode [--pretty] [-i IN] [-o OUT]   convert an image from binary to JSON (stdin, stdout by default)
  encode [-i IN] [-o OUT]              convert an image from JSON to binary (stdin, stdout by default)
  info IN                              the image's magic and number of entries
  x DIR {ps,fds,mems,rss}              explore an image directory
  show IN [--nopl]                     decode --pretty; --nopl leaves payloads out (their size instead)
`;

interface Parsed {
  cmd: "decode" | "encode" | "info" | "x" | "show";
  in?: string;
  out?: string;
  pretty: boolean;
  nopl: boolean;
  dir?: string;
  what?: string;
}

class UsageError extends Error {}

/** argparse's way with crit's arguments: -i X, -iX, --in X, --in=X; positionals in order. */
function parse(args: string[]): Parsed | "help" {
  const cmd = args[0];
  if (cmd === "-h" || cmd === "--help") return "help";
  if (cmd === undefined) throw new UsageError("too few arguments");
  if (!["decode", "encode", "info", "x", "show"].includes(cmd)) {
    throw new UsageError(`argument: invalid choice: '${cmd}' (choose from 'decode', 'encode', 'info', 'x', 'show')`);
  }
  const p: Parsed = { cmd: cmd as Parsed["cmd"], pretty: cmd === "show", nopl: false };
  const flags: Record<string, string[]> = {
    decode: ["--pretty", "-i", "--in", "-o", "--out"], encode: ["-i", "--in", "-o", "--out"], info: [], x: [], show: ["--nopl"],
  };
  const positional: string[] = [];
  for (let i = 1; i < args.length; i++) {
    let a = args[i]!;
    if (a === "-h" || a === "--help") return "help";
    if (a === "--") {
      positional.push(...args.slice(i + 1));
      break;
    }
    if (!a.startsWith("-") || a === "-") {
      positional.push(a);
      continue;
    }
    let value: string | undefined;
    const eq = a.indexOf("=");
    if (a.startsWith("--") && eq > 0) [a, value] = [a.slice(0, eq), a.slice(eq + 1)];
    else if (/^-[io]./.test(a)) [a, value] = [a.slice(0, 2), a.slice(2)];
    if (!flags[cmd]!.includes(a)) throw new UsageError(`unrecognized arguments: ${args[i]}`);
    if (a === "--pretty") p.pretty = true;
    else if (a === "--nopl") p.nopl = true;
    else {
      if (value === undefined) {
        value = args[++i];
        if (value === undefined) throw new UsageError(`argument ${a}: expected one argument`);
      }
      if (a === "-i" || a === "--in") p.in = value;
      else p.out = value;
    }
  }
  const want = cmd === "x" ? ["dir", "what"] : cmd === "info" || cmd === "show" ? ["in"] : [];
  if (positional.length < want.length) throw new UsageError(`the following arguments are required: ${want.slice(positional.length).join(", ")}`);
  if (positional.length > want.length) throw new UsageError(`unrecognized arguments: ${positional.slice(want.length).join(" ")}`);
  if (cmd === "x") {
    [p.dir, p.what] = positional as [string, string];
    if (!(p.what! in EXPLORERS)) throw new UsageError(`argument what: invalid choice: '${p.what}' (choose from 'ps', 'fds', 'mems', 'rss')`);
  } else if (want.length) {
    p.in = positional[0];
  }
  return p;
}

/** Writes all of data to fd (stdout may be a pipe that takes it in pieces). */
function writeAll(fd: number, data: Uint8Array): void {
  for (let done = 0; done < data.length;) {
    try {
      done += writeSync(fd, data, done, data.length - done);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EAGAIN") throw e;
    }
  }
}

function stdoutOutput(): ImageOutput {
  return { write: (data) => writeAll(1, data), close: () => undefined, discard: () => undefined };
}

/**
 * Runs fn on a path holding the image: the -i file, or stdin (a regular file
 * as it is; a pipe or terminal read whole into a temporary file first).
 */
function withInputPath<T>(input: string | undefined, fn: (path: string) => T): T {
  if (input !== undefined) return fn(input);
  if (fstatSync(0).isFile()) return fn("/proc/self/fd/0");
  const dir = mkdtempSync(join(tmpdir(), "crest-crit-"));
  try {
    const path = join(dir, "stdin.img");
    writeFileSync(path, readFileSync(0), { mode: 0o600 });
    return fn(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function run(p: Parsed): void {
  switch (p.cmd) {
    case "decode":
    case "show": {
      const img = withInputPath(p.in, (path) => decodeImage(path, { pretty: p.pretty, nopl: p.nopl }));
      const text = dumpJson(img, p.pretty ? 4 : undefined);
      // Like crit: a newline after the JSON on stdout, none in a file.
      if (p.out !== undefined) writeFileSync(p.out, text);
      else writeAll(1, Buffer.from(text + "\n"));
      return;
    }
    case "encode": {
      let img: Json;
      try {
        img = parseJson(readFileSync(p.in ?? 0, "utf8"));
      } catch (e) {
        throw new CritError(`Cannot read JSON${p.in ? ` from ${p.in}` : ""}: ${(e as Error).message}. Encode expects JSON input.`);
      }
      if (p.out === undefined) encodeImage(img, "<stdout>", stdoutOutput());
      else encodeImage(img, p.out, fileOutput(p.out));
      return;
    }
    case "info":
      writeAll(1, Buffer.from(dumpJson(imageInfo(p.in!), 4) + "\n"));
      return;
    case "x":
      writeAll(1, Buffer.from(explore(p.dir!, p.what!)));
      return;
  }
}

/** `crest crit ARGS`: the exit code (0, 1 for a failure, 2 for a bad command line). */
export function critMain(args: string[]): number {
  let p: Parsed | "help";
  try {
    p = parse(args);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`${CRIT_USAGE.split("\n")[0]}\ncrest crit: error: ${e.message}\n`);
    return 2;
  }
  if (p === "help") {
    writeAll(1, Buffer.from(CRIT_USAGE));
    return 0;
  }
  try {
    run(p);
    return 0;
  } catch (e) {
    // A message, not a stack trace: whatever the input, crit says what is wrong with it.
    process.stderr.write(`crest crit: ${(e as Error).message}\n`);
    return e instanceof CritError ? e.code : 1;
  }
}
