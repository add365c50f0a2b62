/*
 * Timers: the three interval timers with long values (they must not fire
 * during the test, and come back with the remaining time, not reset), POSIX
 * timers of several clocks and notification kinds with a gap in their ids,
 * and a fast periodic timer whose signal count keeps growing after restore.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile long ticks;
static void on_tick(int sig) { (void)sig; ticks++; }

static double now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double tv(struct timeval t) { return (double)t.tv_sec + (double)t.tv_usec / 1e6; }
static double ts(struct timespec t) { return (double)t.tv_sec + (double)t.tv_nsec / 1e9; }

int main(int argc, char **argv)
{
	wl_init(argc, argv, "timers");
	signal(SIGALRM, on_tick);
	signal(SIGVTALRM, on_tick);
	signal(SIGPROF, on_tick);
	struct itimerval it[3] = {
		{ { 500, 0 }, { 1000, 250000 } },
		{ { 400, 5 }, { 900, 0 } },
		{ { 300, 0 }, { 800, 123456 } },
	};
	int which[3] = { ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF };
	for (int i = 0; i < 3; i++)
		setitimer(which[i], &it[i], NULL);

	struct { clockid_t clock; int notify; int sig; int value; timer_t id; double value_s; } pt[] = {
		{ CLOCK_REALTIME, SIGEV_SIGNAL, SIGRTMIN + 1, 11, 0, 700 },
		{ CLOCK_MONOTONIC, SIGEV_NONE, 0, 22, 0, 600 },
		{ CLOCK_BOOTTIME, SIGEV_SIGNAL, SIGRTMIN + 2, 33, 0, 0 }, /* deleted below: a gap */
		{ CLOCK_PROCESS_CPUTIME_ID, SIGEV_SIGNAL, SIGRTMIN + 3, 44, 0, 500 },
		{ CLOCK_MONOTONIC, SIGEV_THREAD_ID, SIGRTMIN + 4, 55, 0, 400 },
	};
	int npt = (int)(sizeof(pt) / sizeof(pt[0]));
	for (int i = 0; i < npt; i++) {
		struct sigevent se;
		memset(&se, 0, sizeof(se));
		se.sigev_notify = pt[i].notify;
		se.sigev_signo = pt[i].sig;
		se.sigev_value.sival_int = pt[i].value;
		if (pt[i].notify == SIGEV_THREAD_ID)
			se._sigev_un._tid = gettid();
		if (timer_create(pt[i].clock, &se, &pt[i].id))
			fail("timer_create %d: %s", i, strerror(errno));
		struct itimerspec spec = { { (time_t)pt[i].value_s / 2, 7 }, { (time_t)pt[i].value_s, 0 } };
		timer_settime(pt[i].id, 0, &spec, NULL);
	}
	timer_t gap = pt[2].id;
	timer_delete(gap);
	/* a fast periodic timer */
	struct sigevent se;
	memset(&se, 0, sizeof(se));
	se.sigev_notify = SIGEV_SIGNAL;
	se.sigev_signo = SIGUSR1;
	signal(SIGUSR1, on_tick);
	timer_t fast;
	timer_create(CLOCK_MONOTONIC, &se, &fast);
	struct itimerspec fs = { { 0, 10 * 1000 * 1000 }, { 0, 10 * 1000 * 1000 } };
	timer_settime(fast, 0, &fs, NULL);

	struct itimerval it_before[3];
	for (int i = 0; i < 3; i++)
		getitimer(which[i], &it_before[i]);
	struct itimerspec pt_before[8];
	for (int i = 0; i < npt; i++)
		if (i != 2)
			timer_gettime(pt[i].id, &pt_before[i]);
	double t0 = now_mono();
	printf("timers: set up\n");
	wl_ready();
	wl_wait();
	long ticks_at_term = ticks;
	double elapsed = now_mono() - t0;
	if (wl_sabotage()) {
		struct itimerval reset = it[0];
		setitimer(ITIMER_REAL, &reset, NULL);
		getitimer(ITIMER_REAL, &it_before[0]);
		it_before[0].it_value.tv_sec -= 50;
	}

	for (int i = 0; i < 3; i++) {
		struct itimerval cur;
		getitimer(which[i], &cur);
		if (cur.it_interval.tv_sec != it[i].it_interval.tv_sec || cur.it_interval.tv_usec != it[i].it_interval.tv_usec)
			fail("itimer %d interval is %.6f, expected %.6f", which[i], tv(cur.it_interval), tv(it[i].it_interval));
		double before = tv(it_before[i].it_value), after = tv(cur.it_value);
		/* Real time runs on; CPU timers advance only while we run and are kept in
		 * scheduler ticks, so setting one can round its value up by a tick. */
		double slack = which[i] == ITIMER_REAL ? 0.001 : 0.02;
		if (after > before + slack || (which[i] == ITIMER_REAL && after < before - elapsed - 1))
			fail("itimer %d has %.6f s left, had %.6f s %.3f s ago", which[i], after, before, elapsed);
	}
	for (int i = 0; i < npt; i++) {
		struct itimerspec cur;
		int r = timer_gettime(pt[i].id, &cur);
		if (i == 2) {
			if (r == 0 || errno != EINVAL)
				fail("deleted POSIX timer %p exists again", (void *)pt[i].id);
			continue;
		}
		if (r) {
			fail("POSIX timer %p (%d) is gone: %s", (void *)pt[i].id, i, strerror(errno));
			continue;
		}
		if (cur.it_interval.tv_sec != pt_before[i].it_interval.tv_sec || cur.it_interval.tv_nsec != pt_before[i].it_interval.tv_nsec)
			fail("POSIX timer %d interval is %.9f, expected %.9f", i, ts(cur.it_interval), ts(pt_before[i].it_interval));
		double before = ts(pt_before[i].it_value), after = ts(cur.it_value);
		int cpu = pt[i].clock == CLOCK_PROCESS_CPUTIME_ID;
		if (after > before + (cpu ? 0.02 : 0.001) || (!cpu && after < before - elapsed - 1))
			fail("POSIX timer %d has %.6f s left, had %.6f s %.3f s ago", i, after, before, elapsed);
	}
	/* The periodic timer still fires. */
	struct timespec wait = { 0, 200 * 1000 * 1000 };
	while (nanosleep(&wait, &wait) && errno == EINTR)
		;
	if (ticks < ticks_at_term + 5)
		fail("the 10 ms timer fired %ld times in 200 ms after the checkpoint", ticks - ticks_at_term);
	return wl_done();
}
