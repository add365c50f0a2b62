/*
 * A tree that keeps changing while it is checkpointed: the root keeps
 * forking children that fork a grandchild and exit at once, and reaps what
 * it can. A dump must catch it whole at one instant anyway (running
 * children, zombies, orphans) and the restored tree must carry on: the root
 * keeps forking and reaping, and every child it forked is reaped exactly
 * once, alive ones included.
 *
 * argv[2] "linger": each child lives 3 ms before it exits, so that a
 * checkpoint finds some alive that exit while it goes on (a pre-dump copying
 * their pages after the tree runs again).
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	wl_init(argc, argv, "churn");
	int linger = argc > 2 && !strcmp(argv[2], "linger");
	/* Orphaned grandchildren come back to the root, to be reaped too. */
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	unsigned long forked = 0, reaped = 0, at_ready = 0;
	int ready = 0;
	while (!ready || !wl_should_stop()) {
		pid_t p = fork();
		if (p == 0) {
			if (fork() == 0)
				_exit(3);
			if (linger)
				usleep(3000);
			_exit(2);
		}
		if (p > 0)
			forked += 2;
		int st;
		pid_t r;
		while ((r = waitpid(-1, &st, WNOHANG)) > 0) {
			reaped++;
			if (!WIFEXITED(st) || (WEXITSTATUS(st) != 2 && WEXITSTATUS(st) != 3))
				fail("child %d ended with status %#x", r, st);
		}
		if (!ready && forked >= 2000) {
			at_ready = forked;
			printf("churn: %lu forked\n", forked);
			wl_ready();
			ready = 1;
		}
		usleep(200);
	}
	if (wl_sabotage())
		reaped++;
	/* Collect everything still out there. */
	int st;
	for (;;) {
		pid_t r = waitpid(-1, &st, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break;
		reaped++;
	}
	if (forked <= at_ready)
		fail("the root stopped forking: %lu at ready, %lu now", at_ready, forked);
	if (reaped != forked)
		fail("%lu processes forked, %lu reaped", forked, reaped);
	printf("churn: %lu forked and reaped\n", forked);
	return wl_done();
}
