/*
 * Signals: actions with handlers, flags and masks (and some ignored), the
 * blocked mask, sigaltstack, and pending signals with their siginfo:
 * process-wide (sigqueue, RT signals queued several times with different
 * values) and thread-directed (tgkill). After the checkpoint, every action
 * and the mask are compared, then the signals are unblocked and must arrive
 * with the same siginfo, RT ones all of them, in order.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAXGOT 64
static struct { int sig, code, value, pid; } got[MAXGOT];
static volatile int ngot;

static void on_info(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (ngot < MAXGOT)
		got[ngot++] = (typeof(got[0])){ sig, si->si_code, si->si_value.sival_int, si->si_pid };
}

static void on_plain(int sig)
{
	if (ngot < MAXGOT)
		got[ngot++] = (typeof(got[0])){ sig, 0, 0, 0 };
}

struct act_spec {
	int sig;
	int info;
	int flags;
	int mask_sig;
};

static const struct act_spec acts[] = {
	{ SIGUSR1, 1, SA_SIGINFO | SA_RESTART, SIGUSR2 },
	{ SIGUSR2, 1, SA_SIGINFO | SA_NODEFER, 0 },
	{ SIGHUP, 0, SA_RESETHAND, SIGINT },
	{ SIGALRM, 0, SA_ONSTACK | SA_RESTART, SIGQUIT },
	{ SIGWINCH, 1, SA_SIGINFO | SA_ONSTACK, 40 /* an RT signal */ },
};

static int rt(int n) { return SIGRTMIN + n; }

int main(int argc, char **argv)
{
	wl_init(argc, argv, "signals");
	struct sigaction sa;
	for (size_t i = 0; i < sizeof(acts) / sizeof(acts[0]); i++) {
		memset(&sa, 0, sizeof(sa));
		if (acts[i].info)
			sa.sa_sigaction = on_info;
		else
			sa.sa_handler = on_plain;
		sa.sa_flags = acts[i].flags;
		sigemptyset(&sa.sa_mask);
		if (acts[i].mask_sig)
			sigaddset(&sa.sa_mask, acts[i].mask_sig);
		sigaction(acts[i].sig, &sa, NULL);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_info;
	sa.sa_flags = SA_SIGINFO;
	for (int n = 1; n <= 3; n++)
		sigaction(rt(n), &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGCHLD, SIG_IGN);
	signal(SIGURG, SIG_IGN);

	static char altstack[64 * 1024];
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack), .ss_flags = 0 };
	sigaltstack(&ss, NULL);

	/* Block what will be pending, plus something else, and queue. */
	sigset_t block;
	sigemptyset(&block);
	int blocked_sigs[] = { SIGUSR1, SIGUSR2, SIGWINCH, SIGHUP, rt(1), rt(2), rt(3), SIGPROF };
	for (size_t i = 0; i < sizeof(blocked_sigs) / sizeof(int); i++)
		sigaddset(&block, blocked_sigs[i]);
	sigprocmask(SIG_BLOCK, &block, NULL);
	union sigval v;
	v.sival_int = 1001;
	sigqueue(getpid(), SIGUSR1, v); /* process-wide, SI_QUEUE */
	for (int i = 0; i < 3; i++) {
		v.sival_int = 2000 + i;
		sigqueue(getpid(), rt(1), v); /* RT: all three stay queued */
	}
	v.sival_int = 3000;
	sigqueue(getpid(), rt(2), v);
	syscall(SYS_tgkill, getpid(), gettid(), SIGUSR2); /* thread-directed, SI_TKILL */
	syscall(SYS_tgkill, getpid(), gettid(), rt(3));
	kill(getpid(), SIGWINCH); /* SI_USER */

	struct sigaction before[65];
	for (int s = 1; s < 65; s++)
		sigaction(s, NULL, &before[s]);
	sigset_t mask_before, pending_before;
	sigprocmask(SIG_BLOCK, NULL, &mask_before);
	sigpending(&pending_before);
	printf("signals: set up\n");

	wl_ready();
	wl_wait();
	if (wl_sabotage())
		signal(SIGHUP, SIG_IGN);

	for (int s = 1; s < 65; s++) {
		if (s == SIGKILL || s == SIGSTOP || s == SIGTERM)
			continue;
		struct sigaction now;
		sigaction(s, NULL, &now);
		if (now.sa_handler != before[s].sa_handler || now.sa_flags != before[s].sa_flags)
			fail("action of signal %d: handler %p flags %#x, was %p flags %#x", s, (void *)now.sa_handler,
			     now.sa_flags, (void *)before[s].sa_handler, before[s].sa_flags);
		/* Only the kernel's 64 signals: glibc's sigset_t has more bytes than it fills. */
		for (int m = 1; m < 65; m++)
			if (sigismember(&now.sa_mask, m) != sigismember(&before[s].sa_mask, m))
				fail("the mask of signal %d's action differs at signal %d", s, m);
	}
	sigset_t mask_now, pending_now;
	sigprocmask(SIG_BLOCK, NULL, &mask_now);
	sigpending(&pending_now);
	for (int s = 1; s < 65; s++) {
		if (sigismember(&mask_now, s) != sigismember(&mask_before, s))
			fail("signal %d is %sblocked now", s, sigismember(&mask_now, s) ? "" : "not ");
		if (sigismember(&pending_now, s) != sigismember(&pending_before, s))
			fail("signal %d is %spending now", s, sigismember(&pending_now, s) ? "" : "not ");
	}
	stack_t now_ss;
	sigaltstack(NULL, &now_ss);
	if (now_ss.ss_sp != altstack || now_ss.ss_size != sizeof(altstack) || now_ss.ss_flags != 0)
		fail("sigaltstack is %p/%zu/%d", now_ss.ss_sp, now_ss.ss_size, now_ss.ss_flags);

	/* Deliver: standard signals in number order, then RT signals in order. */
	sigprocmask(SIG_UNBLOCK, &block, NULL);
	int pid = getpid();
	struct { int sig, code, value, pid; } expect[] = {
		{ SIGUSR1, SI_QUEUE, 1001, pid }, { SIGUSR2, SI_TKILL, 0, pid }, { SIGWINCH, SI_USER, 0, pid },
		{ rt(1), SI_QUEUE, 2000, pid }, { rt(1), SI_QUEUE, 2001, pid }, { rt(1), SI_QUEUE, 2002, pid },
		{ rt(2), SI_QUEUE, 3000, pid }, { rt(3), SI_TKILL, 0, pid },
	};
	int n = (int)(sizeof(expect) / sizeof(expect[0]));
	for (int i = 0; i < n; i++) {
		int found = 0;
		for (int j = 0; j < ngot; j++)
			if (got[j].sig == expect[i].sig && got[j].code == expect[i].code && got[j].pid == expect[i].pid &&
			    (expect[i].code != SI_QUEUE || got[j].value == expect[i].value))
				found = 1;
		if (!found)
			fail("signal %d (code %d, value %d) was not delivered", expect[i].sig, expect[i].code, expect[i].value);
	}
	if (ngot != n)
		fail("%d signals were delivered, expected %d", ngot, n);
	/* RT signals of one number arrive in queue order. */
	int last = 1999;
	for (int j = 0; j < ngot; j++)
		if (got[j].sig == rt(1)) {
			if (got[j].value <= last)
				fail("RT signal values out of order: %d after %d", got[j].value, last);
			last = got[j].value;
		}
	return wl_done();
}
