/*
 * Many processes: the root forks argv[2] - 1 others (default 100 in all),
 * as a tree three levels deep. Each records its PID and parent in a shared
 * table and answers SIGUSR1 by counting in it. After the checkpoint every
 * process is still there with its PID and parent and answers.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

struct slot {
	volatile pid_t pid, ppid;
	volatile int answers;
};

static struct slot *table;
static volatile int me = -1;

static void on_usr1(int sig)
{
	(void)sig;
	table[me].answers++;
}

static void member(int index)
{
	me = index;
	/* The parent first: the root takes a slot whose pid is set as complete. */
	table[index].ppid = getppid();
	table[index].pid = getpid();
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "forest");
	int n = argc > 2 ? atoi(argv[2]) : 100;
	if (n < 1 || n > 4096)
		n = 100;
	table = mmap(NULL, (size_t)n * sizeof(struct slot), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	me = 0;
	table[0].pid = getpid();
	/* index i's parent is (i - 1) / 8 for i >= 1: the root, its 8 children, their children... */
	for (int i = 1; i < n; i++) {
		int parent = (i - 1) / 8;
		if (parent != 0)
			continue;
		pid_t p = fork();
		if (p == 0) {
			/* This child forks its own children, then so do theirs. */
			int mine = i;
			for (int j = 8 * mine + 1; j < n && j <= 8 * mine + 8; j++) {
				if (fork() == 0) {
					mine = j;
					for (int k = 8 * mine + 1; k < n && k <= 8 * mine + 8; k++)
						if (fork() == 0)
							member(k);
					member(mine);
				}
			}
			member(mine);
		}
	}
	for (int t = 0; t < 10000; t++) {
		int up = 0;
		for (int i = 0; i < n; i++)
			up += table[i].pid != 0;
		if (up == n)
			break;
		usleep(1000);
	}
	pid_t pids[4096], ppids[4096];
	for (int i = 0; i < n; i++)
		pids[i] = table[i].pid, ppids[i] = table[i].ppid;
	printf("forest: %d processes\n", n);
	wl_ready();
	wl_wait();
	if (wl_sabotage())
		kill(pids[n - 1], SIGKILL);
	for (int i = 1; i < n; i++) {
		char path[64], buf[512];
		snprintf(path, sizeof(path), "/proc/%d/stat", pids[i]);
		if (wl_read_into(path, buf, sizeof(buf)) < 0) {
			fail("process %d (index %d) is gone", pids[i], i);
			continue;
		}
		char state = 0;
		pid_t ppid = 0;
		sscanf(strrchr(buf, ')') + 2, "%c %d", &state, &ppid);
		if (state == 'Z' || ppid != ppids[i])
			fail("process %d: state %c parent %d, expected parent %d", pids[i], state, ppid, ppids[i]);
		kill(pids[i], SIGUSR1);
	}
	for (int t = 0; t < 2000; t++) {
		int answered = 0;
		for (int i = 1; i < n; i++)
			answered += table[i].answers > 0;
		if (answered == n - 1)
			break;
		usleep(1000);
	}
	for (int i = 1; i < n; i++)
		if (!table[i].answers)
			fail("process %d (index %d) did not answer SIGUSR1", pids[i], i);
	for (int i = 1; i < n; i++)
		kill(pids[i], SIGKILL);
	while (wait(NULL) > 0 || errno == EINTR)
		;
	return wl_done();
}
