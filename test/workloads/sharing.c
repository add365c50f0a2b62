/*
 * Processes (not threads) sharing kernel objects with their parent: a child
 * created with CLONE_FILES shares the fd table (and so does its own
 * CLONE_FILES child: zdtm's fdt_shared), one with CLONE_FS the cwd, root and
 * umask. After the checkpoint the sharing holds: an fd the child or the
 * grandchild opens shows up in the parent, a chdir and umask in the other child move
 * the parent too, and neither leaks into a plain child.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct shared {
	volatile int go;
	volatile int fd_opened, fd_grand;
	volatile int done_grand;
	volatile pid_t grandchild;
	volatile int done_files, done_fs;
	char plain_cwd[512];
	volatile int plain_fd_seen;
};

static struct shared *sh;
static char stack1[256 * 1024], stack2[256 * 1024], stack3[256 * 1024];

static int files_grandchild(void *arg)
{
	(void)arg;
	while (!sh->go)
		usleep(1000);
	sh->fd_grand = open("opened-by-grandchild", O_RDWR | O_CREAT, 0600);
	sh->done_grand = 1;
	for (;;)
		pause();
	return 0;
}

static int files_child(void *arg)
{
	(void)arg;
	sh->grandchild = clone(files_grandchild, stack3 + sizeof(stack3), CLONE_FILES | SIGCHLD, NULL);
	while (!sh->go)
		usleep(1000);
	int fd = open("opened-by-child", O_RDWR | O_CREAT, 0600);
	sh->fd_opened = fd;
	sh->done_files = 1;
	for (;;)
		pause();
	return 0;
}

static int fs_child(void *arg)
{
	(void)arg;
	while (!sh->go)
		usleep(1000);
	if (chdir("sub"))
		sh->done_fs = -1;
	umask(0011);
	sh->done_fs = 1;
	for (;;)
		pause();
	return 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "sharing");
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	mkdir("sub", 0755);
	umask(0022);
	pid_t c1 = clone(files_child, stack1 + sizeof(stack1), CLONE_FILES | SIGCHLD, NULL);
	pid_t c2 = clone(fs_child, stack2 + sizeof(stack2), CLONE_FS | SIGCHLD, NULL);
	pid_t c3 = fork();
	if (c3 == 0) {
		while (!sh->go)
			usleep(1000);
		while (!sh->done_files || !sh->done_fs)
			usleep(1000);
		if (!getcwd(sh->plain_cwd, sizeof(sh->plain_cwd)))
			sh->plain_cwd[0] = 0;
		sh->plain_fd_seen = fcntl(sh->fd_opened, F_GETFD) >= 0;
		for (;;)
			pause();
	}
	if (c1 < 0 || c2 < 0 || c3 < 0)
		fail("clone failed");
	char cwd_before[512];
	if (!getcwd(cwd_before, sizeof(cwd_before)))
		fail("getcwd");
	printf("sharing: files child %d, fs child %d, plain child %d\n", c1, c2, c3);
	wl_ready();
	wl_wait();
	if (wl_sabotage())
		sh->go = 0, sh->done_files = 1, sh->done_fs = 1, sh->done_grand = 1;
	else
		sh->go = 1;
	for (int t = 0; t < 3000 && (!sh->done_files || !sh->done_fs || !sh->done_grand || !sh->plain_cwd[0]); t++)
		usleep(1000);
	if (sh->done_fs != 1)
		fail("the CLONE_FS child could not change directory");
	char link[64], target[512] = "";
	snprintf(link, sizeof(link), "/proc/self/fd/%d", sh->fd_opened);
	if (readlink(link, target, sizeof(target) - 1) < 0 || !strstr(target, "opened-by-child"))
		fail("the fd the CLONE_FILES child opened (%d) is not in the parent's table ('%s')", sh->fd_opened, target);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", sh->fd_grand);
	target[0] = 0;
	if (readlink(link, target, sizeof(target) - 1) < 0 || !strstr(target, "opened-by-grandchild"))
		fail("the fd the CLONE_FILES grandchild opened (%d) is not in the parent's table ('%s')", sh->fd_grand, target);
	char cwd[512];
	if (!getcwd(cwd, sizeof(cwd)) || !strstr(cwd, "/sub"))
		fail("the CLONE_FS child's chdir did not move the parent (cwd '%s')", cwd);
	mode_t m = umask(0);
	if (m != 0011)
		fail("the CLONE_FS child's umask did not reach the parent (%03o)", m);
	if (!strcmp(sh->plain_cwd, cwd) || strcmp(sh->plain_cwd, cwd_before))
		fail("the plain child's cwd is '%s': it should have stayed '%s'", sh->plain_cwd, cwd_before);
	if (sh->plain_fd_seen)
		fail("the plain child sees the CLONE_FILES child's fd");
	if (sh->grandchild <= 0)
		fail("the CLONE_FILES child could not clone its own");
	else
		kill(sh->grandchild, SIGKILL);
	kill(c1, SIGKILL), kill(c2, SIGKILL), kill(c3, SIGKILL);
	while (wait(NULL) > 0)
		;
	return wl_done();
}
