/*
 * Deleted ("ghost") files, as CRIU's zdtm unlink_fstat*, ghost_holes*,
 * unlink_mmap* and cwd01 have them, all in the subdirectory g/:
 *   data    40000 bytes, mode 04751, owner 1234:5678, atime/mtime set to odd
 *           values; an O_RDWR fd at 777, its dup, and a separate O_RDONLY
 *           open at 5;
 *   sparse  3 MiB with 4096 bytes at 0 and 5000 at 1 MiB, holes elsewhere;
 *   mapped  3 pages, mapped MAP_SHARED (page 1 written through it) and
 *           MAP_PRIVATE (page 2 written: a private copy), plus an fd;
 *   reused  opened, deleted, and a new file made under the same name;
 *   gone    a directory that is the cwd, then removed.
 * After: every fd's contents, size, mode, owner, atime/mtime (to the µs:
 * CRIU keeps µs), nlink 0 and "(deleted)" link; positions and description
 * sharing (kcmp); holes kept (few blocks used); the shared mapping is still
 * the file (writes through it show in the fd), the private one kept its own
 * page and sees the file's others; the new "reused" untouched (contents and
 * inode); the cwd still the removed directory; g/ holds only "reused".
 *
 * With argv[2] "large": only g/big, 2 MiB of data, deleted (over the ghost
 * limit: crest refuses the dump) and checked to be untouched.
 *
 * Sabotage: 1 writes a byte into "data" through its fd; 2 leaves a file in g/.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define KCMP_FILE 0
#define PG 4096
#define DATA_LEN 40000
#define SPARSE_LEN (3 << 20)
#define SPARSE_OFF2 (1 << 20)

struct ghost {
	const char *name;
	int fd;
	struct stat st;
	char link[PATH_MAX];
	uint64_t hash;
	off_t size;
};

static char dir[PATH_MAX];
static struct ghost data, data_dup, data_ro, sparse, mapped, reused;
static unsigned char *shared_map, *private_map;
static uint64_t private_hash;
static struct stat reused_new, gone_st;
static char listing[4096];

/* dir/name into out (PATH_MAX bytes). */
static char *in_dir(char *out, const char *name)
{
	if (snprintf(out, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX)
		fail("path %s/%s too long", dir, name);
	return out;
}

static void fill(unsigned char *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(i * 31 + seed + (i >> 11));
}

static uint64_t file_hash(int fd, off_t size)
{
	static unsigned char buf[SPARSE_LEN];
	if (size > (off_t)sizeof(buf))
		return 0;
	ssize_t n = pread(fd, buf, size, 0);
	if (n != size)
		return 0;
	return wl_hash(buf, size);
}

static void record(struct ghost *g, const char *name, int fd)
{
	char p[64];
	g->name = name;
	g->fd = fd;
	if (fd < 0) {
		fail("%s: open: %s", name, strerror(errno));
		return;
	}
	/* Read first: reading moves the access time. */
	g->hash = file_hash(fd, lseek(fd, 0, SEEK_END));
	fstat(fd, &g->st);
	g->size = g->st.st_size;
	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(p, g->link, sizeof(g->link) - 1);
	g->link[n < 0 ? 0 : n] = 0;
}

static int make(const char *name, const unsigned char *b, size_t n, int mode)
{
	char p[PATH_MAX];
	in_dir(p, name);
	int fd = open(p, O_RDWR | O_CREAT | O_EXCL, mode);
	if (fd < 0 || (n && pwrite(fd, b, n, 0) != (ssize_t)n))
		fail("create %s: %s", p, strerror(errno));
	return fd;
}

static void gone_name(const char *name)
{
	char p[PATH_MAX];
	in_dir(p, name);
	if (unlink(p))
		fail("unlink %s: %s", p, strerror(errno));
}

static void list(char *out, size_t cap)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t len = 0;
	out[0] = 0;
	if (!d) {
		fail("opendir %s: %s", dir, strerror(errno));
		return;
	}
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			len += snprintf(out + len, len < cap ? cap - len : 0, "%s\n", e->d_name);
	closedir(d);
}

static int same_file(int a, int b)
{
	pid_t me = getpid();
	return syscall(SYS_kcmp, me, me, KCMP_FILE, a, b) == 0;
}

