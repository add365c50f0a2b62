/*
 * Memory: private anonymous memory (small and big mallocs, a 32 MiB mmap'd
 * pattern, a sparse region with untouched holes and a page zeroed after being
 * written), a private file mapping of a file it creates (pages changed in
 * memory, one zeroed: the file on disk stays as written), a shared file
 * mapping (writes through it reach the file), shared anonymous memory, a
 * read-only region, a PROT_NONE region, a MAP_GROWSDOWN region, a
 * MADV_DONTFORK region and a 256 KiB frame of data on the stack.
 *
 * And the address space around them, all recorded at ready and compared
 * after SIGTERM: every line of /proc/self/smaps (addresses, protections,
 * offset, device, inode, path and the VmFlags that mean something to the
 * program), brk (glibc's and the kernel's), /proc/self/auxv, the
 * /proc/self/exe link, argv and environ (pointers and strings, the memory
 * between arg_start..arg_end and env_start..env_end, /proc/self/cmdline,
 * /proc/self/environ), and the mm fields of /proc/self/stat (start_code,
 * end_code, start_stack, start_data..env_end).
 *
 * Tolerated, because a faithful restore legitimately changes exactly these:
 *   - adjacent VMAs that differ in nothing visible may come back merged
 *     (the kernel kept them apart only because of their anon_vma history):
 *     adjacent compatible lines are merged on both sides before comparing;
 *   - shared anonymous memory is a new shmem object: its inode is ignored
 *     (it must still be a shared mapping of "/dev/zero (deleted)");
 *   - [vdso], [vvar], [vvar_vclock]: only present at the same start address
 *     (another kernel's vDSO may differ in size);
 *   - [stack]: the same top; its bottom may only have moved down (growth);
 *   - VmFlags ac (accounting) and nr (no reserve): overcommit bookkeeping
 *     that depends on how a VMA was created, not on what the program sees;
 *     sd (soft-dirty) is not compiled in here anyway.
 * Nothing is allocated after ready, so the heap and the mappings of the
 * checking code itself do not move.
 *
 * Sabotage: 1 = a byte of the sparse region flipped, 2 = the read-only
 * region made writable, 3 = brk moved up a page, 4 = a stray page mapped
 * (like a mapping a restorer left behind), 5 = a byte of argv changed, 6 =
 * the zeroed page of the private file mapping refilled from the file (like a
 * dumper that skipped an all-zero page), 7 = the shared file mapping
 * replaced by a private copy.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PG 4096UL
#define FILE_PAGES 16
#define BIG (32UL << 20)

extern char **environ;

struct region {
	const char *name;
	unsigned char *addr;
	size_t len;
	uint64_t hash;
};

static struct region regions[32];
static int nregions;

static void track(const char *name, void *addr, size_t len)
{
	regions[nregions++] = (struct region){ name, addr, len, wl_hash(addr, len) };
}

static void fill(unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)((i >> 12) * 7 + i * 31 + seed);
}

/* What the program can see of its address space, one normalized line per VMA. */
struct snapshot {
	char smaps[1 << 20];
	char layout[64 * 1024];
	unsigned long stack_start, stack_end;
	char auxv[4096], cmdline[8192], environ_[65536], exe[4096], mm[512];
	ssize_t auxv_len, cmdline_len, environ_len;
	void *brk_glibc;
	long brk_kernel;
	unsigned long arg[2], env[2];
	uint64_t arg_hash, env_hash, argv_hash, envp_hash;
};

static struct snapshot before, after;

/* VmFlags a program depends on (see the header comment for the ones left out). */
static const char *const kept_flags[] = { "rd", "wr", "ex", "sh", "mr", "mw", "me", "ms", "gd", "pf", "io", "dc",
					  "de", "dd", "lo", "hg", "nh", "mg", "um", "uw", NULL };

static void keep_flags(char *out, size_t n, const char *vmflags)
{
	size_t o = 0;
	out[0] = 0;
	for (const char *p = vmflags; *p && *p != '\n';) {
		while (*p == ' ')
			p++;
		if (!*p || *p == '\n')
			break;
		for (int k = 0; kept_flags[k]; k++)
			if (!strncmp(p, kept_flags[k], 2) && (p[2] == ' ' || p[2] == '\n' || !p[2]))
				o += (size_t)snprintf(out + o, n - o, "%s%s", o ? " " : "", kept_flags[k]);
		while (*p && *p != ' ' && *p != '\n')
			p++;
	}
}

struct vma {
	unsigned long start, end, off, ino;
	char perms[8], dev[16], path[512], flags[128];
};

