// crest check: criu's `check` command. Probes this kernel for what crest
// relies on and says what is missing and what that breaks; with --feature,
// answers one of criu's feature names (zdtm decides what to run by them).
import type { Options } from "../options.js";
import type { Logger } from "../log.js";
import {
  categoriesFor, featureList, featureVerdict, isFeatureName, unknownFeature, verdict, type Category, type Line, type Outcome,
} from "../kernel/features.js";
import { Missing, type Probe, type ProbeCtx } from "../kernel/probe.js";
import { PROBES, probeFor } from "../kernel/probes.js";

function runProbe(p: Probe, ctx: ProbeCtx): Outcome {
  const base = { id: p.id, category: p.category, breaks: p.breaks };
  try {
    const skipped = p.run(ctx);
    ctx.log.info(skipped ? `${p.id}: not checked: ${skipped}` : `${p.id}: supported`);
    return base;
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    ctx.log.info(`${p.id}: not supported: ${err.message}`);
    // Anything but Missing is a probe that broke rather than a clear "no".
    if (!(err instanceof Missing) && err.stack) ctx.log.debug(err.stack);
    return { ...base, missing: err.message };
  }
}

function emit(r: { lines: Line[]; code: number }, log: Logger): number {
  for (const l of r.lines) log[l.level](l.text);
  return r.code;
}

function checkFeature(name: string, log: Logger): number {
  if (name === "list") {
    log.msg(featureList());
    return 0;
  }
  if (!isFeatureName(name)) {
    log.error(unknownFeature(name));
    return 1;
  }
  const p = probeFor(name);
  if (!p) throw new Error(`crest check has no probe for the feature ${name}`);
  return emit(featureVerdict(name, runProbe(p, { log, strict: true })), log);
}

/** Runs `crest check` as opts asks and returns the process exit code. */
export function check(opts: Options, log: Logger): number {
  if (opts.check.feature !== undefined) return checkFeature(opts.check.feature, log);
  const ctx: ProbeCtx = { log, strict: false };
  const run = (c: Category) => PROBES.filter((p) => p.category === c).map((p) => runProbe(p, ctx));
  // As criu: without every basic feature, nothing else is worth checking.
  const basic = run("basic");
  if (basic.some((o) => o.missing !== undefined)) return emit(verdict(basic), log);
  const rest = categoriesFor(opts.check).filter((c) => c !== "basic").flatMap(run);
  return emit(verdict([...basic, ...rest]), log);
}
