/*
 * A file on a mounted hugetlbfs (argv[2], 2 MiB pages), mapped shared and
 * privately: data written through the shared mapping in both huge pages,
 * the private mapping's first huge page changed (its own copy); with
 * argv[3] "unlink" the file is removed once mapped (crest refuses that).
 * After the checkpoint: the shared mapping still shows the file (a write
 * through it reaches the file), the private copy is intact and its second
 * page still the file's; both are still hugetlb memory.
 *
 * Sabotage items: 1 flips a byte of the shared mapping, 2 of the private copy.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HUGE (2UL << 20)
#define LEN (2 * HUGE)

int main(int argc, char **argv)
{
	wl_init(argc, argv, "hugetlb-file");
	if (argc < 3) {
		fail("usage: hugetlb-file STATUS FILE [unlink]");
		return wl_done();
	}
	int fd = open(argv[2], O_RDWR | O_CREAT, 0600);
	if (fd < 0 || ftruncate(fd, LEN)) {
		fail("create %s: %m", argv[2]);
		return wl_done();
	}
	unsigned char *sh = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	unsigned char *pv = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (sh == MAP_FAILED || pv == MAP_FAILED) {
		fail("mmap %s: %m", argv[2]);
		return wl_done();
	}
	close(fd);
	sh[0] = 11;
	sh[HUGE + 100] = 22;
	pv[4096] = 33; /* the private copy of the first huge page */
	int unlinked = argc > 3 && !strcmp(argv[3], "unlink");
	if (unlinked)
		unlink(argv[2]);
	wl_ready();
	wl_wait();
	switch (wl_sabotage()) {
	case 1: sh[HUGE + 100] ^= 1; break;
	case 2: pv[4096] ^= 1; break;
	}
	if (sh[0] != 11 || sh[HUGE + 100] != 22)
		fail("shared mapping: holds %u and %u, want 11 and 22", sh[0], sh[HUGE + 100]);
	if (pv[0] != 11 || pv[4096] != 33)
		fail("private mapping: its copy holds %u and %u, want 11 and 33", pv[0], pv[4096]);
	if (pv[HUGE + 100] != 22)
		fail("private mapping: the file's second page shows %u, want 22", pv[HUGE + 100]);
	sh[HUGE + 200] = 44;
	if (pv[HUGE + 200] != 44)
		fail("private mapping: a write to the file does not show in its untouched page");
	int rfd = unlinked ? -1 : open(argv[2], O_RDONLY);
	unsigned char b = 0;
	if (!unlinked && (rfd < 0 || pread(rfd, &b, 1, HUGE + 200) != 1 || b != 44))
		fail("the shared mapping's write reads %u from %s: not mapped from the file any more", b, argv[2]);
	return wl_done();
}
