// criu's configuration files: one option per line, written without the
// leading dashes (`tcp-established`, `log-file /tmp/dump.log`, a value in
// double quotes with \" inside, `#` comments). They are read in criu's
// order, each overriding the one before and the command line overriding
// them all: /etc/criu/default.conf, ~/.criu/default.conf, $CRIU_CONFIG_FILE,
// `--config FILE`. `--no-default-config` skips the first two, and so does
// `--config` (as in criu).
import { readFileSync } from "node:fs";
import { join } from "node:path";

const GLOBAL_CONFIG = "/etc/criu/default.conf";
const USER_CONFIG = join(".criu", "default.conf");

/** A configuration file that does not follow criu's format. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

function badFormat(file: string, line: number, why: string): ConfigError {
  return new ConfigError(`${file}:${line}: ${why}. Unsupported configuration file format. Please consult man page criu(8)`);
}

/** One line: [] (empty, comment), ["--opt"] or ["--opt", "value"]. */
export function parseConfigLine(line: string, file = "config", lineNo = 1): string[] {
  const text = line.replace(/^[ \t\f\v\r]+/, "").replace(/[\r\n]+$/, "");
  if (text === "" || text.startsWith("#")) return [];
  const sep = /[ \t]/.exec(text);
  if (!sep) return [`--${text}`];
  const option = `--${text.slice(0, sep.index)}`;
  const rest = text.slice(sep.index + 1).replace(/^\s+/, "");
  if (rest === "" || rest.startsWith("#")) return [option];
  let value: string;
  let after: string;
  if (rest.startsWith('"')) {
    // Up to the next quote not preceded by a backslash; \" stands for ".
    const m = /^"((?:[^"\\]|\\.|\\$)*?)"(.*)$/.exec(rest);
    if (!m) throw badFormat(file, lineNo, `the value of ${option} has no closing quote`);
    value = m[1]!.replace(/\\"/g, '"');
    after = m[2]!;
  } else {
    const end = rest.search(/\s|#/);
    value = end < 0 ? rest : rest.slice(0, end);
    after = end < 0 ? "" : rest.slice(end);
    value = value.replace(/\\"/g, '"');
  }
  const trailing = after.replace(/#.*$/, "");
  if (trailing.trim() !== "") throw badFormat(file, lineNo, `${option} has more than one value ('${trailing.trim()}')`);
  return [option, value];
}

/**
 * A whole file, as an argument list: `--opt=value`, so that the value stays
 * with its option even where the option's argument is optional (criu's
 * getopt would drop the 4 of `verbosity 4`; crest takes it).
 */
export function parseConfigText(text: string, file: string): string[] {
  return text.split("\n").map((line, i) => parseConfigLine(line, file, i + 1))
    .filter((a) => a.length > 0).map((a) => a.join("="));
}

export interface ConfigEnv {
  /** Environment variables (HOME, CRIU_CONFIG_FILE). */
  env: Record<string, string | undefined>;
  /** Reads a file; null if it does not exist. */
  read: (path: string) => string | null;
}

export const SYSTEM_CONFIG_ENV: ConfigEnv = {
  env: process.env,
  read: (path) => {
    try {
      return readFileSync(path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw e;
    }
  },
};

/** What the command line says about configuration files (criu looks before parsing anything else). */
function configRequest(argv: readonly string[]): { noDefault: boolean; file?: string } {
  let noDefault = false;
  let file: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--no-default-config") noDefault = true;
    else if (a === "--config") {
      file = argv[i + 1];
      noDefault = true;
    } else if (a.startsWith("--config=")) {
      file = a.slice("--config=".length);
      noDefault = true;
    }
  }
  return { noDefault, file };
}

/** The configuration files to read, in order, each as its file name and argument list. */
export function readConfigs(argv: readonly string[], src: ConfigEnv): Array<{ file: string; args: string[] }> {
  const req = configRequest(argv);
  const out: Array<{ file: string; args: string[] }> = [];
  const add = (file: string, required: boolean) => {
    const text = src.read(file);
    if (text === null) {
      // criu skips a missing file silently; one named on purpose is worth an error.
      if (required) throw new ConfigError(`cannot read the configuration file ${file}: it does not exist`);
      return;
    }
    out.push({ file, args: parseConfigText(text, file) });
  };
  if (!req.noDefault) {
    add(GLOBAL_CONFIG, false);
    if (src.env.HOME) add(join(src.env.HOME, USER_CONFIG), false);
  }
  if (src.env.CRIU_CONFIG_FILE) add(src.env.CRIU_CONFIG_FILE, true);
  if (req.file) add(req.file, true);
  return out;
}
