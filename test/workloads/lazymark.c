/*
 * A workload for timing a lazy restore: argv[2] MiB (default 64) of private
 * anonymous memory filled with bigmem's pattern, then a loop that, every
 * millisecond, writes the time (CLOCK_REALTIME, nanoseconds, as text) over
 * the file argv[3] (default "marker" in its directory), touching nothing of
 * the big region: after a restore the first new marker tells when the task
 * ran again, whether its memory is in place yet or not. With argv[4]
 * "split", each iteration also flips one page every 8 MiB of the region
 * (at 4 MiB, 12 MiB, ...) between read-only and read-write (mprotect),
 * splitting its mapping in pieces and merging it again: a lazy restore's
 * pushes then meet a mapping split since it was registered. On SIGTERM the region is checked word by
 * word, as bigmem does.
 *
 * Sabotage: 1 = one bit flipped in the middle of the region.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	wl_init(argc, argv, "lazymark");
	size_t mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 64;
	const char *marker = argc > 3 ? argv[3] : "marker";
	int split = argc > 4 && strcmp(argv[4], "split") == 0;
	size_t words;
	uint64_t *mem = wl_words_map(mib, &words);
	if (!mem)
		return wl_done();
	int fd = open(marker, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		fail("cannot create %s", marker);
		return wl_done();
	}
	printf("lazymark: %zu MiB at %p filled, marker %s\n", mib, (void *)mem, marker);
	wl_ready();
	char line[32];
	unsigned long iteration = 0;
	while (!wl_should_stop()) {
		int prot = iteration++ % 2 ? PROT_READ | PROT_WRITE : PROT_READ;
		for (size_t off = 4 << 20; split && off < words * 8; off += 8 << 20)
			if (mprotect((char *)mem + off, 4096, prot))
				fail("cannot mprotect the page at %p", (void *)((char *)mem + off));
		struct timespec now, ms = { 0, 1000000 };
		clock_gettime(CLOCK_REALTIME, &now);
		int n = snprintf(line, sizeof(line), "%020lld\n", (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
		if (pwrite(fd, line, n, 0) != n)
			fail("cannot write %s", marker);
		nanosleep(&ms, NULL);
	}
	if (split && mprotect(mem, words * 8, PROT_READ | PROT_WRITE))
		fail("cannot make the region read-write again");
	if (wl_sabotage())
		mem[words / 2] ^= 1ULL << 33;
	wl_words_check(mem, words);
	printf("lazymark: %zu MiB checked\n", mib);
	return wl_done();
}
