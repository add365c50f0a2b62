/*
 * O_PATH fds (like CRIU's zdtm opath_file and symlink): on a regular file, a
 * directory, a symlink itself (O_PATH|O_NOFOLLOW), the symlink followed, a
 * FIFO, a unix socket's file and /dev/null; a dup of one, an F_DUPFD_CLOEXEC
 * copy of the symlink's at fd 50. A child inherits them all (a separate fd
 * table that shares the descriptions). After: per fd, F_GETFL (O_PATH and
 * O_NOFOLLOW kept), F_GETFD, device, inode and mode (the symlink is still a
 * link), readlink of /proc/self/fd/N; the dup still shares its description
 * (kcmp), the others do not; the fds still work: readlinkat on the link,
 * openat under the directory, reopening the file through /proc reads its data.
 *
 * Sabotage: 1 reopens the symlink's fd following the link (the link is lost);
 * 2 makes fd 50 no longer close-on-exec.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define KCMP_FILE 0
#define NFDS 8

struct fdrec {
	const char *what;
	int fd;
	int getfl, getfd;
	struct stat st;
	char link[PATH_MAX];
};

static struct fdrec recs[NFDS];
static char target[PATH_MAX];

static void record(struct fdrec *r, const char *what, int fd)
{
	char p[64];
	r->what = what;
	r->fd = fd;
	if (fd < 0) {
		fail("%s: open: %s", what, strerror(errno));
		return;
	}
	r->getfl = fcntl(fd, F_GETFL);
	r->getfd = fcntl(fd, F_GETFD);
	if (fstatat(fd, "", &r->st, AT_EMPTY_PATH))
		fail("%s: fstatat: %s", what, strerror(errno));
	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(p, r->link, sizeof(r->link) - 1);
	r->link[n < 0 ? 0 : n] = 0;
}

static int same_file(int a, int b)
{
	pid_t me = getpid();
	return syscall(SYS_kcmp, me, me, KCMP_FILE, a, b) == 0;
}

static void check(const char *who)
{
	for (int i = 0; i < NFDS; i++) {
		struct fdrec *r = &recs[i], now;
		char p[64], link[PATH_MAX];
		snprintf(p, sizeof(p), "/proc/self/fd/%d", r->fd);
		ssize_t n = readlink(p, link, sizeof(link) - 1);
		link[n < 0 ? 0 : n] = 0;
		if (strcmp(link, r->link))
			fail("%s: fd %d (%s) names '%s', expected '%s'", who, r->fd, r->what, link, r->link);
		now.getfl = fcntl(r->fd, F_GETFL);
		now.getfd = fcntl(r->fd, F_GETFD);
		if (now.getfl != r->getfl)
			fail("%s: fd %d (%s) has F_GETFL 0%o, expected 0%o", who, r->fd, r->what, now.getfl, r->getfl);
		if (now.getfd != r->getfd)
			fail("%s: fd %d (%s) has F_GETFD %d, expected %d", who, r->fd, r->what, now.getfd, r->getfd);
		if (fstatat(r->fd, "", &now.st, AT_EMPTY_PATH))
			fail("%s: fd %d (%s): fstatat: %s", who, r->fd, r->what, strerror(errno));
		else if (now.st.st_dev != r->st.st_dev || now.st.st_ino != r->st.st_ino || now.st.st_mode != r->st.st_mode)
			fail("%s: fd %d (%s) is dev %lx ino %lu mode 0%o, expected dev %lx ino %lu mode 0%o", who, r->fd, r->what,
			     (unsigned long)now.st.st_dev, (unsigned long)now.st.st_ino, now.st.st_mode,
			     (unsigned long)r->st.st_dev, (unsigned long)r->st.st_ino, r->st.st_mode);
	}
	/* recs[0] is the file, recs[6] its dup; recs[3] the link followed (same file, own description). */
	if (!same_file(recs[0].fd, recs[6].fd))
		fail("%s: fd %d no longer shares its description with fd %d (dup)", who, recs[6].fd, recs[0].fd);
	if (same_file(recs[0].fd, recs[3].fd))
		fail("%s: fds %d and %d (opened apart) now share a description", who, recs[0].fd, recs[3].fd);
	if (!same_file(recs[2].fd, recs[7].fd))
		fail("%s: fd %d no longer shares its description with fd %d (F_DUPFD_CLOEXEC)", who, recs[7].fd, recs[2].fd);

	char buf[PATH_MAX];
	ssize_t n = readlinkat(recs[2].fd, "", buf, sizeof(buf) - 1);
	buf[n < 0 ? 0 : n] = 0;
	if (n < 0 || strcmp(buf, target))
		fail("%s: readlinkat on the symlink's fd gives '%s' (%s), expected '%s'", who, buf, n < 0 ? strerror(errno) : "ok", target);
	int in = openat(recs[1].fd, "inner", O_RDONLY);
	if (in < 0)
		fail("%s: openat(dir fd, \"inner\"): %s", who, strerror(errno));
	else
		close(in);
	char p[64], data[16] = { 0 };
	snprintf(p, sizeof(p), "/proc/self/fd/%d", recs[0].fd);
	int rd = open(p, O_RDONLY);
	if (rd < 0 || read(rd, data, sizeof(data) - 1) < 0 || strcmp(data, "opath data"))
		fail("%s: reopening the O_PATH file through /proc reads '%s', expected 'opath data'", who, data);
	if (rd >= 0)
		close(rd);
}

