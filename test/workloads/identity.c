/*
 * Identity and limits. Starts as root, then sets: comm (PR_SET_NAME),
 * personality ADDR_NO_RANDOMIZE, timer slack 123457 ns, loginuid 4242, rlimits lowered
 * (NOFILE, CORE, STACK, CPU, NPROC, MEMLOCK, MSGQUEUE), a seccomp filter
 * (everything allowed but getppid, which fails with errno 77), two
 * capabilities dropped from the bounding set, supplementary groups, then
 * with keep-caps: real/effective/saved uids 2000/2001/0 and gids
 * 1000/1001/1002, fsuid 3000, reduced capability sets (permitted,
 * effective, inheritable, one ambient), securebits KEEP_CAPS|NO_SETUID_FIXUP,
 * and last (credential changes reset them) pdeath signal SIGWINCH, dumpable
 * 1, no_new_privs.
 *
 * After SIGTERM all of it is read back and compared: getresuid/getresgid
 * and fsuid/fsgid, getgroups, capget (all three sets, both words),
 * PR_CAPBSET_READ and PR_CAP_AMBIENT_IS_SET for every capability,
 * PR_GET_SECUREBITS, PR_GET_KEEPCAPS, getrlimit of every resource,
 * NoNewPrivs/Seccomp/Seccomp_filters of /proc/self/status, PR_GET_SECCOMP,
 * PR_GET_NO_NEW_PRIVS, PR_GET_NAME, PR_GET_PDEATHSIG, PR_GET_DUMPABLE,
 * PR_GET_TIMERSLACK, /proc/self/loginuid, personality; the filter must still refuse getppid with
 * errno 77. And what glibc registered for the thread: the robust futex list
 * (get_robust_list) and clear-tid address (PR_GET_TID_ADDRESS) unchanged,
 * and rseq still registered at the same address, length and signature
 * (registering it again says EBUSY) and live: moved to each allowed CPU in
 * turn, the rseq cpu_id field follows (it is compared with the getcpu
 * system call, not with glibc's sched_getcpu, which reads rseq itself).
 * CAP_DAC_OVERRIDE stays effective so the status file can be written.
 *
 * Sabotage: 1 = timer slack changed, 2 = saved uid changed, 3 = an ambient
 * capability lowered, 4 = RLIMIT_CORE soft limit changed, 5 = rseq
 * unregistered (a restore that did not register it again).
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
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
#define RSEQ_FLAG_UNREGISTER 1
#define SECCOMP_ERRNO 77
#define MAXCAP 64

extern const ptrdiff_t __rseq_offset;
extern const unsigned int __rseq_size;

static const char *const rlimit_name[RLIM_NLIMITS] = {
	"CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE",
	"MEMLOCK", "AS", "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME",
};

struct snapshot {
	uid_t uid[4]; /* real effective saved fs */
	gid_t gid[4];
	gid_t groups[64];
	int ngroups;
	struct __user_cap_data_struct caps[2];
	int bnd[MAXCAP], amb[MAXCAP];
	int secbits, keepcaps;
	struct rlimit rl[RLIM_NLIMITS];
	char comm[32];
	int personality;
	long slack;
	char loginuid[16];
	int pdeath, dumpable, nnp, seccomp_mode;
	char st_nnp[32], st_seccomp[32], st_filters[32];
	void *robust;
	size_t robust_len;
	void *tid_addr;
	int rseq_errno;
};

