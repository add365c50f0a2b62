/*
 * A job of an interactive shell, for -j (--shell-job): started from a shell
 * in a terminal (its session leader and the terminal's master are outside
 * the tree), it sets VKILL to ^K on its terminal, says `ready`, then reads
 * lines from its terminal (stdin) and answers each with "got: LINE". The
 * line "check" makes it check, after the restore into another terminal,
 * that its stdin, stdout and stderr are that terminal, its controlling
 * terminal (tty_nr) is it, its group is the terminal's foreground and the
 * terminal has VKILL ^K again (the job's termios, given back by crest); it
 * writes PASS or FAIL to the status file and exits.
 *
 * Sabotage: 1 leaves the terminal's foreground before the check.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

static unsigned long tty_nr(void)
{
	char buf[1024];
	if (wl_read_into("/proc/self/stat", buf, sizeof(buf)) < 0)
		return 0;
	char *p = strrchr(buf, ')') + 2;
	for (int i = 3; i < 7; i++)
		p = strchr(p, ' ') + 1;
	return strtoul(p, NULL, 10);
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "tty-job");
	struct termios t;
	if (tcgetattr(0, &t)) {
		fail("stdin is not a terminal: %d", errno);
		return wl_done();
	}
	t.c_cc[VKILL] = 11;
	tcsetattr(0, TCSANOW, &t);
	wl_ready();
	char line[256];
	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\n")] = 0;
		printf("got: %s\n", line);
		fflush(stdout);
		if (strcmp(line, "check"))
			continue;
		if (wl_sabotage() == 1) {
			signal(SIGTTOU, SIG_IGN);
			tcsetpgrp(0, getppid());
		}
		struct stat s0, s1, s2;
		fstat(0, &s0);
		fstat(1, &s1);
		fstat(2, &s2);
		if (!isatty(0) || s0.st_rdev != s1.st_rdev || s0.st_rdev != s2.st_rdev)
			fail("stdin, stdout and stderr are not one terminal");
		if (tty_nr() != s0.st_rdev)
			fail("controlling terminal %lx, stdin %lx", tty_nr(), (unsigned long)s0.st_rdev);
		if (tcgetpgrp(0) != getpgrp())
			fail("the terminal's foreground group is %d, not ours (%d)", tcgetpgrp(0), getpgrp());
		struct termios now;
		tcgetattr(0, &now);
		if (now.c_cc[VKILL] != 11)
			fail("VKILL is %d, expected 11", now.c_cc[VKILL]);
		printf("tty-job: %s\n", wl_failures() ? "FAIL" : "PASS");
		return wl_done();
	}
	fail("end of input");
	return wl_done();
}
