/*
 * A session with a controlling terminal no fd of the leader holds (zdtm
 * pty03's case, with children). The workload (a session leader, as the
 * harness starts it) opens a pty, makes the slave its controlling terminal
 * (TIOCSCTTY) and closes the slave: it keeps only the master. Then two
 * children inherit the terminal: `c1` stays in the leader's group and holds
 * /dev/tty (criu's CTTY); `c2` makes a group of its own, opens /dev/tty and
 * is made the foreground group.
 * After restore: the leader, c1 and c2 have the slave as their controlling
 * terminal (tty_nr) with c2's group in the foreground (tpgid); TIOCGSID and
 * TIOCGPGRP on the master; then the terminal works: the master writes
 * "hello\n", c2 (foreground) reads it from its /dev/tty and answers
 * "got:hello\n", c1 writes "c1\n" to its /dev/tty; the master reads exactly
 * the echo "hello\r\n", then "got:hello\r\n", then "c1\r\n"; both children
 * exit 0 (each checks its own /dev/tty's rdev and tty_nr).
 *
 * Sabotage: 1 the leader makes its own group the foreground one, 2 c1
 * gives up its controlling terminal (TIOCNOTTY).
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static volatile sig_atomic_t go;
static void on_usr1(int sig) { (void)sig; go = 1; }

static dev_t pts_rdev;

/* A child: holds /dev/tty; on SIGUSR1 does its part and exits 0 if all went well. */
static void child(int own_group)
{
	if (own_group)
		setpgid(0, 0);
	int tty = open("/dev/tty", O_RDWR);
	if (tty < 0)
		_exit(10);
	sigset_t none;
	sigemptyset(&none);
	while (!go)
		sigsuspend(&none);
	if (wl_sabotage() == 2 && !own_group)
		ioctl(tty, TIOCNOTTY);
	if (wl_stat_field(getpid(), 7) != pts_rdev)
		_exit(11);
	if (own_group) {
		char buf[64];
		ssize_t n = read(tty, buf, sizeof(buf));
		if (n != 6 || memcmp(buf, "hello\n", 6))
			_exit(12);
		if (write(tty, "got:hello\n", 10) != 10)
			_exit(13);
	} else if (write(tty, "c1\n", 3) != 3) {
		_exit(14);
	}
	_exit(0);
}

static void expect_read(int fd, const char *want, size_t n, const char *what)
{
	char buf[128];
	size_t got = 0;
	while (got < n) {
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, 2000) <= 0) {
			fail("%s: got %zu bytes (%.*s), expected %s", what, got, (int)got, buf, want);
			return;
		}
		ssize_t r = read(fd, buf + got, n - got);
		if (r <= 0) {
			fail("%s: read %zd errno %d", what, r, errno);
			return;
		}
		got += r;
	}
	if (memcmp(buf, want, n))
		fail("%s: read %.*s, expected %s", what, (int)n, buf, want);
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "tty-session");
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	int idx;
	if (m < 0 || ioctl(m, TIOCGPTN, &idx) || unlockpt(m)) {
		fail("ptmx: %d", errno);
		return wl_done();
	}
	char name[64];
	snprintf(name, sizeof(name), "/dev/pts/%d", idx);
	int s = open(name, O_RDWR | O_NOCTTY);
	struct stat st;
	if (s < 0 || fstat(s, &st) || ioctl(s, TIOCSCTTY, 0))
		fail("slave %s: %d", name, errno);
	pts_rdev = st.st_rdev;
	close(s);
	signal(SIGUSR1, on_usr1);
	sigset_t usr1, old;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, &old);
	pid_t c1 = fork();
	if (c1 == 0)
		child(0);
	pid_t c2 = fork();
	if (c2 == 0)
		child(1);
	sigprocmask(SIG_SETMASK, &old, NULL);
	setpgid(c2, c2);
	int tty = open("/dev/tty", O_RDWR);
	if (tty < 0 || tcsetpgrp(tty, c2))
		fail("make c2 the foreground: %d", errno);
	close(tty);
	usleep(100000);

	wl_ready();
	wl_wait();

	if (wl_sabotage() == 1) {
		signal(SIGTTOU, SIG_IGN);
		int t = open("/dev/tty", O_RDWR);
		tcsetpgrp(t, getpgrp());
		close(t);
	}
	pid_t procs[] = { getpid(), c1, c2 };
	for (int i = 0; i < 3; i++) {
		unsigned long tty_nr = wl_stat_field(procs[i], 7), tpgid = wl_stat_field(procs[i], 8);
		if (tty_nr != pts_rdev || tpgid != (unsigned long)c2)
			fail("process %d: tty_nr %lx tpgid %lu, expected %lx %d", procs[i], tty_nr, tpgid, (unsigned long)pts_rdev, c2);
	}
	pid_t sid = -1, pg = -1;
	if (ioctl(m, TIOCGSID, &sid) || sid != getpid())
		fail("the master's session %d, expected %d", sid, getpid());
	if (ioctl(m, TIOCGPGRP, &pg) || pg != c2)
		fail("the master's foreground group %d, expected %d", pg, c2);

	if (write(m, "hello\n", 6) != 6)
		fail("write master: %d", errno);
	expect_read(m, "hello\r\n", 7, "the echo");
	kill(c2, SIGUSR1);
	expect_read(m, "got:hello\r\n", 11, "c2's answer");
	kill(c1, SIGUSR1);
	expect_read(m, "c1\r\n", 4, "c1's line");
	if (wl_failures()) {
		/* A child stopped by SIGTTIN or waiting still: do not wait for it forever. */
		usleep(200000);
		kill(c1, SIGKILL);
		kill(c2, SIGKILL);
	}
	int status;
	if (waitpid(c1, &status, 0) != c1 || !WIFEXITED(status) || WEXITSTATUS(status))
		fail("c1 ended with status %x", status);
	if (waitpid(c2, &status, 0) != c2 || !WIFEXITED(status) || WEXITSTATUS(status))
		fail("c2 ended with status %x", status);
	return wl_done();
}
