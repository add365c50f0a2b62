/*
 * Credentials in a user namespace of its own (started with
 * `crest run --ns pid,user`: ids 0-65535 are 100000-165535 outside, the
 * program starts as root there). It records /proc/self/uid_map and gid_map,
 * then, as the namespace sees them, sets supplementary groups {5, 1001},
 * gids 1000/1001/1002 and uids 2000/2001/0 in a child it forks, and uids
 * 3000/3001/0 with gids 0/0/0 and no groups in itself (keeping its
 * capabilities: SECBIT_KEEP_CAPS before setresuid, effective set again
 * after). After: both processes have the same ids (getresuid, getresgid,
 * getgroups), the same maps (so, the same namespace's view), a user
 * namespace that is not the first one (uid_map is not "0 0 4294967295"),
 * and the parent's /proc/self/status Uid/Gid lines as inside. The parent
 * still has CAP_SETUID there (it can setresuid to its saved uid 0 and back).
 *
 * Sabotage: 1 = the child changes its effective uid to 2002 before it
 * reports; 2 = the parent sets its supplementary groups to {7}.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>
#include <sys/syscall.h>

static char uid_map[4096], gid_map[4096];

static void check_ids(const char *who, uid_t u0, uid_t u1, uid_t u2, gid_t g0, gid_t g1, gid_t g2, const gid_t *groups, int n)
{
	uid_t r, e, s;
	gid_t gr, ge, gs, got[64];
	if (getresuid(&r, &e, &s) || r != u0 || e != u1 || s != u2)
		fail("%s: uids %u/%u/%u, expected %u/%u/%u", who, r, e, s, u0, u1, u2);
	if (getresgid(&gr, &ge, &gs) || gr != g0 || ge != g1 || gs != g2)
		fail("%s: gids %u/%u/%u, expected %u/%u/%u", who, gr, ge, gs, g0, g1, g2);
	int k = getgroups(64, got);
	if (k != n || (n && memcmp(got, groups, n * sizeof(gid_t))))
		fail("%s: %d supplementary groups (first %u), expected %d (first %u)", who, k, k > 0 ? got[0] : 0, n, n ? groups[0] : 0);
	char m[4096];
	if (wl_read_into("/proc/self/uid_map", m, sizeof(m)) < 0 || strcmp(m, uid_map))
		fail("%s: uid_map is '%s', expected '%s'", who, m, uid_map);
	if (wl_read_into("/proc/self/gid_map", m, sizeof(m)) < 0 || strcmp(m, gid_map))
		fail("%s: gid_map is '%s', expected '%s'", who, m, gid_map);
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "userns");
	if (wl_read_into("/proc/self/uid_map", uid_map, sizeof(uid_map)) < 0 || wl_read_into("/proc/self/gid_map", gid_map, sizeof(gid_map)) < 0)
		fail("cannot read the maps");
	if (strstr(uid_map, "4294967295"))
		fail("not in a user namespace of its own: uid_map '%s'", uid_map);
	int p[2];
	if (pipe(p))
		fail("pipe: %s", strerror(errno));
	const gid_t child_groups[2] = { 5, 1001 };
	pid_t child = fork();
	if (child == 0) {
		close(p[1]);
		if (setgroups(2, child_groups) || setresgid(1000, 1001, 1002) || setresuid(2000, 2001, 0))
			fail("child: set ids: %s", strerror(errno));
		char c;
		/* Wait for the parent's word after the restore (EOF). */
		while (read(p[0], &c, 1) > 0)
			;
		if (wl_sabotage() == 1 && setresuid(-1, 2002, -1))
			fail("sabotage: %s", strerror(errno));
		check_ids("child", 2000, 2001, 0, 1000, 1001, 1002, child_groups, 2);
		_exit(wl_failures() ? 1 : 0);
	}
	close(p[0]);
	if (prctl(PR_SET_KEEPCAPS, 1) || setgroups(0, NULL) || setresuid(3000, 3001, 0))
		fail("set own ids: %s", strerror(errno));
	/* Back to all permitted capabilities in the effective set (KEEP_CAPS kept the permitted ones). */
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d) == 0) {
		d[0].effective = d[0].permitted;
		d[1].effective = d[1].permitted;
		if (syscall(SYS_capset, &h, d))
			fail("capset: %s", strerror(errno));
	}
	wl_ready();
	wl_wait();
	if (wl_sabotage() == 2) {
		const gid_t seven = 7;
		setgroups(1, &seven);
	}
	check_ids("parent", 3000, 3001, 0, 0, 0, 0, NULL, 0);
	/* Still capable in its namespace: to its saved uid 0 and back. */
	if (setresuid(-1, 0, -1) || setresuid(-1, 3001, -1))
		fail("parent: cannot change its effective uid in its namespace: %s", strerror(errno));
	/* Leaving euid 0 cleared the effective set: back, to write the verdict in the namespace root's directory. */
	if (syscall(SYS_capget, &h, d) == 0) {
		d[0].effective = d[0].permitted;
		d[1].effective = d[1].permitted;
		syscall(SYS_capset, &h, d);
	}
	char st[4096];
	if (wl_read_into("/proc/self/status", st, sizeof(st)) < 0 || !strstr(st, "\nUid:\t3000\t3001\t0\t3001\n") || !strstr(st, "\nGid:\t0\t0\t0\t0\n"))
		fail("parent: /proc/self/status Uid/Gid lines are not 3000/3001/0/3001 and 0/0/0/0");
	close(p[1]);
	int ws;
	if (waitpid(child, &ws, 0) != child || !WIFEXITED(ws) || WEXITSTATUS(ws))
		fail("the child found its ids changed (exit status %d)", ws);
	return wl_done();
}
