/*
 * Pseudo-terminals. The workload (a session leader, as the harness starts
 * it) opens four ptys from /dev/ptmx:
 *   A: master (O_NONBLOCK) and slave; the slave is its controlling
 *      terminal (TIOCSCTTY) with a child in a group of its own as the
 *      foreground group; termios changed (no ICRNL, VERASE ^H, VKILL ^X,
 *      VEOL '#', VMIN 3), window 33x77 (pixels 500x600); data in flight
 *      both ways: the master wrote "one\ntwo#par" (a line ending in the
 *      newline, one ending in VEOL, and a partial line the slave's reader
 *      cannot read yet in canonical mode; echoed), and the slave wrote
 *      "out\n" (ONLCR: "out\r\n" for the master). A second slave fd of A
 *      (a separate open) is exclusive (TIOCEXCL on the slave).
 *   B: master in packet mode, its slave wrote "pk1\n", unread.
 *   C: master only, locked again after its slave was opened and closed
 *      (TIOCSPTLCK; reads give EIO: the slave was closed).
 *   D: master only, slave never opened; the master is exclusive (TIOCEXCL).
 * After restore: each master's index (ptsname, TIOCGPTN); F_GETFL;
 * termios and window size of A; TIOCGPKT of B, TIOCGPTLCK of C and D,
 * TIOCGEXCL of A's slave and D's master; A is the controlling terminal of
 * the workload and its child (tty_nr of both), its session is ours
 * (TIOCGSID) and the child's group is its foreground (tcgetpgrp); the data:
 * the slave reads "one\n" then "two#" and nothing more (the partial line),
 * until the master ends it with "\n": then "par\n"; the master reads exactly
 * "one\r\ntwo#par" (the echo, once) and "out\r\n", then the echo of the
 * last "\n" ("\r\n"); B's master reads the packet byte 0 and "pk1\r\n"; C's
 * master reads EIO; a second open of A's slave fails with EBUSY
 * (exclusive, as root: opened with CAP_SYS_ADMIN dropped is not needed:
 * exclusive is checked with TIOCGEXCL).
 *
 * Sabotage: 1 reads the slave's first line, 2 changes A's window size,
 * 3 turns packet mode off, 4 unlocks C, 5 makes the workload's own group
 * the foreground one, 6 reads the master's queued output.
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

struct pty {
	int m, s, idx;
	char name[64];
};

static int open_pty(struct pty *p, int mflags)
{
	p->m = posix_openpt(O_RDWR | O_NOCTTY | mflags);
	if (p->m < 0)
		return -1;
	if (ioctl(p->m, TIOCGPTN, &p->idx) || unlockpt(p->m))
		return -1;
	snprintf(p->name, sizeof(p->name), "/dev/pts/%d", p->idx);
	p->s = -1;
	return 0;
}

static void settle(void)
{
	usleep(50000);
}

/* Reads what is there now, waiting up to 200 ms for the first byte. */
static ssize_t read_now(int fd, char *buf, size_t cap)
{
	struct pollfd p = { fd, POLLIN, 0 };
	if (poll(&p, 1, 200) <= 0)
		return -2;
	return read(fd, buf, cap);
}

