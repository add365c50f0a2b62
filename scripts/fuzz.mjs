// The image fuzzer, for a large run (after `npm run build`); see test/fuzz/main.ts:
//   CREST_FUZZ_COUNT=5000 CREST_FUZZ_SEED=42 node scripts/fuzz.mjs
import "../dist/test/fuzz/main.js";
