/*
 * Anonymous-inode files with state of their own (like CRIU's zdtm
 * pidfd_*, signalfd00, timerfd): two eventfds (one EFD_SEMAPHORE |
 * EFD_NONBLOCK at 7 with a dup, one plain holding a 36-bit counter); a
 * signalfd for SIGUSR1 and SIGRTMIN+2 (both blocked) with a SIGUSR1 queued
 * (sigqueue, value 42); timerfds: a 20 ms periodic one ticking, one that
 * expired once (1 ms, never read), an absolute CLOCK_REALTIME one an hour
 * ahead (TFD_TIMER_ABSTIME), one never armed; pidfds: of a child (inherited
 * by nothing), of this process itself (PIDFD_NONBLOCK, also inherited by the
 * child: one description in two processes), of a child already reaped.
 * After: eventfd flags, semaphore reads (1 seven times, then EAGAIN), the big
 * counter, the dup shares its description; the signalfd's mask (fdinfo) and
 * the queued SIGUSR1 read through it with its value, then nothing; the
 * periodic timer's interval, its ticks at least those seen at ready, and
 * that it still fires; the expired timer gives exactly 1 tick; the absolute
 * one is still absolute, ends after its deadline and within 120 s of it;
 * the disarmed one stays so; pidfds name the right processes (fdinfo Pid),
 * the dead one gives ESRCH, the child's is signalled and waited with
 * waitid(P_PIDFD).
 *
 * With argv[2] "outside" it holds only a pidfd of its parent (not in the
 * dumped tree), with "fanotify" only a fanotify fd with a filesystem-wide mark: both refused by crest; it
 * checks the fd is still there as it was.
 *
 * Sabotage: 1 reads the semaphore eventfd once; 2 reads the signal from the
 * signalfd; 3 reads the expired timer's tick; 4 puts a pidfd of this
 * process where the child's was.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#define KCMP_FILE 0
#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
#define NS 1000000000LL

static int pidfd_open(pid_t pid, unsigned flags)
{
	return syscall(SYS_pidfd_open, pid, flags);
}

static int pidfd_send_signal(int fd, int sig)
{
	return syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0);
}

/* The value of "key:" in /proc/self/fdinfo/FD (empty if absent). */
static const char *fdinfo(int fd, const char *key, char *buf, size_t cap)
{
	char path[64], text[4096];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	buf[0] = 0;
	if (wl_read_into(path, text, sizeof(text)) < 0)
		return buf;
	size_t kl = strlen(key);
	for (char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (strncmp(l, key, kl) || l[kl] != ':')
			continue;
		l += kl + 1;
		while (*l == ' ' || *l == '\t')
			l++;
		size_t n = strcspn(l, "\n");
		if (n >= cap)
			n = cap - 1;
		memcpy(buf, l, n);
		buf[n] = 0;
		break;
	}
	return buf;
}

static long long fdinfo_num(int fd, const char *key, int base)
{
	char b[128];
	fdinfo(fd, key, b, sizeof(b));
	return b[0] ? strtoll(b, NULL, base) : -2;
}

/* The pid a pidfd names in the innermost PID namespace (the last NSpid field): /proc may be another namespace's. */
static long long nspid(int fd)
{
	char b[128];
	fdinfo(fd, "NSpid", b, sizeof(b));
	char *last = strrchr(b, '\t') ? strrchr(b, '\t') + 1 : strrchr(b, ' ') ? strrchr(b, ' ') + 1 : b;
	return b[0] ? strtoll(last, NULL, 10) : -2;
}

static long long ts_ns(struct timespec t)
{
	return t.tv_sec * NS + t.tv_nsec;
}

static void check_flags(int fd, const char *what, int want)
{
	int fl = fcntl(fd, F_GETFL);
	if ((fl & O_NONBLOCK) != (want & O_NONBLOCK))
		fail("%s: F_GETFL 0%o, expected O_NONBLOCK %s", what, fl, want & O_NONBLOCK ? "set" : "clear");
}