static void check(const struct ghost *g, int times)
{
	struct stat st;
	char p[64], link[PATH_MAX];
	if (fstat(g->fd, &st)) {
		fail("%s: fstat fd %d: %s", g->name, g->fd, strerror(errno));
		return;
	}
	if (st.st_size != g->size)
		fail("%s: size %lld, expected %lld", g->name, (long long)st.st_size, (long long)g->size);
	if (st.st_mode != g->st.st_mode)
		fail("%s: mode 0%o, expected 0%o", g->name, st.st_mode, g->st.st_mode);
	if (st.st_uid != g->st.st_uid || st.st_gid != g->st.st_gid)
		fail("%s: owner %d:%d, expected %d:%d", g->name, st.st_uid, st.st_gid, g->st.st_uid, g->st.st_gid);
	if (st.st_nlink != 0)
		fail("%s: nlink %lu, expected 0", g->name, (unsigned long)st.st_nlink);
	if (times && (st.st_mtim.tv_sec != g->st.st_mtim.tv_sec || st.st_mtim.tv_nsec / 1000 != g->st.st_mtim.tv_nsec / 1000))
		fail("%s: mtime %lld.%09ld, expected %lld.%09ld", g->name, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
		     (long long)g->st.st_mtim.tv_sec, g->st.st_mtim.tv_nsec);
	if (times && (st.st_atim.tv_sec != g->st.st_atim.tv_sec || st.st_atim.tv_nsec / 1000 != g->st.st_atim.tv_nsec / 1000))
		fail("%s: atime %lld.%09ld, expected %lld.%09ld", g->name, (long long)st.st_atim.tv_sec, st.st_atim.tv_nsec,
		     (long long)g->st.st_atim.tv_sec, g->st.st_atim.tv_nsec);
	uint64_t h = file_hash(g->fd, st.st_size);
	if (h != g->hash)
		fail("%s: contents hash %016llx, expected %016llx", g->name, (unsigned long long)h, (unsigned long long)g->hash);
	snprintf(p, sizeof(p), "/proc/self/fd/%d", g->fd);
	ssize_t n = readlink(p, link, sizeof(link) - 1);
	link[n < 0 ? 0 : n] = 0;
	if (n < 10 || strcmp(link + n - 10, " (deleted)"))
		fail("%s: fd %d names '%s', not a deleted file", g->name, g->fd, link);
}

