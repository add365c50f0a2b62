/*
 * Blocked syscalls (project issue 7): one thread per case, each blocked in
 * one interruptible call when the checkpoint comes, which must carry on
 * after the restore as if nothing had happened:
 *
 *   read            read(2) on an empty pipe          -> 1 byte, once main writes it
 *   poll            poll, no timeout, on a pipe        -> 1, POLLIN, once main writes
 *   poll-timeout    poll, 6000 ms, empty pipe          -> 0, not early (the timeout starts over)
 *   epoll           epoll_wait, no timeout             -> 1 event, once main writes
 *   epoll-timeout   epoll_wait, 6000 ms                -> 0, not early (starts over)
 *   select          select, no timeout                 -> 1, once main writes
 *   select-timeout  select, 6 s                        -> 0, after the time it had left
 *   nanosleep       nanosleep(2) 6 s with rem          -> 0, after the time it had left; req unchanged
 *   sleep           glibc nanosleep (clock_nanosleep, relative) 6 s -> 0, after the time it had left
 *   nanosleep-norem nanosleep(2) 6 s, rem NULL         -> 0, not early (starts over)
 *   sleep-abs       clock_nanosleep TIMER_ABSTIME +6 s -> 0, at its deadline (or at once if it passed)
 *   futex           FUTEX_WAIT, no timeout             -> 0, once main sets the word and wakes it
 *   futex-timeout   FUTEX_WAIT, 6 s relative           -> ETIMEDOUT, not early (starts over)
 *   wait4           wait4 for a child blocked in read  -> the child, exit status 7, once main tells it
 *   sigsuspend      sigsuspend unblocking SIGUSR1      -> EINTR after its handler ran; SIGUSR1 blocked again
 *   pause           pause with SIGUSR2 unblocked       -> EINTR after its handler ran
 *
 * "The time it had left" is 6 s minus the time slept before the checkpoint:
 * a ticker thread (TIMER_ABSTIME, every 10 ms) measures how long the process
 * was frozen (its longest gap between ticks), and such a case must end 6 s
 * plus that after it started (+-0.4 s). "Not early": at least that, and no
 * later than 6 s after the process ran again. A call must never fail with
 * EINTR unless a signal handler ran in its thread, nor return before main
 * did what ends it. Each thread then sleeps 50 ms more, which must not fail
 * either. Every case's thread is seen in its syscall (/proc/self/task/TID/
 * syscall) before ready; their TIDs are written to ./cases as "NAME TID".
 * SIGTERM is blocked but in main's ppoll, so its temporary mask differs.
 *
 * With argv[2] "live" the process is left running by the dump (-R): then
 * the kernel's own restarts keep a deadline where a restore keeps the time
 * left, so a timed case only has to end no earlier than its 6 s from the
 * start and no later than 6 s after the process ran again.
 *
 * With argv[2] "stopped" the harness stops the process (SIGSTOP), sends
 * SIGUSR2 to the pause thread and SIGUSR1 to the sigsuspend thread, which
 * stay pending, checkpoints it and continues it (SIGCONT): the handlers run
 * first and the two calls fail with EINTR, as the kernel has it, with no
 * signal from main; and, as the kernel has it too, the stop made both
 * epoll_waits fail with EINTR (signal(7)).
 *
 * Sabotage: 1 ignores the time frozen (the timing checks fail); 2 forgets
 * that sigsuspend's handler ran (its EINTR fails).
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define D_S 6

enum ends { BY_MAIN, EXACT, NOT_EARLY, DEADLINE };

struct kase {
	const char *name;
	int nr;
	enum ends ends;
	void (*call)(struct kase *);
	int fds[2];
	_Atomic int word; /* the futex cases' own futex */
	pthread_t th;
	pid_t tid;
	double t0, t1;
	long ret;
	int err;
	volatile sig_atomic_t handled;
	int later_err;
	_Atomic int done;
	char detail[160];
};

static __thread struct kase *self;
static pid_t child;
static int child_pipe[2];
static _Atomic int ticking = 1;
static double gap_start, gap_end;
static int live, stopped;

static void on_signal(int sig)
{
	(void)sig;
	if (self)
		self->handled = 1;
}

static long end_call(struct kase *k, long r)
{
	k->t1 = wl_clock(CLOCK_MONOTONIC);
	k->ret = r;
	k->err = r < 0 ? errno : 0;
	return r;
}

static void c_read(struct kase *k)
{
	char b = 0;
	if (end_call(k, read(k->fds[0], &b, 1)) == 1 && b != 'x')
		snprintf(k->detail, sizeof(k->detail), "read byte %d, expected 'x'", b);
}

