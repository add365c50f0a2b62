/*
 * Zombies that died every way a wait status can say: exit codes 0 and 3,
 * killed by SIGKILL (whose action cannot be set), by SIGSEGV (a fault, no
 * core: RLIMIT_CORE 0), and by SIGUSR1. The root only looks at them with
 * waitid(WNOWAIT) before the checkpoint; after it, waitpid must give each
 * one's PID and exact status, and no other child must be left.
 *
 * Sabotage: 1 = the SIGKILL zombie reaped before the check.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define N 5
static const struct {
	int exited, value;
} how[N] = { { 1, 0 }, { 1, 3 }, { 0, SIGKILL }, { 0, SIGSEGV }, { 0, SIGUSR1 } };

int main(int argc, char **argv)
{
	wl_init(argc, argv, "sig-zombies");
	struct rlimit nocore = { 0, 0 };
	setrlimit(RLIMIT_CORE, &nocore);
	pid_t pid[N];
	for (int i = 0; i < N; i++) {
		pid[i] = fork();
		if (pid[i] < 0)
			fail("fork: %d", errno);
		if (pid[i] == 0) {
			if (how[i].exited)
				_exit(how[i].value);
			if (how[i].value == SIGSEGV)
				*(volatile int *)0 = 1;
			kill(getpid(), how[i].value);
			_exit(99);
		}
	}
	for (int i = 0; i < N; i++) {
		siginfo_t si;
		if (waitid(P_PID, pid[i], &si, WEXITED | WNOWAIT))
			fail("waitid for zombie %d: %d", pid[i], errno);
	}

	wl_ready();
	wl_wait();

	if (wl_sabotage() == 1)
		waitpid(pid[2], NULL, 0);
	for (int i = 0; i < N; i++) {
		int st = 0;
		pid_t got = waitpid(pid[i], &st, WNOHANG);
		if (got != pid[i]) {
			fail("zombie %d (%s %d) could not be collected: waitpid says %d", pid[i],
			     how[i].exited ? "exit" : "signal", how[i].value, got);
			continue;
		}
		int ok = how[i].exited ? WIFEXITED(st) && WEXITSTATUS(st) == how[i].value
				       : WIFSIGNALED(st) && WTERMSIG(st) == how[i].value && !WCOREDUMP(st);
		if (!ok)
			fail("zombie %d has status %#x, expected %s %d", pid[i], st, how[i].exited ? "exit" : "signal", how[i].value);
	}
	if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD)
		fail("a child is left after collecting every zombie");
	return wl_done();
}
