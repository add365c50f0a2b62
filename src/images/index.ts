// CRIU's image format: schemas (./gen), the protobuf codec, magic numbers,
// image files and the table of image kinds. Pure bytes <-> objects.

import { startupSnapshot } from "node:v8";
import * as S from "./gen/index.js";
import { prepareCodecs, type MessageType } from "./pb.js";

export { encode, decode, encodedSize, ImageFormatError, prepareCodecs } from "./pb.js";
export type { EncodeInput, MessageType, FieldSpec, FieldKind, FieldHints, EnumSpec, Label, ScalarKind } from "./pb.js";
export * from "./magic.js";
export {
  ImageError, ImageReader, ImageWriter, readImage, writeImage, readSingle, imageExists, imagePath, formatImageName,
} from "./file.js";
export type { ImageKind, ImageKey, ImageHeader, ImageErrorReason } from "./file.js";
export { IMG, kindByMagic } from "./kinds.js";
export type { EntriesKind, ImageKindId } from "./kinds.js";
export { pagemapNrPages } from "./payloads.js";
export { PagemapRuns, pagemapCount } from "./pagemap-runs.js";
export type {
  PipeData, PipeDataInput, SkQueuePacket, SkQueuePacketInput, TcpStream, TcpStreamInput, IpcShmSegment,
  IpcShmSegmentInput, IpcSemSet, IpcSemSetInput, IpcMessage, IpcMsgQueue, IpcMsgQueueInput, GhostFile,
  GhostFileInput, Pagemap, PagemapInput,
} from "./payloads.js";
export * from "./gen/index.js";
export { toCritJson, fromCritJson, parseJson, dumpJson, base64Lines, quotedPrintable, fromQuotedPrintable } from "./json.js";
export type { Json, JsonObject, CritJsonOptions } from "./json.js";

/**
 * The messages most commands handle: those of the images every dump writes
 * and every restore reads, and of terminals, pipes and unix sockets, which
 * most trees have. crest's startup snapshot holds their codecs ready
 * (encoders built and compiled, decoding plans worked out), so that a
 * command uses them at once; the others are made at their first use (an
 * encoder in a fraction of a millisecond). Each one here costs every
 * command's start-up a few microseconds.
 */
export const COMMON_MESSAGES: readonly MessageType<unknown>[] = [
  S.inventory_entry, S.pstree_entry, S.task_kobj_ids_entry, S.fs_entry, S.stats_entry, S.dump_stats_entry, S.restore_stats_entry,
  S.timens_entry, S.timespec,
  S.core_entry, S.thread_info_x86, S.user_x86_regs_entry, S.user_x86_fpregs_entry, S.user_x86_xsave_entry, S.user_desc_t,
  S.task_core_entry, S.thread_core_entry, S.thread_sas_entry, S.task_timers_entry, S.itimer_entry, S.task_rlimits_entry,
  S.rlimit_entry, S.signal_queue_entry, S.siginfo_entry, S.sa_entry, S.rseq_entry, S.creds_entry,
  S.mm_entry, S.vma_entry, S.pagemap_head, S.pagemap_entry,
  S.fdinfo_entry, S.file_entry, S.reg_file_entry, S.fown_entry,
  S.tty_file_entry, S.tty_info_entry, S.tty_pty_entry, S.termios_entry, S.winsize_entry, S.tty_data_entry,
  S.pipe_entry, S.unix_sk_entry, S.sk_opts_entry,
];

if (startupSnapshot.isBuildingSnapshot()) prepareCodecs(COMMON_MESSAGES);
