/*
 * What crest must refuse rather than lose (the dump fails, the process
 * runs on untouched), one case per mode in argv[2]:
 *   ctty PATH  a session leader whose controlling terminal is the pty slave
 *              PATH (the harness holds its master), with no fd of it left:
 *              its tty_nr would be lost.
 *   ownproc    started in its own PID namespace (crest run): an fd of its
 *              own /proc directory (/proc/self/status, which crest sees as
 *              /proc/PID/status with its PID outside): after a restore that
 *              path would name another process, or none.
 * After the refused dump it checks the object is still there: the
 * controlling terminal (TIOCGSID through /dev/tty gives its session), the
 * /proc fd reads its own status (the last NSpid is its PID).
 * Sabotage: 1 drops the controlling terminal (ctty) or closes the fd (ownproc).
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int ctty(const char *path)
{
	int fd = open(path, O_RDWR);
	if (fd < 0 || ioctl(fd, TIOCSCTTY, 0))
		fail("make %s the controlling terminal: %s", path, strerror(errno));
	close(fd);
	wl_ready();
	wl_wait();
	if (wl_sabotage() == 1)
		ioctl(open("/dev/tty", O_RDWR), TIOCNOTTY);
	int tty = open("/dev/tty", O_RDWR);
	pid_t sid = -1;
	if (tty < 0 || ioctl(tty, TIOCGSID, &sid) || sid != getpid())
		fail("the controlling terminal is gone (open /dev/tty: %s, session %d)", tty < 0 ? strerror(errno) : "ok", sid);
	return wl_done();
}

static int ownproc(void)
{
	int fd = open("/proc/self/status", O_RDONLY);
	if (fd < 0)
		fail("open /proc/self/status: %s", strerror(errno));
	wl_ready();
	wl_wait();
	if (wl_sabotage() == 1)
		close(fd);
	char buf[4096], want[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	snprintf(want, sizeof(want), "\t%d\n", getpid());
	const char *nspid = n > 0 ? (buf[n] = 0, strstr(buf, "\nNSpid:")) : NULL;
	const char *eol = nspid ? strchr(nspid + 1, '\n') : NULL;
	size_t wl = strlen(want);
	if (!eol || eol + 1 - nspid < (ptrdiff_t)wl || strncmp(eol + 1 - wl, want, wl))
		fail("the fd of /proc/self/status no longer reads this process's status (%s)", n < 0 ? strerror(errno) : "other contents");
	return wl_done();
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "refused");
	if (argc > 3 && !strcmp(argv[2], "ctty"))
		return ctty(argv[3]);
	if (argc > 2 && !strcmp(argv[2], "ownproc"))
		return ownproc();
	fail("usage: refused STATUS ctty PATH | ownproc");
	return wl_done();
}