static size_t emit(char *out, size_t o, size_t cap, const struct vma *v, struct snapshot *s)
{
	if (!strcmp(v->path, "[vdso]") || !strcmp(v->path, "[vvar]") || !strcmp(v->path, "[vvar_vclock]"))
		return o + (size_t)snprintf(out + o, cap - o, "%lx %s\n", v->start, v->path);
	if (!strcmp(v->path, "[stack]")) {
		s->stack_start = v->start, s->stack_end = v->end;
		return o + (size_t)snprintf(out + o, cap - o, "...-%lx %s %s [%s]\n", v->end, v->perms, v->path, v->flags);
	}
	return o + (size_t)snprintf(out + o, cap - o, "%lx-%lx %s %lx %s %lu %s [%s]\n", v->start, v->end, v->perms,
				    v->off, v->dev, v->ino, v->path, v->flags);
}

static void take_layout(struct snapshot *s)
{
	if (wl_read_into("/proc/self/smaps", s->smaps, sizeof(s->smaps)) < 0) {
		fail("cannot read /proc/self/smaps");
		return;
	}
	struct vma prev = { 0 }, cur;
	int have_prev = 0, have_cur = 0;
	size_t o = 0;
	s->layout[0] = 0;
	for (char *line = s->smaps; *line;) {
		char *eol = strchr(line, '\n');
		if (eol)
			*eol = 0;
		if (!strncmp(line, "VmFlags:", 8) && have_cur) {
			keep_flags(cur.flags, sizeof(cur.flags), line + 8);
			have_cur = 0;
			/* Shared anonymous memory is a new object after a restore, and anonymous offsets are arbitrary. */
			if (!strncmp(cur.path, "/dev/zero", 9))
				cur.ino = 0;
			int anon = cur.ino == 0;
			if (anon)
				cur.off = 0;
			int special = cur.path[0] == '[';
			if (have_prev && !special && prev.end == cur.start && !strcmp(prev.perms, cur.perms) &&
			    !strcmp(prev.dev, cur.dev) && prev.ino == cur.ino && !strcmp(prev.path, cur.path) &&
			    !strcmp(prev.flags, cur.flags) && (anon || cur.off == prev.off + (prev.end - prev.start))) {
				prev.end = cur.end;
			} else {
				if (have_prev)
					o = emit(s->layout, o, sizeof(s->layout), &prev, s);
				prev = cur;
				have_prev = 1;
			}
		} else {
			struct vma v = { 0 };
			int n = sscanf(line, "%lx-%lx %7s %lx %15s %lu %511[^\n]", &v.start, &v.end, v.perms, &v.off, v.dev,
				       &v.ino, v.path);
			if (n >= 6 && strchr(line, '-') < strchr(line, ' ')) {
				cur = v;
				have_cur = 1;
			}
		}
		if (!eol)
			break;
		line = eol + 1;
	}
	if (have_prev)
		emit(s->layout, o, sizeof(s->layout), &prev, s);
}

/* /proc/self/stat fields 26-28 (start_code end_code start_stack) and 45-51 (start_data .. env_end). */
static void take_mm(struct snapshot *s)
{
	char stat[4096];
	s->mm[0] = 0;
	if (wl_read_into("/proc/self/stat", stat, sizeof(stat)) < 0)
		return;
	char *p = strrchr(stat, ')') + 2, *field[64];
	int nf = 0;
	for (char *t = strtok(p, " \n"); t && nf < 64; t = strtok(NULL, " \n"))
		field[nf++] = t; /* field[0] is field 3 */
	if (nf < 49)
		return;
	static const char *names[] = { "start_code", "end_code", "start_stack", "start_data", "end_data",
				       "start_brk",  "arg_start", "arg_end",    "env_start", "env_end" };
	static const int idx[] = { 26, 27, 28, 45, 46, 47, 48, 49, 50, 51 };
	size_t o = 0;
	for (int i = 0; i < 10; i++)
		o += (size_t)snprintf(s->mm + o, sizeof(s->mm) - o, "%s=%s\n", names[i], field[idx[i] - 3]);
	s->arg[0] = strtoul(field[48 - 3], NULL, 10), s->arg[1] = strtoul(field[49 - 3], NULL, 10);
	s->env[0] = strtoul(field[50 - 3], NULL, 10), s->env[1] = strtoul(field[51 - 3], NULL, 10);
}

