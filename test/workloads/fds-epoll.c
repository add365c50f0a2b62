/*
 * epoll (like CRIU's zdtm epoll, epoll01, eventfs00): an epoll fd (O_NONBLOCK)
 * watching a pipe's read end (1 byte in it, EPOLLIN), its write end
 * (EPOLLOUT | EPOLLET), an eventfd holding 5 (EPOLLIN | EPOLLONESHOT), one
 * holding 0 (EPOLLIN | EPOLLWAKEUP), a timerfd that expired (EPOLLIN), one
 * never armed, a nested epoll (itself watching the pipe's read end), and a
 * second pipe added as fd 60, a dup that was closed since (the target lives
 * on at the pipe's own fd). Each target has its own 64-bit data. A third
 * epoll holds a ONESHOT target that already fired (disarmed) and one with
 * EPOLLEXCLUSIVE. A child shares the main epoll (fork).
 * After: epoll flags; each interest list (tfd, events, data from
 * /proc/self/fdinfo, fd 60 read as the pipe's fd) as before; epoll_wait's
 * ready set (data and events) is exactly the ready targets; a second wait
 * drops the ONESHOT and the edge-triggered one; writing the empty eventfd
 * makes it ready; the disarmed target stays silent; the child's epoll is
 * the parent's description (kcmp) with the same interest list (checked
 * before any epoll_wait).
 *
 * With argv[2] "elsewhere" the epoll watches a pipe only a child still
 * holds: crest refuses it; the epoll must be as it was.
 *
 * Sabotage: 1 removes the pipe's read end from the epoll; 2 changes the
 * data of the eventfd target.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define KCMP_FILE 0
#define MOVED_FD 60

#define D_PIPE_R 0x1111222233334444ULL
#define D_PIPE_W 0xabcdefULL
#define D_EFD 0x77ULL
#define D_EFD0 0x99ULL
#define D_TIMER 0x55ULL
#define D_TIMER0 0x66ULL
#define D_NESTED 0xeeULL
#define D_MOVED 0x6000000000000060ULL
#define D_FIRED 0x88ULL
#define D_EXCL 0xe1ULL

/* The interest list of an epoll fd: its "tfd:" lines as "tfd events data",
 * fd `from` written as `to`. */
static void interest(int ep, int from, int to, char *out, size_t cap)
{
	char path[64], text[8192];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ep);
	out[0] = 0;
	if (wl_read_into(path, text, sizeof(text)) < 0) {
		fail("read %s: %s", path, strerror(errno));
		return;
	}
	size_t n = 0;
	for (char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		int tfd;
		unsigned events;
		unsigned long long data;
		if (sscanf(l, "tfd: %d events: %x data: %llx", &tfd, &events, &data) != 3)
			continue;
		if (tfd == from)
			tfd = to;
		n += snprintf(out + n, n < cap ? cap - n : 0, "%d %x %llx\n", tfd, events, data);
	}
	if (n >= cap)
		fail("interest list of epoll %d too long", ep);
}

/* A target epoll_wait may report: its data and the events expected. */
struct want {
	uint64_t data;
	uint32_t events;
};

/* The ready set from one epoll_wait, a bitmask over `w`; checks each one's events. */
static unsigned ready(int ep, const struct want *w, int nw, const char *when)
{
	struct epoll_event ev[16];
	unsigned got = 0;
	int n = epoll_wait(ep, ev, 16, 0);
	if (n < 0) {
		fail("%s: epoll_wait: %s", when, strerror(errno));
		return 0;
	}
	for (int i = 0; i < n; i++) {
		int k;
		for (k = 0; k < nw && w[k].data != ev[i].data.u64; k++)
			;
		if (k == nw) {
			fail("%s: epoll_wait gave data %#llx (events %#x), not a target", when,
			     (unsigned long long)ev[i].data.u64, ev[i].events);
			continue;
		}
		if (ev[i].events != w[k].events)
			fail("%s: target %#llx has events %#x, expected %#x", when, (unsigned long long)w[k].data,
			     ev[i].events, w[k].events);
		got |= 1u << k;
	}
	return got;
}