/* One fd crest refuses; after the refused dump it must be as it was. */
static int refused(const char *mode)
{
	int fd = -1;
	pid_t parent = getppid();
	if (!strcmp(mode, "outside"))
		fd = pidfd_open(parent, 0);
	else if (!strcmp(mode, "fanotify")) {
		/* A filesystem-wide mark: criu's images have no place for it. */
		fd = fanotify_init(FAN_CLASS_NOTIF, O_RDONLY);
		if (fd >= 0 && fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_CLOSE_WRITE, AT_FDCWD, "/") < 0)
			fail("setup a filesystem mark: %s", strerror(errno));
	}
	if (fd < 0)
		fail("setup %s: %s", mode, strerror(errno));
	wl_ready();
	wl_wait();
	if (!strcmp(mode, "outside") && fdinfo_num(fd, "Pid", 10) != parent)
		fail("parent's pidfd names process %lld, expected %d", fdinfo_num(fd, "Pid", 10), parent);
	if (!strcmp(mode, "fanotify") && fanotify_mark(fd, FAN_MARK_ADD, FAN_CLOSE_WRITE, AT_FDCWD, "/") < 0)
		fail("fanotify fd %d no longer works: %s", fd, strerror(errno));
	return wl_done();
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "fds-anon");
	if (argc > 2)
		return refused(argv[2]);

	/* eventfds */
	int sem = eventfd(7, EFD_SEMAPHORE | EFD_NONBLOCK);
	int semdup = dup(sem);
	int big = eventfd(0, 0);
	uint64_t v = 0x923456789ULL;
	if (sem < 0 || semdup < 0 || big < 0 || write(big, &v, 8) != 8)
		fail("setup eventfds: %s", strerror(errno));

	/* signalfd */
	sigset_t blk, acc;
	sigemptyset(&blk);
	sigaddset(&blk, SIGUSR1);
	sigaddset(&blk, SIGRTMIN + 2);
	sigprocmask(SIG_BLOCK, &blk, NULL);
	sigemptyset(&acc);
	sigaddset(&acc, SIGUSR1);
	sigaddset(&acc, SIGRTMIN + 2);
	int sfd = signalfd(-1, &acc, SFD_NONBLOCK);
	char mask_before[64];
	fdinfo(sfd, "sigmask", mask_before, sizeof(mask_before));
	if (sfd < 0 || sigqueue(getpid(), SIGUSR1, (union sigval){ .sival_int = 42 }))
		fail("setup signalfd: %s", strerror(errno));

	/* timerfds */
	int tper = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	struct itimerspec per = { { 0, 20000000 }, { 0, 20000000 } };
	int tonce = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	struct itimerspec once = { { 0, 0 }, { 0, 1000000 } };
	int tabs = timerfd_create(CLOCK_REALTIME, 0);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct itimerspec abs = { { 5, 0 }, { now.tv_sec + 3600, now.tv_nsec } };
	long long deadline = ts_ns(abs.it_value);
	int toff = timerfd_create(CLOCK_BOOTTIME, 0);
	if (tper < 0 || tonce < 0 || tabs < 0 || toff < 0 || timerfd_settime(tper, 0, &per, NULL) ||
	    timerfd_settime(tonce, 0, &once, NULL) || timerfd_settime(tabs, TFD_TIMER_ABSTIME, &abs, NULL))
		fail("setup timerfds: %s", strerror(errno));
	usleep(100000);

	/* pidfds: a reaped child's, our own, a live child's */
	pid_t gone = fork();
	if (gone == 0)
		_exit(0);
	int pdead = pidfd_open(gone, 0);
	waitpid(gone, NULL, 0);
	int pself = pidfd_open(getpid(), PIDFD_NONBLOCK);
	pid_t child = fork();
	if (child == 0) {
		signal(SIGTERM, SIG_DFL);
		for (;;)
			pause();
	}
	int pchild = pidfd_open(child, 0);
	if (pdead < 0 || pself < 0 || pchild < 0)
		fail("setup pidfds: %s", strerror(errno));

	long long ticks_ready = fdinfo_num(tper, "ticks", 10);
	wl_ready();
	wl_wait();

	switch (wl_sabotage()) {
	case 1: read(sem, &v, 8); break;
	case 2: { struct signalfd_siginfo si; read(sfd, &si, sizeof(si)); break; }
	case 3: read(tonce, &v, 8); break;
	case 4: dup2(pself, pchild); break;
	}

	/* eventfds */
	check_flags(sem, "semaphore eventfd", O_NONBLOCK);
	check_flags(big, "eventfd", 0);
	if (syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, sem, semdup) != 0)
		fail("eventfd fds %d and %d no longer share a description", sem, semdup);
	if (fdinfo_num(sem, "eventfd-semaphore", 10) != 1)
		fail("eventfd %d is no longer EFD_SEMAPHORE", sem);
	for (int i = 0; i < 7; i++) {
		v = 0;
		if (read(i % 2 ? semdup : sem, &v, 8) != 8 || v != 1) {
			fail("semaphore eventfd read %d: %llu (%s), expected 1", i + 1, (unsigned long long)v, strerror(errno));
			break;
		}
	}
	if (read(sem, &v, 8) != -1 || errno != EAGAIN)
		fail("semaphore eventfd: an 8th read did not say EAGAIN: the counter was above 7");
	if (read(big, &v, 8) != 8 || v != 0x923456789ULL)
		fail("eventfd counter is 0x%llx, expected 0x923456789", (unsigned long long)v);

	/* signalfd */
	char mask_after[64];
	fdinfo(sfd, "sigmask", mask_after, sizeof(mask_after));
	if (strcmp(mask_before, mask_after))
		fail("signalfd sigmask is %s, expected %s", mask_after, mask_before);
	check_flags(sfd, "signalfd", O_NONBLOCK);
	struct signalfd_siginfo si;
	ssize_t n = read(sfd, &si, sizeof(si));
	if (n != sizeof(si))
		fail("signalfd: no queued signal to read (%s)", strerror(errno));
	else if (si.ssi_signo != SIGUSR1 || si.ssi_code != SI_QUEUE || si.ssi_int != 42 || (pid_t)si.ssi_pid != getpid())
		fail("signalfd read signal %u code %d value %d pid %u, expected %d SI_QUEUE 42 %d", si.ssi_signo, si.ssi_code, si.ssi_int,
		     si.ssi_pid, SIGUSR1, getpid());
	if (read(sfd, &si, sizeof(si)) != -1 || errno != EAGAIN)
		fail("signalfd: a second signal was there to read");

	/* timerfds */
	struct itimerspec got;
	timerfd_gettime(tper, &got);
	if (got.it_interval.tv_sec != 0 || got.it_interval.tv_nsec != 20000000)
		fail("periodic timerfd interval is %lld ns, expected 20000000", ts_ns(got.it_interval));
	check_flags(tper, "periodic timerfd", O_NONBLOCK);
	uint64_t t = 0;
	if (read(tper, &t, 8) != 8 || (long long)t < ticks_ready)
		fail("periodic timerfd: %llu ticks, expected at least the %lld it had at ready", (unsigned long long)t, ticks_ready);
	usleep(70000);
	if (read(tper, &t, 8) != 8 || t < 2)
		fail("periodic timerfd: %llu ticks in 70 ms, expected at least 2", (unsigned long long)t);
	t = 0;
	if (read(tonce, &t, 8) != 8 || t != 1)
		fail("expired timerfd: %llu ticks, expected exactly 1 (%s)", (unsigned long long)t, strerror(errno));
	if (fdinfo_num(tabs, "settime flags", 8) != 1)
		fail("absolute timerfd: settime flags %lld, expected 01 (TFD_TIMER_ABSTIME)", fdinfo_num(tabs, "settime flags", 8));
	check_flags(tabs, "absolute timerfd", 0);
	timerfd_gettime(tabs, &got);
	clock_gettime(CLOCK_REALTIME, &now);
	long long end = ts_ns(now) + ts_ns(got.it_value);
	if (end < deadline - 2000000 || end > deadline + 120 * NS)
		fail("absolute timerfd ends at %lld ns, expected %lld (+ up to 120 s)", end, deadline);
	if (got.it_interval.tv_sec != 5 || got.it_interval.tv_nsec)
		fail("absolute timerfd interval is %lld ns, expected 5 s", ts_ns(got.it_interval));
	timerfd_gettime(toff, &got);
	if (ts_ns(got.it_value) || ts_ns(got.it_interval) || fdinfo_num(toff, "clockid", 10) != CLOCK_BOOTTIME)
		fail("unarmed timerfd: value %lld interval %lld clock %lld, expected 0 0 %d", ts_ns(got.it_value), ts_ns(got.it_interval),
		     fdinfo_num(toff, "clockid", 10), CLOCK_BOOTTIME);

	/* pidfds */
	if (nspid(pself) != getpid())
		fail("own pidfd names process %lld, expected %d", nspid(pself), getpid());
	check_flags(pself, "own pidfd", O_NONBLOCK);
	if (fdinfo_num(pdead, "Pid", 10) != -1)
		fail("reaped child's pidfd names process %lld, expected -1", fdinfo_num(pdead, "Pid", 10));
	if (pidfd_send_signal(pdead, 0) != -1 || errno != ESRCH)
		fail("reaped child's pidfd: signal 0 did not say ESRCH (%s)", strerror(errno));
	if (nspid(pchild) != child)
		fail("child's pidfd names process %lld, expected %d", nspid(pchild), child);
	if (pidfd_send_signal(pchild, SIGTERM))
		fail("pidfd_send_signal to the child: %s", strerror(errno));
	siginfo_t wi = { 0 };
	if (waitid(P_PIDFD, pchild, &wi, WEXITED))
		fail("waitid(P_PIDFD): %s", strerror(errno));
	if (wi.si_pid != child || wi.si_code != CLD_KILLED || wi.si_status != SIGTERM)
		fail("waitid(P_PIDFD) gave pid %d code %d status %d, expected %d CLD_KILLED SIGTERM", wi.si_pid, wi.si_code, wi.si_status, child);
	kill(child, SIGKILL);
	return wl_done();
}