static void expect_read(int fd, const char *want, size_t n, const char *what)
{
	char buf[256];
	size_t got = 0;
	while (got < n) {
		ssize_t r = read_now(fd, buf + got, n - got);
		if (r <= 0) {
			fail("%s: read %zu bytes, then %zd (errno %d); expected %zu", what, got, r, errno, n);
			return;
		}
		got += r;
	}
	if (memcmp(buf, want, n)) {
		char a[512] = "", *q = a;
		for (size_t i = 0; i < got && q < a + sizeof(a) - 8; i++)
			q += sprintf(q, "%02x", (unsigned char)buf[i]);
		fail("%s: read %s, expected %.*s", what, a, (int)n, want);
	}
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "tty-pty");
	struct pty a, b, c, d;
	if (open_pty(&a, O_NONBLOCK) || open_pty(&b, 0) || open_pty(&c, 0) || open_pty(&d, 0)) {
		fail("open ptys: %d", errno);
		return wl_done();
	}
	a.s = open(a.name, O_RDWR | O_NOCTTY);
	int a2 = open(a.name, O_RDWR | O_NOCTTY);
	if (a.s < 0 || a2 < 0 || ioctl(a.s, TIOCSCTTY, 0))
		fail("slave of A: %d", errno);
	struct termios t;
	tcgetattr(a.s, &t);
	t.c_iflag &= ~ICRNL;
	t.c_cc[VERASE] = 8;
	t.c_cc[VKILL] = 24;
	t.c_cc[VEOL] = '#';
	t.c_cc[VMIN] = 3;
	tcsetattr(a.s, TCSANOW, &t);
	struct winsize ws = { 33, 77, 500, 600 };
	ioctl(a.m, TIOCSWINSZ, &ws);
	if (ioctl(a2, TIOCEXCL))
		fail("TIOCEXCL: %d", errno);

	pid_t child = fork();
	if (child == 0) {
		setpgid(0, 0);
		signal(SIGTERM, SIG_DFL);
		for (;;)
			pause();
	}
	setpgid(child, child);
	if (tcsetpgrp(a.s, child))
		fail("tcsetpgrp: %d", errno);

	if (write(a.m, "one\ntwo#par", 11) != 11)
		fail("write A's master: %d", errno);
	/* The echo comes first, once the input is processed. */
	settle();
	if (write(a.s, "out\n", 4) != 4)
		fail("write A's slave: %d", errno);
	b.s = open(b.name, O_RDWR | O_NOCTTY);
	int on = 1;
	if (ioctl(b.m, TIOCPKT, &on) || write(b.s, "pk1\n", 4) != 4)
		fail("B: %d", errno);
	c.s = open(c.name, O_RDWR | O_NOCTTY);
	close(c.s);
	int lock = 1;
	if (ioctl(c.m, TIOCSPTLCK, &lock))
		fail("lock C: %d", errno);
	if (ioctl(d.m, TIOCEXCL))
		fail("TIOCEXCL D: %d", errno);
	settle();
	struct stat sa;
	fstat(a.s, &sa);

	wl_ready();
	wl_wait();

	switch (wl_sabotage()) {
	case 2: { struct winsize w2 = { 10, 10, 0, 0 }; ioctl(a.m, TIOCSWINSZ, &w2); break; }
	case 3: { int off = 0; ioctl(b.m, TIOCPKT, &off); break; }
	case 4: { int un = 0; ioctl(c.m, TIOCSPTLCK, &un); break; }
	case 5: signal(SIGTTOU, SIG_IGN); tcsetpgrp(a.s, getpgrp()); signal(SIGTTOU, SIG_DFL); break;
	case 6: { char x[64]; read(a.m, x, sizeof(x)); break; }
	}

	struct pty *all[] = { &a, &b, &c, &d };
	for (int i = 0; i < 4; i++) {
		int n = -1;
		char *name = ptsname(all[i]->m);
		if (ioctl(all[i]->m, TIOCGPTN, &n) || n != all[i]->idx || !name || strcmp(name, all[i]->name))
			fail("pty %c: index %d name %s, expected %d %s", 'A' + i, n, name ? name : "?", all[i]->idx, all[i]->name);
	}
	int fl = fcntl(a.m, F_GETFL);
	if ((fl & (O_ACCMODE | O_NONBLOCK)) != (O_RDWR | O_NONBLOCK))
		fail("A's master flags %o", fl);
	struct termios t2;
	tcgetattr(a.s, &t2);
	if (t2.c_iflag != t.c_iflag || t2.c_oflag != t.c_oflag || t2.c_cflag != t.c_cflag || t2.c_lflag != t.c_lflag ||
	    memcmp(t2.c_cc, t.c_cc, NCCS))
		fail("A's termios: iflag %o oflag %o cflag %o lflag %o, expected %o %o %o %o (or c_cc differs)", t2.c_iflag, t2.c_oflag,
		     t2.c_cflag, t2.c_lflag, t.c_iflag, t.c_oflag, t.c_cflag, t.c_lflag);
	struct winsize w;
	ioctl(a.s, TIOCGWINSZ, &w);
	if (memcmp(&w, &ws, sizeof(w)))
		fail("A's window %dx%d (%dx%d), expected 33x77 (500x600)", w.ws_row, w.ws_col, w.ws_xpixel, w.ws_ypixel);
	int v = -1;
	if (ioctl(b.m, TIOCGPKT, &v) || v != 1)
		fail("B's packet mode %d", v);
	v = -1;
	if (ioctl(c.m, TIOCGPTLCK, &v) || v != 1)
		fail("C's lock %d", v);
	v = -1;
	if (ioctl(d.m, TIOCGPTLCK, &v) || v != 0)
		fail("D's lock %d", v);
	v = -1;
	if (ioctl(a2, TIOCGEXCL, &v) || v != 1)
		fail("A's slave exclusive %d", v);
	v = -1;
	if (ioctl(d.m, TIOCGEXCL, &v) || v != 1)
		fail("D's master exclusive %d", v);
	unsigned long tty = wl_stat_field(getpid(), 7), ctty = wl_stat_field(child, 7);
	if (tty != sa.st_rdev || ctty != sa.st_rdev)
		fail("controlling terminal: ours %lx, the child's %lx, expected %lx", tty, ctty, (unsigned long)sa.st_rdev);
	pid_t sid = -1;
	if (ioctl(a.s, TIOCGSID, &sid) || sid != getpid())
		fail("A's session %d, expected %d", sid, getpid());
	pid_t fg = tcgetpgrp(a.s);
	if (fg != child)
		fail("A's foreground group %d, expected the child's %d", fg, child);

	/* The data, in canonical mode with VEOL '#': read by the foreground group, ours again. */
	signal(SIGTTOU, SIG_IGN);
	if (tcsetpgrp(a.s, getpgrp()))
		fail("take the foreground back: %d", errno);
	if (wl_sabotage() == 1) {
		char x[8];
		read(a.s, x, sizeof(x));
	}
	int sfl = fcntl(a.s, F_GETFL);
	fcntl(a.s, F_SETFL, sfl | O_NONBLOCK);
	char buf[64];
	expect_read(a.s, "one\n", 4, "A's slave, first line");
	expect_read(a.s, "two#", 4, "A's slave, second line");
	ssize_t r = read(a.s, buf, sizeof(buf));
	if (r != -1 || errno != EAGAIN)
		fail("A's slave: the partial line was readable (%zd)", r);
	expect_read(a.m, "one\r\ntwo#parout\r\n", 17, "A's master, echo and output");
	r = read(a.m, buf, sizeof(buf));
	if (r != -1 || errno != EAGAIN)
		fail("A's master: %zd more bytes (echoed twice?)", r);
	if (write(a.m, "\n", 1) != 1)
		fail("write A: %d", errno);
	expect_read(a.s, "par\n", 4, "A's slave, the partial line ended");
	expect_read(a.m, "\r\n", 2, "A's master, the echo of the newline");
	expect_read(b.m, "\0pk1\r\n", 6, "B's master (packet mode)");
	r = read(c.m, buf, sizeof(buf));
	if (r != -1 || errno != EIO)
		fail("C's master: read %zd errno %d, expected EIO (slave closed)", r, errno);

	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	return wl_done();
}
