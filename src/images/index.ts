// CRIU's image format: schemas (./gen), the protobuf codec, magic numbers,
// image files and the table of image kinds. Pure bytes <-> objects.

export { encode, decode, encodedSize, ImageFormatError } from "./pb.js";
export type { EncodeInput, MessageType, FieldSpec, FieldKind, FieldHints, EnumSpec, Label, ScalarKind } from "./pb.js";
export * from "./magic.js";
export {
  ImageError, ImageReader, ImageWriter, readImage, writeImage, readSingle, imageExists, imagePath, formatImageName,
} from "./file.js";
export type { ImageKind, ImageKey, ImageHeader, ImageErrorReason } from "./file.js";
export { IMG, kindByMagic } from "./kinds.js";
export type { EntriesKind, ImageKindId } from "./kinds.js";
export { pagemapNrPages, pagemapCount } from "./payloads.js";
export type {
  PipeData, PipeDataInput, SkQueuePacket, SkQueuePacketInput, TcpStream, TcpStreamInput, IpcShmSegment,
  IpcShmSegmentInput, IpcSemSet, IpcSemSetInput, IpcMessage, IpcMsgQueue, IpcMsgQueueInput, GhostFile,
  GhostFileInput, Pagemap, PagemapInput,
} from "./payloads.js";
export * from "./gen/index.js";
export { toCritJson, fromCritJson, parseJson, dumpJson, base64Lines, quotedPrintable, fromQuotedPrintable } from "./json.js";
export type { Json, JsonObject, CritJsonOptions } from "./json.js";
