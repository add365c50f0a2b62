/*
 * hugetlb memory (2 MiB huge pages): a private anonymous MAP_HUGETLB region
 * of two huge pages, two shared anonymous ones the child maps too (an fd of
 * the second opened through map_files), and a hugetlb memfd (MFD_HUGETLB)
 * mapped shared by both and kept open, each
 * holding data in every huge page; the child also changed its
 * copy-on-write copy of the private region. After the checkpoint: the
 * contents are intact, each region is still hugetlb memory with 2 MiB pages
 * (smaps), still on the device it was on, a write by one process shows in
 * the other in the shared regions, and the private copies stay apart; an
 * fd of the shared region (opened through map_files) still reads it.
 *
 * Sabotage items: 1 flips a byte of the private region, 2 of the shared
 * one, 3 of the memfd, 4 of the shared one with an fd (each in the second
 * huge page).
 */
#define _GNU_SOURCE
#include "lib.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MFD_HUGETLB
#define MFD_HUGETLB 4
#endif
#define HUGE (2UL << 20)
#define LEN (2 * HUGE)
#define NR 4

struct region {
	const char *name;
	unsigned char *p;
	unsigned long dev, ino;
};

static const char *names[NR] = { "private hugetlb", "shared hugetlb", "hugetlb memfd", "shared hugetlb with an fd" };

/* The device and inode maps gives the region (as zdtm's maps09 compares them). */
static int map_id(const void *p, unsigned long *dev, unsigned long *ino)
{
	static char buf[1 << 16];
	if (wl_read_into("/proc/self/maps", buf, sizeof(buf)) < 0)
		return -1;
	for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		unsigned long start, end, maj, min, inode;
		if (sscanf(line, "%lx-%lx %*s %*s %lx:%lx %lu", &start, &end, &maj, &min, &inode) == 5 &&
		    start == (unsigned long)p) {
			*dev = maj << 8 | min;
			*ino = inode;
			return 0;
		}
	}
	return -1;
}

/* "ht" in the region's VmFlags and its KernelPageSize. */
static void check_smaps(const struct region *r)
{
	static char buf[1 << 17];
	char head[32];
	if (wl_read_into("/proc/self/smaps", buf, sizeof(buf)) < 0) {
		fail("cannot read smaps");
		return;
	}
	snprintf(head, sizeof(head), "%lx-", (unsigned long)r->p);
	char *at = strstr(buf, head);
	if (!at || (at != buf && at[-1] != '\n')) {
		fail("%s: no mapping at %p", r->name, (void *)r->p);
		return;
	}
	char *next = strstr(at + 1, "VmFlags:");
	char *eol = next ? strchr(next, '\n') : NULL;
	if (!next || !eol) {
		fail("%s: no VmFlags", r->name);
		return;
	}
	*eol = 0;
	if (!strstr(next, " ht"))
		fail("%s: not hugetlb memory any more (VmFlags:%s)", r->name, next + 8);
	char *kps = strstr(at, "KernelPageSize:");
	if (!kps || kps > next || atol(kps + 15) != (long)(HUGE >> 10))
		fail("%s: kernel page size is %ld kB, want %lu", r->name, kps ? atol(kps + 15) : -1L, HUGE >> 10);
}

static unsigned char pattern(int i, unsigned long k, int who)
{
	return (unsigned char)(k / 4096 * 7 + i * 31 + who);
}

