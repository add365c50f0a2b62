/*
 * Copy-on-write memory shared by a parent and its forked children: 64 MiB
 * of private anonymous memory filled with a pattern, then 3 children forked.
 * Each child rewrites 4 pages, zeroes one, drops one (MADV_DONTNEED); the
 * parent then rewrites 4 pages and drops one. After the checkpoint the root
 * compares every page's PFN (/proc/PID/pagemap, needs root) with each child's:
 * a page neither side changed must still be the same physical page; then
 * each child checks its own contents (the parent's changes invisible to it)
 * and the root its own.
 * Sabotage: 1 the root writes to an unchanged page (no longer shared),
 * 2 the root drops an unchanged page (its contents lost).
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096
#define NPAGES (64 * 256)
#define WORDS (PAGE / 8)
#define NKIDS 3

static uint64_t *region;
static pid_t kids[NKIDS];
static uint64_t pm_root[NPAGES], pm_kid[NPAGES];

static uint64_t word(long page, long w)
{
	return ((uint64_t)page * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)w * 0xBF58476D1CE4E5B9ull) ^ 0x5555;
}

static uint64_t *page_at(long p)
{
	return region + p * WORDS;
}

static void fill(long p, uint64_t xor)
{
	for (long w = 0; w < WORDS; w++)
		page_at(p)[w] = word(p, w) ^ xor;
}

/* What a process sees in page p: -1 zero, 0 the pattern, otherwise the pattern xor'ed with that. */
static int64_t expected(int who, long p)
{
	if (who < 0) {
		if (p >= 50 && p < 54)
			return 0x77;
		return p == 60 ? -1 : 0;
	}
	long base = who * 1000;
	if (p >= base + 100 && p < base + 104)
		return who + 1;
	return p == base + 200 || p == base + 300 ? -1 : 0;
}

/* Changed by the parent or by child `who` after the fork: not shared any more. */
static int changed(int who, long p)
{
	return expected(-1, p) != 0 || expected(who, p) != 0;
}

static int check_contents(const char *name, int who)
{
	int bad = 0;
	for (long p = 0; p < NPAGES; p++) {
		int64_t e = expected(who, p);
		for (long w = 0; w < WORDS; w++) {
			uint64_t want = e < 0 ? 0 : word(p, w) ^ (uint64_t)e;
			if (page_at(p)[w] != want) {
				fail("%s: page %ld word %ld is %#llx, expected %#llx", name, p, w, (unsigned long long)page_at(p)[w],
				     (unsigned long long)want);
				bad++;
				break;
			}
		}
		if (bad > 5)
			break;
	}
	return bad;
}

static void child(int who, int ready)
{
	long base = who * 1000;
	for (long p = base + 100; p < base + 104; p++)
		fill(p, who + 1);
	memset(page_at(base + 200), 0, PAGE);
	madvise(page_at(base + 300), PAGE, MADV_DONTNEED);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	char c = 1;
	if (write(ready, &c, 1) != 1)
		_exit(3);
	while (sigwaitinfo(&set, NULL) != SIGUSR1)
		;
	char name[32];
	snprintf(name, sizeof(name), "child %d", who);
	_exit(check_contents(name, who) ? 1 : 0);
}

static int read_pagemap(pid_t pid, uint64_t *out)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t want = NPAGES * 8;
	ssize_t n = pread(fd, out, want, (off_t)((uintptr_t)region / PAGE) * 8);
	close(fd);
	return n == want ? 0 : -1;
}

#define PM_PRESENT (1ull << 63)
#define PM_PFN ((1ull << 55) - 1)

int main(int argc, char **argv)
{
	wl_init(argc, argv, "cow");
	region = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		fail("mmap: %m");
	/* No huge pages: khugepaged may collapse (copy) a range with shared pages. */
	madvise(region, NPAGES * PAGE, MADV_NOHUGEPAGE);
	for (long p = 0; p < NPAGES; p++)
		fill(p, 0);
	int sync[2];
	if (pipe(sync))
		fail("pipe: %m");
	for (int i = 0; i < NKIDS; i++) {
		kids[i] = fork();
		if (kids[i] == 0)
			child(i, sync[1]);
	}
	for (int i = 0; i < NKIDS; i++) {
		char c;
		if (read(sync[0], &c, 1) != 1)
			fail("child %d did not start", i);
	}
	for (long p = 50; p < 54; p++)
		fill(p, 0x77);
	madvise(page_at(60), PAGE, MADV_DONTNEED);
	wl_ready();
	wl_wait();
	switch (wl_sabotage()) {
	case 1: page_at(5)[3] ^= 1; break;
	case 2: madvise(page_at(7), PAGE, MADV_DONTNEED); break;
	}

	if (read_pagemap(getpid(), pm_root))
		fail("cannot read my pagemap: %m");
	for (int i = 0; i < NKIDS; i++) {
		if (read_pagemap(kids[i], pm_kid)) {
			fail("cannot read the pagemap of child %d (%d): %m", i, kids[i]);
			continue;
		}
		long apart = 0, first = -1;
		for (long p = 0; p < NPAGES; p++) {
			if (changed(i, p))
				continue;
			uint64_t a = pm_root[p], b = pm_kid[p];
			if (!(a & PM_PRESENT) || !(b & PM_PRESENT) || (a & PM_PFN) != (b & PM_PFN) || !(a & PM_PFN)) {
				if (first < 0)
					first = p;
				apart++;
			}
		}
		if (apart)
			fail("child %d: %ld unchanged pages are not shared with the parent (first: page %ld)", i, apart, first);
	}
	check_contents("root", -1);
	for (int i = 0; i < NKIDS; i++) {
		kill(kids[i], SIGUSR1);
		int st;
		pid_t got;
		while ((got = waitpid(kids[i], &st, 0)) < 0 && errno == EINTR)
			;
		if (got != kids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			fail("child %d: its memory is not as it was (status %#x, see its lines above)", i, st);
	}
	return wl_done();
}
