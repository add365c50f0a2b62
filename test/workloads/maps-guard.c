/*
 * Guard regions (madvise MADV_GUARD_INSTALL, Linux 6.13+): pages that fault
 * on any access, with no VMA of their own. The restore must put each one
 * back, no more and no fewer, and keep the data around them:
 *   - an anonymous mapping of 16 pages made two VMAs by mprotect (the second
 *     half read-only), guards on page 3, on pages 7-8 (across the VMA
 *     boundary) and on the last page;
 *   - a private mapping of a file, two pages changed (copied on write), one
 *     of them then guarded (installing a guard drops the page), and a guard
 *     on a page still the file's;
 *   - a shared mapping of the same file with a guarded page (file-backed
 *     guards need Linux 6.15; skipped where madvise refuses);
 *   - a PROT_NONE mapping with a guard (its other pages are read through
 *     /proc/self/mem, where the guard page reads as an error).
 * After the restore: /proc/self/pagemap says guard (bit 58) for exactly the
 * guarded pages; reading and writing each guarded page raises SIGSEGV (caught
 * with a handler); every other page holds its bytes; the maps lines of every
 * region are unchanged; the file on disk is unchanged.
 *
 * Sabotage: 1 = a guard removed (MADV_GUARD_REMOVE), 2 = a guard installed
 * on a page that had none, 3 = a byte changed on the page right before a
 * guard.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PG 4096UL
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MADV_GUARD_REMOVE
#define MADV_GUARD_REMOVE 103
#endif
#define PM_GUARD_REGION (1ULL << 58)
#define FILE_PAGES 8

struct region {
	const char *name;
	unsigned char *addr;
	size_t pages;
	/* One per page: 1 if guarded. */
	unsigned char guard[16];
	/* Seed of each page's bytes; 0: the file's own page. */
	unsigned seed[16];
	int prot_none;
	char maps[1024];
};

static struct region regions[4];
static int nregions;
static int pagemap_fd;
static char maps[1 << 20];

static unsigned char pattern(size_t i, unsigned seed)
{
	return (unsigned char)(i * 31 + seed * 7 + (i >> 12));
}

static void fill(unsigned char *p, size_t off, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = pattern(off + i, seed);
}

static int same(const unsigned char *p, size_t off, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != pattern(off + i, seed))
			return 0;
	return 1;
}

static sigjmp_buf jump;
static volatile sig_atomic_t armed;

static void on_segv(int sig)
{
	if (!armed) {
		signal(sig, SIG_DFL);
		return;
	}
	siglongjmp(jump, 1);
}

/* 1 if touching *p (a read, or a write of the same byte) raises SIGSEGV. */
static int faults(volatile unsigned char *p, int write)
{
	if (sigsetjmp(jump, 1)) {
		armed = 0;
		return 1;
	}
	armed = 1;
	unsigned char c = *p;
	if (write)
		*p = c;
	armed = 0;
	return 0;
}

/* The guard bit of /proc/self/pagemap for the page at p (-1 if unreadable). */
static int pagemap_guard(const void *p)
{
	unsigned long long e;
	if (pread(pagemap_fd, &e, sizeof(e), (off_t)((unsigned long)p / PG * 8)) != sizeof(e))
		return -1;
	return (e & PM_GUARD_REGION) != 0;
}

/* The /proc/self/maps lines of [addr, addr+len). */
static void maps_of(const unsigned char *addr, size_t len, char *out, size_t cap)
{
	size_t o = 0;
	out[0] = 0;
	if (wl_read_into("/proc/self/maps", maps, sizeof(maps)) < 0) {
		fail("cannot read /proc/self/maps");
		return;
	}
	for (char *line = maps; *line;) {
		char *eol = strchr(line, '\n');
		size_t n = eol ? (size_t)(eol - line) : strlen(line);
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx", &s, &e) == 2 && s < (unsigned long)addr + len && e > (unsigned long)addr && o + n + 2 < cap) {
			memcpy(out + o, line, n);
			o += n;
			out[o++] = '\n';
			out[o] = 0;
		}
		if (!eol)
			break;
		line = eol + 1;
	}
}

static struct region *region(const char *name, unsigned char *addr, size_t pages)
{
	struct region *r = &regions[nregions++];
	memset(r, 0, sizeof(*r));
	r->name = name;
	r->addr = addr;
	r->pages = pages;
	return r;
}

static void guard(struct region *r, size_t first, size_t n)
{
	if (madvise(r->addr + first * PG, n * PG, MADV_GUARD_INSTALL)) {
		perror("MADV_GUARD_INSTALL");
		exit(1);
	}
	for (size_t i = first; i < first + n; i++)
		r->guard[i] = 1;
}