static int last_cap;
static unsigned rseq_len; /* the length glibc registered with (the kernel wants it again to say EBUSY) */

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
	for (int c = 0; c <= last_cap && c < MAXCAP; c++) {
		s->bnd[c] = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
		s->amb[c] = prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, c, 0, 0);
	}
	s->secbits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
	s->keepcaps = prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0);
	for (int r = 0; r < RLIM_NLIMITS; r++)
		getrlimit(r, &s->rl[r]);
	prctl(PR_GET_NAME, s->comm, 0, 0, 0);
	s->personality = personality(0xffffffff);
	s->slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
	wl_read_into("/proc/self/loginuid", s->loginuid, sizeof(s->loginuid));
	prctl(PR_GET_PDEATHSIG, &s->pdeath, 0, 0, 0);
	s->dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
	s->nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
	s->seccomp_mode = prctl(PR_GET_SECCOMP, 0, 0, 0, 0);
	wl_status_field("NoNewPrivs", s->st_nnp, sizeof(s->st_nnp));
	wl_status_field("Seccomp", s->st_seccomp, sizeof(s->st_seccomp));
	wl_status_field("Seccomp_filters", s->st_filters, sizeof(s->st_filters));
	syscall(SYS_get_robust_list, 0, &s->robust, &s->robust_len);
	prctl(PR_GET_TID_ADDRESS, &s->tid_addr, 0, 0, 0);
	if (rseq_len) {
		errno = 0;
		syscall(SYS_rseq, (char *)__builtin_thread_pointer() + __rseq_offset, rseq_len, 0, RSEQ_SIG);
		s->rseq_errno = errno;
	}
}

#define SAME(field, what, fmt)                                                                    \
	do {                                                                                       \
		if (a->field != b->field)                                                          \
			fail("%s is " fmt ", expected " fmt, what, b->field, a->field);            \
	} while (0)

static void compare(const struct snapshot *a, const struct snapshot *b)
{
	static const char *const idn[4] = { "real", "effective", "saved", "fs" };
	char what[96];
	for (int i = 0; i < 4; i++) {
		snprintf(what, sizeof(what), "%s uid", idn[i]);
		SAME(uid[i], what, "%u");
		snprintf(what, sizeof(what), "%s gid", idn[i]);
		SAME(gid[i], what, "%u");
	}
	int same_groups = a->ngroups == b->ngroups;
	for (int i = 0; same_groups && i < a->ngroups && i < 64; i++)
		same_groups = a->groups[i] == b->groups[i];
	if (!same_groups) {
		char x[256] = "", y[256] = "";
		for (int i = 0, o = 0; i < b->ngroups && i < 64; i++)
			o += snprintf(x + o, sizeof(x) - (size_t)o, "%s%u", i ? "," : "", b->groups[i]);
		for (int i = 0, o = 0; i < a->ngroups && i < 64; i++)
			o += snprintf(y + o, sizeof(y) - (size_t)o, "%s%u", i ? "," : "", a->groups[i]);
		fail("supplementary groups are {%s}, expected {%s}", x, y);
	}
	for (int i = 0; i < 2; i++) {
		snprintf(what, sizeof(what), "effective capabilities %d-%d", 32 * i, 32 * i + 31);
		SAME(caps[i].effective, what, "%#x");
		snprintf(what, sizeof(what), "permitted capabilities %d-%d", 32 * i, 32 * i + 31);
		SAME(caps[i].permitted, what, "%#x");
		snprintf(what, sizeof(what), "inheritable capabilities %d-%d", 32 * i, 32 * i + 31);
		SAME(caps[i].inheritable, what, "%#x");
	}
	for (int c = 0; c <= last_cap && c < MAXCAP; c++) {
		snprintf(what, sizeof(what), "capability %d in the bounding set", c);
		SAME(bnd[c], what, "%d");
		snprintf(what, sizeof(what), "capability %d in the ambient set", c);
		SAME(amb[c], what, "%d");
	}
	SAME(secbits, "securebits", "%#x");
	SAME(keepcaps, "PR_GET_KEEPCAPS", "%d");
	for (int r = 0; r < RLIM_NLIMITS; r++) {
		snprintf(what, sizeof(what), "RLIMIT_%s soft", rlimit_name[r]);
		SAME(rl[r].rlim_cur, what, "%lu");
		snprintf(what, sizeof(what), "RLIMIT_%s hard", rlimit_name[r]);
		SAME(rl[r].rlim_max, what, "%lu");
	}
	if (strcmp(a->comm, b->comm))
		fail("comm is '%s', expected '%s'", b->comm, a->comm);
	SAME(personality, "personality", "%#x");
	SAME(slack, "timer slack", "%ld");
	if (strcmp(a->loginuid, b->loginuid))
		fail("loginuid is %s, expected %s", b->loginuid, a->loginuid);
	SAME(pdeath, "pdeath signal", "%d");
	SAME(dumpable, "dumpable", "%d");
	SAME(nnp, "PR_GET_NO_NEW_PRIVS", "%d");
	SAME(seccomp_mode, "PR_GET_SECCOMP", "%d");
	if (strcmp(a->st_nnp, b->st_nnp))
		fail("NoNewPrivs in /proc/self/status is %s, expected %s", b->st_nnp, a->st_nnp);
	if (strcmp(a->st_seccomp, b->st_seccomp))
		fail("Seccomp in /proc/self/status is %s, expected %s", b->st_seccomp, a->st_seccomp);
	if (strcmp(a->st_filters, b->st_filters))
		fail("Seccomp_filters in /proc/self/status is %s, expected %s", b->st_filters, a->st_filters);
	SAME(robust, "the robust futex list head", "%p");
	SAME(robust_len, "the robust futex list length", "%zu");
	SAME(tid_addr, "the clear-tid address", "%p");
	if (rseq_len && a->rseq_errno != b->rseq_errno)
		fail("registering rseq at %p (length %u) again says errno %d, expected %d (EBUSY: it is registered)",
		     (void *)((char *)__builtin_thread_pointer() + __rseq_offset), rseq_len, b->rseq_errno, a->rseq_errno);
}

