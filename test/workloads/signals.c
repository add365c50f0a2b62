/*
 * Signals: actions with two handlers, flags (SA_SIGINFO, SA_RESTART,
 * SA_NODEFER, SA_RESETHAND, SA_ONSTACK) and masks, some SIG_IGN; the blocked
 * mask; a sigaltstack (SS_AUTODISARM); pending signals kept blocked:
 * process-wide (kill: SI_USER; sigqueue: SI_QUEUE with values; an RT signal
 * queued three times) and thread-directed (tgkill: SI_TKILL;
 * pthread_sigqueue: SI_QUEUE with a value, on the same RT signal as the
 * process-wide ones).
 *
 * After SIGTERM: every action (handler, flags, restorer, mask) of signals
 * 1-64, the blocked mask, sigpending, the thread and process pending sets
 * (SigPnd, ShdPnd) and SigBlk/SigIgn/SigCgt of /proc/self/status, the
 * sigaltstack. Then the pending signals are unblocked one number at a time
 * and must each be delivered exactly once with their siginfo (si_code,
 * si_value, si_pid, si_uid), RT ones all of them in the kernel's order
 * (thread-directed first, then process-wide, each in the order queued); in
 * the handler, the mask must be the action's, and SA_ONSTACK handlers must
 * run on the alternate stack; SA_RESETHAND must have reset its action.
 *
 * Sabotage: 1 = SIGHUP's action set to SIG_IGN, 2 = one of the queued RT
 * signals taken off the queue, 3 = the sigaltstack disabled, 4 = a
 * thread-directed signal re-sent process-wide (as a restore that puts every
 * pending signal in the shared queue would), 5 = the process-wide queue of
 * an RT signal put back in reverse order.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31) /* linux/signal.h; glibc 2.36 does not define it */
#endif
#define ALTSTACK_SIZE (64 * 1024)
static char altstack[ALTSTACK_SIZE];

struct got {
	int sig, code, value, pid, uid;
	int on_altstack;
	sigset_t mask; /* blocked while the handler ran */
};
#define MAXGOT 64
static struct got got[MAXGOT];
static volatile int ngot;

static void record(int sig, siginfo_t *si)
{
	if (ngot >= MAXGOT)
		return;
	struct got *g = &got[ngot];
	char here;
	g->sig = sig;
	if (si)
		g->code = si->si_code, g->value = si->si_value.sival_int, g->pid = si->si_pid, g->uid = (int)si->si_uid;
	g->on_altstack = &here >= altstack && &here < altstack + ALTSTACK_SIZE;
	sigprocmask(SIG_BLOCK, NULL, &g->mask);
	ngot++;
}

static void on_info(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	record(sig, si);
}

static void on_plain(int sig)
{
	record(sig, NULL);
}

static int rt(int n)
{
	return SIGRTMIN + n;
}

struct act_spec {
	int sig, info, flags, mask1, mask2;
};

static struct act_spec acts[16];
static int nacts;

static void set_action(int sig, int info, int flags, int mask1, int mask2)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	if (info)
		sa.sa_sigaction = on_info;
	else
		sa.sa_handler = on_plain;
	sa.sa_flags = flags | (info ? SA_SIGINFO : 0);
	sigemptyset(&sa.sa_mask);
	if (mask1)
		sigaddset(&sa.sa_mask, mask1);
	if (mask2)
		sigaddset(&sa.sa_mask, mask2);
	if (sigaction(sig, &sa, NULL))
		fail("cannot set the action of signal %d", sig);
	acts[nacts++] = (struct act_spec){ sig, info, sa.sa_flags, mask1, mask2 };
}

static const struct act_spec *spec_of(int sig)
{
	for (int i = 0; i < nacts; i++)
		if (acts[i].sig == sig)
			return &acts[i];
	return NULL;
}

static const char *code_name(int code)
{
	switch (code) {
	case SI_USER:
		return "SI_USER";
	case SI_QUEUE:
		return "SI_QUEUE";
	case SI_TKILL:
		return "SI_TKILL";
	default:
		return "?";
	}
}

