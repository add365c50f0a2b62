/*
 * Files: regular files opened O_RDONLY, O_WRONLY|O_APPEND and O_RDWR at odd
 * positions (one past the end of its file), close-on-exec on some, fds at
 * high numbers (1000, 4000; RLIMIT_NOFILE's soft limit raised within the
 * hard one), dup'ed fds (dup, dup2, F_DUPFD, F_DUPFD_CLOEXEC) sharing one
 * open file description, a directory fd (O_DIRECTORY), /dev/null, /dev/zero
 * and /dev/urandom (O_NONBLOCK); cwd changed to a subdirectory; umask 027.
 *
 * After SIGTERM: the whole fd table (/proc/self/fd: no fd lost, none extra),
 * and per fd its target (readlink), device and inode (fstat), F_GETFL,
 * F_GETFD and position (not for fds 0-2: the harness's log, which this
 * program and others write to); the dup'ed fds still share their description
 * (moving one moves the others) and the separately opened ones do not; the
 * O_APPEND fd still appends; the devices still read as they should; the
 * files' contents; cwd; umask; RLIMIT_NOFILE.
 *
 * Sabotage: 1 = an fd's position moved, 2 = a dup replaced by a separate
 * open of the same file (sharing lost), 3 = an extra fd opened (like one a
 * restorer leaked), 4 = O_CLOEXEC cleared on fd 4000, 5 = umask changed.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAXFD 64

struct fdspec {
	int fd;
	char path[512];
	int fl, fdfl;
	off_t pos;
	dev_t dev;
	ino_t ino;
};

static struct fdspec table[MAXFD];
static int ntable;

static void describe(int fd, struct fdspec *s)
{
	char link[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, s->path, sizeof(s->path) - 1);
	s->path[n > 0 ? n : 0] = 0;
	s->fd = fd;
	s->fl = fcntl(fd, F_GETFL);
	s->fdfl = fcntl(fd, F_GETFD);
	s->pos = lseek(fd, 0, SEEK_CUR);
	struct stat st;
	if (fstat(fd, &st) == 0)
		s->dev = st.st_dev, s->ino = st.st_ino;
}

/* Every fd in /proc/self/fd but the one listing it, in order. */
static int list_fds(int *fds, int max)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < max) {
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name);
		if (fd != dirfd(d))
			fds[n++] = fd;
	}
	closedir(d);
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
			int t = fds[j];
			fds[j] = fds[j - 1], fds[j - 1] = t;
		}
	return n;
}

static int place(int fd, int at)
{
	if (fd < 0 || fd == at)
		return fd;
	int r = dup3(fd, at, fcntl(fd, F_GETFD) & FD_CLOEXEC ? O_CLOEXEC : 0);
	close(fd);
	return r;
}

