/* argv[2] MiB of non-zero pseudo-random memory, verified after the checkpoint. Used by the benchmark. */
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
	if (mem == MAP_FAILED) {
		fail("cannot map %zu MiB", mib);
		return wl_done();
	}
	uint64_t x = 88172645463325252ULL;
	for (size_t i = 0; i < words; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		mem[i] = x | 1;
	}
	uint64_t sum = wl_hash(mem, words * 8);
	printf("bigmem: %zu MiB\n", mib);
	wl_ready();
	wl_wait();
	if (wl_sabotage())
		mem[words / 2] ^= 1;
	uint64_t now = wl_hash(mem, words * 8);
	if (now != sum)
		fail("memory checksum %016llx, expected %016llx", (unsigned long long)now, (unsigned long long)sum);
	return wl_done();
}
