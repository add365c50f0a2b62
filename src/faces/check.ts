// crest check: criu's `check` command. Prints this kernel's facts
// (src/kernel/facts.ts) for what crest relies on and says what is missing
// and what that breaks; with --feature, answers one of criu's feature names
// for crest (zdtm decides what to run by them).
import type { Options } from "../options.js";
import type { Logger } from "../log.js";
import {
  categoriesFor, CREST_LACKS, CREST_NEEDS_NOT, FEATURE_FACTS, featureList, featureVerdict, isFeatureName, unknownFeature, verdict, type Category, type Line,
  type Outcome,
} from "../kernel/features.js";
import { facts, type FactId } from "../kernel/facts.js";
import { PROBES } from "../kernel/probes.js";

/**
 * A fact's outcome, logged. `named`: asked for by --feature, where a fact
 * with nothing here to check it on (no tun device) is missing, as in criu.
 */
function outcome(id: FactId, log: Logger, named: boolean): Outcome {
  const p = facts.probe(id);
  const base = { id, category: p.category, breaks: p.breaks };
  const v = facts.get(id);
  if (v.supported) {
    log.info(`${id}: supported`);
    return base;
  }
  if (v.nothingToCheck && !named) {
    log.info(`${id}: not checked: ${v.reason}`);
    return base;
  }
  log.info(`${id}: not supported: ${v.reason}`);
  if (v.error?.stack) log.debug(v.error.stack);
  return { ...base, missing: v.reason };
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
  const lacks = CREST_LACKS[name];
  const fact = lacks?.fact !== undefined ? lacks.fact : FEATURE_FACTS[name] ?? (facts.isFact(name) ? name : null);
  // The kernel's side is probed even when crest's answer is no: the log shows it.
  const kernel = fact ? outcome(fact, log, true) : undefined;
  if (lacks) return emit(featureVerdict(name, { id: name, category: "feature", breaks: lacks.criu, missing: lacks.crest }), log);
  const needsNot = CREST_NEEDS_NOT[name];
  if (needsNot) {
    log.info(`crest answers yes to ${name}: ${needsNot}`);
    return emit(featureVerdict(name, { id: name, category: "feature", breaks: "" }), log);
  }
  if (!kernel) throw new Error(`crest check has no kernel fact for the feature ${name}`);
  return emit(featureVerdict(name, kernel), log);
}

/** Runs `crest check` as opts asks and returns the process exit code. */
export function check(opts: Options, log: Logger): number {
  if (opts.check.feature !== undefined) return checkFeature(opts.check.feature, log);
  const run = (c: Category) => PROBES.filter((p) => p.category === c).map((p) => outcome(p.id, log, false));
  // As criu: without every basic feature, nothing else is worth checking.
  const basic = run("basic");
  if (basic.some((o) => o.missing !== undefined)) return emit(verdict(basic), log);
  const rest = categoriesFor(opts.check).filter((c) => c !== "basic").flatMap(run);
  return emit(verdict([...basic, ...rest]), log);
}
