// task_core_entry.task_state values (CRIU's compel task states).
export const TASK_STATE = { ALIVE: 1, DEAD: 2, STOPPED: 3, HELPER: 4, THREAD: 5, ZOMBIE: 6 } as const;
