/*
 * A deleted FIFO, as CRIU's zdtm unlink_fifo, unlink_fifo_wronly and
 * fifo-ghost have it: f/fifo (mode 0640, owner 1234:5678) opened O_RDWR
 * (with a dup), O_RDONLY|O_NONBLOCK and O_PATH, 5000 bytes queued, a child
 * holding an O_WRONLY end, then unlinked.
 * After: every fd (the child's too) is a FIFO of the O_RDWR end's inode
 * (a new one: the FIFO is made again), the old mode, owner, nlink 0 and a "f/fifo (deleted)" link; flags; the dup shares
 * the O_RDWR description, the other opens do not (kcmp); exactly the queued
 * bytes come out of the read end, then a byte written through the O_RDWR end
 * and one through the child's come out too (one FIFO); f/ is empty.
 *
 * Sabotage: 1 reads a byte out of the FIFO; 2 leaves a file in f/.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define KCMP_FILE 0
#define QUEUED 5000

static char dir[PATH_MAX + 4], path[PATH_MAX + 16], link_want[PATH_MAX + 32];
static struct stat orig;
/* The O_RDWR end, inherited by the child: every other fd must be its inode (a ghost gets a new one). */
static int rw = -1;

static int same(int a, int b)
{
	pid_t me = getpid();
	return syscall(SYS_kcmp, me, me, KCMP_FILE, a, b) == 0;
}

/* One fd of the deleted FIFO: the same inode, as it was, and its flags. */
static void check_fd(const char *who, const char *what, int fd, int getfl)
{
	struct stat st, ref;
	char proc[64], link[PATH_MAX + 32];
	if (fstat(fd, &st) || fstat(rw, &ref)) {
		fail("%s: fstat %s: %s", who, what, strerror(errno));
		return;
	}
	if (!S_ISFIFO(st.st_mode) || st.st_mode != orig.st_mode)
		fail("%s: %s has mode 0%o, expected 0%o", who, what, st.st_mode, orig.st_mode);
	if (st.st_ino != ref.st_ino || st.st_dev != ref.st_dev)
		fail("%s: %s is inode %lu, the O_RDWR end %lu", who, what, (unsigned long)st.st_ino, (unsigned long)ref.st_ino);
	if (st.st_nlink != 0)
		fail("%s: %s has %lu links, expected 0", who, what, (unsigned long)st.st_nlink);
	if (st.st_uid != 1234 || st.st_gid != 5678)
		fail("%s: %s is owned by %u:%u, expected 1234:5678", who, what, st.st_uid, st.st_gid);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(proc, link, sizeof(link) - 1);
	link[n < 0 ? 0 : n] = 0;
	if (strcmp(link, link_want))
		fail("%s: %s links to \"%s\", expected \"%s\"", who, what, link, link_want);
	if (fcntl(fd, F_GETFL) != getfl)
		fail("%s: %s has F_GETFL 0%o, expected 0%o", who, what, fcntl(fd, F_GETFL), getfl);
}

static void check_dir_empty(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	if (!d) {
		fail("opendir %s: %s", dir, strerror(errno));
		return;
	}
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			fail("%s holds %s, expected nothing", dir, e->d_name);
	closedir(d);
}

/* Reads one byte without waiting and fail()s unless it is `want`. */
static void expect_byte(int fd, char want, const char *what)
{
	char c;
	ssize_t n = read(fd, &c, 1);
	if (n != 1 || c != want)
		fail("%s: read gave %zd (%s), expected '%c'", what, n, n < 0 ? strerror(errno) : "", want);
}

int main(int argc, char **argv)
{
	char status[4096], cwd[PATH_MAX];
	wl_init(argc, argv, "fifo-ghost");
	snprintf(status, sizeof(status), "%s.child", argv[1]);
	if (!getcwd(cwd, sizeof(cwd)))
		fail("getcwd: %s", strerror(errno));
	snprintf(dir, sizeof(dir), "%s/f", cwd);
	snprintf(path, sizeof(path), "%s/fifo", dir);
	snprintf(link_want, sizeof(link_want), "%s (deleted)", path);
	if (mkdir(dir, 0755) && errno != EEXIST)
		fail("mkdir %s: %s", dir, strerror(errno));
	if (mknod(path, S_IFIFO | 0640, 0) || chown(path, 1234, 5678))
		fail("mknod/chown %s: %s", path, strerror(errno));
	rw = open(path, O_RDWR);
	int rwdup = fcntl(rw, F_DUPFD, 40);
	int rd = open(path, O_RDONLY | O_NONBLOCK);
	int op = open(path, O_PATH);
	if (rw < 0 || rwdup < 0 || rd < 0 || op < 0 || fstat(rw, &orig))
		fail("open %s: %s", path, strerror(errno));
	int rwfl = fcntl(rw, F_GETFL), rdfl = fcntl(rd, F_GETFL), opfl = fcntl(op, F_GETFL);
	wl_pattern_write(rw, QUEUED, 7);

	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	char *childargv[] = { argv[0], status, NULL };
	pid_t child = fork();
	if (child == 0) {
		wl_init(2, childargv, "fifo-ghost-child");
		int wr = open(path, O_WRONLY);
		if (wr < 0)
			fail("child: open %s O_WRONLY: %s", path, strerror(errno));
		int wrfl = fcntl(wr, F_GETFL);
		/* The parent unlinks the FIFO once this end is open. */
		if (kill(getppid(), SIGUSR1))
			fail("child: signal the parent: %s", strerror(errno));
		wl_wait();
		check_fd("child", "its O_WRONLY end", wr, wrfl);
		check_fd("child", "the inherited O_RDWR end", rw, rwfl);
		if (write(wr, "c", 1) != 1)
			fail("child: write: %s", strerror(errno));
		_exit(wl_done());
	}
	struct timespec limit = { 10, 0 };
	if (sigtimedwait(&usr1, NULL, &limit) != SIGUSR1)
		fail("the child did not open its end: %s", strerror(errno));
	if (unlink(path))
		fail("unlink %s: %s", path, strerror(errno));
	wl_ready();
	wl_wait();
	switch (wl_sabotage()) {
	case 1: {
		char x;
		if (read(rd, &x, 1) != 1)
			fail("sabotage read");
		break;
	}
	case 2:
		if (mknod(path, S_IFREG | 0600, 0))
			fail("sabotage mknod");
		break;
	}
	check_fd("parent", "the O_RDWR end", rw, rwfl);
	check_fd("parent", "its dup", rwdup, rwfl);
	check_fd("parent", "the O_RDONLY end", rd, rdfl);
	check_fd("parent", "the O_PATH fd", op, opfl);
	if (!same(rw, rwdup))
		fail("the dup no longer shares the O_RDWR description");
	if (same(rw, rd) || same(rw, op) || same(rd, op))
		fail("descriptions opened apart now share one");
	check_dir_empty();
	wl_pattern_check(rd, QUEUED, 7, "the deleted FIFO");
	if (write(rw, "x", 1) != 1)
		fail("write through the O_RDWR end: %s", strerror(errno));
	expect_byte(rd, 'x', "the byte written through the O_RDWR end");
	kill(child, SIGTERM);
	int ws;
	if (waitpid(child, &ws, 0) != child || !WIFEXITED(ws) || WEXITSTATUS(ws)) {
		char *why = wl_read_file(status, NULL);
		fail("child %d: %s", child, why ? why : "no report");
	}
	expect_byte(rd, 'c', "the byte the child wrote");
	return wl_done();
}
