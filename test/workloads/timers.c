/*
 * Timers: the three interval timers (ITIMER_REAL/VIRTUAL/PROF) with long
 * values and intervals, so they never fire during the test; POSIX timers of
 * four clocks (REALTIME, MONOTONIC, BOOTTIME, PROCESS_CPUTIME_ID) with
 * SIGEV_SIGNAL (different signals and values), SIGEV_NONE and
 * SIGEV_THREAD_ID, one created and never armed, and one deleted in the middle
 * so the ids have a gap; and a 10 ms periodic timer whose handler counts.
 *
 * After SIGTERM:
 *   - intervals exactly as set (ITIMER: to the microsecond, POSIX: to the
 *     nanosecond);
 *   - remaining values not more than before (plus a scheduler tick for the
 *     CPU clocks, which round) and not less than before minus the wall time
 *     that passed (minus 1 s): a restore may or may not count the time the
 *     process was dumped, but must not reset a timer nor lose it;
 *   - none of the long timers fired;
 *   - every POSIX timer id still works with timer_gettime, the deleted one
 *     fails with EINVAL, and /proc/self/timers (id, signal, value, notify
 *     kind and thread, clock) reads the same;
 *   - each signalling POSIX timer, re-armed for 1 ms, delivers its signal
 *     with its si_value and timer id (SI_TIMER) to the right thread;
 *   - the periodic timer still fires: at least 5 more ticks in 200 ms.
 *
 * Sabotage: 1 = ITIMER_REAL re-armed with its interval as value (a restore
 * that confused the two), 2 = one POSIX timer deleted, 3 = the periodic
 * timer stopped, 4 = a POSIX timer's interval changed by 1 ns.
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

static volatile long ticks, long_fired;
static void on_tick(int sig)
{
	(void)sig;
	ticks++;
}
static void on_long(int sig)
{
	(void)sig;
	long_fired++;
}

static double tv(struct timeval t)
{
	return (double)t.tv_sec + (double)t.tv_usec / 1e6;
}
static double tsd(struct timespec t)
{
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static const char *const itimer_name[] = { "ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF" };

struct ptimer {
	const char *name;
	clockid_t clock;
	int notify, sig, value;
	struct itimerspec set;
	timer_t id;
	int deleted;
	struct itimerspec before;
};

/* /proc/self/timers with each timer's lines (ID, signal, notify, ClockID) joined into one. */
static void one_line_per_timer(char *text)
{
	for (char *p = text; (p = strchr(p, '\n')); p++)
		if (p[1] && strncmp(p + 1, "ID:", 3))
			*p = ' ';
}

/* Real time passes at least as fast as any of our clocks; a restore may move the monotonic one. */
static double wall_since(double real0, double mono0)
{
	double a = wl_clock(CLOCK_REALTIME) - real0, b = wl_clock(CLOCK_MONOTONIC) - mono0;
	return a > b ? a : b;
}

static int is_cpu_clock(clockid_t c)
{
	return c == CLOCK_PROCESS_CPUTIME_ID || c == CLOCK_THREAD_CPUTIME_ID;
}

