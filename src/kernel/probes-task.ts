// Probes that need another task: ptrace requests, injected syscalls, task
// creation with chosen PIDs and namespaces. Each uses a fresh stub process.
import { accessSync, readFileSync, readlinkSync } from "node:fs";
import { AT_FDCWD, CLONE, MAP, MREMAP, O, PR, PR_SET_MM_MAP, PROT, PTRACE, PTRACE_O, SECCOMP_SET_MODE_FILTER, SIG, SYS } from "../sys/constants.js";
import { EEXIST, EINVAL, ENOSYS } from "../sys/errno.js";
import { ptrace } from "../sys/syscalls.js";
import { CLONE_ARGS_SIZE, MM_MAP_SIZE, packCloneArgs, packMmMap, SIGINFO_SIZE, siginfoHead } from "../sys/structs.js";
import { parseAuxv, parseMaps, parseStat } from "../proc/index.js";
import { missing, need, sys, type Probe } from "./probe.js";
import { killAndReap, type Stub } from "../remote/stub.js";
import { PROBE_TRACE, withStub } from "./stub.js";

const EIO = 5, E2BIG = 7;
const PR_SET_MM_MAP_SIZE = 15;
const ARCH_MAP_VDSO_64 = 0x2003;
/** PTRACE_POKEUSER, and offsetof(struct user, u_debugreg) on x86_64. */
const PTRACE_POKEUSER = 6, U_DEBUGREG = 848;
/** struct ptrace_rseq_configuration: u64 pointer, u32 size, u32 signature, u32 flags, u32 pad. */
const RSEQ_CONF_SIZE = 24;

const traced = (fn: (s: Stub) => void) => (): void => withStub({ trace: PROBE_TRACE, what: "starting a process to trace" }, fn);

