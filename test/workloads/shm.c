/*
 * Memory shared between processes: a MAP_SHARED anonymous region, a memfd
 * (mapped and kept open, with a seal), and a file on /dev/shm, all mapped
 * by the parent and its child at the same addresses; and copy-on-write
 * private memory inherited from the parent, which the child changed. After
 * the checkpoint: the contents are intact, a write by one process is seen by
 * the other in every shared region, and the private copies stay apart.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096
#define N 16

struct region {
	const char *name;
	volatile unsigned char *p;
};

int main(int argc, char **argv)
{
	char status_child[4096];
	wl_init(argc, argv, "shm");
	snprintf(status_child, sizeof(status_child), "%s.child", argv[1]);
	struct region r[3];
	r[0] = (struct region){ "shared anonymous", mmap(NULL, N * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0) };
	int mfd = memfd_create("crest-test", MFD_ALLOW_SEALING);
	if (ftruncate(mfd, N * PG))
		fail("ftruncate memfd");
	r[1] = (struct region){ "memfd", mmap(NULL, N * PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0) };
	fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
	char shmpath[128];
	snprintf(shmpath, sizeof(shmpath), "/dev/shm/crest-test-%d", getpid());
	int sfd = open(shmpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (ftruncate(sfd, N * PG))
		fail("ftruncate /dev/shm file");
	r[2] = (struct region){ "/dev/shm file", mmap(NULL, N * PG, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0) };
	close(sfd);
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < N * PG; k += 512)
			r[i].p[k] = (unsigned char)(k / 512 + i);
	unsigned char *cow = malloc(8 * PG);
	memset(cow, 0x11, 8 * PG);

	pid_t child = fork();
	if (child == 0) {
		char *cargv[] = { argv[0], status_child, NULL };
		wl_init(2, cargv, "shm-child");
		memset(cow, 0x22, 4 * PG); /* half of the inherited copy is now the child's own */
		wl_ready();
		wl_wait();
		/* Wait for the parent's marks, then answer in every shared region. */
		for (int t = 0; t < 2000; t++) {
			int seen = 0;
			for (int i = 0; i < 3; i++)
				seen += r[i].p[5 * PG] == 0xa0 + i;
			if (seen == 3)
				break;
			usleep(1000);
		}
		for (int i = 0; i < 3; i++) {
			if (r[i].p[5 * PG] != 0xa0 + i)
				fail("%s: the parent's write is not visible in the child", r[i].name);
			r[i].p[6 * PG] = 0xb0 + i;
		}
		for (int k = 0; k < 8 * PG; k++)
			if (cow[k] != (k < 4 * PG ? 0x22 : 0x11)) {
				fail("the child's copy-on-write memory changed at %d", k);
				break;
			}
		_exit(wl_done());
	}
	for (int t = 0; t < 2000 && !wl_read_file(status_child, NULL); t++)
		usleep(1000);
	printf("shm: child %d\n", child);
	wl_ready();
	wl_wait();
	if (wl_sabotage())
		r[1].p[512] ^= 1;
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < N * PG; k += 512)
			if (r[i].p[k] != (unsigned char)(k / 512 + i)) {
				fail("%s: byte %d changed", r[i].name, k);
				break;
			}
	for (int k = 0; k < 8 * PG; k++)
		if (cow[k] != 0x11) {
			fail("the parent's copy-on-write memory changed at %d (the child's write leaked)", k);
			break;
		}
	int seals = fcntl(mfd, F_GET_SEALS);
	if (seals != (F_SEAL_SHRINK | F_SEAL_GROW))
		fail("memfd seals are %#x", seals);
	char link[64], target[256] = "";
	snprintf(link, sizeof(link), "/proc/self/fd/%d", mfd);
	if (readlink(link, target, sizeof(target) - 1) < 0 || strcmp(target, "/memfd:crest-test (deleted)"))
		fail("the memfd is now '%s'", target);
	for (int i = 0; i < 3; i++)
		r[i].p[5 * PG] = 0xa0 + i;
	kill(child, SIGTERM);
	int st;
	if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st)) {
		char *why = wl_read_file(status_child, NULL);
		fail("child: %s", why ? why : "no report");
	}
	for (int i = 0; i < 3; i++)
		if (r[i].p[6 * PG] != 0xb0 + i)
			fail("%s: the child's write is not visible in the parent", r[i].name);
	unlink(shmpath);
	return wl_done();
}
