// Fault injection for tests: CREST_FAULT=<point> makes crest fail at that
// named point of a pipeline, to prove a failure there leaves nothing behind.
class InjectedFault extends Error {
  constructor(point: string) {
    super(`injected fault at ${point} (CREST_FAULT)`);
    this.name = "InjectedFault";
  }
}

export function faultPoint(point: string): void {
  if (process.env.CREST_FAULT === point) throw new InjectedFault(point);
}
