/*
 * Memory that keeps changing while it is checkpointed (pre-dump, then the
 * dump): argv[2] MiB (default 32) of private anonymous memory, the first
 * half filled at start, the second half left untouched; then, without
 * pause, before and after the checkpoint, a page at a time picked at random
 * gets written whole with a value made of its number and a generation
 * counter, which a table (in memory too) records; now and then a page is
 * dropped with MADV_DONTNEED (generation 0: zeros) or a page of the
 * untouched half written for the first time; argv[3] pages a second
 * (default 1000), a page at a time. At the end every word of
 * every page must be what its recorded generation says: a restore that
 * mixes pages of different moments (a page left in parent images that was
 * written since) fails here.
 *
 * Sabotage: 1 = one page's recorded generation is off by one.
 */
#include "lib.h"
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096
#define WORDS (PAGE / 8)

static inline uint64_t value(size_t page, uint64_t gen)
{
	return gen ? (page << 32 | gen) * 0x9e3779b97f4a7c15ULL | 1 : 0;
}

static void write_page(uint64_t *p, size_t page, uint64_t gen)
{
	uint64_t v = value(page, gen);
	for (size_t i = 0; i < WORDS; i++)
		p[i] = v + i;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "memwrite");
	size_t mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 32;
	size_t pages = mib << 8;
	unsigned long rate = argc > 3 ? strtoul(argv[3], NULL, 10) : 1000;
	uint8_t *mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t *gens = calloc(pages, sizeof(*gens));
	if (mib == 0 || rate == 0 || mem == MAP_FAILED || !gens) {
		fail("cannot map %zu MiB", mib);
		return wl_done();
	}
	madvise(mem, pages * PAGE, MADV_NOHUGEPAGE);
	for (size_t p = 0; p < pages / 2; p++) {
		gens[p] = 1;
		write_page((uint64_t *)(mem + p * PAGE), p, 1);
	}
	uint64_t gen = 1, x = 88172645463325252ULL, writes = 0;
	int ready = 0;
	while (!ready || !wl_should_stop()) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		size_t p = x % pages;
		uint8_t *at = mem + p * PAGE;
		if (x % 61 == 0) {
			gens[p] = 0;
			madvise(at, PAGE, MADV_DONTNEED);
		} else {
			gens[p] = ++gen;
			write_page((uint64_t *)at, p, gen);
		}
		writes++;
		if (!ready && writes >= rate) {
			printf("memwrite: %zu MiB, %llu writes\n", mib, (unsigned long long)writes);
			wl_ready();
			ready = 1;
		}
		/* A dump finds pages written since any moment, and (at a few MiB a second) most not. */
		usleep(1000000 / rate);
	}
	if (wl_sabotage())
		gens[pages / 3] += 1;
	size_t bad = 0;
	for (size_t p = 0; p < pages; p++) {
		const uint64_t *w = (const uint64_t *)(mem + p * PAGE);
		uint64_t v = value(p, gens[p]);
		for (size_t i = 0; i < WORDS; i++) {
			uint64_t want = gens[p] ? v + i : 0;
			if (w[i] != want) {
				if (bad++ < 8)
					fail("page %zu word %zu is %016llx, expected %016llx (generation %llu)", p, i,
					     (unsigned long long)w[i], (unsigned long long)want, (unsigned long long)gens[p]);
				break;
			}
		}
	}
	if (bad > 8)
		fail("%zu of %zu pages differ in all", bad, pages);
	printf("memwrite: %zu MiB checked after %llu writes\n", mib, (unsigned long long)writes);
	return wl_done();
}