int main(int argc, char **argv)
{
	char status_child[4096];
	wl_init(argc, argv, "hugetlb");
	snprintf(status_child, sizeof(status_child), "%s.child", argv[1]);
	struct region r[NR];
	r[0].p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	r[1].p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	int mfd = memfd_create("crest-huge", MFD_HUGETLB);
	if (mfd < 0 || ftruncate(mfd, LEN)) {
		fail("memfd_create(MFD_HUGETLB) and ftruncate: %m");
		return wl_done();
	}
	r[2].p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	r[3].p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	for (int i = 0; i < NR; i++) {
		r[i].name = names[i];
		if (r[i].p == MAP_FAILED) {
			fail("%s: mmap: %m", r[i].name);
			return wl_done();
		}
		/* A byte in each 4 KiB page of the first half of each huge page. */
		for (unsigned long k = 0; k < LEN; k += 4096)
			if (k % HUGE < HUGE / 2)
				r[i].p[k] = pattern(i, k, 0);
		if (map_id(r[i].p, &r[i].dev, &r[i].ino))
			fail("%s: not in maps", r[i].name);
	}

	/* An fd of the shared region, as zdtm's shmemfd takes one of shared memory. */
	char path[128];
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)r[3].p, (unsigned long)r[3].p + LEN);
	int sfd = open(path, O_RDWR);
	if (sfd < 0)
		fail("open the shared region through map_files: %m");

	pid_t child = fork();
	if (child == 0) {
		char *cargv[] = { argv[0], status_child, NULL };
		wl_init(2, cargv, "hugetlb-child");
		/* The child's own copy of the first huge page of the private region. */
		for (unsigned long k = 0; k < HUGE; k += 4096)
			if (k < HUGE / 2)
				r[0].p[k] = pattern(0, k, 1);
		wl_ready();
		wl_wait();
		for (int t = 0; t < 2000 && !(r[1].p[HUGE + 8] == 0xa1 && r[2].p[HUGE + 8] == 0xa2 && r[3].p[HUGE + 8] == 0xa3); t++)
			usleep(1000);
		for (int i = 1; i < NR; i++) {
			if (r[i].p[HUGE + 8] != 0xa0 + i)
				fail("%s: the parent's write is not visible in the child", r[i].name);
			r[i].p[HUGE + 16] = 0xb0 + i;
		}
		for (unsigned long k = 0; k < LEN; k += 4096)
			if (k % HUGE < HUGE / 2 && r[0].p[k] != pattern(0, k, k < HUGE)) {
				fail("private hugetlb: the child's byte at %lu is %u, want %u", k, r[0].p[k], pattern(0, k, k < HUGE));
				break;
			}
		check_smaps(&r[0]);
		_exit(wl_done());
	}
	for (int t = 0; t < 2000 && !wl_read_file(status_child, NULL); t++)
		usleep(1000);
	printf("hugetlb: child %d\n", child);
	wl_ready();
	wl_wait();
	int s = wl_sabotage();
	if (s >= 1 && s <= NR)
		r[s - 1].p[HUGE + 4096] ^= 1;
	for (int i = 0; i < NR; i++) {
		for (unsigned long k = 0; k < LEN; k += 4096) {
			unsigned char want = k % HUGE < HUGE / 2 ? pattern(i, k, 0) : 0;
			if (r[i].p[k] != want) {
				fail("%s: the byte at %lu is %u, want %u", r[i].name, k, r[i].p[k], want);
				break;
			}
		}
		check_smaps(&r[i]);
		unsigned long dev, ino;
		if (map_id(r[i].p, &dev, &ino))
			fail("%s: not in maps", r[i].name);
		else if (dev != r[i].dev)
			fail("%s: on device %lx, was on %lx", r[i].name, dev, r[i].dev);
	}
	struct stat st;
	if (fstat(mfd, &st) || st.st_size != (off_t)LEN || st.st_blksize != (blksize_t)HUGE)
		fail("hugetlb memfd: size %ld, block size %ld, want %lu and %lu", (long)st.st_size, (long)st.st_blksize, LEN, HUGE);
	for (int i = 1; i < NR; i++)
		r[i].p[HUGE + 8] = 0xa0 + i;
	unsigned char b = 0;
	if (pread(sfd, &b, 1, HUGE + 8) != 1 || b != 0xa3)
		fail("the fd of the shared region reads %u where the region has 0xa3: not the same memory", b);
	char link[64], target[256] = "";
	snprintf(link, sizeof(link), "/proc/self/fd/%d", sfd);
	if (readlink(link, target, sizeof(target) - 1) < 0 || strcmp(target, "/anon_hugepage (deleted)"))
		fail("the fd of the shared region names '%s'", target);
	kill(child, SIGTERM);
	int ws;
	if (waitpid(child, &ws, 0) != child || !WIFEXITED(ws) || WEXITSTATUS(ws)) {
		char *why = wl_read_file(status_child, NULL);
		fail("child: %s", why ? why : "no report");
	}
	for (int i = 1; i < NR; i++)
		if (r[i].p[HUGE + 16] != 0xb0 + i)
			fail("%s: the child's write is not visible in the parent", r[i].name);
	return wl_done();
}
