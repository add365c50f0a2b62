/*
 * Cgroups. Started as `cgroups STATUS PROCS... [-- CHILD_PROCS...]`: the
 * process writes its PID into each PROCS file (a cgroup.procs of a v1 or v2
 * cgroup the test made), forks a child that writes its own PID into each
 * CHILD_PROCS (a second cgroup set in the tree), and both record their
 * /proc/self/cgroup. The child then waits on a pipe. With `--cgns` first,
 * the parent unshares its cgroup namespace once in its cgroups (before the
 * fork): both then see their cgroups from inside it.
 *
 * After SIGTERM both read /proc/self/cgroup again and compare it line by
 * line with what they recorded (the child exits 1 on a difference, which
 * the parent reports); a restore must have put each task back into the
 * cgroups it was dumped in. The limits of the cgroups are the test's to
 * check.
 *
 * Sabotage: 1 = the parent moves itself into the parent directory of its
 * first cgroup before checking (a restore that left it one level up).
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int enter(const char *procs, pid_t pid)
{
	char buf[32];
	int fd = open(procs, O_WRONLY);
	int len = snprintf(buf, sizeof(buf), "%d", pid);

	if (fd < 0)
		return -1;
	if (write(fd, buf, len) != len) {
		close(fd);
		return -1;
	}
	return close(fd);
}

int main(int argc, char **argv)
{
	static char mine[4096], kids[4096], now[4096];
	int i, sep = argc, go[2], kid_status, first = 2, cgns = 0;
	pid_t kid;

	wl_init(argc, argv, "cgroups");
	if (argc > 2 && !strcmp(argv[2], "--cgns")) {
		cgns = 1;
		first = 3;
	}
	for (i = first; i < argc; i++)
		if (!strcmp(argv[i], "--"))
			sep = i;
	for (i = first; i < sep; i++)
		if (enter(argv[i], getpid())) {
			fail("enter %s: %s", argv[i], strerror(errno));
			return wl_done();
		}
	if (cgns && unshare(CLONE_NEWCGROUP)) {
		fail("unshare(CLONE_NEWCGROUP): %s", strerror(errno));
		return wl_done();
	}
	if (wl_read_into("/proc/self/cgroup", mine, sizeof(mine)) < 0 || pipe(go)) {
		fail("setup: %s", strerror(errno));
		return wl_done();
	}

	kid = fork();
	if (kid == 0) {
		char c;

		close(go[1]);
		for (i = sep + 1; i < argc; i++)
			if (enter(argv[i], getpid()))
				_exit(2);
		if (wl_read_into("/proc/self/cgroup", kids, sizeof(kids)) < 0)
			_exit(2);
		/* Waits for the parent's word after SIGTERM (EOF if the parent dies). */
		while (read(go[0], &c, 1) < 0 && errno == EINTR)
			;
		if (wl_read_into("/proc/self/cgroup", now, sizeof(now)) < 0)
			_exit(2);
		_exit(strcmp(kids, now) ? 1 : 0);
	}
	close(go[0]);
	/* The child is in its cgroups once it shows there. */
	for (i = 0; i < 5000; i++) {
		char path[64];
		static char k[4096];

		snprintf(path, sizeof(path), "/proc/%d/cgroup", kid);
		if (wl_read_into(path, k, sizeof(k)) >= 0 && (sep == argc || strcmp(k, mine)))
			break;
		usleep(1000);
	}

	wl_ready();
	wl_wait();

	if (wl_sabotage() == 1) {
		char dir[4096], up[4200];

		snprintf(dir, sizeof(dir), "%s", argv[first]);
		snprintf(up, sizeof(up), "%s/cgroup.procs", dirname(dirname(dir)));
		if (enter(up, getpid()))
			fail("sabotage: enter %s: %s", up, strerror(errno));
	}
	if (wl_read_into("/proc/self/cgroup", now, sizeof(now)) < 0)
		fail("read /proc/self/cgroup: %s", strerror(errno));
	else
		wl_compare_lines("cgroups of the parent", mine, now);

	if (write(go[1], "x", 1) != 1)
		fail("wake the child: %s", strerror(errno));
	if (waitpid(kid, &kid_status, 0) != kid)
		fail("wait for the child: %s", strerror(errno));
	else if (!WIFEXITED(kid_status) || WEXITSTATUS(kid_status))
		fail("child: its cgroups differ after restore (status 0x%x)", kid_status);
	return wl_done();
}
