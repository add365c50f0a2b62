/*
 * SysV shared memory on huge pages (shmget SHM_HUGETLB, 2 MiB pages) in an
 * IPC namespace of its own (started with `crest run --ns pid,ipc`): one
 * segment of 40960 bytes (zdtm shm-hugetlb's size) attached with data,
 * another of two huge pages left unattached with data in both. After the
 * checkpoint: both have their ids and contents, and both are still hugetlb
 * memory (the attachment's VmFlags has "ht", its KernelPageSize is 2048 kB).
 *
 * Sabotage items: 1 flips a byte of the attached segment, 2 of the other.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

#ifndef SHM_HUGETLB
#define SHM_HUGETLB 04000
#endif
#define HUGE (2UL << 20)

static const size_t sizes[2] = { 40960, 2 * HUGE };

static unsigned char pattern(int seg, size_t k)
{
	return (unsigned char)(k / 512 * 13 + seg * 101 + 1);
}

/* The attachment at p is hugetlb memory with 2 MiB pages. */
static void check_huge(const void *p, const char *what)
{
	static char buf[1 << 17];
	char head[32];
	if (wl_read_into("/proc/self/smaps", buf, sizeof(buf)) < 0) {
		fail("cannot read smaps");
		return;
	}
	snprintf(head, sizeof(head), "%lx-", (unsigned long)p);
	char *at = strstr(buf, head);
	char *flags = at ? strstr(at, "VmFlags:") : NULL;
	char *eol = flags ? strchr(flags, '\n') : NULL;
	if (!at || !flags || !eol) {
		fail("%s: no mapping at %p", what, p);
		return;
	}
	*eol = 0;
	char *kps = strstr(at, "KernelPageSize:");
	if (!strstr(flags, " ht") || !kps || kps > flags || atol(kps + 15) != (long)(HUGE >> 10))
		fail("%s: not 2 MiB hugetlb memory any more (KernelPageSize %ld kB, VmFlags:%s)", what, kps ? atol(kps + 15) : -1L, flags + 8);
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "hugetlb-sysv");
	int id[2];
	unsigned char *p[2];
	for (int s = 0; s < 2; s++) {
		id[s] = shmget(IPC_PRIVATE, sizes[s], IPC_CREAT | SHM_HUGETLB | 0600);
		p[s] = id[s] < 0 ? (void *)-1 : shmat(id[s], NULL, 0);
		if (p[s] == (void *)-1) {
			fail("segment %d: shmget SHM_HUGETLB or shmat: %m", s);
			return wl_done();
		}
		for (size_t k = 0; k < sizes[s]; k += 512)
			p[s][k] = pattern(s, k);
	}
	check_huge(p[0], "the attached segment");
	shmdt(p[1]);
	wl_ready();
	wl_wait();
	p[1] = shmat(id[1], NULL, 0);
	if (p[1] == (void *)-1) {
		fail("the unattached segment %d is gone: %m", id[1]);
		return wl_done();
	}
	int sab = wl_sabotage();
	if (sab == 1 || sab == 2)
		p[sab - 1][sizes[sab - 1] - 512] ^= 1;
	for (int s = 0; s < 2; s++) {
		for (size_t k = 0; k < sizes[s]; k += 512)
			if (p[s][k] != pattern(s, k)) {
				fail("segment %d: byte %zu is %u, want %u", id[s], k, p[s][k], pattern(s, k));
				break;
			}
		struct shmid_ds ds;
		if (shmctl(id[s], IPC_STAT, &ds) || ds.shm_segsz != sizes[s])
			fail("segment %d: size %zu, want %zu", id[s], (size_t)ds.shm_segsz, sizes[s]);
	}
	check_huge(p[0], "the attached segment");
	check_huge(p[1], "the unattached segment");
	return wl_done();
}
