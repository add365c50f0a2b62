/*
 * Identity and limits: credentials (uids, gids, groups, the five capability
 * sets, securebits), rlimits, comm, personality, timer slack, pdeath signal,
 * dumpable, no_new_privs, a seccomp filter, and what glibc registers per
 * thread: rseq, the robust futex list and the clear-tid address. Starts as
 * root and drops to other ids, keeping CAP_DAC_OVERRIDE to report back.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/fsuid.h>
#include <stdio.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SECBIT_NO_SETUID_FIXUP
#define SECBIT_NO_SETUID_FIXUP (1 << 2)
#define SECBIT_KEEP_CAPS (1 << 4)
#endif
#define RSEQ_SIG 0x53053053
#define SECCOMP_ERRNO 77

extern const ptrdiff_t __rseq_offset;
extern const unsigned int __rseq_size;

struct snapshot {
	uid_t uid[4];
	gid_t gid[4];
	gid_t groups[64];
	int ngroups;
	struct __user_cap_data_struct caps[2];
	int bnd[64];
	int amb[64];
	int secbits;
	struct rlimit rl[RLIM_NLIMITS];
	char comm[32];
	int personality;
	long slack;
	int pdeath, dumpable, nnp, seccomp;
	void *robust;
	size_t robust_len;
	void *tid_addr;
};

static int cap_last(void)
{
	char *s = wl_read_file("/proc/sys/kernel/cap_last_cap", NULL);
	int n = s ? atoi(s) : 40;
	return n;
}

static int status_field(const char *key)
{
	char *st = wl_read_file("/proc/self/status", NULL);
	char *p = strstr(st, key);
	return p ? atoi(p + strlen(key)) : -1;
}

static void take(struct snapshot *s)
{
	memset(s, 0, sizeof(*s));
	getresuid(&s->uid[0], &s->uid[1], &s->uid[2]);
	s->uid[3] = (uid_t)setfsuid((uid_t)-1);
	getresgid(&s->gid[0], &s->gid[1], &s->gid[2]);
	s->gid[3] = (gid_t)setfsgid((gid_t)-1);
	s->ngroups = getgroups(64, s->groups);
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	syscall(SYS_capget, &hdr, s->caps);
	for (int c = 0; c <= cap_last(); c++) {
		s->bnd[c] = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
		s->amb[c] = prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, c, 0, 0);
	}
	s->secbits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
	for (int r = 0; r < RLIM_NLIMITS; r++)
		getrlimit(r, &s->rl[r]);
	prctl(PR_GET_NAME, s->comm, 0, 0, 0);
	s->personality = personality(0xffffffff);
	s->slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
	prctl(PR_GET_PDEATHSIG, &s->pdeath, 0, 0, 0);
	s->dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
	s->nnp = status_field("NoNewPrivs:");
	s->seccomp = status_field("Seccomp:");
	syscall(SYS_get_robust_list, 0, &s->robust, &s->robust_len);
	prctl(PR_GET_TID_ADDRESS, &s->tid_addr, 0, 0, 0);
}

#define SAME(field, fmt)                                                                        \
	do {                                                                                     \
		if (a->field != b->field)                                                        \
			fail(#field " is " fmt ", was " fmt, b->field, a->field);                \
	} while (0)

static void compare(const struct snapshot *a, const struct snapshot *b)
{
	for (int i = 0; i < 4; i++) {
		SAME(uid[i], "%u");
		SAME(gid[i], "%u");
	}
	SAME(ngroups, "%d");
	for (int i = 0; i < a->ngroups && i < 64; i++)
		SAME(groups[i], "%u");
	for (int i = 0; i < 2; i++) {
		SAME(caps[i].effective, "%#x");
		SAME(caps[i].permitted, "%#x");
		SAME(caps[i].inheritable, "%#x");
	}
	for (int c = 0; c < 64; c++) {
		SAME(bnd[c], "%d");
		SAME(amb[c], "%d");
	}
	SAME(secbits, "%#x");
	for (int r = 0; r < RLIM_NLIMITS; r++) {
		SAME(rl[r].rlim_cur, "%lu");
		SAME(rl[r].rlim_max, "%lu");
	}
	if (strcmp(a->comm, b->comm))
		fail("comm is '%s', was '%s'", b->comm, a->comm);
	SAME(personality, "%#x");
	SAME(slack, "%ld");
	SAME(pdeath, "%d");
	SAME(dumpable, "%d");
	SAME(nnp, "%d");
	SAME(seccomp, "%d");
	SAME(robust, "%p");
	SAME(robust_len, "%zu");
	SAME(tid_addr, "%p");
}

static int install_filter(void)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | SECCOMP_ERRNO),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(code) / sizeof(code[0]), code };
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "identity");
	if (geteuid() != 0) {
		fail("must start as root");
		return wl_done();
	}
	prctl(PR_SET_NAME, "id-worker", 0, 0, 0);
	personality(ADDR_NO_RANDOMIZE);
	prctl(PR_SET_TIMERSLACK, 123457, 0, 0, 0);
	struct rlimit lim[] = { { 512, 1024 }, { 0, 0 }, { 4 << 20, 64 << 20 }, { 10000, 20000 }, { 5000, 6000 } };
	int res[] = { RLIMIT_NOFILE, RLIMIT_CORE, RLIMIT_STACK, RLIMIT_CPU, RLIMIT_NPROC };
	for (int i = 0; i < 5; i++)
		if (setrlimit(res[i], &lim[i]))
			fail("setrlimit %d: %s", res[i], strerror(errno));
	if (install_filter())
		fail("seccomp: %s", strerror(errno));
	prctl(PR_CAPBSET_DROP, CAP_SYS_MODULE, 0, 0, 0);
	prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT, 0, 0, 0);
	gid_t groups[] = { 1001, 1002, 5 };
	setgroups(3, groups);
	prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
	if (setresgid(1000, 1001, 1002) || setresuid(2000, 2001, 0))
		fail("cannot change ids: %s", strerror(errno));
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct caps[2] = { { 0 } };
	unsigned prm = (1u << CAP_DAC_OVERRIDE) | (1u << CAP_SETUID) | (1u << CAP_SETGID) | (1u << CAP_NET_BIND_SERVICE) |
		       (1u << CAP_SETPCAP) | (1u << CAP_KILL);
	caps[0].permitted = prm;
	caps[0].effective = (1u << CAP_DAC_OVERRIDE) | (1u << CAP_SETPCAP) | (1u << CAP_KILL) | (1u << CAP_SETUID);
	caps[0].inheritable = (1u << CAP_NET_BIND_SERVICE) | (1u << CAP_KILL);
	caps[1].permitted = 1u << (CAP_CHECKPOINT_RESTORE - 32);
	if (syscall(SYS_capset, &hdr, caps))
		fail("capset: %s", strerror(errno));
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0))
		fail("ambient: %s", strerror(errno));
	if (prctl(PR_SET_SECUREBITS, SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP, 0, 0, 0))
		fail("securebits: %s", strerror(errno));
	if (setfsuid(3000), setfsuid((uid_t)-1) != 3000)
		fail("setfsuid");
	prctl(PR_SET_PDEATHSIG, SIGWINCH, 0, 0, 0);
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);

	struct snapshot before, after;
	take(&before);
	printf("identity: running as %u/%u/%u\n", before.uid[0], before.uid[1], before.uid[2]);
	wl_ready();
	wl_wait();
	if (wl_sabotage())
		prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0);
	take(&after);
	compare(&before, &after);

	errno = 0;
	if (syscall(SYS_getppid) != -1 || errno != SECCOMP_ERRNO)
		fail("getppid() is no longer refused by the seccomp filter (errno %d)", errno);
	/* rseq: registering the same area again must say it is already registered. */
	void *rs = (char *)__builtin_thread_pointer() + __rseq_offset;
	if (__rseq_size) {
		errno = 0;
		if (syscall(SYS_rseq, rs, __rseq_size < 32 ? 32 : __rseq_size, 0, RSEQ_SIG) != -1 || errno != EBUSY)
			fail("rseq is not registered at %p (errno %d)", rs, errno);
		int cpu = *(volatile int *)((char *)rs + 4);
		if (cpu != sched_getcpu())
			fail("the rseq cpu_id is %d, the task runs on %d", cpu, sched_getcpu());
	}
	return wl_done();
}
