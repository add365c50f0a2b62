/*
 * Files: regular files with different flags and odd positions, O_APPEND,
 * close-on-exec, fds at high numbers, dup'ed fds sharing one open file
 * description, a directory, /dev/null, /dev/zero and /dev/urandom; cwd and
 * umask.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

struct fdspec {
	int fd;
	char path[4096];
	int fl;
	int fdfl;
	off_t pos;
};

static struct fdspec specs[32];
static int nspecs;

static void record(int fd)
{
	struct fdspec *s = &specs[nspecs++];
	char link[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, s->path, sizeof(s->path) - 1);
	s->path[n > 0 ? n : 0] = 0;
	s->fd = fd;
	s->fl = fcntl(fd, F_GETFL);
	s->fdfl = fcntl(fd, F_GETFD);
	s->pos = lseek(fd, 0, SEEK_CUR);
}

static int place(int fd, int at)
{
	if (fd == at)
		return fd;
	int r = dup2(fd, at);
	close(fd);
	return r;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "files");
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < 5000 && rl.rlim_max >= 5000) {
		rl.rlim_cur = 5000;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	mkdir("sub", 0755);
	FILE *f = fopen("data.txt", "w");
	for (int i = 0; i < 1000; i++)
		fprintf(f, "line %d\n", i);
	fclose(f);

	int ro = open("data.txt", O_RDONLY);
	lseek(ro, 1234, SEEK_SET);
	record(ro);
	int app = place(open("append.log", O_WRONLY | O_CREAT | O_APPEND, 0600), 1000);
	if (write(app, "first\n", 6) != 6)
		fail("write");
	record(app);
	int rw = place(open("data.txt", O_RDWR | O_CLOEXEC), 4000);
	lseek(rw, 777, SEEK_SET);
	record(rw);
	int dup1 = dup(ro);
	record(dup1);
	int dup2_ = dup2(rw, 42);
	record(dup2_);
	int dupfd = fcntl(rw, F_DUPFD_CLOEXEC, 300);
	record(dupfd);
	int dir = open("sub", O_RDONLY | O_DIRECTORY);
	record(dir);
	int nul = place(open("/dev/null", O_WRONLY), 77);
	record(nul);
	int zero = open("/dev/zero", O_RDONLY);
	record(zero);
	int urnd = open("/dev/urandom", O_RDONLY | O_NONBLOCK);
	record(urnd);
	if (chdir("sub"))
		fail("chdir");
	umask(0027);
	char cwd_before[4096];
	if (!getcwd(cwd_before, sizeof(cwd_before)))
		fail("getcwd");
	printf("files: %d fds set up\n", nspecs);

	wl_ready();
	wl_wait();
	if (wl_sabotage())
		lseek(ro, 1, SEEK_SET);

	for (int i = 0; i < nspecs; i++) {
		struct fdspec *s = &specs[i];
		char link[64], path[4096];
		snprintf(link, sizeof(link), "/proc/self/fd/%d", s->fd);
		ssize_t n = readlink(link, path, sizeof(path) - 1);
		path[n > 0 ? n : 0] = 0;
		if (strcmp(path, s->path))
			fail("fd %d is '%s', was '%s'", s->fd, path, s->path);
		int fl = fcntl(s->fd, F_GETFL), fdfl = fcntl(s->fd, F_GETFD);
		if (fl != s->fl)
			fail("fd %d has flags %#o, had %#o", s->fd, fl, s->fl);
		if (fdfl != s->fdfl)
			fail("fd %d has fd flags %d, had %d", s->fd, fdfl, s->fdfl);
		off_t pos = lseek(s->fd, 0, SEEK_CUR);
		if (pos != s->pos && !(s->fl & O_APPEND))
			fail("fd %d is at %lld, was at %lld", s->fd, (long long)pos, (long long)s->pos);
	}
	/* Shared descriptions: moving one moves its dups. */
	lseek(ro, 100, SEEK_SET);
	if (lseek(dup1, 0, SEEK_CUR) != 100)
		fail("fd %d no longer shares its file description with fd %d", dup1, ro);
	lseek(rw, 200, SEEK_SET);
	if (lseek(dup2_, 0, SEEK_CUR) != 200 || lseek(dupfd, 0, SEEK_CUR) != 200)
		fail("fds %d and %d no longer share their file description with fd %d", dup2_, dupfd, rw);
	if (lseek(ro, 0, SEEK_CUR) == 200)
		fail("fd %d shares a description with fd %d it did not share before", ro, rw);
	/* Unrelated fds stay separate, and the appending fd still appends. */
	if (write(app, "second\n", 7) != 7)
		fail("cannot write to fd %d", app);
	char *log = wl_read_file("../append.log", NULL);
	if (!log || strcmp(log, "first\nsecond\n"))
		fail("append.log holds '%s'", log ? log : "(unreadable)");
	char cwd[4096];
	if (!getcwd(cwd, sizeof(cwd)) || strcmp(cwd, cwd_before))
		fail("cwd is '%s', was '%s'", cwd, cwd_before);
	mode_t m = umask(0);
	if (m != 0027)
		fail("umask is %03o, was 027", m);
	return wl_done();
}
