/*
 * Seccomp filters shared by threads (like zdtm seccomp_filter_tsync): a
 * filter installed with SECCOMP_FILTER_FLAG_TSYNC while a second thread
 * runs, so both threads share one chain. After: both threads still have one
 * filter each (Seccomp_filters in /proc/self/task/TID/status) that makes
 * getppid fail with errno 91 in each; a second filter installed with TSYNC
 * succeeds (the kernel refuses TSYNC when another thread's chain is not an
 * ancestor of the caller's) and reaches the other thread too (getpgrp fails
 * with errno 92 there).
 *
 * Sabotage: 1 the second thread installs a filter of its own before the check.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A filter failing one syscall with an errno, allowing the rest. */
static int install(int nr, int err, unsigned flags)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | err),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

static volatile int phase;
static pid_t other_tid;
static int other_ppid_errno, other_pgrp_errno;

static void *other(void *arg)
{
	(void)arg;
	other_tid = gettid();
	while (phase < 1)
		usleep(1000);
	if (wl_sabotage() == 1)
		install(SYS_getuid, 93, 0);
	phase = 2;
	while (phase < 3)
		usleep(1000);
	errno = 0;
	if (syscall(SYS_getppid) < 0)
		other_ppid_errno = errno;
	errno = 0;
	if (syscall(SYS_getpgrp) < 0)
		other_pgrp_errno = errno;
	phase = 4;
	return NULL;
}

static int filters_of(pid_t tid)
{
	char path[64], buf[64];
	snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
	FILE *f = fopen(path, "r");
	int n = -1;
	char line[256];
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Seccomp_filters: %d", &n) == 1)
			break;
	if (f)
		fclose(f);
	(void)buf;
	return n;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "seccomp-tsync");
	pthread_t t;
	pthread_create(&t, NULL, other, NULL);
	while (!other_tid)
		usleep(1000);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (install(SYS_getppid, 91, SECCOMP_FILTER_FLAG_TSYNC))
		fail("the first TSYNC filter: %s", strerror(errno));
	wl_ready();
	wl_wait();
	phase = 1;
	while (phase < 2)
		usleep(1000);
	int before_main = filters_of(gettid()), before_other = filters_of(other_tid);
	if (before_main != 1 || before_other != 1)
		fail("filters before the second: main %d, other %d, expected 1 each", before_main, before_other);
	errno = 0;
	if (syscall(SYS_getppid) >= 0 || errno != 91)
		fail("getppid in main: errno %d, expected 91", errno);
	long r = install(SYS_getpgrp, 92, SECCOMP_FILTER_FLAG_TSYNC);
	if (r != 0)
		fail("a second TSYNC filter: %ld (%s), expected 0 (a thread whose chain differs is named by its TID)", r, r < 0 ? strerror(errno) : "a TID");
	phase = 3;
	while (phase < 4)
		usleep(1000);
	if (other_ppid_errno != 91)
		fail("getppid in the other thread: errno %d, expected 91", other_ppid_errno);
	if (r == 0 && other_pgrp_errno != 92)
		fail("getpgrp in the other thread: errno %d, expected 92 (the second filter synced)", other_pgrp_errno);
	pthread_join(t, NULL);
	return wl_done();
}
