/*
 * Memory objects and mapping attributes the restore must give back as they
 * were:
 *   - a memfd of 12 bytes (not a whole page: its size and bytes come back),
 *     mapped shared, its fd read-write, still executable with execveat()
 *     (no writer was added: a read-write reopen would make it ETXTBSY);
 *   - a shared anonymous object of 64 pages mapped only in parts: its first
 *     10 pages unmapped after being written, a second view of page 20 mapped
 *     at offset 20 from map_files, and a child (forked earlier) that unmapped
 *     the object's last 32 pages in its own view; both see the others' data;
 *   - a file opened O_RDWR, mapped shared read-only, its fd closed: it can
 *     still be made writable (mprotect) after the restore; the open mode of
 *     every mapping's file (the map_files link's mode) is compared;
 *   - an mlock'ed region (VmFlags lo), a MAP_DROPPABLE region (dp, contents
 *     dropped: zero after the restore, as criu does), and regions with
 *     madvise flags dc, wf, dd, hg, mg, sr, rr: the VmFlags that mean
 *     something to the program, compared per region.
 *
 * Sabotage: 1 = the locked region unlocked, 2 = a byte written into the
 * droppable region, 3 = the memfd grown to a page, 4 = a byte of the shared
 * object's unmapped part changed (through the second view's fd), 5 = the
 * memfd reopened read-write through /proc (a writer: execveat fails).
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096UL
#define SHM_PAGES 64
#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08
#endif
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif

static const char script[] = "#!/bin/true\n";

struct region {
	const char *name;
	unsigned char *addr;
	size_t len;
	char flags[128];
	int map_mode;
};

static struct region regions[16];
static int nregions;
static unsigned char *shm, *view;
static int memfd;
static char smaps[1 << 20];

static void fill(unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 13 + seed);
}

static int same(const unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != (unsigned char)(i * 13 + seed))
			return 0;
	return 1;
}

static int zero(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return 0;
	return 1;
}

/* The VmFlags of the mapping at addr that a program can rely on, in kernel order. */
static void flags_of(void *addr, char *out, size_t cap)
{
	static const char *const kept[] = { "rd", "wr", "ex", "sh", "mr", "mw", "me", "ms", "gd", "lo", "sr", "rr", "dc",
					    "dd", "wf", "hg", "nh", "mg", "dp", NULL };
	out[0] = 0;
	if (wl_read_into("/proc/self/smaps", smaps, sizeof(smaps)) < 0) {
		fail("cannot read /proc/self/smaps");
		return;
	}
	int in = 0;
	for (char *line = smaps; *line;) {
		char *eol = strchr(line, '\n');
		if (eol)
			*eol = 0;
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, ' ') < line + 40)
			in = (unsigned long)addr >= s && (unsigned long)addr < e;
		else if (in && !strncmp(line, "VmFlags:", 8)) {
			size_t o = 0;
			for (int k = 0; kept[k]; k++) {
				char pat[4] = { ' ', kept[k][0], kept[k][1], 0 };
				char *p = strstr(line + 8, pat);
				if (p && (p[3] == ' ' || p[3] == 0))
					o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? " " : "", kept[k]);
			}
			return;
		}
		if (!eol)
			break;
		line = eol + 1;
	}
	snprintf(out, cap, "(no mapping)");
}

/* The open mode of the file behind a mapping, as the map_files link shows it (-1 for anonymous memory). */
static int map_mode(struct region *r)
{
	char path[128];
	struct stat st;
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)r->addr, (unsigned long)r->addr + r->len);
	if (lstat(path, &st))
		return -1;
	return (int)(st.st_mode & 0600);
}

static struct region *track(const char *name, void *addr, size_t len)
{
	struct region *r = &regions[nregions++];
	*r = (struct region){ name, addr, len, "", 0 };
	flags_of(addr, r->flags, sizeof(r->flags));
	r->map_mode = map_mode(r);
	return r;
}

