// crest's protocol-buffers (proto2) codec for CRIU's images: the schema
// descriptors (pb-schema.ts, which the generated ./gen modules use),
// decoding (pb-decode.ts) and encoding (pb-encode.ts).

import { prepareDecoding } from "./pb-decode.js";
import { prepareEncoding } from "./pb-encode.js";
import type { MessageType } from "./pb-schema.js";

export * from "./pb-schema.js";
export { decode, decodeRange } from "./pb-decode.js";
export { encode, encodeWithPrefix, encodeFramed, encodedSize } from "./pb-encode.js";

/**
 * Gets the decoding and encoding of these types ready beforehand: crest's
 * startup snapshot holds those of the messages most commands handle, so
 * that no command spends time on them.
 */
export function prepareCodecs(types: Iterable<MessageType<unknown>>): void {
  const all = [...types];
  prepareDecoding(all);
  prepareEncoding(all);
}