static void sigset_text(char *out, size_t n, const sigset_t *s)
{
	size_t o = 0;
	out[0] = 0;
	for (int i = 1; i < 65 && o < n; i++)
		if (sigismember(s, i))
			o += (size_t)snprintf(out + o, n - o, "%s%d", o ? "," : "", i);
	if (!o)
		snprintf(out, n, "none");
}

static int same_set(const sigset_t *a, const sigset_t *b)
{
	for (int i = 1; i < 65; i++)
		if (sigismember(a, i) != sigismember(b, i))
			return 0;
	return 1;
}

static const char *status_keys[] = { "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt" };
#define NKEYS 5

int main(int argc, char **argv)
{
	wl_init(argc, argv, "signals");
	set_action(SIGUSR1, 1, SA_RESTART, SIGUSR2, 0);
	set_action(SIGUSR2, 1, SA_NODEFER, 0, 0);
	set_action(SIGHUP, 0, SA_RESETHAND, SIGINT, 0);
	set_action(SIGALRM, 0, SA_ONSTACK | SA_RESTART, SIGQUIT, 0);
	set_action(SIGWINCH, 1, SA_ONSTACK, rt(5), 0);
	set_action(SIGINT, 0, 0, SIGUSR1, SIGRTMAX);
	set_action(rt(1), 1, 0, 0, 0);
	set_action(rt(2), 1, SA_RESTART, SIGPIPE, 0);
	set_action(rt(3), 1, SA_NODEFER | SA_ONSTACK, 0, 0);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGURG, SIG_IGN);
	signal(SIGTSTP, SIG_IGN);
	signal(SIGRTMAX, SIG_IGN);
	struct sigaction ign = { .sa_handler = SIG_IGN, .sa_flags = SA_NOCLDSTOP };
	sigaction(SIGCHLD, &ign, NULL);

	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack), .ss_flags = (int)SS_AUTODISARM };
	if (sigaltstack(&ss, NULL))
		fail("sigaltstack with SS_AUTODISARM refused");

	/* Block what will be pending, plus two more that stay blocked, and queue. */
	sigset_t block;
	sigemptyset(&block);
	int blocked_sigs[] = { SIGHUP, SIGINT, SIGUSR1, SIGUSR2, SIGALRM, SIGWINCH, rt(1), rt(2), rt(3), SIGPROF, rt(7) };
	for (size_t i = 0; i < sizeof(blocked_sigs) / sizeof(int); i++)
		sigaddset(&block, blocked_sigs[i]);
	sigprocmask(SIG_BLOCK, &block, NULL);
	int pid = getpid(), uid = (int)getuid();
	union sigval v;
	/* process-wide */
	kill(pid, SIGHUP);
	kill(pid, SIGALRM);
	kill(pid, SIGWINCH);
	v.sival_int = 1001;
	sigqueue(pid, SIGUSR1, v);
	for (int i = 0; i < 3; i++) {
		v.sival_int = 2000 + i;
		sigqueue(pid, rt(1), v);
	}
	v.sival_int = 3000;
	sigqueue(pid, rt(2), v);
	/* thread-directed */
	syscall(SYS_tgkill, pid, gettid(), SIGUSR2);
	syscall(SYS_tgkill, pid, gettid(), SIGINT);
	syscall(SYS_tgkill, pid, gettid(), rt(3));
	v.sival_int = 2100;
	pthread_sigqueue(pthread_self(), rt(1), v);

	/* In the order the kernel delivers them when unblocked one number at a time:
	 * per number, the thread's queue before the process's, each first in first out. */
	const struct want {
		int sig, code, value, on_altstack;
	} expect[] = {
		{ SIGHUP, SI_USER, 0, 0 },      { SIGINT, SI_TKILL, 0, 0 },   { SIGUSR1, SI_QUEUE, 1001, 0 },
		{ SIGUSR2, SI_TKILL, 0, 0 },    { SIGALRM, SI_USER, 0, 1 },   { SIGWINCH, SI_USER, 0, 1 },
		{ rt(1), SI_QUEUE, 2100, 0 },   { rt(1), SI_QUEUE, 2000, 0 }, { rt(1), SI_QUEUE, 2001, 0 },
		{ rt(1), SI_QUEUE, 2002, 0 },   { rt(2), SI_QUEUE, 3000, 0 }, { rt(3), SI_TKILL, 0, 1 },
	};
	const int nexpect = (int)(sizeof(expect) / sizeof(expect[0]));
	const int order[] = { SIGHUP, SIGINT, SIGUSR1, SIGUSR2, SIGALRM, SIGWINCH, rt(1), rt(2), rt(3) };

	struct sigaction before[65];
	for (int s = 1; s < 65; s++)
		sigaction(s, NULL, &before[s]);
	sigset_t mask_before, pending_before;
	sigprocmask(SIG_BLOCK, NULL, &mask_before);
	sigpending(&pending_before);
	char status_before[NKEYS][64], status_now[NKEYS][64];
	for (int k = 0; k < NKEYS; k++)
		wl_status_field(status_keys[k], status_before[k], sizeof(status_before[k]));
	printf("signals: %d actions, %d signals pending (thread %s, process %s)\n", nacts, nexpect, status_before[0],
	       status_before[1]);

	wl_ready();
	wl_wait();

	switch (wl_sabotage()) {
	case 1:
		signal(SIGHUP, SIG_IGN);
		break;
	case 2: {
		sigset_t one;
		sigemptyset(&one);
		sigaddset(&one, rt(1));
		struct timespec zero = { 0, 0 };
		sigtimedwait(&one, NULL, &zero);
		break;
	}
	case 3: {
		stack_t off = { .ss_flags = SS_DISABLE };
		sigaltstack(&off, NULL);
		break;
	}
	case 4: {
		sigset_t one;
		sigemptyset(&one);
		sigaddset(&one, SIGINT);
		struct timespec zero = { 0, 0 };
		sigtimedwait(&one, NULL, &zero);
		kill(pid, SIGINT);
		break;
	}
	case 5: { /* the queued RT signals put back in reverse order */
		sigset_t one;
		sigemptyset(&one);
		sigaddset(&one, rt(1));
		struct timespec zero = { 0, 0 };
		siginfo_t q[4];
		for (int i = 0; i < 4; i++)
			sigtimedwait(&one, &q[i], &zero);
		pthread_sigqueue(pthread_self(), rt(1), q[0].si_value);
		for (int i = 3; i > 0; i--)
			sigqueue(pid, rt(1), q[i].si_value);
		break;
	}
	}

	for (int s = 1; s < 65; s++) {
		struct sigaction now;
		sigaction(s, NULL, &now);
		const struct sigaction *b = &before[s];
		if (now.sa_handler != b->sa_handler || now.sa_flags != b->sa_flags || now.sa_restorer != b->sa_restorer)
			fail("action of signal %d: handler %p flags %#x restorer %p, expected %p flags %#x restorer %p", s,
			     (void *)now.sa_handler, now.sa_flags, (void *)now.sa_restorer, (void *)b->sa_handler,
			     b->sa_flags, (void *)b->sa_restorer);
		/* Only the kernel's 64 signals: glibc's sigset_t has more bytes than it fills. */
		if (!same_set(&now.sa_mask, &b->sa_mask)) {
			char x[256], y[256];
			sigset_text(x, sizeof(x), &now.sa_mask);
			sigset_text(y, sizeof(y), &b->sa_mask);
			fail("action of signal %d: mask {%s}, expected {%s}", s, x, y);
		}
	}
	sigset_t mask_now, pending_now;
	sigprocmask(SIG_BLOCK, NULL, &mask_now);
	sigpending(&pending_now);
	char x[256], y[256];
	if (!same_set(&mask_now, &mask_before)) {
		sigset_text(x, sizeof(x), &mask_now), sigset_text(y, sizeof(y), &mask_before);
		fail("blocked mask is {%s}, expected {%s}", x, y);
	}
	if (!same_set(&pending_now, &pending_before)) {
		sigset_text(x, sizeof(x), &pending_now), sigset_text(y, sizeof(y), &pending_before);
		fail("sigpending is {%s}, expected {%s}", x, y);
	}
	for (int k = 0; k < NKEYS; k++)
		if (strcmp(wl_status_field(status_keys[k], status_now[k], sizeof(status_now[k])), status_before[k]))
			fail("%s in /proc/self/status is %s, expected %s", status_keys[k], status_now[k], status_before[k]);
	stack_t now_ss;
	sigaltstack(NULL, &now_ss);
	if (now_ss.ss_sp != altstack || now_ss.ss_size != sizeof(altstack) || now_ss.ss_flags != (int)SS_AUTODISARM)
		fail("sigaltstack is %p size %zu flags %#x, expected %p size %zu flags %#x (SS_AUTODISARM)", now_ss.ss_sp,
		     now_ss.ss_size, now_ss.ss_flags, (void *)altstack, sizeof(altstack), SS_AUTODISARM);

	/* Delivery, one signal number at a time: each unblock runs the handlers of every instance pending. */
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		sigset_t one;
		sigemptyset(&one);
		sigaddset(&one, order[i]);
		sigprocmask(SIG_UNBLOCK, &one, NULL);
	}
	/* Each expected delivery must have happened once (the first unused match), and in this order. */
	int used[MAXGOT] = { 0 }, last = -1;
	for (int i = 0; i < nexpect; i++) {
		const struct want *e = &expect[i];
		const struct act_spec *a = spec_of(e->sig);
		int info = a && a->info, j;
		for (j = 0; j < ngot; j++)
			if (!used[j] && got[j].sig == e->sig &&
			    (!info || (got[j].code == e->code && got[j].pid == pid && got[j].uid == uid &&
				       (e->code != SI_QUEUE || got[j].value == e->value))))
				break;
		if (j == ngot) {
			fail("signal %d (%s, value %d, pid %d) was not delivered", e->sig, code_name(e->code), e->value, pid);
			continue;
		}
		used[j] = 1;
		const struct got *g = &got[j];
		if (j < last)
			fail("out of order: signal %d (%s, value %d) came as delivery %d, the one expected before it as delivery %d",
			     e->sig, code_name(e->code), e->value, j + 1, last + 1);
		last = j;
		if (g->on_altstack != e->on_altstack)
			fail("the handler of signal %d ran %s the alternate stack", g->sig, g->on_altstack ? "on" : "off");
		/* In the handler: the mask of before plus the action's mask plus the signal unless SA_NODEFER. */
		if (a) {
			int self = sigismember(&g->mask, g->sig), want_self = !(a->flags & SA_NODEFER);
			if (self != want_self)
				fail("signal %d was %sblocked in its own handler", g->sig, self ? "" : "not ");
			if ((a->mask1 && !sigismember(&g->mask, a->mask1)) || (a->mask2 && !sigismember(&g->mask, a->mask2)))
				fail("the action's mask of signal %d was not applied in its handler", g->sig);
		}
	}
	for (int j = 0; j < ngot; j++)
		if (!used[j]) {
			const struct act_spec *a = spec_of(got[j].sig);
			if (a && a->info)
				fail("an unexpected delivery of signal %d (%s, value %d, pid %d uid %d)", got[j].sig,
				     code_name(got[j].code), got[j].value, got[j].pid, got[j].uid);
			else
				fail("an unexpected delivery of signal %d", got[j].sig);
		}
	struct sigaction hup;
	sigaction(SIGHUP, NULL, &hup);
	if (hup.sa_handler != SIG_DFL)
		fail("SIGHUP (SA_RESETHAND) still has handler %p after its delivery", (void *)hup.sa_handler);
	sigpending(&pending_now);
	sigset_t stay;
	sigemptyset(&stay);
	if (!same_set(&pending_now, &stay)) {
		sigset_text(x, sizeof(x), &pending_now);
		fail("signals {%s} still pending after delivery", x);
	}
	printf("signals: %d delivered\n", ngot);
	return wl_done();
}
