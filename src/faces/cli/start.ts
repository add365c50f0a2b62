// How the crest command starts, from bin/crest: through the startup
// snapshot (snapshot.ts) or from the modules (bin.ts).
import { main } from "./main.js";

/**
 * bin/crest keeps NODE_EXTRA_CA_CERTS away from Node (loading those
 * certificates costs Node tens of milliseconds at every start, and crest
 * makes no TLS connection) and hands it over in CREST_NODE_EXTRA_CA_CERTS:
 * put back, so what crest starts (action scripts, crest run's program) sees
 * the environment crest was given.
 */
function restoreEnvironment(): void {
  const saved = process.env.CREST_NODE_EXTRA_CA_CERTS;
  if (saved === undefined) return;
  process.env.NODE_EXTRA_CA_CERTS = saved;
  delete process.env.CREST_NODE_EXTRA_CA_CERTS;
}

export function start(argv: string[]): void {
  restoreEnvironment();
  const code = main(argv);
  // The service runs until it is stopped; every other command is done.
  if (typeof code === "number") process.exitCode = code;
  else void code.then((c) => (process.exitCode = c));
}
