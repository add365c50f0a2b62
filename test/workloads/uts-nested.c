/*
 * A UTS namespace of a task's own inside the tree (systemd's
 * ProtectHostname=, a container in a container): the root forks a child
 * that unshares CLONE_NEWUTS and names itself "wl-inner" (domain
 * "wl-domain"), then forks a grandchild, which shares it; a second child
 * stays in the root's namespace. After: each one's host and domain names are
 * what they were.
 *
 * Sabotage: 1 the inner child expects the root's host name.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

/* Waits for the go byte, then answers 'y' if its names are still host/domain, else 'n'. */
static void member(int go, int done, const char *host, const char *domain)
{
	char c;
	(void)!read(go, &c, 1);
	struct utsname u;
	c = uname(&u) == 0 && !strcmp(u.nodename, host) && !strcmp(u.domainname, domain) ? 'y' : 'n';
	(void)!write(done, &c, 1);
	_exit(0);
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "uts-nested");
	struct utsname root;
	uname(&root);
	int go[2], done[2], ready[2];
	if (pipe(go) || pipe(done) || pipe(ready))
		fail("pipe: %s", strerror(errno));
	pid_t inner = fork();
	if (inner == 0) {
		if (unshare(CLONE_NEWUTS) || sethostname("wl-inner", 8) || setdomainname("wl-domain", 9))
			_exit(1);
		if (fork() == 0)
			member(go[0], done[1], "wl-inner", "wl-domain");
		(void)!write(ready[1], "r", 1);
		member(go[0], done[1], wl_sabotage() == 1 ? root.nodename : "wl-inner", "wl-domain");
	}
	if (fork() == 0)
		member(go[0], done[1], root.nodename, root.domainname);
	char c;
	if (read(ready[0], &c, 1) != 1)
		fail("the inner child did not make its namespace");
	wl_ready();
	wl_wait();
	struct utsname now;
	uname(&now);
	if (strcmp(now.nodename, root.nodename) || strcmp(now.domainname, root.domainname))
		fail("the root's names are %s/%s, expected %s/%s", now.nodename, now.domainname, root.nodename, root.domainname);
	if (write(go[1], "ggg", 3) != 3)
		fail("cannot tell the members");
	for (int i = 0; i < 3; i++)
		if (read(done[0], &c, 1) != 1 || c != 'y')
			fail("a member's names are not what they were (answer %d: %c)", i, c);
	while (wait(NULL) > 0)
		;
	return wl_done();
}