static void expect(unsigned got, unsigned want, const struct want *w, int nw, const char *when)
{
	for (int k = 0; k < nw; k++) {
		if ((got & (1u << k)) && !(want & (1u << k)))
			fail("%s: target %#llx is ready, it should not be", when, (unsigned long long)w[k].data);
		if (!(got & (1u << k)) && (want & (1u << k)))
			fail("%s: target %#llx is not ready, it should be", when, (unsigned long long)w[k].data);
	}
}

static void add(int ep, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = { .events = events, .data.u64 = data };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) {
		perror("epoll_ctl");
		exit(2);
	}
}

static int elsewhere(void)
{
	int ep = epoll_create1(0), p[2];
	if (ep < 0 || pipe(p))
		return 1;
	add(ep, p[0], EPOLLIN, 7);
	pid_t child = fork();
	if (child == 0) {
		close(ep);
		pause();
		_exit(0);
	}
	close(p[0]);
	char before[1024], after[1024];
	interest(ep, -1, -1, before, sizeof(before));
	wl_ready();
	wl_wait();
	interest(ep, -1, -1, after, sizeof(after));
	wl_compare_lines("interest list", before, after);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	return wl_done();
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "fds-epoll");
	if (argc > 2 && !strcmp(argv[2], "elsewhere"))
		return elsewhere();

	int p[2], q[2], go[2];
	if (pipe(p) || pipe(q) || pipe(go) || write(p[1], "x", 1) != 1) {
		perror("pipe");
		return 2;
	}
	int efd = eventfd(5, EFD_NONBLOCK), efd0 = eventfd(0, 0), fired = eventfd(1, 0);
	int tmr = timerfd_create(CLOCK_MONOTONIC, 0), tmr0 = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK);
	int ep = epoll_create1(EPOLL_CLOEXEC), nested = epoll_create1(0), ep3 = epoll_create1(0);
	if (efd < 0 || efd0 < 0 || fired < 0 || tmr < 0 || tmr0 < 0 || ep < 0 || nested < 0 || ep3 < 0) {
		perror("create");
		return 2;
	}
	fcntl(ep, F_SETFL, O_NONBLOCK);
	struct itimerspec once = { .it_value = { 0, 1000000 } };
	timerfd_settime(tmr, 0, &once, NULL);
	struct timespec ms5 = { 0, 5000000 };
	nanosleep(&ms5, NULL);

	add(nested, p[0], EPOLLIN, 1);
	add(ep, p[0], EPOLLIN, D_PIPE_R);
	add(ep, p[1], EPOLLOUT | EPOLLET, D_PIPE_W);
	add(ep, efd, EPOLLIN | EPOLLONESHOT, D_EFD);
	add(ep, efd0, EPOLLIN | EPOLLWAKEUP, D_EFD0);
	add(ep, tmr, EPOLLIN, D_TIMER);
	add(ep, tmr0, EPOLLIN, D_TIMER0);
	add(ep, nested, EPOLLIN, D_NESTED);
	if (dup2(q[0], MOVED_FD) != MOVED_FD) {
		perror("dup2");
		return 2;
	}
	add(ep, MOVED_FD, EPOLLIN | EPOLLRDHUP, D_MOVED);
	close(MOVED_FD);
	if (write(q[1], "y", 1) != 1)
		return 2;
	/* ep3: a ONESHOT target that fired (disarmed), and an EPOLLEXCLUSIVE one. */
	add(ep3, fired, EPOLLIN | EPOLLONESHOT, D_FIRED);
	struct epoll_event ev;
	if (epoll_wait(ep3, &ev, 1, 0) != 1 || ev.data.u64 != D_FIRED) {
		fprintf(stderr, "the ONESHOT target did not fire\n");
		return 2;
	}
	add(ep3, p[0], EPOLLIN | EPOLLEXCLUSIVE, D_EXCL);

	char before[2048], before3[1024], after[2048], buf[2048];
	interest(ep, MOVED_FD, q[0], before, sizeof(before));
	interest(ep3, -1, -1, before3, sizeof(before3));

	pid_t child = fork();
	if (child < 0)
		return 2;
	if (child == 0) {
		/* Waits for the parent's checks, then checks its own epoll fd. */
		char c;
		close(go[1]);
		while (read(go[0], &c, 1) < 0 && errno == EINTR)
			;
		int bad = 0;
		if (syscall(SYS_kcmp, getppid(), getpid(), KCMP_FILE, ep, ep) != 0)
			bad |= 1;
		interest(ep, MOVED_FD, q[0], buf, sizeof(buf));
		/* As sets: the kernel lists targets by file address. */
		wl_compare_lines("child's interest list", before, buf);
		if (wl_failures())
			bad |= 2;
		_exit(bad);
	}
	close(go[0]);

	wl_ready();
	wl_wait();

	switch (wl_sabotage()) {
	case 1:
		epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL);
		break;
	case 2: {
		struct epoll_event e = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = 0x42 };
		epoll_ctl(ep, EPOLL_CTL_MOD, efd, &e);
		break;
	}
	}

	/* The child looks first, while no epoll_wait has changed anything. */
	if (write(go[1], "g", 1) != 1)
		fail("wake the child: %s", strerror(errno));
	int status;
	if (waitpid(child, &status, 0) != child)
		fail("waitpid: %s", strerror(errno));
	else if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail("child: %s%s (status %#x)", WIFEXITED(status) && (WEXITSTATUS(status) & 1) ? "its epoll is not the parent's; " : "",
		     WIFEXITED(status) && (WEXITSTATUS(status) & 2) ? "its interest list differs" : "", status);
	int fl = fcntl(ep, F_GETFL), fdfl = fcntl(ep, F_GETFD);
	if (!(fl & O_NONBLOCK))
		fail("epoll lost O_NONBLOCK (flags %#o)", fl);
	if (!(fdfl & FD_CLOEXEC))
		fail("epoll lost FD_CLOEXEC");
	if (fcntl(nested, F_GETFD) & FD_CLOEXEC)
		fail("nested epoll gained FD_CLOEXEC");
	interest(ep, MOVED_FD, q[0], after, sizeof(after));
	wl_compare_lines("interest list", before, after);
	interest(ep3, -1, -1, buf, sizeof(buf));
	wl_compare_lines("interest list of the third epoll", before3, buf);

	const struct want w[] = {
		{ D_PIPE_R, EPOLLIN }, { D_PIPE_W, EPOLLOUT }, { D_EFD, EPOLLIN }, { D_EFD0, EPOLLIN },
		{ D_TIMER, EPOLLIN },  { D_TIMER0, EPOLLIN },  { D_NESTED, EPOLLIN }, { D_MOVED, EPOLLIN },
	};
	const int nw = sizeof(w) / sizeof(w[0]);
	/* Ready: pipe both ends, eventfd 5, expired timer, nested, moved pipe. */
	expect(ready(ep, w, nw, "first wait"), 0x1 | 0x2 | 0x4 | 0x10 | 0x40 | 0x80, w, nw, "first wait");
	/* ONESHOT is disarmed now, the edge-triggered one reported its edge. */
	expect(ready(ep, w, nw, "second wait"), 0x1 | 0x10 | 0x40 | 0x80, w, nw, "second wait");
	uint64_t one = 1;
	if (write(efd0, &one, 8) != 8)
		fail("write eventfd: %s", strerror(errno));
	expect(ready(ep, w, nw, "after writing the eventfd"), 0x1 | 0x8 | 0x10 | 0x40 | 0x80, w, nw,
	       "after writing the eventfd");
	const struct want w3[] = { { D_FIRED, EPOLLIN }, { D_EXCL, EPOLLIN } };
	expect(ready(ep3, w3, 2, "third epoll"), 0x2, w3, 2, "third epoll");

	return wl_done();
}
