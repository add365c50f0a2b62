/*
 * Scheduling of each thread: the main thread SCHED_BATCH at nice 5, one
 * thread SCHED_RR priority 3 with SCHED_RESET_ON_FORK, one SCHED_FIFO
 * priority 9 (nice 4, which the kernel keeps under a real-time policy), one
 * SCHED_IDLE, one SCHED_OTHER at nice -3. After the checkpoint, for every
 * thread: sched_getscheduler (with the reset-on-fork flag), sched_getparam
 * and getpriority of its TID.
 *
 * Sabotage: 1 = the SCHED_RR thread set back to SCHED_OTHER, 2 = the main
 * thread's nice value changed to 6.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define N 5
static const struct {
	const char *name;
	int policy, prio, nice;
} want[N] = {
	{ "main", SCHED_BATCH, 0, 5 },
	{ "rr", SCHED_RR | SCHED_RESET_ON_FORK, 3, 0 },
	{ "fifo", SCHED_FIFO, 9, 4 },
	{ "idle", SCHED_IDLE, 0, 0 },
	{ "other", SCHED_OTHER, 0, -3 },
};
static pid_t tid[N];
static pthread_barrier_t set_up;

static void apply(int i)
{
	tid[i] = (pid_t)syscall(SYS_gettid);
	if (setpriority(PRIO_PROCESS, (id_t)tid[i], want[i].nice))
		fail("%s: setpriority(%d): %d", want[i].name, want[i].nice, errno);
	struct sched_param p = { .sched_priority = want[i].prio };
	if (sched_setscheduler(0, want[i].policy, &p))
		fail("%s: sched_setscheduler(%#x, %d): %d", want[i].name, want[i].policy, want[i].prio, errno);
}

static void *thread(void *arg)
{
	apply((int)(long)arg);
	pthread_barrier_wait(&set_up);
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "sched-policy");
	/* Only the main thread takes SIGTERM. */
	sigset_t term;
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &term, NULL);
	pthread_barrier_init(&set_up, NULL, N);
	for (long i = 1; i < N; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, thread, (void *)i))
			fail("pthread_create failed");
	}
	apply(0);
	pthread_barrier_wait(&set_up);
	pthread_sigmask(SIG_UNBLOCK, &term, NULL);

	wl_ready();
	wl_wait();

	switch (wl_sabotage()) {
	case 1: {
		struct sched_param p = { 0 };
		sched_setscheduler(tid[1], SCHED_OTHER, &p);
		break;
	}
	case 2:
		setpriority(PRIO_PROCESS, (id_t)tid[0], 6);
		break;
	}
	for (int i = 0; i < N; i++) {
		int policy = sched_getscheduler(tid[i]);
		struct sched_param p = { 0 };
		sched_getparam(tid[i], &p);
		errno = 0;
		int nice = getpriority(PRIO_PROCESS, (id_t)tid[i]);
		if (policy != want[i].policy)
			fail("thread %s (%d): policy %#x, expected %#x", want[i].name, tid[i], policy, want[i].policy);
		if (p.sched_priority != want[i].prio)
			fail("thread %s (%d): priority %d, expected %d", want[i].name, tid[i], p.sched_priority, want[i].prio);
		if (nice != want[i].nice)
			fail("thread %s (%d): nice %d, expected %d", want[i].name, tid[i], nice, want[i].nice);
	}
	return wl_done();
}