static void c_poll(struct kase *k)
{
	struct pollfd p = { .fd = k->fds[0], .events = POLLIN };
	if (end_call(k, poll(&p, 1, k->ends == BY_MAIN ? -1 : D_S * 1000)) == 1 && p.revents != POLLIN)
		snprintf(k->detail, sizeof(k->detail), "revents %#x, expected POLLIN", p.revents);
}

static void c_epoll(struct kase *k)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x5eed };
	epoll_ctl(ep, EPOLL_CTL_ADD, k->fds[0], &ev);
	memset(&ev, 0, sizeof(ev));
	if (end_call(k, epoll_wait(ep, &ev, 1, k->ends == BY_MAIN ? -1 : D_S * 1000)) == 1 &&
	    (ev.events != EPOLLIN || ev.data.u64 != 0x5eed))
		snprintf(k->detail, sizeof(k->detail), "event %#x data %#llx, expected EPOLLIN 0x5eed", ev.events,
			 (unsigned long long)ev.data.u64);
}

static void c_select(struct kase *k)
{
	fd_set in;
	FD_ZERO(&in);
	FD_SET(k->fds[0], &in);
	struct timeval tv = { D_S, 0 };
	if (end_call(k, select(k->fds[0] + 1, &in, NULL, NULL, k->ends == BY_MAIN ? NULL : &tv)) == 1 &&
	    !FD_ISSET(k->fds[0], &in))
		snprintf(k->detail, sizeof(k->detail), "the pipe is not in the ready set");
}

static void c_nanosleep(struct kase *k)
{
	static const struct timespec want = { D_S, 0 };
	struct timespec req = want, rem = { 0, 0 };
	end_call(k, syscall(SYS_nanosleep, &req, &rem));
	if (req.tv_sec != want.tv_sec || req.tv_nsec != want.tv_nsec)
		snprintf(k->detail, sizeof(k->detail), "its request changed to %lld.%09ld s", (long long)req.tv_sec, req.tv_nsec);
}

static void c_sleep(struct kase *k)
{
	struct timespec req = { D_S, 0 }, rem;
	end_call(k, nanosleep(&req, &rem));
}

static void c_nanosleep_norem(struct kase *k)
{
	struct timespec req = { D_S, 0 };
	end_call(k, syscall(SYS_nanosleep, &req, NULL));
}

static void c_sleep_abs(struct kase *k)
{
	struct timespec at;
	clock_gettime(CLOCK_MONOTONIC, &at);
	k->t0 = (double)at.tv_sec + (double)at.tv_nsec / 1e9;
	at.tv_sec += D_S;
	int r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL);
	/* clock_nanosleep returns the error instead of setting errno. */
	errno = r;
	end_call(k, r ? -1 : 0);
}

static void c_futex(struct kase *k)
{
	struct timespec rel = { D_S, 0 };
	long r;
	do
		r = end_call(k, syscall(SYS_futex, &k->word, FUTEX_WAIT_PRIVATE, 0, k->ends == BY_MAIN ? NULL : &rel, NULL, 0));
	while (r == 0 && k->ends == BY_MAIN && !k->word); /* a spurious wakeup waits again */
	/* The word changed before the wait (re)started: woken all the same. */
	if (r < 0 && k->err == EAGAIN && k->word)
		k->ret = 0, k->err = 0;
}

static void c_wait4(struct kase *k)
{
	int st = 0;
	if (end_call(k, wait4(child, &st, 0, NULL)) == child && !(WIFEXITED(st) && WEXITSTATUS(st) == 7))
		snprintf(k->detail, sizeof(k->detail), "child status %#x, expected exit 7", st);
}

static void c_sigsuspend(struct kase *k)
{
	sigset_t during;
	pthread_sigmask(SIG_BLOCK, NULL, &during);
	sigdelset(&during, SIGUSR1);
	end_call(k, sigsuspend(&during));
	sigset_t after;
	pthread_sigmask(SIG_BLOCK, NULL, &after);
	if (!sigismember(&after, SIGUSR1))
		snprintf(k->detail, sizeof(k->detail), "SIGUSR1 is no longer blocked after sigsuspend (its mask was not put back)");
}

static void c_pause(struct kase *k)
{
	sigset_t usr2;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);
	end_call(k, pause());
}

