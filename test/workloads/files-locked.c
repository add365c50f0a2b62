/*
 * File locks of every kind crest dumps with --file-locks, in a parent and a
 * forked child (zdtm file_locks00..08, file_lease00..01):
 *   a: POSIX read lock on bytes 10-29 and write lock on 40-49 through fd 3
 *      (with a dup at 9); the child, through the same inherited description,
 *      holds its own POSIX write lock on bytes 60-69;
 *   b: an OFD write lock from 100 to EOF (fd 4);
 *   c: flock LOCK_EX (fd 5), the description shared with the child;
 *   d: a read lease (fd 6, O_RDONLY).
 * After restore: the "lock:" lines of every fd of both processes (without
 * their list positions) are what they were, and the locks still exclude:
 * a fresh description of c cannot flock it, the child's F_GETLK sees the
 * parent's write lock on a, the parent's sees the child's, and an OFD lock
 * on b conflicts.
 *
 * Sabotage: 1 drops the flock, 2 the parent's POSIX write lock.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#define NFDS 5
static const int fds[NFDS] = { 3, 4, 5, 6, 9 };

/* The lock lines of /proc/PID/fdinfo/FD, "ID: " dropped, sorted, one per line, into out. */
static void lock_lines(pid_t pid, int fd, char *out, size_t cap)
{
	char path[64], buf[4096], *lines[32];
	int n = 0;
	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", pid, fd);
	out[0] = 0;
	if (wl_read_into(path, buf, sizeof(buf)) < 0) {
		fail("cannot read %s", path);
		return;
	}
	for (char *l = strtok(buf, "\n"); l && n < 32; l = strtok(NULL, "\n")) {
		if (strncmp(l, "lock:", 5))
			continue;
		char *c = strchr(l, ':');
		c = strchr(c + 1, ':');
		lines[n++] = c ? c + 1 : l;
	}
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && strcmp(lines[j - 1], lines[j]) > 0; j--) {
			char *t = lines[j];
			lines[j] = lines[j - 1];
			lines[j - 1] = t;
		}
	size_t used = 0;
	for (int i = 0; i < n; i++)
		used += snprintf(out + used, used < cap ? cap - used : 0, "fd %d:%s\n", fd, lines[i]);
}

static void snapshot(pid_t pid, char out[NFDS][1024])
{
	for (int i = 0; i < NFDS; i++)
		lock_lines(pid, fds[i], out[i], sizeof(out[i]));
}

static int open_at(const char *name, int flags, int at)
{
	int fd = open(name, flags | O_CREAT, 0600);
	if (fd < 0)
		fail("cannot open %s: %s", name, strerror(errno));
	if (fd != at && (dup2(fd, at) < 0 || close(fd) < 0))
		fail("cannot move %s to fd %d: %s", name, at, strerror(errno));
	return at;
}

static int posix(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
	return fcntl(fd, cmd, &fl);
}

/* Who F_GETLK says holds a conflicting lock on a's bytes [start, start+len) (0: nobody). */
static pid_t holder(int fd, off_t start, off_t len)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
	if (fcntl(fd, F_GETLK, &fl) < 0)
		return -1;
	return fl.l_type == F_UNLCK ? 0 : fl.l_pid;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "files-locked");
	int a = open_at("a", O_RDWR, 3), b = open_at("b", O_RDWR, 4), c = open_at("c", O_RDWR, 5);
	if (write(a, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789", 74) != 74)
		fail("cannot write a");
	lseek(a, 7, SEEK_SET);
	if (posix(a, F_SETLK, F_RDLCK, 10, 20) || posix(a, F_SETLK, F_WRLCK, 40, 10))
		fail("cannot lock a: %s", strerror(errno));
	if (dup2(a, 9) != 9)
		fail("cannot dup a");
	if (posix(b, F_OFD_SETLK, F_WRLCK, 100, 0))
		fail("cannot OFD-lock b: %s", strerror(errno));
	if (flock(c, LOCK_EX))
		fail("cannot flock c: %s", strerror(errno));
	close(open_at("d", O_RDWR, 6));
	int d = open_at("d", O_RDONLY, 6);
	if (fcntl(d, F_SETLEASE, F_RDLCK))
		fail("cannot lease d: %s", strerror(errno));

	int go[2], done[2];
	if (pipe(go) || pipe(done))
		fail("pipe: %s", strerror(errno));
	pid_t child = fork();
	if (child < 0)
		fail("fork: %s", strerror(errno));
	if (child == 0) {
		close(go[1]);
		close(done[0]);
		char ok = posix(a, F_SETLK, F_WRLCK, 60, 10) ? 'n' : 'y';
		if (write(done[1], &ok, 1) != 1)
			_exit(1);
		/* Told to check: report whether the parent's write lock is still seen. */
		char x;
		if (read(go[0], &x, 1) != 1)
			_exit(1);
		char r = holder(a, 40, 10) == getppid() ? 'y' : 'n';
		if (write(done[1], &r, 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(go[0]);
	close(done[1]);
	char ok = 0;
	if (read(done[0], &ok, 1) != 1 || ok != 'y')
		fail("the child could not lock a");

	char before[NFDS][1024], cbefore[NFDS][1024], after[NFDS][1024], cafter[NFDS][1024];
	snapshot(getpid(), before);
	snapshot(child, cbefore);
	wl_ready();
	wl_wait();

	if (wl_sabotage() == 1)
		flock(c, LOCK_UN);
	if (wl_sabotage() == 2)
		posix(a, F_SETLK, F_UNLCK, 40, 10);
	snapshot(getpid(), after);
	snapshot(child, cafter);
	for (int i = 0; i < NFDS; i++) {
		char what[64];
		snprintf(what, sizeof(what), "locks of fd %d", fds[i]);
		wl_compare_lines(what, before[i], after[i]);
		snprintf(what, sizeof(what), "locks of the child's fd %d", fds[i]);
		wl_compare_lines(what, cbefore[i], cafter[i]);
	}
	int c2 = open("c", O_RDWR);
	if (flock(c2, LOCK_EX | LOCK_NB) == 0 || errno != EWOULDBLOCK)
		fail("c: a new description took LOCK_EX: the flock is gone");
	int b2 = open("b", O_RDWR);
	if (posix(b2, F_OFD_SETLK, F_RDLCK, 200, 1) == 0 || errno != EAGAIN)
		fail("b: a new description took an OFD lock at 200: the OFD lock is gone");
	pid_t h = holder(a, 60, 10);
	if (h != child)
		fail("a: F_GETLK on bytes 60-69 names %d, expected the child %d", h, child);
	char x = 'g', r = 0;
	if (write(go[1], &x, 1) != 1 || read(done[0], &r, 1) != 1 || r != 'y')
		fail("a: the child does not see the parent's write lock on bytes 40-49");
	if (fcntl(d, F_GETLEASE) != F_RDLCK)
		fail("d: the lease is %d, expected F_RDLCK", fcntl(d, F_GETLEASE));
	if (lseek(a, 0, SEEK_CUR) != 7)
		fail("a is at %ld, expected 7", (long)lseek(a, 0, SEEK_CUR));
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	return wl_done();
}
