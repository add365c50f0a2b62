/*
 * Leases being broken (zdtm file_lease02..04): each file gets a lease its
 * holder's signal (F_SETSIG SIGIO) reports the break of, then a conflicting
 * open with O_NONBLOCK starts the break and fails with EWOULDBLOCK; the
 * holder has not given the lease up when the tree is dumped:
 *   e: O_RDONLY, a read lease broken by an O_WRONLY open: F_GETLEASE says F_UNLCK;
 *   f: O_WRONLY, a write lease broken by an O_RDONLY open: F_GETLEASE says F_RDLCK
 *      (a downgrade);
 *   g: O_RDWR, a write lease broken by an O_WRONLY open, the description
 *      shared with a forked child (the lease kept once, by the first holder);
 *   h: the same, but the parent closes its fd after the fork: the lease is
 *      the child's to restore, its signals still the parent's (zdtm file_lease04).
 * After restore: the same lease types, each still breaking (an O_NONBLOCK
 * open still fails with EWOULDBLOCK; the child checks h), and no signal came
 * but the four of the breaks before the dump, each with its fd in si_fd: a
 * restore that broke the leases again must not let its own break signals through.
 *
 * Sabotage: 1 expects f's lease to be F_UNLCK.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t breaks, wrong_fd = -1;
static volatile int expected_fd = -1;

static void on_break(int sig, siginfo_t *info, void *ctx)
{
	(void)sig, (void)ctx;
	breaks++;
	if (info->si_fd != expected_fd)
		wrong_fd = info->si_fd;
	expected_fd = -1;
}

/* Opens name with mode, takes the lease its mode allows and starts its break by an open with break_mode. */
static int leased(const char *name, int mode, int break_mode)
{
	int fd = open(name, mode | O_CREAT, 0644);
	if (fd < 0) {
		fail("cannot open %s: %s", name, strerror(errno));
		return -1;
	}
	if (fcntl(fd, F_SETLEASE, (mode & O_ACCMODE) == O_RDONLY ? F_RDLCK : F_WRLCK) || fcntl(fd, F_SETSIG, SIGIO))
		fail("%s: cannot take the lease: %s", name, strerror(errno));
	expected_fd = fd;
	int b = open(name, break_mode | O_NONBLOCK);
	if (b >= 0 || errno != EWOULDBLOCK)
		fail("%s: the conflicting open did not start a break (%s)", name, b >= 0 ? "it opened" : strerror(errno));
	if (b >= 0)
		close(b);
	return fd;
}

static void check(const char *name, int fd, int want, int break_mode)
{
	int got = fcntl(fd, F_GETLEASE);
	if (got != want)
		fail("%s: the lease is %d, expected %d", name, got, want);
	int b = open(name, break_mode | O_NONBLOCK);
	if (b >= 0 || errno != EWOULDBLOCK)
		fail("%s: a conflicting open %s: the lease is no longer there", name, b >= 0 ? "succeeded" : strerror(errno));
	if (b >= 0)
		close(b);
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "files-leases");
	struct sigaction sa = { .sa_sigaction = on_break, .sa_flags = SA_SIGINFO };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGIO, &sa, NULL);
	int e = leased("e", O_RDONLY, O_WRONLY);
	int f = leased("f", O_WRONLY, O_RDONLY);
	int g = leased("g", O_RDWR, O_WRONLY);
	int h = leased("h", O_RDWR, O_WRONLY);
	int go[2], done[2];
	if (pipe(go) || pipe(done))
		fail("pipe: %s", strerror(errno));
	pid_t child = fork();
	if (child == 0) {
		/* Holds g's description too, and h's alone, until the parent asks about h. */
		char c;
		(void)!read(go[0], &c, 1);
		check("h", h, F_UNLCK, O_WRONLY);
		c = wl_failures() ? 'n' : 'y';
		(void)!write(done[1], &c, 1);
		_exit(0);
	}
	close(h);
	if (breaks != 4 || wrong_fd != -1)
		fail("before the dump: %d break signals (expected 4), one for fd %d", (int)breaks, (int)wrong_fd);
	wl_ready();
	wl_wait();
	check("e", e, F_UNLCK, O_WRONLY);
	check("f", f, wl_sabotage() == 1 ? F_UNLCK : F_RDLCK, O_RDONLY);
	check("g", g, F_UNLCK, O_WRONLY);
	char r = 0;
	if (write(go[1], "x", 1) != 1 || read(done[0], &r, 1) != 1 || r != 'y')
		fail("h: the child found its lease not as it was (see its output)");
	waitpid(child, NULL, 0);
	if (breaks != 4)
		fail("%d break signals arrived in all, expected the 4 before the dump", (int)breaks);
	if (wrong_fd != -1)
		fail("a break signal came for fd %d", (int)wrong_fd);
	return wl_done();
}