#define CASE(n, sys, e, c) { .name = n, .nr = sys, .ends = e, .call = c }
static struct kase cases[] = {
	CASE("read", SYS_read, BY_MAIN, c_read),
	CASE("poll", SYS_poll, BY_MAIN, c_poll),
	CASE("poll-timeout", SYS_poll, NOT_EARLY, c_poll),
	CASE("epoll", SYS_epoll_wait, BY_MAIN, c_epoll),
	CASE("epoll-timeout", SYS_epoll_wait, NOT_EARLY, c_epoll),
	CASE("select", SYS_pselect6, BY_MAIN, c_select),
	CASE("select-timeout", SYS_pselect6, EXACT, c_select),
	CASE("nanosleep", SYS_nanosleep, EXACT, c_nanosleep),
	CASE("sleep", SYS_clock_nanosleep, EXACT, c_sleep),
	CASE("nanosleep-norem", SYS_nanosleep, NOT_EARLY, c_nanosleep_norem),
	CASE("sleep-abs", SYS_clock_nanosleep, DEADLINE, c_sleep_abs),
	CASE("futex", SYS_futex, BY_MAIN, c_futex),
	CASE("futex-timeout", SYS_futex, NOT_EARLY, c_futex),
	CASE("wait4", SYS_wait4, BY_MAIN, c_wait4),
	CASE("sigsuspend", SYS_rt_sigsuspend, BY_MAIN, c_sigsuspend),
	CASE("pause", SYS_pause, BY_MAIN, c_pause),
};
#define NCASES ((int)(sizeof(cases) / sizeof(cases[0])))

static void *run(void *arg)
{
	struct kase *k = arg;
	self = k;
	k->tid = gettid();
	k->t0 = wl_clock(CLOCK_MONOTONIC);
	k->call(k);
	/* A later call must not be interrupted by anything crest left behind. */
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	if (nanosleep(&ts, NULL))
		k->later_err = errno;
	k->done = 1;
	return NULL;
}

/* The longest gap between 10 ms ticks: the time the process was frozen. */
static void *tick(void *arg)
{
	(void)arg;
	struct timespec at;
	clock_gettime(CLOCK_MONOTONIC, &at);
	double last = wl_clock(CLOCK_MONOTONIC), longest = 0;
	while (ticking) {
		at.tv_nsec += 10 * 1000 * 1000;
		if (at.tv_nsec >= 1000000000) {
			at.tv_sec++;
			at.tv_nsec -= 1000000000;
		}
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL);
		double now = wl_clock(CLOCK_MONOTONIC);
		if (now - last > longest) {
			longest = now - last;
			gap_start = last;
			gap_end = now;
		}
		last = now;
		/* After a long gap, tick from now rather than catch up. */
		if ((double)at.tv_sec + (double)at.tv_nsec / 1e9 < now)
			clock_gettime(CLOCK_MONOTONIC, &at);
	}
	return NULL;
}

/* The syscall a thread is blocked in, from /proc (-2 if it is not blocked in one). */
static int blocked_in(pid_t tid)
{
	char path[64], text[256];
	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
	if (wl_read_into(path, text, sizeof(text)) <= 0 || !strncmp(text, "running", 7))
		return -2;
	return atoi(text);
}

