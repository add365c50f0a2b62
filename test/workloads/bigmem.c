/*
 * argv[2] MiB (default 64) of private anonymous memory filled with a
 * non-zero pseudo-random pattern (xorshift64, every word odd), verified word
 * by word after the checkpoint by generating the sequence again. Used by the
 * benchmark.
 *
 * SIGUSR1 marks the region MADV_WIPEONFORK (its data stays), for a test of
 * flags that change while a dump begins.
 *
 * Sabotage: 1 = one bit flipped in the middle of the region.
 */
#include "lib.h"
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

static uint64_t *mem;
static size_t words;

static void on_usr1(int sig)
{
	(void)sig;
	madvise(mem, words * sizeof(*mem), MADV_WIPEONFORK);
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "bigmem");
	size_t mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 64;
	mem = wl_words_map(mib, &words);
	if (!mem)
		return wl_done();
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };
	sigaction(SIGUSR1, &sa, NULL);
	printf("bigmem: %zu MiB at %p filled\n", mib, (void *)mem);
	wl_ready();
	wl_wait();
	if (wl_sabotage())
		mem[words / 2] ^= 1ULL << 33;

	wl_words_check(mem, words);
	printf("bigmem: %zu MiB checked\n", mib);
	return wl_done();
}
