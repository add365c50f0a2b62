/*
 * argv[2] MiB (default 64) of private anonymous memory filled with a
 * non-zero pseudo-random pattern (xorshift64, every word odd), verified word
 * by word after the checkpoint by generating the sequence again. Used by the
 * benchmark.
 *
 * Sabotage: 1 = one bit flipped in the middle of the region.
 */
#include "lib.h"
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
	wl_init(argc, argv, "bigmem");
	size_t mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 64;
	size_t words = mib << 17;
	uint64_t *mem = mmap(NULL, words * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mib == 0 || mem == MAP_FAILED) {
		fail("cannot map %zu MiB", mib);
		return wl_done();
	}
	wl_words_fill(mem, words);
	printf("bigmem: %zu MiB at %p filled\n", mib, (void *)mem);
	wl_ready();
	wl_wait();
	if (wl_sabotage())
		mem[words / 2] ^= 1ULL << 33;

	wl_words_check(mem, words);
	printf("bigmem: %zu MiB checked\n", mib);
	return wl_done();
}
