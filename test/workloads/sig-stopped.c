/*
 * A stopped child. argv[2] is the stop signal: STOP (default) or TSTP. The
 * child is in a process group of its own (one with a parent outside it in
 * the same session, so not orphaned: SIGTSTP stops it), is stopped by that
 * signal, and then gets one more SIGSTOP, which stays pending while it is
 * stopped. After the checkpoint the root checks that the child is still
 * stopped by the same signal (waitid WSTOPPED: CLD_STOPPED, si_status the
 * signal; its /proc state 'T'), continues it (waitid WCONTINUED), and asks it
 * to exit with code 42 (SIGUSR1).
 *
 * Sabotage: 1 = the child continued before the check.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_usr1(int sig)
{
	(void)sig;
	_exit(42);
}

static char state_of(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (wl_read_into(path, buf, sizeof(buf)) < 0)
		return '?';
	char *p = strrchr(buf, ')');
	return p && p[1] ? p[2] : '?';
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "sig-stopped");
	int sig = argc > 2 && !strcmp(argv[2], "TSTP") ? SIGTSTP : SIGSTOP;
	signal(SIGUSR1, on_usr1);
	pid_t child = fork();
	if (child < 0)
		fail("fork: %d", errno);
	if (child == 0) {
		setpgid(0, 0);
		for (;;)
			pause();
	}
	signal(SIGUSR1, SIG_DFL);
	setpgid(child, child);
	kill(child, sig);
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, child, &si, WSTOPPED | WNOWAIT) || si.si_code != CLD_STOPPED || si.si_status != sig)
		fail("the child did not stop by signal %d before the checkpoint (code %d status %d)", sig, si.si_code, si.si_status);
	kill(child, SIGSTOP);

	wl_ready();
	wl_wait();

	if (wl_sabotage() == 1)
		kill(child, SIGCONT);
	char st = state_of(child);
	if (st != 'T')
		fail("the child is in state %c, expected T (stopped)", st);
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, child, &si, WSTOPPED | WNOHANG) || si.si_pid != child)
		fail("waitid(WSTOPPED) reports no stop of the child");
	else if (si.si_code != CLD_STOPPED || si.si_status != sig)
		fail("the child's stop: code %d signal %d, expected %d (CLD_STOPPED) signal %d", si.si_code, si.si_status,
		     CLD_STOPPED, sig);
	kill(child, SIGCONT);
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, child, &si, WCONTINUED) || si.si_code != CLD_CONTINUED)
		fail("the child was not continued by SIGCONT (code %d)", si.si_code);
	kill(child, SIGUSR1);
	int status = 0;
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 42)
		fail("the child ended with status %#x, expected exit 42", status);
	return wl_done();
}
