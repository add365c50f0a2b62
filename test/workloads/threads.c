/*
 * Threads: N threads (argv[2], default 8) racing on a shared counter, each
 * also counting on its own, each with its own name, signal mask and
 * sigaltstack. After the checkpoint: the same TIDs, names, masks and stacks;
 * every thread still running; and the shared counter equal to the sum of the
 * private ones (nothing lost or doubled across the checkpoint).
 */
#define _GNU_SOURCE
#include "lib.h"
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAXT 512

extern const ptrdiff_t __rseq_offset;
extern const unsigned int __rseq_size;

struct worker {
	pthread_t th;
	pid_t tid;
	void *robust, *tid_addr;
	size_t robust_len;
	int index;
	char name[16];
	sigset_t mask;
	char altstack[16384];
	_Atomic unsigned long count;
	/* what the thread found when asked to check itself */
	char problem[256];
};

static struct worker w[MAXT];
static int n;
static _Atomic unsigned long shared;
static _Atomic int stop;

static void *run(void *arg)
{
	struct worker *me = arg;
	me->tid = gettid();
	snprintf(me->name, sizeof(me->name), "worker-%d", me->index);
	prctl(PR_SET_NAME, me->name, 0, 0, 0);
	sigemptyset(&me->mask);
	sigaddset(&me->mask, SIGRTMIN + (me->index % 8));
	sigaddset(&me->mask, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &me->mask, NULL);
	pthread_sigmask(SIG_BLOCK, NULL, &me->mask);
	stack_t ss = { .ss_sp = me->altstack, .ss_size = sizeof(me->altstack), .ss_flags = 0 };
	sigaltstack(&ss, NULL);
	/* A signal pending for this thread alone (blocked), and what glibc registered for it. */
	syscall(SYS_tgkill, getpid(), gettid(), SIGUSR1);
	syscall(SYS_get_robust_list, 0, &me->robust, &me->robust_len);
	prctl(PR_GET_TID_ADDRESS, &me->tid_addr, 0, 0, 0);
	while (!stop) {
		atomic_fetch_add(&shared, 1);
		atomic_fetch_add(&me->count, 1);
		/* Race, but leave the CPUs to others most of the time (100 threads on 2 cores). */
		if ((me->count & 63) == 0) {
			struct timespec ts = { 0, 1000000 };
			nanosleep(&ts, NULL);
		}
	}
	/* Check what only the thread itself can see. */
	char name[16] = "";
	prctl(PR_GET_NAME, name, 0, 0, 0);
	sigset_t now;
	pthread_sigmask(SIG_BLOCK, NULL, &now);
	stack_t cur;
	sigaltstack(NULL, &cur);
	sigset_t pending;
	sigpending(&pending);
	void *robust = NULL, *tid_addr = NULL;
	size_t robust_len = 0;
	syscall(SYS_get_robust_list, 0, &robust, &robust_len);
	prctl(PR_GET_TID_ADDRESS, &tid_addr, 0, 0, 0);
	errno = 0;
	long rseq = __rseq_size ? syscall(SYS_rseq, (char *)__builtin_thread_pointer() + __rseq_offset, __rseq_size < 32 ? 32 : __rseq_size, 0, 0x53053053) : -1;
	if (gettid() != me->tid)
		snprintf(me->problem, sizeof(me->problem), "thread %d now has tid %d", me->tid, gettid());
	else if (strcmp(name, me->name))
		snprintf(me->problem, sizeof(me->problem), "thread %d is named '%s', was '%s'", me->tid, name, me->name);
	else if (memcmp(&now, &me->mask, 8))
		snprintf(me->problem, sizeof(me->problem), "thread %d has another signal mask", me->tid);
	else if (cur.ss_sp != me->altstack || cur.ss_size != sizeof(me->altstack))
		snprintf(me->problem, sizeof(me->problem), "thread %d has another sigaltstack", me->tid);
	else if (!sigismember(&pending, SIGUSR1))
		snprintf(me->problem, sizeof(me->problem), "thread %d lost its pending SIGUSR1", me->tid);
	else if (robust != me->robust || robust_len != me->robust_len || tid_addr != me->tid_addr)
		snprintf(me->problem, sizeof(me->problem), "thread %d: robust list %p/%zu, clear-tid %p; were %p/%zu, %p", me->tid, robust,
			 robust_len, tid_addr, me->robust, me->robust_len, me->tid_addr);
	else if (__rseq_size && (rseq != -1 || errno != EBUSY))
		snprintf(me->problem, sizeof(me->problem), "thread %d: its rseq area is not registered (errno %d)", me->tid, errno);
	return NULL;
}

static int count_tasks(void)
{
	int k = 0;
	DIR *d = opendir("/proc/self/task");
	for (struct dirent *e; d && (e = readdir(d));)
		k += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return k;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "threads");
	n = argc > 2 ? atoi(argv[2]) : 8;
	if (n > MAXT)
		n = MAXT;
	for (int i = 0; i < n; i++) {
		w[i].index = i;
		pthread_attr_t a;
		pthread_attr_init(&a);
		pthread_attr_setstacksize(&a, 64 * 1024);
		if (pthread_create(&w[i].th, &a, run, &w[i]))
			fail("cannot start thread %d", i);
	}
	while (shared < (unsigned long)n * 256)
		usleep(1000);
	int tasks_before = count_tasks();
	printf("threads: %d threads racing\n", n);
	wl_ready();
	wl_wait();
	/* Still running: every counter moves. */
	unsigned long before[MAXT];
	for (int i = 0; i < n; i++)
		before[i] = w[i].count;
	usleep(200 * 1000);
	for (int i = 0; i < n; i++)
		if (w[i].count == before[i])
			fail("thread %d (tid %d) is not running", i, w[i].tid);
	if (count_tasks() != tasks_before)
		fail("the process has %d threads, had %d", count_tasks(), tasks_before);
	stop = 1;
	for (int i = 0; i < n; i++)
		pthread_join(w[i].th, NULL);
	unsigned long sum = 0;
	for (int i = 0; i < n; i++) {
		sum += w[i].count;
		if (w[i].problem[0])
			fail("%s", w[i].problem);
	}
	if (wl_sabotage())
		shared++;
	if (sum != shared)
		fail("the shared counter is %lu, the threads counted %lu", (unsigned long)shared, sum);
	printf("threads: %lu increments\n", sum);
	return wl_done();
}
