// The one error /proc parsers throw: which file kind, and the line that did not parse.
export class ProcParseError extends Error {
  constructor(readonly file: string, readonly line: string, readonly detail = "unexpected format") {
    super(`/proc ${file}: ${detail}: ${JSON.stringify(line.slice(0, 200))}`);
    this.name = "ProcParseError";
  }
}
