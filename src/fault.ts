// Fault injection for tests: CREST_FAULT=<point> makes crest fail at that
// named point of a pipeline, to prove a failure there leaves nothing behind;
// CREST_FAULT=<point>:stop makes it stop there until continued.
class InjectedFault extends Error {
  constructor(point: string) {
    super(`injected fault at ${point} (CREST_FAULT)`);
    this.name = "InjectedFault";
  }
}

// Read at the first point, not at load (the startup snapshot loads modules at
// build time), and once: a process.env read costs microseconds, and a
// 100-task restore passes thousands of points.
let armed: string | undefined;

export function faultPoint(point: string): void {
  armed ??= process.env.CREST_FAULT ?? "";
  if (armed === point) throw new InjectedFault(point);
  // <point>:stop: crest stops itself there (SIGSTOP) until SIGCONT, for a test to change the world in between.
  if (armed === `${point}:stop`) process.kill(process.pid, "SIGSTOP");
}
