// The crest command from its modules: bin/crest runs this where there is no
// startup snapshot for the Node it runs on.
import { start } from "./start.js";

start(process.argv.slice(2));