static void take(struct snapshot *s, int argc, char **argv)
{
	take_layout(s);
	take_mm(s);
	s->brk_glibc = sbrk(0);
	s->brk_kernel = syscall(SYS_brk, 0);
	s->auxv_len = wl_read_into("/proc/self/auxv", s->auxv, sizeof(s->auxv));
	s->cmdline_len = wl_read_into("/proc/self/cmdline", s->cmdline, sizeof(s->cmdline));
	s->environ_len = wl_read_into("/proc/self/environ", s->environ_, sizeof(s->environ_));
	ssize_t n = readlink("/proc/self/exe", s->exe, sizeof(s->exe) - 1);
	s->exe[n > 0 ? n : 0] = 0;
	s->arg_hash = wl_hash((void *)s->arg[0], s->arg[1] - s->arg[0]);
	s->env_hash = wl_hash((void *)s->env[0], s->env[1] - s->env[0]);
	s->argv_hash = wl_hash(argv, sizeof(char *) * (size_t)(argc + 1));
	for (int i = 0; i < argc; i++)
		s->argv_hash ^= wl_hash(argv[i], strlen(argv[i])) + (uint64_t)i;
	int ne = 0;
	s->envp_hash = 0;
	for (; environ[ne]; ne++)
		s->envp_hash ^= wl_hash(environ[ne], strlen(environ[ne])) + (uint64_t)ne;
	s->envp_hash ^= wl_hash(environ, sizeof(char *) * (size_t)(ne + 1));
}

static void same_bytes(const char *what, const char *a, ssize_t alen, const char *b, ssize_t blen)
{
	if (alen < 0 || blen < 0)
		fail("%s: cannot read it (%zd bytes now, %zd at ready)", what, blen, alen);
	else if (alen != blen || memcmp(a, b, (size_t)alen)) {
		ssize_t i = 0;
		while (i < alen && i < blen && a[i] == b[i])
			i++;
		fail("%s differs: %zd bytes, expected %zd; first difference at byte %zd", what, blen, alen, i);
	}
}

