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
	size_t words;
	uint64_t *mem = wl_words_map(mib, &words);
	if (!mem)
		return wl_done();
	printf("bigmem: %zu MiB at %p filled\n", mib, (void *)mem);
	wl_ready();
	wl_wait();
	if (wl_sabotage())
		mem[words / 2] ^= 1ULL << 33;

	wl_words_check(mem, words);
	printf("bigmem: %zu MiB checked\n", mib);
	return wl_done();
}
