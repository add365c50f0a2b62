/*
 * Memory a dumper reads in many batches while it dumps shared memory too
 * (zdtm transition/maps007's layout, without the churn): a 64-page shared
 * anonymous object, mapped first so that it lies above the rest, and below it
 * one private region of 24 MiB written in full (more than one 16 MiB batch of
 * crest's page reads) followed by 2048 pages of which every other one is
 * written (more runs than one batch of process_vm_readv takes), the last
 * four of them PROT_NONE (read through /proc/PID/mem). Every written page
 * holds a pattern of its own address; the others must read as zeros.
 *
 * After SIGTERM: every page of both regions compared (the PROT_NONE ones
 * made readable first), with the number of wrong pages and the first one.
 *
 * Sabotage: 1 = a byte of a sparse page changed, 2 = a shared page zeroed.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096UL
#define SHARED_PAGES 64UL
#define DENSE_PAGES ((24UL << 20) / PAGE)
#define SPARSE_PAGES 2048UL
#define NONE_PAGES 4UL

/* The pattern of the page at addr: words derived from its address and a seed. */
static void fill(unsigned char *page, uint64_t seed)
{
	uint64_t x = (uint64_t)(uintptr_t)page ^ seed;
	for (size_t i = 0; i < PAGE / 8; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		memcpy(page + i * 8, &x, 8);
	}
}

static int matches(const unsigned char *page, uint64_t seed)
{
	uint64_t x = (uint64_t)(uintptr_t)page ^ seed;
	for (size_t i = 0; i < PAGE / 8; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		if (memcmp(page + i * 8, &x, 8))
			return 0;
	}
	return 1;
}

static int zero(const unsigned char *page)
{
	for (size_t i = 0; i < PAGE; i++)
		if (page[i])
			return 0;
	return 1;
}

static const uint64_t SHARED_SEED = 0x5eed0001, PRIVATE_SEED = 0x5eed0002;

static void check(const char *what, unsigned char *base, size_t pages, int (*expect)(size_t), uint64_t seed)
{
	size_t bad = 0, first = 0;
	for (size_t i = 0; i < pages; i++) {
		unsigned char *p = base + i * PAGE;
		int ok = expect(i) ? matches(p, seed) : zero(p);
		if (!ok && !bad++)
			first = i;
	}
	if (bad)
		fail("%s at %p: %zu of %zu pages hold the wrong data, the first at %p (page %zu, %s)", what, (void *)base, bad,
		     pages, (void *)(base + first * PAGE), first, expect(first) ? "its pattern expected" : "zeros expected");
}

static int all(size_t i)
{
	(void)i;
	return 1;
}

/* The private region: dense pages all written, then every other sparse page. */
static int written(size_t i)
{
	return i < DENSE_PAGES || (i - DENSE_PAGES) % 2 == 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "maps-runs");
	unsigned char *shared = mmap(NULL, SHARED_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	size_t priv_pages = DENSE_PAGES + SPARSE_PAGES;
	unsigned char *priv = mmap(NULL, priv_pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED || priv == MAP_FAILED) {
		fail("mmap: %m");
		return wl_done();
	}
	if (priv > shared)
		fail("the private region %p lies above the shared one %p: the layout this workload needs did not happen", (void *)priv,
		     (void *)shared);
	madvise(priv, priv_pages * PAGE, MADV_NOHUGEPAGE);
	for (size_t i = 0; i < SHARED_PAGES; i++)
		fill(shared + i * PAGE, SHARED_SEED);
	for (size_t i = 0; i < priv_pages; i++)
		if (written(i))
			fill(priv + i * PAGE, PRIVATE_SEED);
	unsigned char *none = priv + (priv_pages - NONE_PAGES) * PAGE;
	mprotect(none, NONE_PAGES * PAGE, PROT_NONE);
	wl_ready();
	wl_wait();

	mprotect(none, NONE_PAGES * PAGE, PROT_READ);
	if (wl_sabotage() == 1) {
		mprotect(none, NONE_PAGES * PAGE, PROT_READ | PROT_WRITE);
		priv[(DENSE_PAGES + 2) * PAGE + 100] ^= 1;
	}
	if (wl_sabotage() == 2)
		memset(shared + 5 * PAGE, 0, PAGE);
	check("shared anonymous memory", shared, SHARED_PAGES, all, SHARED_SEED);
	check("private memory", priv, priv_pages, written, PRIVATE_SEED);
	return wl_done();
}
