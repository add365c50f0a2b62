/*
 * /proc files of a process that has exited (zdtm remap_dead_pid,
 * unhashed_proc): a child is forked, then an fd of its /proc/PID/status
 * (fd 3), an fd of its /proc/PID directory (fd 4) and the current directory
 * in /proc/PID are taken, and the child is killed and reaped. The kernel
 * keeps them: reading the status fails, the directory is still one.
 * After restore: both fds are there, naming the same paths, reading the
 * status fails with the same errno, both have the modes they had, and
 * getcwd answers as before.
 *
 * Sabotage: 1 expects reading the status to succeed.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct seen {
	char status_link[256], dir_link[256], cwd[256];
	int read_errno, cwd_errno;
	mode_t status_mode, dir_mode;
};

static void look(struct seen *s)
{
	char buf[64];
	struct stat st;
	memset(s, 0, sizeof(*s));
	if (readlink("/proc/self/fd/3", s->status_link, sizeof(s->status_link) - 1) < 0)
		fail("fd 3 is gone: %s", strerror(errno));
	if (readlink("/proc/self/fd/4", s->dir_link, sizeof(s->dir_link) - 1) < 0)
		fail("fd 4 is gone: %s", strerror(errno));
	s->read_errno = pread(3, buf, sizeof(buf), 0) < 0 ? errno : 0;
	if (fstat(3, &st) == 0)
		s->status_mode = st.st_mode;
	if (fstat(4, &st) == 0)
		s->dir_mode = st.st_mode;
	s->cwd_errno = getcwd(s->cwd, sizeof(s->cwd)) ? 0 : errno;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "proc-dead");
	pid_t child = fork();
	if (child == 0) {
		for (;;)
			pause();
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/status", child);
	int a = open(path, O_RDONLY);
	snprintf(path, sizeof(path), "/proc/%d", child);
	int b = open(path, O_RDONLY | O_DIRECTORY);
	if (a != 3 || b != 4 || chdir(path))
		fail("cannot take /proc/%d: fds %d %d, %s", child, a, b, strerror(errno));
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	struct seen before, after;
	look(&before);
	if (!before.read_errno)
		fail("reading the status of process %d, which has exited, succeeded", child);
	wl_ready();
	wl_wait();
	look(&after);
	if (strcmp(before.status_link, after.status_link) || strcmp(before.dir_link, after.dir_link))
		fail("the fds name %s and %s, before %s and %s", after.status_link, after.dir_link, before.status_link, before.dir_link);
	if (after.read_errno != (wl_sabotage() == 1 ? 0 : before.read_errno))
		fail("reading the status gives errno %d, before %d", after.read_errno, before.read_errno);
	if (before.status_mode != after.status_mode || before.dir_mode != after.dir_mode)
		fail("modes %o %o, before %o %o", after.status_mode, after.dir_mode, before.status_mode, before.dir_mode);
	if (before.cwd_errno != after.cwd_errno || strcmp(before.cwd, after.cwd))
		fail("getcwd gives '%s' (errno %d), before '%s' (errno %d)", after.cwd, after.cwd_errno, before.cwd, before.cwd_errno);
	return wl_done();
}