static void compare(const struct snapshot *a, const struct snapshot *b)
{
	wl_compare_lines("maps", a->layout, b->layout);
	if (b->stack_end != a->stack_end || b->stack_start > a->stack_start)
		fail("[stack] is %lx-%lx, expected %lx-%lx (only its bottom may move, and only down)", b->stack_start,
		     b->stack_end, a->stack_start, a->stack_end);
	if (b->brk_glibc != a->brk_glibc)
		fail("sbrk(0) is %p, expected %p", b->brk_glibc, a->brk_glibc);
	if (b->brk_kernel != a->brk_kernel)
		fail("brk(0) is %#lx, expected %#lx", b->brk_kernel, a->brk_kernel);
	wl_compare_lines("mm fields of /proc/self/stat", a->mm, b->mm);
	same_bytes("/proc/self/auxv", a->auxv, a->auxv_len, b->auxv, b->auxv_len);
	same_bytes("/proc/self/cmdline", a->cmdline, a->cmdline_len, b->cmdline, b->cmdline_len);
	same_bytes("/proc/self/environ", a->environ_, a->environ_len, b->environ_, b->environ_len);
	if (strcmp(a->exe, b->exe))
		fail("/proc/self/exe is '%s', expected '%s'", b->exe, a->exe);
	if (a->arg_hash != b->arg_hash)
		fail("the argument strings (arg_start..arg_end) changed");
	if (a->env_hash != b->env_hash)
		fail("the environment strings (env_start..env_end) changed");
	if (a->argv_hash != b->argv_hash)
		fail("argv (its pointers or strings) changed");
	if (a->envp_hash != b->envp_hash)
		fail("environ (its pointers or strings) changed");
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "mem");

	/* private anonymous: small mallocs (the brk heap), a big malloc (mmap), a big pattern, a sparse region */
	unsigned char *small = malloc(100 * 1024);
	fill(small, 100 * 1024, 1);
	track("heap (malloc 100 KiB)", small, 100 * 1024);
	unsigned char *big = malloc(3 << 20);
	fill(big, 3 << 20, 2);
	track("malloc 3 MiB", big, 3 << 20);
	unsigned char *pattern = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fill(pattern, BIG, 9);
	track("32 MiB pattern", pattern, BIG);
	unsigned char *sparse = mmap(NULL, 256 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (int i = 0; i < 256; i += 7)
		sparse[i * PG + 5] = (unsigned char)(i + 1);
	fill(sparse + 100 * PG, PG, 10);
	memset(sparse + 100 * PG, 0, PG); /* written, then zeroed */
	track("sparse", sparse, 256 * PG);

	/* a file of our own, mapped shared (written through) and private (pages changed, one zeroed) */
	int fd = open("mapped.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
	static unsigned char filebuf[FILE_PAGES * PG], now[FILE_PAGES * PG];
	fill(filebuf, sizeof(filebuf), 3);
	if (fd < 0 || write(fd, filebuf, sizeof(filebuf)) != (ssize_t)sizeof(filebuf))
		fail("cannot write mapped.dat");
	unsigned char *fshared = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 4 * PG);
	memcpy(fshared + 10, "written through a shared mapping", 32);
	memcpy(filebuf + 4 * PG + 10, "written through a shared mapping", 32);
	track("shared file mapping", fshared, 4 * PG);
	unsigned char *fpriv = mmap(NULL, sizeof(filebuf), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	fpriv[2 * PG] ^= 0xff;
	fpriv[9 * PG + 17] = 'x';
	memset(fpriv + 12 * PG, 0, PG);
	track("private file mapping", fpriv, sizeof(filebuf));
	close(fd);

	/* shared anonymous, read-only, PROT_NONE, growsdown, dontfork */
	unsigned char *shanon = mmap(NULL, 8 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	fill(shanon, 8 * PG, 4);
	track("shared anonymous", shanon, 8 * PG);
	unsigned char *ro = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fill(ro, 3 * PG, 5);
	mprotect(ro, 3 * PG, PROT_READ);
	track("read-only", ro, 3 * PG);
	unsigned char *none = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fill(none, 2 * PG, 6);
	uint64_t none_hash = wl_hash(none, 2 * PG);
	mprotect(none, 2 * PG, PROT_NONE);
	unsigned char *gd = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN, -1, 0);
	fill(gd + 8 * PG, 8 * PG, 7);
	track("growsdown", gd, 16 * PG);
	unsigned char *nofork = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fill(nofork, 4 * PG, 11);
	madvise(nofork, 4 * PG, MADV_DONTFORK);
	track("dontfork", nofork, 4 * PG);

	/* data in our own stack frame */
	volatile unsigned char frame[256 * 1024];
	fill((unsigned char *)frame, sizeof(frame), 8);
	track("stack frame", (void *)frame, sizeof(frame));

	take(&before, argc, argv);
	take(&after, argc, argv); /* the same calls once more: what checking touches is in place before ready */
	printf("mem: %d regions set up, brk %p, %zu bytes of layout\n", nregions, before.brk_glibc, strlen(before.layout));

	wl_ready();
	wl_wait();

	switch (wl_sabotage()) {
	case 1:
		sparse[21 * PG + 5] ^= 1;
		break;
	case 2:
		mprotect(ro, 3 * PG, PROT_READ | PROT_WRITE);
		break;
	case 3:
		sbrk(PG);
		break;
	case 4:
		mmap(NULL, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		break;
	case 5:
		argv[0][strlen(argv[0]) - 1] ^= 0x20;
		break;
	case 6:
		memcpy(fpriv + 12 * PG, filebuf + 12 * PG, PG);
		break;
	case 7: {
		unsigned char copy[4 * PG];
		memcpy(copy, fshared, sizeof(copy));
		mmap(fshared, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		memcpy(fshared, copy, sizeof(copy));
		break;
	}
	}

	for (int i = 0; i < nregions; i++) {
		uint64_t h = wl_hash(regions[i].addr, regions[i].len);
		if (h != regions[i].hash)
			fail("%s at %p (%zu bytes): contents changed, hash %016llx, expected %016llx", regions[i].name,
			     (void *)regions[i].addr, regions[i].len, (unsigned long long)h,
			     (unsigned long long)regions[i].hash);
	}
	take(&after, argc, argv);
	compare(&before, &after);

	/* The file itself: as the shared mapping left it, untouched by the private one. */
	fd = open("mapped.dat", O_RDWR);
	if (fd < 0 || pread(fd, now, sizeof(now), 0) != (ssize_t)sizeof(now))
		fail("cannot read mapped.dat back");
	else if (memcmp(now, filebuf, sizeof(now))) {
		size_t i = 0;
		while (now[i] == filebuf[i])
			i++;
		fail("mapped.dat on disk is not what the mappings left: byte %zu is %#x, expected %#x", i, now[i], filebuf[i]);
	}
	/* Still shared: a write through the mapping reaches the file, a write to the file reaches the mapping. */
	fshared[20] = 'S';
	char c = 0;
	if (pread(fd, &c, 1, 4 * PG + 20) != 1 || c != 'S')
		fail("shared file mapping at %p: a write through it no longer reaches mapped.dat (file has '%c')",
		     (void *)fshared, c);
	if (pwrite(fd, "F", 1, 4 * PG + 30) != 1 || fshared[30] != 'F')
		fail("shared file mapping at %p: a write to mapped.dat no longer shows through it", (void *)fshared);
	close(fd);
	/* PROT_NONE contents, read by opening it up for a moment. */
	if (mprotect(none, 2 * PG, PROT_READ) || wl_hash(none, 2 * PG) != none_hash)
		fail("PROT_NONE region at %p: contents changed", (void *)none);
	mprotect(none, 2 * PG, PROT_NONE);
	return wl_done();
}