static void *map(size_t len, int prot, int flags, int fd)
{
	void *p = mmap(NULL, len, prot, flags, fd, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

/* Page i of r, read into buf (through /proc/self/mem for PROT_NONE); 0 if it could not be read. */
static int read_page(struct region *r, size_t i, unsigned char *buf)
{
	if (!r->prot_none) {
		if (faults(r->addr + i * PG, 0))
			return 0;
		memcpy(buf, r->addr + i * PG, PG);
		return 1;
	}
	int fd = open("/proc/self/mem", O_RDONLY);
	ssize_t n = fd < 0 ? -1 : pread(fd, buf, PG, (off_t)(unsigned long)(r->addr + i * PG));
	if (fd >= 0)
		close(fd);
	return n == (ssize_t)PG;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "maps-guard");
	static unsigned char file_page[PG], page[PG];
	pagemap_fd = open("/proc/self/pagemap", O_RDONLY);
	if (pagemap_fd < 0) {
		perror("/proc/self/pagemap");
		return 1;
	}
	struct sigaction sa = { .sa_handler = on_segv, .sa_flags = SA_NODEFER };
	sigaction(SIGSEGV, &sa, NULL);

	/* Anonymous: 16 pages, two VMAs, guards inside each and across the boundary. */
	struct region *anon = region("anonymous", map(16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1), 16);
	for (size_t i = 0; i < 16; i++) {
		anon->seed[i] = (unsigned)(i + 1);
		fill(anon->addr + i * PG, 0, PG, anon->seed[i]);
	}
	guard(anon, 3, 1);
	guard(anon, 7, 2);
	guard(anon, 15, 1);
	if (mprotect(anon->addr + 8 * PG, 8 * PG, PROT_READ)) {
		perror("mprotect");
		return 1;
	}

	/* A file of 8 pages, mapped private (two pages changed) and shared. */
	int fd = open("guarded.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
	for (size_t i = 0; i < FILE_PAGES; i++) {
		fill(file_page, i * PG, PG, 0);
		if (fd < 0 || write(fd, file_page, PG) != (ssize_t)PG) {
			perror("guarded.dat");
			return 1;
		}
	}
	struct region *priv = region("private file mapping", map(FILE_PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd), FILE_PAGES);
	fill(priv->addr + 1 * PG, 0, PG, 101);
	priv->seed[1] = 101;
	fill(priv->addr + 6 * PG, 0, PG, 106);
	guard(priv, 2, 1);
	guard(priv, 5, 2); /* page 6 was a private copy: the guard drops it */

	struct region *shared = region("shared file mapping", map(FILE_PAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd), FILE_PAGES);
	if (madvise(shared->addr + 4 * PG, PG, MADV_GUARD_INSTALL)) {
		if (errno != EINVAL) {
			perror("MADV_GUARD_INSTALL (shared file)");
			return 1;
		}
		printf("no guard regions in shared file mappings here: not checked\n");
	} else {
		shared->guard[4] = 1;
	}
	close(fd);
	uint64_t file_hash = 0;
	{
		size_t len;
		char *f = wl_read_file("guarded.dat", &len);
		file_hash = f ? wl_hash(f, len) : 0;
		free(f);
	}

	/* PROT_NONE with a guard. */
	struct region *none = region("PROT_NONE mapping", map(4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1), 4);
	for (size_t i = 0; i < 4; i++) {
		none->seed[i] = (unsigned)(200 + i);
		fill(none->addr + i * PG, 0, PG, none->seed[i]);
	}
	guard(none, 1, 1);
	if (mprotect(none->addr, 4 * PG, PROT_NONE)) {
		perror("mprotect");
		return 1;
	}
	none->prot_none = 1;

	int pagemap_ok = pagemap_guard(anon->addr + 3 * PG) == 1 && pagemap_guard(anon->addr) == 0;
	if (!pagemap_ok)
		printf("/proc/self/pagemap shows no guard bit here: not checked\n");
	for (int k = 0; k < nregions; k++)
		maps_of(regions[k].addr, regions[k].pages * PG, regions[k].maps, sizeof(regions[k].maps));

	wl_ready();
	wl_wait();

	switch (wl_sabotage()) {
	case 1: madvise(anon->addr + 8 * PG, PG, MADV_GUARD_REMOVE); break;
	case 2: madvise(priv->addr + 3 * PG, PG, MADV_GUARD_INSTALL); break;
	case 3: anon->addr[2 * PG + 100] ^= 1; break;
	}

	for (int k = 0; k < nregions; k++) {
		struct region *r = &regions[k];
		char now[1024];
		maps_of(r->addr, r->pages * PG, now, sizeof(now));
		wl_compare_lines(r->name, r->maps, now);
		for (size_t i = 0; i < r->pages; i++) {
			unsigned char *p = r->addr + i * PG;
			if (pagemap_ok) {
				int g = pagemap_guard(p);
				if (g != r->guard[i])
					fail("%s page %zu at %p: pagemap guard bit is %d, expected %d", r->name, i, (void *)p, g, r->guard[i]);
			}
			if (r->guard[i]) {
				if (r->prot_none) {
					if (read_page(r, i, page))
						fail("%s page %zu at %p: a guard page, yet /proc/self/mem reads it", r->name, i, (void *)p);
					continue;
				}
				if (!faults(p, 0))
					fail("%s page %zu at %p: a guard page, yet reading it does not fault", r->name, i, (void *)p);
				if (!faults(p + PG - 1, 1))
					fail("%s page %zu at %p: a guard page, yet writing it does not fault", r->name, i, (void *)p);
				continue;
			}
			if (!read_page(r, i, page)) {
				fail("%s page %zu at %p: cannot be read (a guard where none was?)", r->name, i, (void *)p);
				continue;
			}
			/* File pages carry the file's pattern at their file offset. */
			int ok = r->seed[i] ? same(page, 0, PG, r->seed[i]) : same(page, i * PG, PG, 0);
			if (!ok)
				fail("%s page %zu at %p: contents differ (hash %016llx)", r->name, i, (void *)p, (unsigned long long)wl_hash(page, PG));
		}
	}
	size_t len;
	char *f = wl_read_file("guarded.dat", &len);
	if (!f || len != FILE_PAGES * PG || wl_hash(f, len) != file_hash)
		fail("guarded.dat changed on disk (%zu bytes)", f ? len : 0);
	free(f);
	return wl_done();
}