static off_t pos(int fd)
{
	return lseek(fd, 0, SEEK_CUR);
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "files");
	close_range(3, ~0U, 0); /* whatever else we inherited is not ours to check */
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < 4097) {
		if (rl.rlim_max < 4097) {
			fail("RLIMIT_NOFILE hard limit %lu is below 4097: cannot place fd 4000", (unsigned long)rl.rlim_max);
			return wl_done();
		}
		rl.rlim_cur = rl.rlim_max < 5000 ? rl.rlim_max : 5000;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	struct rlimit rl_before;
	getrlimit(RLIMIT_NOFILE, &rl_before);
	mkdir("sub", 0755);
	FILE *f = fopen("data.txt", "w");
	for (int i = 0; i < 1000; i++)
		fprintf(f, "line %d\n", i);
	fclose(f);
	static char data_before[16384], data_now[16384];
	ssize_t data_len = wl_read_into("data.txt", data_before, sizeof(data_before));

	int ro = open("data.txt", O_RDONLY);
	lseek(ro, 1234, SEEK_SET);
	int app = place(open("append.log", O_WRONLY | O_CREAT | O_APPEND, 0600), 1000);
	if (write(app, "first\n", 6) != 6)
		fail("cannot write append.log");
	int rw = place(open("data.txt", O_RDWR | O_CLOEXEC), 4000);
	lseek(rw, 777, SEEK_SET);
	int past = open("short.bin", O_RDWR | O_CREAT | O_TRUNC, 0640);
	if (write(past, "12345", 5) != 5)
		fail("cannot write short.bin");
	lseek(past, 100001, SEEK_SET); /* beyond the end of the file */
	int dup_ro = dup(ro);
	int dup2_rw = dup2(rw, 42);
	int dupfd_rw = fcntl(rw, F_DUPFD, 300);
	int dupfd_cx = fcntl(rw, F_DUPFD_CLOEXEC, 301);
	int dir = open("sub", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int nul = place(open("/dev/null", O_WRONLY), 77);
	int zero = open("/dev/zero", O_RDONLY);
	int urnd = open("/dev/urandom", O_RDONLY | O_NONBLOCK);
	fcntl(zero, F_SETFD, FD_CLOEXEC);
	if (chdir("sub"))
		fail("cannot chdir to sub");
	umask(0027);
	char cwd_before[4096];
	if (!getcwd(cwd_before, sizeof(cwd_before)))
		fail("getcwd");

	int fds[MAXFD];
	int nfds = list_fds(fds, MAXFD);
	for (int i = 0; i < nfds; i++)
		describe(fds[i], &table[ntable++]);
	printf("files: %d fds:", ntable);
	for (int i = 0; i < ntable; i++)
		printf(" %d", table[i].fd);
	printf("\n");

	wl_ready();
	wl_wait();

	switch (wl_sabotage()) {
	case 1:
		lseek(ro, 1, SEEK_SET);
		break;
	case 2: {
		int again = open("../data.txt", O_RDWR);
		lseek(again, 777, SEEK_SET);
		dup2(again, 42);
		close(again);
		break;
	}
	case 3:
		open("/dev/null", O_RDONLY);
		break;
	case 4:
		fcntl(rw, F_SETFD, 0);
		break;
	case 5:
		umask(0022);
		break;
	}

	int now[MAXFD];
	int nnow = list_fds(now, MAXFD);
	for (int i = 0, j = 0; i < ntable || j < nnow;) {
		if (j >= nnow || (i < ntable && table[i].fd < now[j])) {
			fail("fd %d ('%s') is gone", table[i].fd, table[i].path);
			i++;
			continue;
		}
		if (i >= ntable || now[j] < table[i].fd) {
			struct fdspec x;
			describe(now[j], &x);
			fail("fd %d ('%s') is new", now[j], x.path);
			j++;
			continue;
		}
		const struct fdspec *s = &table[i];
		struct fdspec x;
		describe(s->fd, &x);
		if (strcmp(x.path, s->path))
			fail("fd %d is '%s', expected '%s'", s->fd, x.path, s->path);
		if (x.dev != s->dev || x.ino != s->ino)
			fail("fd %d ('%s') is device %#lx inode %lu, expected %#lx inode %lu", s->fd, s->path,
			     (unsigned long)x.dev, (unsigned long)x.ino, (unsigned long)s->dev, (unsigned long)s->ino);
		if (x.fl != s->fl)
			fail("fd %d ('%s') has F_GETFL %#o, expected %#o", s->fd, s->path, x.fl, s->fl);
		if (x.fdfl != s->fdfl)
			fail("fd %d ('%s') has F_GETFD %d, expected %d", s->fd, s->path, x.fdfl, s->fdfl);
		/* stdin/out/err are the harness's: we print to them, and so may others */
		if (x.pos != s->pos && s->fd > 2)
			fail("fd %d ('%s') is at position %lld, expected %lld", s->fd, s->path, (long long)x.pos,
			     (long long)s->pos);
		i++, j++;
	}

	/* Shared descriptions: moving one moves its dups; separately opened ones stay apart. */
	lseek(ro, 100, SEEK_SET);
	if (pos(dup_ro) != 100)
		fail("fd %d no longer shares its file description with fd %d (dup)", dup_ro, ro);
	lseek(rw, 200, SEEK_SET);
	int sharers[] = { dup2_rw, dupfd_rw, dupfd_cx };
	const char *how[] = { "dup2", "F_DUPFD", "F_DUPFD_CLOEXEC" };
	for (int i = 0; i < 3; i++)
		if (pos(sharers[i]) != 200)
			fail("fd %d no longer shares its file description with fd %d (%s): at %lld after fd %d moved to 200",
			     sharers[i], rw, how[i], (long long)pos(sharers[i]), rw);
	if (pos(ro) != 100)
		fail("fd %d (O_RDONLY) moved along with fd %d: they share a description they did not share before", ro, rw);
	lseek(dup2_rw, 300, SEEK_SET);
	if (pos(rw) != 300)
		fail("fd %d does not follow fd %d (dup2) any more", rw, dup2_rw);

	/* Still appending, still the same devices. */
	if (write(app, "second\n", 7) != 7)
		fail("cannot write to fd %d", app);
	static char log[256];
	if (wl_read_into("../append.log", log, sizeof(log)) < 0 || strcmp(log, "first\nsecond\n"))
		fail("append.log holds '%s', expected 'first\\nsecond\\n' (fd %d appends)", log, app);
	char buf[16];
	memset(buf, 1, sizeof(buf));
	if (read(zero, buf, sizeof(buf)) != (ssize_t)sizeof(buf) || buf[0] || buf[15])
		fail("fd %d no longer reads zeros", zero);
	if (read(urnd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
		fail("fd %d no longer reads random bytes", urnd);
	if (write(nul, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
		fail("fd %d no longer swallows writes", nul);
	struct stat st_dir, st_sub;
	if (fstat(dir, &st_dir) || stat(".", &st_sub) || st_dir.st_ino != st_sub.st_ino)
		fail("the directory fd %d is not the cwd 'sub' any more", dir);
	if (wl_read_into("../data.txt", data_now, sizeof(data_now)) != data_len || strcmp(data_now, data_before))
		fail("data.txt changed");

	char cwd[4096];
	if (!getcwd(cwd, sizeof(cwd)) || strcmp(cwd, cwd_before))
		fail("cwd is '%s', expected '%s'", cwd, cwd_before);
	mode_t m = umask(0);
	if (m != 0027)
		fail("umask is %03o, expected 027", m);
	struct rlimit rl_now;
	getrlimit(RLIMIT_NOFILE, &rl_now);
	if (rl_now.rlim_cur != rl_before.rlim_cur || rl_now.rlim_max != rl_before.rlim_max)
		fail("RLIMIT_NOFILE is %lu/%lu, expected %lu/%lu", (unsigned long)rl_now.rlim_cur,
		     (unsigned long)rl_now.rlim_max, (unsigned long)rl_before.rlim_cur, (unsigned long)rl_before.rlim_max);
	return wl_done();
}