/* Remaining time: not more than before (CPU clocks round up to a tick), not less than before minus the wall time. */
static void check_left(const char *what, double after, double before, int cpu, double wall)
{
	if (before == 0) {
		if (after != 0)
			fail("%s was disarmed, now has %.9f s left", what, after);
		return;
	}
	double slack = cpu ? 0.02 : 0.001;
	if (after > before + slack)
		fail("%s has %.6f s left, had %.6f s %.3f s ago: it was reset", what, after, before, wall);
	else if (after < before - wall - 1)
		fail("%s has %.6f s left, had %.6f s %.3f s ago: it lost time", what, after, before, wall);
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "timers");
	signal(SIGALRM, on_long);
	signal(SIGVTALRM, on_long);
	signal(SIGPROF, on_long);
	const int which[3] = { ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF };
	const struct itimerval it[3] = {
		{ { 500, 250000 }, { 1000, 0 } },
		{ { 450, 5 }, { 900, 700001 } },
		{ { 400, 123456 }, { 800, 0 } },
	};
	for (int i = 0; i < 3; i++)
		if (setitimer(which[i], &it[i], NULL))
			fail("setitimer %s: %s", itimer_name[i], strerror(errno));

	/* The signals of the POSIX timers stay blocked: the test takes them with sigtimedwait. */
	struct ptimer pt[] = {
		{ .name = "REALTIME/SIGNAL", .clock = CLOCK_REALTIME, .notify = SIGEV_SIGNAL, .sig = SIGRTMIN + 1,
		  .value = 11, .set = { { 350, 123456789 }, { 700, 0 } } },
		{ .name = "MONOTONIC/NONE", .clock = CLOCK_MONOTONIC, .notify = SIGEV_NONE, .value = 22,
		  .set = { { 300, 1 }, { 600, 5 } } },
		{ .name = "BOOTTIME/deleted", .clock = CLOCK_BOOTTIME, .notify = SIGEV_SIGNAL, .sig = SIGRTMIN + 2,
		  .value = 33, .set = { { 250, 0 }, { 500, 0 } }, .deleted = 1 },
		{ .name = "CPUTIME/SIGNAL", .clock = CLOCK_PROCESS_CPUTIME_ID, .notify = SIGEV_SIGNAL, .sig = SIGRTMIN + 3,
		  .value = 44, .set = { { 250, 7 }, { 500, 0 } } },
		{ .name = "MONOTONIC/THREAD_ID", .clock = CLOCK_MONOTONIC, .notify = SIGEV_THREAD_ID, .sig = SIGRTMIN + 4,
		  .value = 55, .set = { { 200, 999 }, { 400, 0 } } },
		{ .name = "BOOTTIME/SIGNAL", .clock = CLOCK_BOOTTIME, .notify = SIGEV_SIGNAL, .sig = SIGRTMIN + 5,
		  .value = 66, .set = { { 150, 0 }, { 300, 42 } } },
		{ .name = "REALTIME/unarmed", .clock = CLOCK_REALTIME, .notify = SIGEV_SIGNAL, .sig = SIGRTMIN + 6,
		  .value = 77 },
	};
	const int npt = (int)(sizeof(pt) / sizeof(pt[0]));
	sigset_t rtsigs;
	sigemptyset(&rtsigs);
	for (int i = 0; i < npt; i++)
		if (pt[i].sig)
			sigaddset(&rtsigs, pt[i].sig);
	sigprocmask(SIG_BLOCK, &rtsigs, NULL);
	for (int i = 0; i < npt; i++) {
		struct sigevent se;
		memset(&se, 0, sizeof(se));
		se.sigev_notify = pt[i].notify;
		se.sigev_signo = pt[i].sig;
		se.sigev_value.sival_int = pt[i].value;
		if (pt[i].notify == SIGEV_THREAD_ID)
			se._sigev_un._tid = gettid();
		if (timer_create(pt[i].clock, &se, &pt[i].id))
			fail("timer_create %s: %s", pt[i].name, strerror(errno));
		else if (timer_settime(pt[i].id, 0, &pt[i].set, NULL))
			fail("timer_settime %s: %s", pt[i].name, strerror(errno));
	}
	for (int i = 0; i < npt; i++)
		if (pt[i].deleted)
			timer_delete(pt[i].id);

	/* the fast periodic timer, counted by a handler */
	struct sigevent se;
	memset(&se, 0, sizeof(se));
	se.sigev_notify = SIGEV_SIGNAL;
	se.sigev_signo = SIGUSR1;
	se.sigev_value.sival_int = 88;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_tick;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	timer_t fast;
	timer_create(CLOCK_MONOTONIC, &se, &fast);
	struct itimerspec fs = { { 0, 10 * 1000 * 1000 }, { 0, 10 * 1000 * 1000 } };
	timer_settime(fast, 0, &fs, NULL);

	static char timers_before[8192], timers_now[8192];
	struct itimerval it_before[3];
	for (int i = 0; i < 3; i++)
		getitimer(which[i], &it_before[i]);
	for (int i = 0; i < npt; i++)
		if (!pt[i].deleted)
			timer_gettime(pt[i].id, &pt[i].before);
	if (wl_read_into("/proc/self/timers", timers_before, sizeof(timers_before)) < 0)
		fail("cannot read /proc/self/timers");
	one_line_per_timer(timers_before);
	double real0 = wl_clock(CLOCK_REALTIME), mono0 = wl_clock(CLOCK_MONOTONIC);
	printf("timers: 3 itimers, %d POSIX timers (one deleted) and a 10 ms one\n", npt);

	wl_ready();
	wl_wait();
	long ticks_at_term = ticks;
	double wall = wall_since(real0, mono0);

	switch (wl_sabotage()) {
	case 1: {
		struct itimerval swapped = { it[0].it_interval, it[0].it_interval };
		setitimer(ITIMER_REAL, &swapped, NULL);
		break;
	}
	case 2:
		timer_delete(pt[4].id);
		break;
	case 3: {
		struct itimerspec off = { { 0, 0 }, { 0, 0 } };
		timer_settime(fast, 0, &off, NULL);
		break;
	}
	case 4: {
		struct itimerspec cur;
		timer_gettime(pt[0].id, &cur);
		cur.it_interval.tv_nsec++;
		timer_settime(pt[0].id, 0, &cur, NULL);
		break;
	}
	}

	for (int i = 0; i < 3; i++) {
		struct itimerval cur;
		getitimer(which[i], &cur);
		if (cur.it_interval.tv_sec != it[i].it_interval.tv_sec || cur.it_interval.tv_usec != it[i].it_interval.tv_usec)
			fail("%s interval is %.6f s, expected %.6f s", itimer_name[i], tv(cur.it_interval), tv(it[i].it_interval));
		/* CPU time of one thread never runs faster than the wall clock. */
		check_left(itimer_name[i], tv(cur.it_value), tv(it_before[i].it_value), i != 0, wall);
	}
	for (int i = 0; i < npt; i++) {
		struct itimerspec cur;
		int r = timer_gettime(pt[i].id, &cur);
		char what[128];
		snprintf(what, sizeof(what), "POSIX timer %s (id %ld)", pt[i].name, (long)(intptr_t)pt[i].id);
		if (pt[i].deleted) {
			if (r == 0 || errno != EINVAL)
				fail("%s was deleted, but timer_gettime on it %s", what, r == 0 ? "works" : strerror(errno));
			continue;
		}
		if (r) {
			fail("%s is gone: timer_gettime says %s", what, strerror(errno));
			continue;
		}
		if (cur.it_interval.tv_sec != pt[i].set.it_interval.tv_sec ||
		    cur.it_interval.tv_nsec != pt[i].set.it_interval.tv_nsec)
			fail("%s interval is %.9f s, expected %.9f s", what, tsd(cur.it_interval), tsd(pt[i].set.it_interval));
		check_left(what, tsd(cur.it_value), tsd(pt[i].before.it_value), is_cpu_clock(pt[i].clock), wall);
	}
	if (long_fired)
		fail("a long timer fired %ld times: it was restored with too little time left", long_fired);
	if (wl_read_into("/proc/self/timers", timers_now, sizeof(timers_now)) < 0)
		fail("cannot read /proc/self/timers");
	else {
		one_line_per_timer(timers_now);
		wl_compare_lines("/proc/self/timers", timers_before, timers_now);
	}

	/* The periodic timer still fires. */
	struct timespec wait = { 0, 200 * 1000 * 1000 };
	while (nanosleep(&wait, &wait) && errno == EINTR)
		;
	if (ticks < ticks_at_term + 5)
		fail("the 10 ms periodic timer fired %ld times in the 200 ms after SIGTERM, expected about 20",
		     ticks - ticks_at_term);

	/* Each signalling timer, re-armed for 1 ms, sends its own signal and value. */
	for (int i = 0; i < npt; i++) {
		if (pt[i].deleted || pt[i].notify == SIGEV_NONE)
			continue;
		struct itimerspec soon = { { 0, 0 }, { 0, 1000 * 1000 } };
		if (timer_settime(pt[i].id, 0, &soon, NULL))
			continue; /* reported above */
		sigset_t one;
		sigemptyset(&one);
		sigaddset(&one, pt[i].sig);
		siginfo_t si;
		int got = -1;
		struct timespec step = { 0, 0 };
		double end = wl_clock(CLOCK_MONOTONIC) + 3;
		while (got < 0 && wl_clock(CLOCK_MONOTONIC) < end) {
			/* a CPU-time timer needs us to burn CPU, the others just to wait */
			if (is_cpu_clock(pt[i].clock))
				for (volatile int k = 0; k < 100000; k++)
					;
			else
				step.tv_nsec = 10 * 1000 * 1000;
			got = sigtimedwait(&one, &si, &step);
		}
		if (got < 0)
			fail("%s (signal %d) did not fire within 3 s of being re-armed for 1 ms", pt[i].name, pt[i].sig);
		else if (si.si_code != SI_TIMER || si.si_value.sival_int != pt[i].value ||
			 si.si_timerid != (int)(intptr_t)pt[i].id)
			fail("%s sent signal %d with code %d value %d timer id %d, expected code %d (SI_TIMER) value %d id %d",
			     pt[i].name, got, si.si_code, si.si_value.sival_int, si.si_timerid, SI_TIMER, pt[i].value,
			     (int)(intptr_t)pt[i].id);
	}
	printf("timers: %ld ticks\n", ticks);
	return wl_done();
}
