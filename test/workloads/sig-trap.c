/*
 * SIGTRAP, which crest's own int3 traps raise while it drives a task. argv[2]:
 *   handler  SIGTRAP caught by a handler (SA_RESTART, a mask), blocked:
 *            after restore the action is the same and, unblocked, a raised
 *            SIGTRAP runs the handler (the kernel would reset a blocked or
 *            ignored action to SIG_DFL on a forced SIGTRAP);
 *   ignore   SIGTRAP ignored (SIG_IGN with SA_RESTART and a mask): the same
 *            action after restore, and a raised SIGTRAP is ignored;
 *   pending  SIGTRAP caught, blocked and pending: the dump must refuse it and
 *            leave it pending; after SIGTERM it is still pending, once, with
 *            its siginfo (SI_QUEUE, value 77), and the action unchanged.
 *
 * Sabotage: 1 = SIGTRAP's action reset to SIG_DFL (handler, pending) or its
 * mask cleared (ignore), 2 = the pending SIGTRAP taken (pending).
 */
#define _GNU_SOURCE
#include "lib.h"
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t trapped;

static void on_trap(int sig)
{
	(void)sig;
	trapped++;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "sig-trap");
	const char *mode = argc > 2 ? argv[2] : "handler";
	int ignore = !strcmp(mode, "ignore"), pending = !strcmp(mode, "pending");
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = ignore ? SIG_IGN : on_trap;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR2);
	if (sigaction(SIGTRAP, &sa, NULL))
		fail("cannot set the action of SIGTRAP");
	sigset_t trap;
	sigemptyset(&trap);
	sigaddset(&trap, SIGTRAP);
	if (!ignore)
		sigprocmask(SIG_BLOCK, &trap, NULL);
	if (pending) {
		union sigval v = { .sival_int = 77 };
		sigqueue(getpid(), SIGTRAP, v);
	}
	struct sigaction before;
	sigaction(SIGTRAP, NULL, &before);

	wl_ready();
	wl_wait();

	switch (wl_sabotage()) {
	case 1:
		if (ignore) {
			sa.sa_mask = (sigset_t){ 0 };
			sigaction(SIGTRAP, &sa, NULL);
		} else {
			signal(SIGTRAP, SIG_DFL);
		}
		break;
	case 2: {
		struct timespec zero = { 0, 0 };
		sigtimedwait(&trap, NULL, &zero);
		break;
	}
	}

	struct sigaction now;
	sigaction(SIGTRAP, NULL, &now);
	if (now.sa_handler != before.sa_handler || now.sa_flags != before.sa_flags)
		fail("action of SIGTRAP: handler %p flags %#x, expected %p flags %#x", (void *)now.sa_handler, now.sa_flags,
		     (void *)before.sa_handler, before.sa_flags);
	if (sigismember(&now.sa_mask, SIGUSR2) != 1)
		fail("action of SIGTRAP: SIGUSR2 is no longer in its mask");
	sigset_t blocked, pend;
	sigprocmask(SIG_BLOCK, NULL, &blocked);
	if (sigismember(&blocked, SIGTRAP) != !ignore)
		fail("SIGTRAP is %sblocked, expected %sblocked", sigismember(&blocked, SIGTRAP) ? "" : "not ", ignore ? "not " : "");
	sigpending(&pend);
	if (pending) {
		siginfo_t si;
		struct timespec zero = { 0, 0 };
		if (!sigismember(&pend, SIGTRAP))
			fail("the pending SIGTRAP is gone");
		else if (sigtimedwait(&trap, &si, &zero) != SIGTRAP)
			fail("the pending SIGTRAP could not be taken");
		else if (si.si_code != SI_QUEUE || si.si_value.sival_int != 77 || si.si_pid != getpid())
			fail("the pending SIGTRAP has si_code %d value %d pid %d, expected %d 77 %d", si.si_code,
			     si.si_value.sival_int, si.si_pid, SI_QUEUE, getpid());
		sigpending(&pend);
		if (sigismember(&pend, SIGTRAP))
			fail("SIGTRAP is still pending after it was taken");
	} else {
		if (sigismember(&pend, SIGTRAP))
			fail("a SIGTRAP is pending");
		sigprocmask(SIG_UNBLOCK, &trap, NULL);
		/* Only with the action intact: a lost one would kill the process here. */
		if (now.sa_handler == before.sa_handler)
			raise(SIGTRAP);
		if (now.sa_handler == before.sa_handler && trapped != !ignore)
			fail("a raised SIGTRAP ran the handler %d times, expected %d", (int)trapped, !ignore);
	}
	return wl_done();
}