static void check(struct kase *k, double released)
{
	const double tol = 0.4, frozen = gap_end - gap_start;
	const double elapsed = k->t1 - k->t0;
	if (!k->done) {
		fail("%s: thread %d is still in its call 15 s after the restore", k->name, k->tid);
		return;
	}
	const int stop_eintr = stopped && k->call == c_epoll;
	if (k->err == EINTR && !k->handled && !stop_eintr)
		fail("%s: failed with EINTR, though no signal handler ran in its thread", k->name);
	if (k->detail[0])
		fail("%s: %s", k->name, k->detail);
	if (k->later_err)
		fail("%s: the 50 ms nanosleep after it failed: %s", k->name, strerror(k->later_err));
	long want = 0;
	int want_err = 0;
	if (!strcmp(k->name, "futex-timeout"))
		want = -1, want_err = ETIMEDOUT;
	else if (!strcmp(k->name, "wait4"))
		want = child;
	else if (!strcmp(k->name, "sigsuspend") || !strcmp(k->name, "pause") || stop_eintr)
		want = -1, want_err = EINTR;
	else if (k->ends == BY_MAIN && strcmp(k->name, "futex"))
		want = 1;
	if (k->ret != want || k->err != want_err)
		fail("%s: returned %ld (%s), expected %ld (%s)", k->name, k->ret, k->err ? strerror(k->err) : "no error", want,
		     want_err ? strerror(want_err) : "no error");
	if (want_err == EINTR && !k->handled && !stop_eintr)
		fail("%s: returned without its signal handler having run", k->name);
	/* Ended by the harness's signals or by the stop, not by main. */
	if (stopped && want_err == EINTR)
		return;
	if (live && (k->ends == EXACT || k->ends == NOT_EARLY)) {
		if (k->t1 < k->t0 + D_S - 0.01)
			fail("%s: ended %.3f s before its %d s were up", k->name, k->t0 + D_S - k->t1, D_S);
		if (k->t1 > gap_end + D_S + tol)
			fail("%s: ended %.3f s after the process ran again, more than its %d s", k->name, k->t1 - gap_end, D_S);
		return;
	}
	switch (k->ends) {
	case BY_MAIN:
		if (k->t1 < released)
			fail("%s: returned %.3f s before main did what ends it", k->name, released - k->t1);
		break;
	case EXACT:
		if (elapsed < D_S + frozen - tol || elapsed > D_S + frozen + tol)
			fail("%s: took %.3f s, expected %.3f (its %d s and %.3f s frozen): it did not sleep the time it had left",
			     k->name, elapsed, D_S + frozen, D_S, frozen);
		break;
	case NOT_EARLY:
		if (elapsed < D_S + frozen - 0.05)
			fail("%s: took %.3f s, less than its %d s and %.3f s frozen", k->name, elapsed, D_S, frozen);
		if (k->t1 > gap_end + D_S + tol)
			fail("%s: ended %.3f s after the process ran again, more than its %d s", k->name, k->t1 - gap_end, D_S);
		break;
	case DEADLINE: {
		double deadline = k->t0 + D_S, latest = deadline > gap_end ? deadline : gap_end;
		if (k->t1 < deadline - 0.01)
			fail("%s: woke %.3f s before its deadline", k->name, deadline - k->t1);
		if (k->t1 > latest + tol)
			fail("%s: woke %.3f s after its deadline or the restore, whichever came last", k->name, k->t1 - latest);
		break;
	}
	}
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "syscalls-blocked");
	live = argc > 2 && !strcmp(argv[2], "live");
	stopped = argc > 2 && !strcmp(argv[2], "stopped");
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	sigset_t blocked;
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGTERM);
	sigaddset(&blocked, SIGUSR1);
	sigaddset(&blocked, SIGUSR2);
	sigprocmask(SIG_BLOCK, &blocked, NULL);

	if (pipe(child_pipe))
		return 2;
	child = fork();
	if (child == 0) {
		char b;
		while (read(child_pipe[0], &b, 1) < 0 && errno == EINTR)
			;
		_exit(7);
	}
	pthread_t ticker;
	pthread_create(&ticker, NULL, tick, NULL);
	for (int i = 0; i < NCASES; i++) {
		if (pipe2(cases[i].fds, O_CLOEXEC))
			return 2;
		pthread_create(&cases[i].th, NULL, run, &cases[i]);
	}
	double until = wl_clock(CLOCK_MONOTONIC) + 10;
	for (int i = 0; i < NCASES; i++) {
		while (!cases[i].tid || blocked_in(cases[i].tid) != cases[i].nr) {
			if (wl_clock(CLOCK_MONOTONIC) > until) {
				fprintf(stderr, "case %s (thread %d) is not blocked in syscall %d\n", cases[i].name, cases[i].tid, cases[i].nr);
				return 2;
			}
			usleep(1000);
		}
	}
	FILE *f = fopen("cases", "w");
	if (!f)
		return 2;
	for (int i = 0; i < NCASES; i++)
		fprintf(f, "%s %d\n", cases[i].name, cases[i].tid);
	fclose(f);
	wl_ready();
	wl_wait();

	/* End the cases that main ends. */
	double released = wl_clock(CLOCK_MONOTONIC);
	for (int i = 0; i < NCASES; i++) {
		struct kase *k = &cases[i];
		if (k->ends != BY_MAIN)
			continue;
		if (k->call == c_read || k->call == c_poll || k->call == c_epoll || k->call == c_select) {
			if (write(k->fds[1], "x", 1) != 1)
				fail("%s: cannot write its pipe: %s", k->name, strerror(errno));
		} else if (k->call == c_futex) {
			k->word = 1;
			syscall(SYS_futex, &k->word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
		} else if (k->call == c_wait4) {
			if (write(child_pipe[1], "x", 1) != 1)
				fail("%s: cannot write the child's pipe: %s", k->name, strerror(errno));
		} else if ((k->call == c_sigsuspend || k->call == c_pause) && !stopped) {
			syscall(SYS_tgkill, getpid(), k->tid, k->call == c_sigsuspend ? SIGUSR1 : SIGUSR2);
		}
	}
	/* Every case ends within D_S s of the restore (the timed ones restart at worst). */
	struct timespec limit;
	clock_gettime(CLOCK_REALTIME, &limit);
	limit.tv_sec += 15;
	for (int i = 0; i < NCASES; i++)
		pthread_timedjoin_np(cases[i].th, NULL, &limit);
	ticking = 0;
	pthread_join(ticker, NULL);
	if (wl_sabotage() == 1)
		gap_end = gap_start;
	for (int i = 0; i < NCASES; i++) {
		if (wl_sabotage() == 2 && cases[i].call == c_sigsuspend)
			cases[i].handled = 0;
		check(&cases[i], released);
	}
	return wl_done();
}
