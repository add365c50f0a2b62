/*
 * One pipe seen through many descriptions (like CRIU's zdtm pipe01): the
 * pipe2 ends, a dup of each, each end reopened through /proc/self/fd (new
 * descriptions of the same pipe), the write end O_NONBLOCK and its reopen
 * not, 40000 bytes queued. A child inherits all of them and reopens the read
 * end once more itself. A second pipe's read end is reopened twice and its
 * write end closed after queueing 3000 bytes.
 * After: per fd, F_GETFL and F_GETFD, which fds are the same pipe; dups share their
 * description, reopens do not (kcmp); once every write end is closed the read
 * end gives exactly the queued bytes, then EOF.
 *
 * Sabotage: 1 drops O_NONBLOCK from the write end; 2 reads a byte of the
 * first pipe.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define KCMP_FILE 0
#define P_BYTES 40000
#define Q_BYTES 3000

static int reopen(int fd, int flags)
{
	char p[64];
	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	int r = open(p, flags);
	if (r < 0)
		fail("reopen fd %d: %s", fd, strerror(errno));
	return r;
}

struct fdrec {
	const char *what;
	int fd, getfl, getfd;
	ino_t ino;
};

#define MAXREC 12
static struct fdrec recs[MAXREC];
static int nrec;

static int rec(const char *what, int fd)
{
	struct stat st;
	fstat(fd, &st);
	recs[nrec++] = (struct fdrec){ what, fd, fcntl(fd, F_GETFL), fcntl(fd, F_GETFD), st.st_ino };
	return fd;
}

static int same(int a, int b)
{
	pid_t me = getpid();
	return syscall(SYS_kcmp, me, me, KCMP_FILE, a, b) == 0;
}

static void check_fds(const char *who)
{
	struct stat s0, s6;
	if (fstat(recs[0].fd, &s0) || fstat(recs[6].fd, &s6) || s0.st_ino == s6.st_ino)
		fail("%s: fds %d and %d are no longer two different pipes", who, recs[0].fd, recs[6].fd);
	for (int i = 0; i < nrec; i++) {
		struct fdrec *r = &recs[i];
		struct stat st;
		int fl = fcntl(r->fd, F_GETFL), fd = fcntl(r->fd, F_GETFD);
		if (fl != r->getfl)
			fail("%s: fd %d (%s) has F_GETFL 0%o, expected 0%o", who, r->fd, r->what, fl, r->getfl);
		if (fd != r->getfd)
			fail("%s: fd %d (%s) has F_GETFD %d, expected %d", who, r->fd, r->what, fd, r->getfd);
		/* A restored pipe is a new one: only which fds share it must hold. */
		struct stat first;
		fstat(recs[r->ino == recs[0].ino ? 0 : 6].fd, &first);
		if (fstat(r->fd, &st) || st.st_ino != first.st_ino)
			fail("%s: fd %d (%s) is no longer the same pipe as fd %d", who, r->fd, r->what, recs[r->ino == recs[0].ino ? 0 : 6].fd);
	}
}

int main(int argc, char **argv)
{
	char status[4096];
	wl_init(argc, argv, "files-pipes");
	snprintf(status, sizeof(status), "%s.child", argv[1]);
	for (int fd = 3; fd < 1024; fd++)
		close(fd);

	int p[2], q[2];
	if (pipe(p) || pipe(q))
		fail("pipe: %s", strerror(errno));
	rec("read end", p[0]);
	rec("write end", p[1]);
	int rdup = rec("dup of the read end", dup(p[0]));
	int wdup = rec("dup of the write end", fcntl(p[1], F_DUPFD_CLOEXEC, 30));
	int rre = rec("read end reopened", reopen(p[0], O_RDONLY));
	int wre = rec("write end reopened", reopen(p[1], O_WRONLY));
	fcntl(p[1], F_SETFL, O_NONBLOCK);
	recs[1].getfl = recs[3].getfl = fcntl(p[1], F_GETFL);
	wl_pattern_write(p[1], P_BYTES, 1);
	int q1 = rec("second pipe's read end reopened", reopen(q[0], O_RDONLY | O_NONBLOCK));
	int q2 = rec("second pipe's read end reopened again", reopen(q[0], O_RDONLY));
	rec("second pipe's read end", q[0]);
	wl_pattern_write(q[1], Q_BYTES, 2);
	close(q[1]);

	char *childargv[] = { argv[0], status, NULL };
	pid_t child = fork();
	if (child == 0) {
		wl_init(2, childargv, "files-pipes-child");
		int own = reopen(rre, O_RDONLY | O_NONBLOCK);
		int ownfl = fcntl(own, F_GETFL);
		wl_wait();
		check_fds("child");
		if (fcntl(own, F_GETFL) != ownfl)
			fail("child: its own reopen of the read end has F_GETFL 0%o, expected 0%o", fcntl(own, F_GETFL), ownfl);
		if (same(own, rre) || same(own, p[0]))
			fail("child: its own reopen shares a description with the parent's");
		_exit(wl_done());
	}
	wl_ready();
	wl_wait();
	switch (wl_sabotage()) {
	case 1:
		fcntl(p[1], F_SETFL, 0);
		break;
	case 2: {
		char x;
		if (read(p[0], &x, 1) != 1)
			fail("sabotage read");
		break;
	}
	}
	check_fds("parent");
	if (!same(p[0], rdup) || !same(p[1], wdup))
		fail("the dups no longer share their descriptions");
	if (same(p[0], rre) || same(p[1], wre) || same(q1, q2) || same(q1, q[0]))
		fail("descriptions opened apart now share one");
	kill(child, SIGTERM);
	int ws;
	if (waitpid(child, &ws, 0) != child || !WIFEXITED(ws) || WEXITSTATUS(ws)) {
		char *why = wl_read_file(status, NULL);
		fail("child %d: %s", child, why ? why : "no report");
	}
	close(p[1]), close(wdup), close(wre);
	wl_pattern_check(rre, P_BYTES, 1, "the pipe, through its reopened read end");
	wl_pattern_check(q2, Q_BYTES, 2, "the second pipe");
	return wl_done();
}