int main(int argc, char **argv)
{
	char status[4096];
	wl_init(argc, argv, "files-opath");
	snprintf(status, sizeof(status), "%s.child", argv[1]);
	for (int fd = 3; fd < 1024; fd++)
		close(fd); /* inherited fds are not ours */

	int f = open("data", O_WRONLY | O_CREAT | O_TRUNC, 0640);
	if (f < 0 || write(f, "opath data", 10) != 10)
		fail("cannot write data");
	close(f);
	if (mkdir("dir", 0750) || close(open("dir/inner", O_WRONLY | O_CREAT, 0600)) || !realpath("data", target) ||
	    symlink(target, "link") || mkfifo("fifo", 0600))
		fail("setup: %s", strerror(errno));
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = "sock" };
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)))
		fail("bind: %s", strerror(errno));
	close(s); /* the socket file stays */

	record(&recs[0], "file", open("data", O_PATH));
	record(&recs[1], "directory", open("dir", O_PATH | O_DIRECTORY | O_CLOEXEC));
	record(&recs[2], "symlink itself", open("link", O_PATH | O_NOFOLLOW));
	record(&recs[3], "symlink followed", open("link", O_PATH));
	record(&recs[4], "FIFO", open("fifo", O_PATH));
	record(&recs[5], "socket file", open("sock", O_PATH));
	record(&recs[6], "dup of the file", dup(recs[0].fd));
	record(&recs[7], "copy of the symlink's", fcntl(recs[2].fd, F_DUPFD_CLOEXEC, 50));
	int null = open("/dev/null", O_PATH);
	if (null < 0 || dup2(null, 40) != 40)
		fail("/dev/null: %s", strerror(errno));
	close(null);
	if (!S_ISLNK(recs[2].st.st_mode))
		fail("setup: the O_NOFOLLOW fd is not a symlink");

	char *childargv[] = { argv[0], status, NULL };
	pid_t child = fork();
	if (child == 0) {
		wl_init(2, childargv, "files-opath-child");
		wl_wait();
		check("child");
		_exit(wl_done());
	}
	wl_ready();
	wl_wait();
	switch (wl_sabotage()) {
	case 1:
		dup2(recs[3].fd, recs[2].fd);
		break;
	case 2:
		fcntl(50, F_SETFD, 0);
		break;
	}
	check("parent");
	struct stat st;
	if (fstatat(40, "", &st, AT_EMPTY_PATH) || !S_ISCHR(st.st_mode) || !(fcntl(40, F_GETFL) & O_PATH))
		fail("fd 40 is no longer /dev/null opened O_PATH");
	kill(child, SIGTERM);
	int ws;
	if (waitpid(child, &ws, 0) != child || !WIFEXITED(ws) || WEXITSTATUS(ws)) {
		char *why = wl_read_file(status, NULL);
		fail("child %d: %s", child, why ? why : "no report");
	}
	return wl_done();
}
