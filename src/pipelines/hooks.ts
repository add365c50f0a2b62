// What a face may hand a pipeline besides Options: a notifier for the RPC
// client's hooks (actions.ts) and a listener for progress, which crest's
// library API shows its callers.
import type { Notifier } from "./actions.js";

export type Progress =
  | { stage: "frozen"; tasks: number }
  | { stage: "dumping"; tasksDone: number; tasksTotal: number; pagesWritten: number; bytesPerSecond: number }
  | { stage: "restoring"; tasksDone: number; tasksTotal: number; pagesRestored: number };

export interface RunHooks {
  notify?: Notifier;
  progress?: (p: Progress) => void;
}
