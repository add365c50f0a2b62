/*
 * Memory: private anonymous (heap, a sparse region, a zeroed page), private
 * and shared file mappings, shared anonymous memory, read-only, PROT_NONE
 * and MAP_GROWSDOWN regions, a big stack frame; and the address space
 * around them: /proc/self/maps, brk, auxv, exe, argv/environ, mm fields.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PG 4096
#define FILE_PAGES 16

struct region {
	const char *name;
	unsigned char *addr;
	size_t len;
	uint64_t hash;
};

static struct region regions[16];
static int nregions;

static void track(const char *name, void *addr, size_t len)
{
	regions[nregions++] = (struct region){ name, addr, len, wl_hash(addr, len) };
}

static void fill(unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 31 + seed);
}

/* /proc/self/maps with adjacent compatible lines merged (a restore may merge
 * VMAs the kernel had kept apart) and anonymous offsets dropped. */
static char *normalized_maps(void)
{
	char *raw = wl_read_file("/proc/self/maps", NULL);
	char *out = calloc(1, strlen(raw) + 1);
	unsigned long pstart = 0, pend = 0, poff = 0;
	char pattrs[512] = "", line_out[1024];
	size_t olen = 0;
	for (char *line = strtok(raw, "\n"); line; line = strtok(NULL, "\n")) {
		unsigned long s, e, off;
		char perms[8], dev[16], path[512] = "";
		unsigned long ino;
		if (sscanf(line, "%lx-%lx %7s %lx %15s %lu %511[^\n]", &s, &e, perms, &off, dev, &ino, path) < 6)
			continue;
		char attrs[512];
		/* A shared anonymous mapping gets a new shmem object (and inode) on restore. */
		if (!strncmp(path, "/dev/zero", 9))
			ino = 0;
		snprintf(attrs, sizeof(attrs), "%s %s %lu %s", perms, dev, ino, path);
		int anon = ino == 0;
		if (pend == s && !strcmp(attrs, pattrs) && (anon || off == poff + (pend - pstart))) {
			pend = e;
			continue;
		}
		if (pend) {
			snprintf(line_out, sizeof(line_out), "%lx-%lx %s\n", pstart, pend, pattrs);
			olen += sprintf(out + olen, "%s", line_out);
		}
		pstart = s, pend = e, poff = off;
		snprintf(pattrs, sizeof(pattrs), "%s", attrs);
	}
	if (pend)
		olen += sprintf(out + olen, "%lx-%lx %s\n", pstart, pend, pattrs);
	free(raw);
	/* The stack grows as the program runs: only its top is fixed. */
	char *st = strstr(out, " [stack]\n");
	if (st) {
		char *bol = st;
		while (bol > out && bol[-1] != '\n')
			bol--;
		char *dash = strchr(bol, '-');
		memset(bol, '.', (size_t)(dash - bol));
	}
	return out;
}

static void stat_mm_fields(char *buf, size_t n)
{
	char *stat = wl_read_file("/proc/self/stat", NULL);
	char *p = strrchr(stat, ')') + 2;
	char *fields[60];
	int nf = 0;
	for (char *t = strtok(p, " "); t && nf < 60; t = strtok(NULL, " "))
		fields[nf++] = t;
	/* startcode endcode startstack (26-28) and start_data..env_end (45-51); fields[0] is field 3 */
	snprintf(buf, n, "%s %s %s %s %s %s %s %s %s %s", fields[23], fields[24], fields[25], fields[42], fields[43],
		 fields[44], fields[45], fields[46], fields[47], fields[48]);
	free(stat);
}