static void *map(size_t len, int prot, int flags, int fd, off_t off)
{
	void *p = mmap(NULL, len, prot, flags, fd, off);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

static void advised(const char *name, int adv)
{
	void *p = map(4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fill(p, 4 * PG, (unsigned)adv);
	if (madvise(p, 4 * PG, adv)) {
		/* EINVAL: a kernel without THP or KSM. */
		if (errno != EINVAL) {
			perror(name);
			exit(1);
		}
		printf("madvise %s: not supported here\n", name);
	}
	track(name, p, 4 * PG);
}

/* execveat() of the memfd in a child: 0 if it ran /bin/true. */
static int exec_memfd(void)
{
	pid_t pid = fork();
	if (pid == 0) {
		char *const argv[] = { "true", NULL }, *const envp[] = { NULL };
		syscall(SYS_execveat, memfd, "", argv, envp, AT_EMPTY_PATH);
		_exit(100 + errno % 100);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 200;
}

static volatile sig_atomic_t child_go;
static void on_usr1(int sig)
{
	(void)sig;
	child_go = 1;
}

/* The child's view: pages 0..31 of the object (it unmapped the rest), checked after the restore. */
static int child(void)
{
	munmap(shm + 32 * PG, 32 * PG);
	sigset_t block, none;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, NULL);
	sigemptyset(&none);
	while (!child_go)
		sigsuspend(&none);
	int bad = 0;
	bad |= !same(shm + 10 * PG, PG, 10);   /* written by the parent before the fork */
	bad |= !same(shm + 20 * PG, PG, 20);   /* written by the parent through its second view */
	bad |= !same(shm + 31 * PG, 64, 131); /* written by the child itself */
	return bad;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "maps-objects");

	/* memfd: 12 bytes, a shared mapping of them, fd read-write. */
	memfd = (int)syscall(SYS_memfd_create, "maps-objects", 0);
	if (memfd < 0 || write(memfd, script, sizeof(script) - 1) != (ssize_t)(sizeof(script) - 1)) {
		perror("memfd");
		return 1;
	}
	unsigned char *mfmap = map(PG, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	track("memfd mapping", mfmap, PG);
	if (exec_memfd() != 0) {
		fail("execveat of the memfd fails before the checkpoint");
		return wl_done();
	}

	/* A shared anonymous object: pages 0..63 written, 0..9 unmapped later, a second view of page 20. */
	shm = map(SHM_PAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	for (int i = 0; i < SHM_PAGES; i++)
		fill(shm + i * PG, PG, (unsigned)i);
	static struct sigaction sa;
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	pid_t kid = fork();
	if (kid == 0)
		_exit(child());
	char path[128];
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)shm, (unsigned long)shm + SHM_PAGES * PG);
	int shfd = open(path, O_RDWR);
	if (shfd < 0) {
		perror(path);
		return 1;
	}
	view = map(PG, PROT_READ | PROT_WRITE, MAP_SHARED, shfd, 20 * PG);
	close(shfd);
	munmap(shm, 10 * PG);
	fill(shm + 31 * PG, 64, 131); /* what the child checks: the parent writes it for the child to see */
	track("shared object", shm + 10 * PG, (SHM_PAGES - 10) * PG);
	track("second view", view, PG);

	/* A file opened read-write, mapped shared read-only, fd closed. */
	int fd = open("rw-file", O_RDWR | O_CREAT, 0644);
	if (fd < 0 || ftruncate(fd, 2 * PG)) {
		perror("rw-file");
		return 1;
	}
	unsigned char *fmap = map(2 * PG, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	track("shared file mapping", fmap, 2 * PG);
	int rofd = open("rw-file", O_RDONLY);
	unsigned char *romap = map(PG, PROT_READ, MAP_PRIVATE, rofd, 0);
	close(rofd);
	track("private read-only file mapping", romap, PG);

	/* Locked, droppable and advised regions. */
	unsigned char *locked = map(17 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fill(locked, 17 * PG, 7);
	if (mlock(locked, 17 * PG)) {
		perror("mlock");
		return 1;
	}
	track("locked", locked, 17 * PG);
	unsigned char *drop = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_DROPPABLE | MAP_ANONYMOUS, -1, 0);
	if (drop != MAP_FAILED) {
		fill(drop, 2 * PG, 9);
		track("droppable", drop, 2 * PG);
	} else {
		printf("no MAP_DROPPABLE here: not checked\n");
		drop = NULL;
	}
	advised("dontfork", MADV_DONTFORK);
	advised("wipeonfork", MADV_WIPEONFORK);
	advised("dontdump", MADV_DONTDUMP);
	advised("hugepage", MADV_HUGEPAGE);
	advised("sequential", MADV_SEQUENTIAL);
	advised("random", MADV_RANDOM);
	advised("mergeable", MADV_MERGEABLE);

	wl_ready();
	wl_wait();

	switch (wl_sabotage()) {
	case 1: munlock(locked, 17 * PG); break;
	case 2: if (drop) drop[5] = 1; break;
	case 3: if (ftruncate(memfd, PG)) perror("ftruncate"); break;
	case 4: {
		snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)view, (unsigned long)view + PG);
		int f = open(path, O_RDWR);
		unsigned char b = 0xff;
		if (f < 0 || pwrite(f, &b, 1, 3 * PG + 1) != 1)
			perror("sabotage 4");
		break;
	}
	case 5: {
		char p[64];
		snprintf(p, sizeof(p), "/proc/self/fd/%d", memfd);
		if (open(p, O_RDWR) < 0)
			perror("sabotage 5");
		break;
	}
	}

	for (int i = 0; i < nregions; i++) {
		struct region *r = &regions[i];
		char now[128];
		flags_of(r->addr, now, sizeof(now));
		if (strcmp(now, r->flags))
			fail("%s at %p: VmFlags are \"%s\", expected \"%s\"", r->name, (void *)r->addr, now, r->flags);
		int mode = map_mode(r);
		if (mode != r->map_mode)
			fail("%s at %p: its file is open with mode %o, expected %o", r->name, (void *)r->addr, mode, r->map_mode);
	}

	/* memfd: size, bytes, mapping, and no writer in the way of execveat. */
	struct stat st;
	if (fstat(memfd, &st) || st.st_size != (off_t)(sizeof(script) - 1))
		fail("memfd: size is %lld, expected %zu", (long long)st.st_size, sizeof(script) - 1);
	if (memcmp(mfmap, script, sizeof(script) - 1) || !zero(mfmap + sizeof(script) - 1, 64))
		fail("memfd mapping: contents differ");
	char buf[64] = { 0 };
	if (pread(memfd, buf, sizeof(buf), 0) != (ssize_t)(sizeof(script) - 1) || memcmp(buf, script, sizeof(script) - 1))
		fail("memfd: read back differs");
	int fl = fcntl(memfd, F_GETFL);
	if ((fl & O_ACCMODE) != O_RDWR)
		fail("memfd fd: access mode %d, expected O_RDWR", fl & O_ACCMODE);
	int ex = exec_memfd();
	if (ex != 0)
		fail("execveat of the memfd: child status %d (ETXTBSY is %d)", ex, 100 + ETXTBSY);

	/* The shared object: every mapped page, and the unmapped ones through the view's fd. */
	for (int i = 10; i < SHM_PAGES; i++)
		if (i != 31 && !same(shm + i * PG, PG, (unsigned)i))
			fail("shared object: page %d differs", i);
	if (!same(view, PG, 20))
		fail("second view (page 20 of the object) differs");
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)view, (unsigned long)view + PG);
	int vf = open(path, O_RDONLY);
	unsigned char page[PG];
	for (int i = 0; i < 10; i++)
		if (vf < 0 || pread(vf, page, PG, (off_t)i * PG) != (ssize_t)PG || !same(page, PG, (unsigned)i))
			fail("shared object: unmapped page %d differs", i);
	struct stat vst;
	if (vf < 0 || fstat(vf, &vst) || vst.st_size < (off_t)(SHM_PAGES * PG))
		fail("shared object: size is %lld, expected at least %lu", vf < 0 ? -1LL : (long long)vst.st_size, SHM_PAGES * PG);
	if (vf >= 0)
		close(vf);
	view[100] = 42;
	if (shm[20 * PG + 100] != 42)
		fail("second view and the object's mapping are not one object any more");
	fill(view, PG, 20);

	/* The file mapping can become writable, and writes reach the file. */
	if (mprotect(fmap, 2 * PG, PROT_READ | PROT_WRITE))
		fail("shared file mapping: mprotect(PROT_WRITE) fails: %s", strerror(errno));
	else
		fmap[1] = 'x';

	if (!same(locked, 17 * PG, 7))
		fail("locked region differs");
	if (drop && !zero(drop, 2 * PG))
		fail("droppable region is not zero (its pages must not be restored)");

	kill(kid, SIGUSR1);
	int cst;
	if (waitpid(kid, &cst, 0) != kid || !WIFEXITED(cst) || WEXITSTATUS(cst))
		fail("child: its view of the shared object differs (status %d)", cst);
	return wl_done();
}
