/*
 * Shared anonymous memory reached through an fd of it (zdtm shmemfd and
 * shmemfd-priv): a MAP_SHARED|MAP_ANONYMOUS region of 5 pages with data,
 * an fd opened through /proc/self/map_files, a private mapping of that fd
 * at page 1 with one page changed (copy-on-write) and a shared one at page
 * 2; and a second object of which only an fd is left (its mapping gone),
 * cut to 0 bytes, written "hello" with O_APPEND and left at offset 3. A
 * child inherits all of it. After the checkpoint: the contents, the
 * private copy, the fd's flags, position and size are intact, a write
 * through one mapping shows in the others and through the fds, and in the
 * child; the file is still on tmpfs and named /dev/zero.
 *
 * Sabotage items: 1 changes the region's data (through the fd), 2 the
 * private copy, 3 moves the second fd's position.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096
#define TMPFS_MAGIC 0x01021994

static int open_map_files(void *p, size_t len)
{
	char path[128];
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)p, (unsigned long)p + len);
	return open(path, O_RDWR | O_LARGEFILE);
}

static void check_link(int fd, const char *what)
{
	char link[64], target[256] = "";
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if (readlink(link, target, sizeof(target) - 1) < 0 || strcmp(target, "/dev/zero (deleted)"))
		fail("%s: the fd names '%s', want '/dev/zero (deleted)'", what, target);
	struct statfs sf;
	if (fstatfs(fd, &sf) || sf.f_type != TMPFS_MAGIC)
		fail("%s: not on tmpfs (f_type %lx)", what, (unsigned long)sf.f_type);
}

int main(int argc, char **argv)
{
	char status_child[4096];
	wl_init(argc, argv, "shmem-fd");
	snprintf(status_child, sizeof(status_child), "%s.child", argv[1]);

	volatile int *shared = mmap(NULL, 5 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	for (int i = 0; i < 5; i++)
		shared[i * PG / 4] = 100 + i;
	int fd = open_map_files((void *)shared, 5 * PG);
	if (fd < 0) {
		fail("open map_files: %m");
		return wl_done();
	}
	volatile int *priv = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, PG);
	volatile int *shared2 = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 2 * PG);
	if (priv == MAP_FAILED || shared2 == MAP_FAILED) {
		fail("mmap of the fd: %m");
		return wl_done();
	}
	priv[PG / 4] = 222; /* the private copy of page 2 */

	void *one = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int fd2 = open_map_files(one, PG);
	if (fd2 < 0 || ftruncate(fd2, 0) || munmap(one, PG) || fcntl(fd2, F_SETFL, O_APPEND) ||
	    write(fd2, "hello", 5) != 5 || lseek(fd2, 3, SEEK_SET) != 3) {
		fail("set up the second object: %m");
		return wl_done();
	}
	int fl2 = fcntl(fd2, F_GETFL);

	pid_t child = fork();
	if (child == 0) {
		char *cargv[] = { argv[0], status_child, NULL };
		wl_init(2, cargv, "shmem-fd-child");
		wl_ready();
		wl_wait();
		for (int t = 0; t < 2000 && shared[4 * PG / 4] != 444; t++)
			usleep(1000);
		int v = 0;
		if (pread(fd, &v, sizeof(v), 4 * PG) != sizeof(v) || v != 444)
			fail("child: the parent's write reads %d through the fd, want 444", v);
		if (shared2[2 * PG / 4] != 444)
			fail("child: the parent's write shows %d in the shared mapping of the fd, want 444", shared2[2 * PG / 4]);
		char buf[8] = "";
		if (pread(fd2, buf, 5, 0) != 5 || memcmp(buf, "hello", 5))
			fail("child: the second object holds '%.5s'", buf);
		_exit(wl_done());
	}
	for (int t = 0; t < 2000 && !wl_read_file(status_child, NULL); t++)
		usleep(1000);
	printf("shmem-fd: child %d\n", child);
	wl_ready();
	wl_wait();
	switch (wl_sabotage()) {
	case 1: shared2[0] = 1; break;
	case 2: priv[PG / 4] = 2; break;
	case 3: lseek(fd2, 1, SEEK_SET); break;
	}
	for (int i = 0; i < 5; i++)
		if (shared[i * PG / 4] != 100 + i)
			fail("shared region: page %d holds %d, want %d", i, shared[i * PG / 4], 100 + i);
	for (int i = 0; i < 4; i++) {
		int want = i == 1 ? 222 : 101 + i;
		if (priv[i * PG / 4] != want)
			fail("private mapping of the fd: page %d holds %d, want %d", i, priv[i * PG / 4], want);
	}
	if (shared2[0] != 102)
		fail("shared mapping of the fd: page 0 holds %d, want 102", shared2[0]);
	/* Still one object: through each way in. */
	shared2[PG / 4] = 333;
	if (shared[3 * PG / 4] != 333)
		fail("a write to the fd's shared mapping does not show in the region");
	shared[4 * PG / 4] = 444;
	int v = 0;
	if (pread(fd, &v, sizeof(v), 4 * PG) != sizeof(v) || v != 444)
		fail("a write to the region reads %d through the fd, want 444", v);
	if (priv[3 * PG / 4] != 444)
		fail("a write to the region does not show in an untouched page of the private mapping");
	struct stat st;
	if (fstat(fd, &st) || st.st_size != 5 * PG)
		fail("the region's file is %ld bytes, want %d", (long)st.st_size, 5 * PG);
	check_link(fd, "the region's fd");
	check_link(fd2, "the second object's fd");
	if (fcntl(fd2, F_GETFL) != fl2)
		fail("the second fd's flags are %#x, want %#x", fcntl(fd2, F_GETFL), fl2);
	off_t pos = lseek(fd2, 0, SEEK_CUR);
	if (pos != 3)
		fail("the second fd is at %ld, want 3", (long)pos);
	if (fstat(fd2, &st) || st.st_size != 5)
		fail("the second object is %ld bytes, want 5", (long)st.st_size);
	kill(child, SIGTERM);
	int ws;
	if (waitpid(child, &ws, 0) != child || !WIFEXITED(ws) || WEXITSTATUS(ws)) {
		char *why = wl_read_file(status_child, NULL);
		fail("child: %s", why ? why : "no report");
	}
	return wl_done();
}
