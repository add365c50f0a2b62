// Kernel facts: what this kernel offers, one probe per fact, asked for by
// id (`kernelHas("inotify_setnextwd")`, `facts.get("tcp_repair")`). A probe
// runs the first time its fact is asked for and at most once per process,
// so a dump or restore pays only for the facts it consults. `crest check`
// prints them; the kinds consult them.
import { Missing, type Probe } from "./probe.js";
import { PROBES, type FactId } from "./probes.js";

export type { FactId } from "./probes.js";

/** A fact's verdict: supported, or missing with the reason. */
export type Verdict =
  | { supported: true }
  | {
      supported: false;
      reason: string;
      /** Nothing here to check it on (no /dev/net/tun, no AppArmor): a check run lets it pass. */
      nothingToCheck?: true;
      /** The probe broke (an error other than a clear "no"), for the log. */
      error?: Error;
    };

function evaluate(p: Probe): Verdict {
  try {
    const nothingHere = p.run();
    return typeof nothingHere === "string" ? { supported: false, reason: nothingHere, nothingToCheck: true } : { supported: true };
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    return err instanceof Missing ? { supported: false, reason: err.message } : { supported: false, reason: err.message, error: err };
  }
}

/** Facts backed by a list of probes, each run once, when first asked for. */
export class Facts<Id extends string> {
  private readonly byId: ReadonlyMap<string, Probe>;
  private readonly known = new Map<string, Verdict>();

  constructor(probes: ReadonlyArray<Probe & { id: Id }>) {
    this.byId = new Map(probes.map((p) => [p.id, p]));
  }

  /** The probe behind a fact (its category and what its absence breaks). */
  probe(id: Id): Probe {
    const p = this.byId.get(id);
    if (!p) throw new Error(`no probe for the kernel fact ${id}`);
    return p;
  }

  isFact(id: string): id is Id {
    return this.byId.has(id);
  }

  get(id: Id): Verdict {
    let v = this.known.get(id);
    if (!v) {
      v = evaluate(this.probe(id));
      this.known.set(id, v);
    }
    return v;
  }

  has(id: Id): boolean {
    return this.get(id).supported;
  }
}

/** This process's kernel facts. */
export const facts = new Facts<FactId>(PROBES);

/** Whether this kernel has a fact (its probe runs on first use only). */
export function kernelHas(id: FactId): boolean {
  return facts.has(id);
}