static int install_filter(void)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | SECCOMP_ERRNO),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(code) / sizeof(code[0]), code };
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

/* Moves to each allowed CPU and checks that the kernel writes it into rseq's cpu_id. */
static void check_rseq_live(void)
{
	volatile int32_t *cpu_id = (int32_t *)((char *)__builtin_thread_pointer() + __rseq_offset + 4);
	cpu_set_t allowed;
	if (sched_getaffinity(0, sizeof(allowed), &allowed))
		return;
	int moved = 0;
	for (int c = 0; c < CPU_SETSIZE && moved < 4; c++) {
		if (!CPU_ISSET(c, &allowed))
			continue;
		cpu_set_t one;
		CPU_ZERO(&one);
		CPU_SET(c, &one);
		if (sched_setaffinity(0, sizeof(one), &one))
			continue;
		unsigned cpu = ~0u;
		syscall(SYS_getcpu, &cpu, NULL, NULL);
		int32_t seen = *cpu_id;
		if (seen != (int32_t)cpu)
			fail("rseq cpu_id is %d on CPU %u: the kernel no longer updates the rseq area", seen, cpu);
		moved++;
	}
	sched_setaffinity(0, sizeof(allowed), &allowed);
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "identity");
	if (geteuid() != 0) {
		fail("must start as root (it is uid %u)", geteuid());
		return wl_done();
	}
	char *lc = wl_read_file("/proc/sys/kernel/cap_last_cap", NULL);
	last_cap = lc ? atoi(lc) : 40;
	free(lc);
	if (__rseq_size)
		for (unsigned len = 20; len <= 256 && !rseq_len; len += 4) {
			errno = 0;
			if (syscall(SYS_rseq, (char *)__builtin_thread_pointer() + __rseq_offset, len, 0, RSEQ_SIG) < 0 &&
			    errno == EBUSY)
				rseq_len = len;
		}

	prctl(PR_SET_NAME, "id-worker", 0, 0, 0);
	personality(ADDR_NO_RANDOMIZE);
	prctl(PR_SET_TIMERSLACK, 123457, 0, 0, 0);
	/* The audit loginuid: only the task itself may set it (as root). */
	int lfd = open("/proc/self/loginuid", O_WRONLY);
	if (lfd < 0 || write(lfd, "4242", 4) != 4)
		fail("cannot set the loginuid: %s", strerror(errno));
	if (lfd >= 0)
		close(lfd);
	const struct {
		int res;
		struct rlimit lim;
	} lims[] = {
		{ RLIMIT_NOFILE, { 512, 1024 } },
		{ RLIMIT_CORE, { 0, 4096 } },
		{ RLIMIT_STACK, { 4 << 20, 64 << 20 } },
		{ RLIMIT_CPU, { 10000, 20000 } },
		{ RLIMIT_NPROC, { 5000, 6000 } },
		{ RLIMIT_MEMLOCK, { 65536, 131072 } },
		{ RLIMIT_MSGQUEUE, { 8192, 16384 } },
	};
	for (size_t i = 0; i < sizeof(lims) / sizeof(lims[0]); i++)
		if (setrlimit(lims[i].res, &lims[i].lim))
			fail("setrlimit RLIMIT_%s: %s", rlimit_name[lims[i].res], strerror(errno));
	if (install_filter())
		fail("seccomp: %s", strerror(errno));
	prctl(PR_CAPBSET_DROP, CAP_SYS_MODULE, 0, 0, 0);
	prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT, 0, 0, 0);
	gid_t groups[] = { 1001, 1002, 5 };
	if (setgroups(3, groups))
		fail("setgroups: %s", strerror(errno));
	prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
	if (setresgid(1000, 1001, 1002) || setresuid(2000, 2001, 0))
		fail("cannot change ids: %s", strerror(errno));
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct caps[2] = { { 0 } };
	caps[0].permitted = (1u << CAP_DAC_OVERRIDE) | (1u << CAP_SETUID) | (1u << CAP_SETGID) |
			    (1u << CAP_NET_BIND_SERVICE) | (1u << CAP_SETPCAP) | (1u << CAP_KILL);
	caps[0].effective = (1u << CAP_DAC_OVERRIDE) | (1u << CAP_SETPCAP) | (1u << CAP_KILL) | (1u << CAP_SETUID);
	caps[0].inheritable = (1u << CAP_NET_BIND_SERVICE) | (1u << CAP_KILL);
	caps[1].permitted = 1u << (CAP_CHECKPOINT_RESTORE - 32);
	if (syscall(SYS_capset, &hdr, caps))
		fail("capset: %s", strerror(errno));
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) ||
	    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_KILL, 0, 0))
		fail("ambient: %s", strerror(errno));
	if (prctl(PR_SET_SECUREBITS, SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP, 0, 0, 0))
		fail("securebits: %s", strerror(errno));
	setfsuid(3000);
	if (setfsuid((uid_t)-1) != 3000)
		fail("setfsuid 3000 did not take");
	prctl(PR_SET_PDEATHSIG, SIGWINCH, 0, 0, 0);
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);

	static struct snapshot before, after;
	take(&before);
	printf("identity: uids %u/%u/%u fs %u, gids %u/%u/%u, rseq %s\n", before.uid[0], before.uid[1], before.uid[2],
	       before.uid[3], before.gid[0], before.gid[1], before.gid[2],
	       rseq_len ? "registered by glibc" : "not registered (not checked)");
	wl_ready();
	wl_wait();
	switch (wl_sabotage()) {
	case 1:
		prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0);
		break;
	case 2:
		setresuid((uid_t)-1, (uid_t)-1, 2000);
		break;
	case 3:
		prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, CAP_KILL, 0, 0);
		break;
	case 4: {
		struct rlimit core = { 1024, 4096 };
		setrlimit(RLIMIT_CORE, &core);
		break;
	}
	case 5:
		syscall(SYS_rseq, (char *)__builtin_thread_pointer() + __rseq_offset, rseq_len, RSEQ_FLAG_UNREGISTER,
			RSEQ_SIG);
		break;
	}
	take(&after);
	compare(&before, &after);

	errno = 0;
	long r = syscall(SYS_getppid);
	if (r != -1 || errno != SECCOMP_ERRNO)
		fail("getppid() returned %ld errno %d: the seccomp filter no longer refuses it with errno %d", r, errno,
		     SECCOMP_ERRNO);
	if (rseq_len && after.rseq_errno == EBUSY)
		check_rseq_live();
	return wl_done();
}