/* Reports the lines of `before` missing from `after` and the other way round. */
static void compare_text(const char *what, const char *before, const char *after)
{
	if (!strcmp(before, after))
		return;
	const char *sides[2][2] = { { before, after }, { after, before } };
	for (int s = 0; s < 2; s++) {
		char *copy = strdup(sides[s][0]);
		for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
			char needle[1100];
			snprintf(needle, sizeof(needle), "%s\n", line);
			if (!strstr(sides[s][1], needle))
				fail("%s: %s %s", what, s ? "now has" : "lost", line);
		}
		free(copy);
	}
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "mem");

	/* private anonymous: small mallocs (brk heap), a big malloc (mmap), a sparse region */
	unsigned char *small = malloc(100 * 1024);
	fill(small, 100 * 1024, 1);
	track("heap", small, 100 * 1024);
	unsigned char *big = malloc(3 << 20);
	fill(big, 3 << 20, 2);
	track("big malloc", big, 3 << 20);
	unsigned char *sparse = mmap(NULL, 256 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (int i = 0; i < 256; i += 7)
		sparse[i * PG + 5] = (unsigned char)(i + 1);
	memset(sparse + 100 * PG, 0, PG); /* touched, but all zero */
	track("sparse", sparse, 256 * PG);

	/* a file of our own, mapped private (some pages changed) and shared (written through) */
	int fd = open("mapped.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
	unsigned char filebuf[FILE_PAGES * PG];
	fill(filebuf, sizeof(filebuf), 3);
	if (write(fd, filebuf, sizeof(filebuf)) != (ssize_t)sizeof(filebuf))
		fail("cannot write mapped.dat");
	unsigned char *fshared = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 4 * PG);
	memcpy(fshared + 10, "written through a shared mapping", 32);
	track("shared file mapping", fshared, 4 * PG);
	unsigned char *fpriv = mmap(NULL, sizeof(filebuf), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	fpriv[2 * PG] ^= 0xff;
	fpriv[9 * PG + 17] = 'x';
	track("private file mapping", fpriv, sizeof(filebuf));
	close(fd);

	/* shared anonymous, read-only, PROT_NONE, growsdown */
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
	track("growsdown", gd + 8 * PG, 8 * PG);

	/* data in our own stack frame */
	volatile unsigned char frame[64 * 1024];
	fill((unsigned char *)frame, sizeof(frame), 8);
	track("stack frame", (void *)frame, sizeof(frame));

	char *maps = normalized_maps();
	char *argv0 = strdup(argv[0]), *argv1 = strdup(argv[1]);
	void *brk0 = sbrk(0);
	size_t auxv_len, cmd_len, env_len;
	char *auxv = wl_read_file("/proc/self/auxv", &auxv_len);
	char *cmdline = wl_read_file("/proc/self/cmdline", &cmd_len);
	char *environ_ = wl_read_file("/proc/self/environ", &env_len);
	char exe[4096] = "", mmf[512];
	if (readlink("/proc/self/exe", exe, sizeof(exe) - 1) < 0)
		fail("cannot read /proc/self/exe");
	stat_mm_fields(mmf, sizeof(mmf));
	printf("mem: %d regions set up\n", nregions);

	wl_ready();
	wl_wait();
	if (wl_sabotage())
		sparse[21 * PG + 5] ^= 1;

	for (int i = 0; i < nregions; i++) {
		uint64_t h = wl_hash(regions[i].addr, regions[i].len);
		if (h != regions[i].hash)
			fail("%s at %p: contents changed", regions[i].name, (void *)regions[i].addr);
	}
	if (mprotect(none, 2 * PG, PROT_READ) || wl_hash(none, 2 * PG) != none_hash)
		fail("PROT_NONE region at %p: contents changed", (void *)none);
	mprotect(none, 2 * PG, PROT_NONE);
	/* the file itself: unchanged by the private mapping, changed by the shared one */
	unsigned char now[FILE_PAGES * PG];
	fd = open("mapped.dat", O_RDONLY);
	if (fd < 0 || read(fd, now, sizeof(now)) != (ssize_t)sizeof(now))
		fail("cannot read mapped.dat back");
	memcpy(filebuf + 4 * PG + 10, "written through a shared mapping", 32);
	if (memcmp(now, filebuf, sizeof(now)))
		fail("mapped.dat on disk is not what the mappings left");
	if (sbrk(0) != brk0)
		fail("brk is %p, was %p", sbrk(0), brk0);
	char *maps2 = normalized_maps();
	compare_text("/proc/self/maps", maps, maps2);
	size_t l2;
	char *auxv2 = wl_read_file("/proc/self/auxv", &l2);
	if (l2 != auxv_len || memcmp(auxv, auxv2, l2))
		fail("/proc/self/auxv differs");
	char *cmd2 = wl_read_file("/proc/self/cmdline", &l2);
	if (l2 != cmd_len || memcmp(cmdline, cmd2, l2))
		fail("/proc/self/cmdline differs");
	char *env2 = wl_read_file("/proc/self/environ", &l2);
	if (l2 != env_len || memcmp(environ_, env2, l2))
		fail("/proc/self/environ differs");
	if (strcmp(argv[0], argv0) || strcmp(argv[1], argv1))
		fail("argv is '%s' '%s', was '%s' '%s'", argv[0], argv[1], argv0, argv1);
	char exe2[4096] = "", mmf2[512];
	if (readlink("/proc/self/exe", exe2, sizeof(exe2) - 1) < 0 || strcmp(exe, exe2))
		fail("/proc/self/exe is '%s', was '%s'", exe2, exe);
	stat_mm_fields(mmf2, sizeof(mmf2));
	compare_text("mm fields of /proc/self/stat", mmf, mmf2);
	return wl_done();
}