export const TASK_PROBES = [
  {
    id: "ptrace",
    category: "basic",
    breaks: "crest cannot freeze tasks, read their registers, FPU state, signal masks and pending signals, or set them on restore",
    run: traced((s) => {
      const t = s.t;
      t.setRegs(t.getRegs());
      t.setXstate(t.getXstate());
      t.setSigmask(t.getSigmask());
      t.pendingSiginfo(false);
      t.pendingSiginfo(true);
    }),
  },
  {
    id: "seccomp_suspend",
    category: "basic",
    breaks: "crest seizes every task with PTRACE_O_SUSPEND_SECCOMP, so no dump or restore can start",
    run: traced((s) => {
      need(ptrace(PTRACE.SETOPTIONS, s.pid, 0, PROBE_TRACE | PTRACE_O.SUSPEND_SECCOMP), "PTRACE_O_SUSPEND_SECCOMP", [EINVAL]);
    }),
  },
  {
    id: "get_rseq_conf",
    category: "basic",
    breaks: "crest reads every thread's rseq registration with PTRACE_GET_RSEQ_CONFIGURATION, so no dump works",
    run: traced((s) => {
      const b = Buffer.alloc(RSEQ_CONF_SIZE);
      const n = need(ptrace(PTRACE.GET_RSEQ_CONFIGURATION, s.pid, b.length, b), "PTRACE_GET_RSEQ_CONFIGURATION", [EIO]);
      if (n !== RSEQ_CONF_SIZE) missing(`PTRACE_GET_RSEQ_CONFIGURATION wrote ${n} bytes, not ${RSEQ_CONF_SIZE}`);
      if (b.readUInt32LE(16) !== 0) missing(`PTRACE_GET_RSEQ_CONFIGURATION reports flags 0x${b.readUInt32LE(16).toString(16)} crest does not know`);
    }),
  },
  {
    id: "pending_signals",
    category: "basic",
    breaks: "crest cannot restore pending signals with their siginfo (a task queues them to itself)",
    run: traced((s) => {
      // The stub's signals are all blocked while crest drives it, so the signal stays queued.
      const r = s.remote();
      const info = Buffer.alloc(SIGINFO_SIZE);
      info.writeInt32LE(SIG.USR1, 0);
      info.writeInt32LE(1, 8); // a positive si_code: only a task's own queue accepts it
      need(r.syscall(SYS.rt_tgsigqueueinfo, s.pid, s.pid, SIG.USR1, r.put(info)), "rt_tgsigqueueinfo with a kernel si_code to the task itself");
      const got = s.t.pendingSiginfo(false).map(siginfoHead).find((h) => h.signo === SIG.USR1);
      if (!got || got.code !== 1) missing("PTRACE_PEEKSIGINFO does not show a queued signal with its si_code");
    }),
  },
  {
    id: "seccomp_filters",
    category: "extra",
    breaks: "crest cannot dump tasks that have seccomp filters",
    run: traced((s) => {
      const r = s.remote();
      const allow = Buffer.alloc(8); // BPF_RET | BPF_K, SECCOMP_RET_ALLOW
      allow.writeUInt16LE(0x06, 0);
      allow.writeUInt32LE(0x7fff0000, 4);
      const prog = Buffer.alloc(16); // struct sock_fprog
      prog.writeUInt16LE(1, 0);
      prog.writeBigUInt64LE(r.put(allow), 8);
      need(r.syscall(SYS.seccomp, SECCOMP_SET_MODE_FILTER, 0, r.put(prog)), "installing a seccomp filter");
      need(ptrace(PTRACE.SECCOMP_GET_FILTER, s.pid, 0, 0), "PTRACE_SECCOMP_GET_FILTER", [EIO]);
      if (!s.t.seccompFilter(0)?.equals(allow)) missing("PTRACE_SECCOMP_GET_FILTER does not return the filter that was installed");
      s.t.seccompFlags(0);
    }),
  },
  {
    id: "clone3_set_tid",
    category: "basic",
    breaks: "crest cannot restore tasks with their PIDs",
    run: () => {
      // set_tid without set_tid_size: EINVAL where set_tid exists (criu's test;
      // it fails before anything is created).
      const args = Buffer.alloc(CLONE_ARGS_SIZE);
      args.writeBigInt64LE(-1n, 64);
      const r = sys(SYS.clone3, args, CLONE_ARGS_SIZE);
      if (r === -ENOSYS) missing("clone3 is not supported by this kernel (ENOSYS)");
      if (r === -E2BIG) missing("clone3 has no set_tid in this kernel (E2BIG)");
      if (r !== -EINVAL) missing(`clone3 with an invalid set_tid returned ${r}, not EINVAL`);
      // And for real, as a restore does: PID 1 of a new PID namespace.
      withStub({ flags: CLONE.NEWPID, pid: 1, what: "clone3 with set_tid 1 in a new PID namespace" }, (st) => {
        const nspid = /^NSpid:\s*(.*)$/m.exec(readFileSync(`/proc/${st.pid}/status`, "utf8"))?.[1]?.trim().split(/\s+/);
        if (nspid?.at(-1) !== "1") missing(`clone3 with set_tid 1 made process ${st.pid} with namespace PIDs ${nspid?.join(" ")}`);
      });
    },
  },
  {
    id: "namespaces",
    category: "basic",
    breaks: "crest cannot dump or restore trees with their own PID, IPC or UTS namespace (crest run makes them)",
    run: () => {
      const kinds = ["pid", "ipc", "uts"];
      for (const k of kinds) {
        try {
          accessSync(`/proc/self/ns/${k}`);
        } catch {
          missing(`${k} namespaces are not supported by this kernel (no /proc/self/ns/${k})`);
        }
      }
      withStub({ flags: CLONE.NEWPID | CLONE.NEWIPC | CLONE.NEWUTS, what: "creating PID, IPC and UTS namespaces" }, (s) => {
        for (const k of kinds) {
          if (readlinkSync(`/proc/${s.pid}/ns/${k}`) === readlinkSync(`/proc/self/ns/${k}`)) missing(`a process cloned with a new ${k} namespace is still in crest's`);
        }
      });
    },
  },
  {
    id: "pr_set_mm_map",
    category: "basic",
    breaks: "crest cannot restore a task's memory layout fields, auxv and executable link",
    run: () => {
      const size = new Uint32Array(1);
      need(sys(SYS.prctl, PR.SET_MM, PR_SET_MM_MAP_SIZE, size, 0, 0), "prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE)", [EINVAL]);
      if (size[0] !== MM_MAP_SIZE) missing(`struct prctl_mm_map is ${size[0]} bytes in this kernel, crest passes ${MM_MAP_SIZE}`);
      // A task setting its own current values: the call a restore makes, changing nothing.
      withStub({ trace: PROBE_TRACE, what: "starting a process to trace" }, (s) => {
        const r = s.remote();
        const st = parseStat(readFileSync(`/proc/${s.pid}/stat`, "utf8"));
        const auxv = parseAuxv(readFileSync(`/proc/${s.pid}/auxv`));
        const auxvBuf = Buffer.alloc(auxv.length * 8);
        auxv.forEach((v, i) => auxvBuf.writeBigUInt64LE(v, i * 8));
        const brk = need(r.syscall(SYS.brk, 0), "brk(0)");
        const map = packMmMap({
          start_code: BigInt(st.startCode), end_code: BigInt(st.endCode), start_data: BigInt(st.startData),
          end_data: BigInt(st.endData), start_brk: BigInt(st.startBrk), brk: BigInt(brk), start_stack: BigInt(st.startStack),
          arg_start: BigInt(st.argStart), arg_end: BigInt(st.argEnd), env_start: BigInt(st.envStart), env_end: BigInt(st.envEnd),
          auxv: r.put(auxvBuf), auxv_size: auxvBuf.length, exe_fd: -1,
        });
        need(r.syscall(SYS.prctl, PR.SET_MM, PR_SET_MM_MAP, r.put(map), MM_MAP_SIZE, 0), "prctl(PR_SET_MM, PR_SET_MM_MAP) with a task's own values");
      });
    },
  },
  {
    id: "special_mremap",
    category: "basic",
    breaks: "crest cannot move the vDSO and vvar pages to where a restored task had them",
    run: traced((s) => {
      const r = s.remote();
      const names = ["[vvar]", "[vvar_vclock]", "[vdso]"];
      const specials = parseMaps(readFileSync(`/proc/${s.pid}/maps`, "utf8")).filter((m) => names.includes(m.path));
      if (!specials.some((m) => m.path === "[vdso]")) missing("a new process has no [vdso] mapping");
      const total = specials.reduce((n, m) => n + m.end - m.start, 0);
      let at = need(r.syscall(SYS.mmap, 0, total, PROT.NONE, MAP.PRIVATE | MAP.ANONYMOUS, -1, 0), "mmap of a parking range");
      const moved: Array<[string, number]> = [];
      for (const m of specials) {
        const len = m.end - m.start;
        need(r.syscall(SYS.mremap, m.start, len, len, MREMAP.MAYMOVE | MREMAP.FIXED, at), `mremap of ${m.path}`);
        moved.push([m.path, at]);
        at += len;
      }
      const after = parseMaps(readFileSync(`/proc/${s.pid}/maps`, "utf8"));
      for (const [name, addr] of moved) {
        if (!after.some((m) => m.path === name && m.start === addr)) missing(`the kernel does not follow ${name} when it is moved with mremap`);
      }
    }),
  },
  {
    id: "can_map_vdso",
    category: "extra",
    breaks: "criu maps a fresh vDSO with it; crest moves the kernel's own instead and does not need it",
    run: traced((s) => {
      // With a vDSO already mapped, a kernel that has the call answers EEXIST.
      const v = s.remote().syscall(SYS.arch_prctl, ARCH_MAP_VDSO_64, 0);
      if (v !== -EEXIST) need(v, "arch_prctl(ARCH_MAP_VDSO_64)", [EINVAL, ENOSYS]);
    }),
  },
  {
    id: "loginuid",
    category: "extra",
    breaks: "crest cannot restore a task's audit login uid",
    run: traced((s) => {
      let saved: string;
      try {
        saved = readFileSync(`/proc/${s.pid}/loginuid`, "utf8").trim();
      } catch {
        missing("/proc/PID/loginuid does not exist (a kernel without CONFIG_AUDITSYSCALL)");
      }
      // Only a task itself may write its loginuid: unset it, then put it back.
      const r = s.remote();
      const fd = need(r.syscall(SYS.openat, AT_FDCWD, r.putString("/proc/self/loginuid"), O.RDWR, 0), "opening /proc/self/loginuid for writing");
      for (const v of ["4294967295", saved]) {
        const b = Buffer.from(v);
        need(r.syscall(SYS.pwrite64, fd, r.put(b), b.length, 0), `writing ${v} to /proc/self/loginuid`);
      }
    }),
  },
  {
    id: "clone_parent_vs_pid",
    category: "extra",
    breaks: "crest restore -S (--restore-sibling) of a tree with its own PID namespace fails",
    run: () => withStub({ trace: PROBE_TRACE | PTRACE_O.TRACEFORK | PTRACE_O.TRACECLONE | PTRACE_O.TRACEVFORK }, (s) => {
      // The new task is crest's child (CLONE_PARENT) and arrives traced: killed and reaped here.
      const r = s.remote();
      const got = r.syscall(SYS.clone3, r.put(packCloneArgs({ flags: CLONE.PARENT | CLONE.NEWPID, exitSignal: 0 })), CLONE_ARGS_SIZE);
      for (const pid of new Set([...r.events.map((e) => e.child), ...(got > 0 ? [got] : [])])) killAndReap(pid);
      need(got, "clone3 with CLONE_PARENT | CLONE_NEWPID", [EINVAL]);
    }),
  },
  {
    id: "breakpoints",
    category: "feature",
    breaks: "criu uses hardware breakpoints to stop its parasite faster; crest does not use them",
    run: traced((s) => {
      const t = s.t;
      const gadget = s.gadget().addr;
      need(ptrace(PTRACE_POKEUSER, s.pid, U_DEBUGREG, gadget), "setting debug register DR0");
      need(ptrace(PTRACE_POKEUSER, s.pid, U_DEBUGREG + 7 * 8, 1), "enabling an execution breakpoint in DR7");
      const regs = t.getRegs().clone();
      regs.set("ip", gadget);
      regs.set("orig_ax", -1n);
      regs.set("ax", SYS.getpid);
      t.setRegs(regs);
      t.cont();
      const stop = t.wait();
      if (stop.kind !== "signal" || stop.sig !== SIG.TRAP) missing(`the probe process stopped unexpectedly: ${JSON.stringify(stop)}`);
      // A breakpoint stops before the instruction; without one, syscall and int3 run.
      if (t.getRegs().get("ip") !== gadget) missing("hardware breakpoints do not fire here (often the case in virtual machines)");
    }),
  },
] as const satisfies readonly Probe[];
