/*
 * What crest must refuse rather than lose (the dump fails, the process
 * runs on untouched), one case per mode in argv[2]:
 *   ctty PATH  a session leader whose controlling terminal is the pty slave
 *              PATH (the harness holds its master), with no fd of it left:
 *              its tty_nr would be lost.
 *   timens-kids  unshare(CLONE_NEWTIME) without a child yet: the new
 *              namespace is only its time_for_children.
 * After the refused dump it checks the object is still there: the
 * controlling terminal (TIOCGSID through /dev/tty gives its session); the
 * time namespace for its children still differs from its own.
 * Sabotage: 1 drops the controlling terminal (ctty).
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sched.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x80
#endif

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

static int timens_kids(void)
{
	char mine[64] = "", kids[64] = "";
	if (unshare(CLONE_NEWTIME))
		fail("unshare(CLONE_NEWTIME): %s", strerror(errno));
	wl_ready();
	wl_wait();
	if (readlink("/proc/self/ns/time", mine, sizeof(mine) - 1) < 0 ||
	    readlink("/proc/self/ns/time_for_children", kids, sizeof(kids) - 1) < 0 || !strcmp(mine, kids))
		fail("the time namespace for its children is %s, its own %s: expected them to differ", kids, mine);
	return wl_done();
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "refused");
	if (argc > 3 && !strcmp(argv[2], "ctty"))
		return ctty(argv[3]);
	if (argc > 2 && !strcmp(argv[2], "timens-kids"))
		return timens_kids();
	fail("usage: refused STATUS ctty PATH | timens-kids");
	return wl_done();
}
