/*
 * fds of its own namespaces (like CRIU's zdtm proc-self and the handles
 * container runtimes keep): /proc/self/ns/{net,uts,ipc,mnt,pid,user,cgroup,
 * time}, one fd each, the uts one close-on-exec. After: each fd is a
 * namespace file of the namespace of that kind the process is in now (its
 * inode is /proc/self/ns/KIND's: a restore may put the tree in new
 * namespaces), with its flags; setns to the uts one works.
 *
 * Sabotage: 1 puts the uts fd at the net fd's number.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kinds[] = { "net", "uts", "ipc", "mnt", "pid", "user", "cgroup", "time" };
#define NK (int)(sizeof(kinds) / sizeof(kinds[0]))

int main(int argc, char **argv)
{
	wl_init(argc, argv, "fds-ns");
	int fds[NK], fl[NK], fdfl[NK];
	for (int i = 0; i < NK; i++) {
		char p[64];
		snprintf(p, sizeof(p), "/proc/self/ns/%s", kinds[i]);
		fds[i] = open(p, O_RDONLY | (strcmp(kinds[i], "uts") ? 0 : O_CLOEXEC));
		if (fds[i] < 0)
			fail("open %s: %s", p, strerror(errno));
		fl[i] = fcntl(fds[i], F_GETFL);
		fdfl[i] = fcntl(fds[i], F_GETFD);
	}
	wl_ready();
	wl_wait();
	if (wl_sabotage())
		dup2(fds[1], fds[0]);
	for (int i = 0; i < NK; i++) {
		char p[64];
		struct stat now, want;
		snprintf(p, sizeof(p), "/proc/self/ns/%s", kinds[i]);
		if (fstat(fds[i], &now) || stat(p, &want)) {
			fail("%s fd %d: %s", kinds[i], fds[i], strerror(errno));
			continue;
		}
		if (now.st_ino != want.st_ino || now.st_dev != want.st_dev)
			fail("%s fd %d is namespace inode %lu, the process is in %lu", kinds[i], fds[i], (unsigned long)now.st_ino,
			     (unsigned long)want.st_ino);
		if (fcntl(fds[i], F_GETFL) != fl[i] || fcntl(fds[i], F_GETFD) != fdfl[i])
			fail("%s fd %d flags 0x%x/%d, were 0x%x/%d", kinds[i], fds[i], fcntl(fds[i], F_GETFL), fcntl(fds[i], F_GETFD), fl[i],
			     fdfl[i]);
	}
	if (setns(fds[1], CLONE_NEWUTS))
		fail("setns to the uts fd: %s", strerror(errno));
	return wl_done();
}
