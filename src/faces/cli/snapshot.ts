// The entry of crest's startup snapshot (scripts/build.mjs bundles it and
// has Node build build/crest.blob from it): every module loaded and
// initialised at build time, so a crest command starts without loading,
// compiling or evaluating any module. bin/crest runs Node on the blob with
// its own path as the first argument, which tells where crest is.
import { startupSnapshot } from "node:v8";
import { dirname, resolve } from "node:path";
import { setProjectRoot } from "../../sys/native.js";
import { start } from "./start.js";

startupSnapshot.setDeserializeMainFunction(() => {
  setProjectRoot(dirname(dirname(resolve(process.argv[1]!))));
  start(process.argv.slice(2));
});