int main(int argc, char **argv)
{
	static unsigned char buf[SPARSE_LEN];
	char cwd[PATH_MAX];
	wl_init(argc, argv, "files-ghost");
	if (!getcwd(cwd, sizeof(cwd)))
		fail("getcwd: %s", strerror(errno));
	if (snprintf(dir, sizeof(dir), "%s/g", cwd) >= (int)sizeof(dir))
		fail("cwd %s too long", cwd);
	if (mkdir(dir, 0755))
		fail("mkdir %s: %s", dir, strerror(errno));

	/* "large": one deleted file over the ghost limit, which crest refuses to dump. */
	if (argc > 2 && !strcmp(argv[2], "large")) {
		static unsigned char big[2 << 20];
		fill(big, sizeof(big), 9);
		int fd = make("big", big, sizeof(big), 0644);
		gone_name("big");
		record(&data, "big", fd);
		wl_ready();
		wl_wait();
		check(&data, 0);
		return wl_done();
	}

	/* data: odd mode, owner and times; a dup and a separate open. */
	fill(buf, DATA_LEN, 1);
	int fd = make("data", buf, DATA_LEN, 0600);
	if (fchown(fd, 1234, 5678) || fchmod(fd, 04751))
		fail("data: chown/chmod: %s", strerror(errno));
	char p[PATH_MAX];
	in_dir(p, "data");
	int ro = open(p, O_RDONLY);
	int dup_fd = dup(fd);
	gone_name("data");
	record(&data, "data", fd);
	record(&data_dup, "data (dup)", dup_fd);
	record(&data_ro, "data (second open)", ro);
	/* Times last: nothing reads the file after this until they are checked. */
	struct timespec ts[2] = { { 1000000000, 123456789 }, { 1200000000, 987654321 } };
	if (futimens(fd, ts))
		fail("data: futimens: %s", strerror(errno));
	fstat(fd, &data.st);
	data_dup.st = data_ro.st = data.st;
	lseek(fd, 777, SEEK_SET);
	lseek(ro, 5, SEEK_SET);

	/* sparse: two runs of data, holes around them. */
	memset(buf, 0, sizeof(buf));
	fd = make("sparse", NULL, 0, 0644);
	fill(buf, PG, 2);
	fill(buf + SPARSE_OFF2, 5000, 3);
	if (pwrite(fd, buf, PG, 0) != PG || pwrite(fd, buf + SPARSE_OFF2, 5000, SPARSE_OFF2) != 5000 || ftruncate(fd, SPARSE_LEN))
		fail("sparse: write: %s", strerror(errno));
	gone_name("sparse");
	record(&sparse, "sparse", fd);

	/* mapped: shared and private mappings of a deleted file. */
	fill(buf, 3 * PG, 4);
	fd = make("mapped", buf, 3 * PG, 0640);
	shared_map = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	private_map = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (shared_map == MAP_FAILED || private_map == MAP_FAILED)
		fail("mapped: mmap: %s", strerror(errno));
	gone_name("mapped");
	memset(shared_map + PG, 0x5a, PG);
	memset(private_map + 2 * PG, 0xa5, PG);
	private_hash = wl_hash(private_map, 3 * PG);
	record(&mapped, "mapped", fd);

	/* reused: the name of a deleted file taken by a new one. */
	fd = make("reused", (const unsigned char *)"old contents", 12, 0644);
	gone_name("reused");
	record(&reused, "reused (old)", fd);
	close(make("reused", (const unsigned char *)"new contents, longer", 20, 0600));
	in_dir(p, "reused");
	stat(p, &reused_new);

	/* gone: the cwd, removed. */
	in_dir(p, "gone");
	if (mkdir(p, 0710) || chdir(p) || rmdir(p) || stat(".", &gone_st))
		fail("gone: %s", strerror(errno));
	list(listing, sizeof(listing));

	wl_ready();
	wl_wait();

	if (wl_sabotage() == 1 && pwrite(data.fd, "!", 1, 0) != 1)
		fail("sabotage: %s", strerror(errno));
	if (wl_sabotage() == 2) {
		in_dir(p, "leftover");
		close(open(p, O_CREAT | O_WRONLY, 0600));
	}

	/* Times of all three before any of them reads the file. */
	check(&data, 1);
	check(&data_dup, 0);
	check(&data_ro, 0);
	check(&sparse, 0);
	check(&mapped, 0);
	check(&reused, 0);
	if (lseek(data.fd, 0, SEEK_CUR) != 777 || lseek(data_ro.fd, 0, SEEK_CUR) != 5)
		fail("data: positions %lld and %lld, expected 777 and 5", (long long)lseek(data.fd, 0, SEEK_CUR),
		     (long long)lseek(data_ro.fd, 0, SEEK_CUR));
	if (!same_file(data.fd, data_dup.fd))
		fail("data: fd %d and its dup %d no longer share a description", data.fd, data_dup.fd);
	if (same_file(data.fd, data_ro.fd))
		fail("data: fd %d and the separate open %d now share a description", data.fd, data_ro.fd);
	struct stat a, b;
	fstat(data.fd, &a);
	fstat(data_ro.fd, &b);
	if (a.st_ino != b.st_ino || a.st_dev != b.st_dev)
		fail("data: fds %d and %d are no longer the same file", data.fd, data_ro.fd);

	struct stat st;
	fstat(sparse.fd, &st);
	if (st.st_blocks * 512 > 256 * 1024)
		fail("sparse: %lld bytes on disk: the holes were filled", (long long)st.st_blocks * 512);

	/* The shared mapping is the file: what it shows, and what is written through it. */
	if (pread(mapped.fd, buf, 3 * PG, 0) != 3 * PG || memcmp(buf, shared_map, 3 * PG))
		fail("mapped: the shared mapping differs from the file");
	shared_map[10] ^= 0xff;
	if (pread(mapped.fd, buf, 1, 10) != 1 || buf[0] != shared_map[10])
		fail("mapped: a write through the shared mapping does not reach the file");
	shared_map[10] ^= 0xff;
	if (wl_hash(private_map, 3 * PG) != private_hash)
		fail("mapped: the private mapping's contents changed");

	in_dir(p, "reused");
	size_t len;
	char *now = wl_read_file(p, &len);
	if (!now || len != 20 || memcmp(now, "new contents, longer", 20))
		fail("reused: the new file's contents are '%s', expected 'new contents, longer'", now ? now : "(unreadable)");
	free(now);
	if (stat(p, &st) || st.st_ino != reused_new.st_ino || st.st_mode != reused_new.st_mode)
		fail("reused: the new file was replaced (inode %lu, mode 0%o)", (unsigned long)st.st_ino, st.st_mode);

	if (stat(".", &st) || !S_ISDIR(st.st_mode) || st.st_nlink != 0 || (st.st_mode & 07777) != 0710)
		fail("gone: the cwd is mode 0%o nlink %lu, expected a removed directory 0710", st.st_mode, (unsigned long)st.st_nlink);
	if (!getcwd(cwd, sizeof(cwd)) && errno != ENOENT)
		fail("gone: getcwd: %s", strerror(errno));

	char after[4096];
	list(after, sizeof(after));
	wl_compare_lines("g/", listing, after);
	return wl_done();
}
