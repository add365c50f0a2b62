/*
 * Files whose name was removed while another name of the same inode
 * remains (criu's --link-remap case, zdtm's unlink_fstat03 and link10), in
 * the subdirectory l/:
 *   first   "link remap data, first" opened O_RDWR (fd at 5), linked as
 *           l/other, then removed; the same file also mapped MAP_SHARED;
 *   deep    l/sub/deep "the second one" opened O_RDONLY (at 4), linked as
 *           l/keep, removed, and l/sub removed too (the link goes back one
 *           directory up, as criu does).
 * After: each fd is the same inode as its other name (device and inode
 * number), with one link (the temporary name of the restore is gone), reads
 * the same bytes from the same position, and its /proc link still ends in
 * " (deleted)"; the shared mapping is still the file (a write through the fd
 * shows in it); l/ holds only "keep" and "other".
 *
 * With argv[2] "lower" and argv[3] a file of an overlay's lower layer seen
 * through the overlay: only that file, opened and removed through the
 * overlay (a container's image file; its inode is the lower layer's, which
 * still has its name there), checked to still read what it did.
 *
 * Sabotage: 1 writes a byte into "first" through its fd; 2 leaves a file in l/.
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
#include <unistd.h>

static char dir[PATH_MAX];

static void at(char *out, const char *name)
{
	if (snprintf(out, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX)
		fail("path %s/%s too long", dir, name);
}

/* Makes l/NAME with `text`, opens it with `flags`, links it as l/OTHER and removes NAME. */
static int make_linked(const char *name, const char *other, const char *text, int flags)
{
	char p[PATH_MAX], o[PATH_MAX];
	at(p, name);
	at(o, other);
	int fd = open(p, O_RDWR | O_CREAT | O_EXCL, 0640);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		fail("%s: create: %s", name, strerror(errno));
	if (flags != O_RDWR) {
		close(fd);
		fd = open(p, flags);
	}
	if (fd < 0 || link(p, o) || unlink(p))
		fail("%s: open, link as %s, unlink: %s", name, other, strerror(errno));
	return fd;
}

static void check(const char *what, int fd, const struct stat *was, off_t pos, const char *text)
{
	char o[PATH_MAX], link[PATH_MAX], buf[64];
	struct stat st;
	if (fstat(fd, &st)) {
		fail("%s: fstat: %s", what, strerror(errno));
		return;
	}
	if (st.st_dev != was->st_dev || st.st_ino != was->st_ino)
		fail("%s: is %lx:%lu, was %lx:%lu", what, (long)st.st_dev, (long)st.st_ino, (long)was->st_dev, (long)was->st_ino);
	if (st.st_nlink != 1)
		fail("%s: has %lu links, expected 1 (its other name only)", what, (unsigned long)st.st_nlink);
	if (lseek(fd, 0, SEEK_CUR) != pos)
		fail("%s: at %ld, expected %ld", what, (long)lseek(fd, 0, SEEK_CUR), (long)pos);
	size_t n = strlen(text);
	if (pread(fd, buf, n, 0) != (ssize_t)n || memcmp(buf, text, n))
		fail("%s: does not read '%s'", what, text);
	snprintf(o, sizeof(o), "/proc/self/fd/%d", fd);
	ssize_t l = readlink(o, link, sizeof(link) - 1);
	if (l < 10 || memcmp(link + l - 10, " (deleted)", 10))
		fail("%s: its link is '%.*s', not a removed name", what, (int)(l < 0 ? 0 : l), link);
}

int main(int argc, char **argv)
{
	static const char first_text[] = "link remap data, first";
	static const char deep_text[] = "the second one";
	char cwd[PATH_MAX], p[PATH_MAX];
	struct stat first_st, deep_st;
	wl_init(argc, argv, "files-linkremap");
	if (argc > 3 && !strcmp(argv[2], "lower")) {
		char was[64] = "", now[64] = "";
		int fd = open(argv[3], O_RDONLY);
		ssize_t n = fd < 0 ? -1 : pread(fd, was, sizeof(was) - 1, 0);
		if (n <= 0 || unlink(argv[3]))
			fail("%s: open, read, unlink: %s", argv[3], strerror(errno));
		wl_ready();
		wl_wait();
		if (pread(fd, now, sizeof(now) - 1, 0) != n || strcmp(now, was))
			fail("%s: reads '%s', not '%s'", argv[3], now, was);
		return wl_done();
	}
	if (!getcwd(cwd, sizeof(cwd)) || snprintf(dir, sizeof(dir), "%s/l", cwd) >= (int)sizeof(dir))
		fail("getcwd: %s", strerror(errno));
	at(p, "sub");
	if (mkdir(dir, 0755) || mkdir(p, 0755))
		fail("mkdir %s: %s", dir, strerror(errno));

	int first = make_linked("first", "other", first_text, O_RDWR);
	char *map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, first, 0);
	if (map == MAP_FAILED)
		fail("first: mmap: %s", strerror(errno));
	lseek(first, 5, SEEK_SET);
	fstat(first, &first_st);

	int deep = make_linked("sub/deep", "keep", deep_text, O_RDONLY);
	if (rmdir(p))
		fail("rmdir %s: %s", p, strerror(errno));
	lseek(deep, 4, SEEK_SET);
	fstat(deep, &deep_st);

	wl_ready();
	wl_wait();

	if (wl_sabotage() == 1 && pwrite(first, "X", 1, 0) != 1)
		fail("sabotage: %s", strerror(errno));
	if (wl_sabotage() == 2) {
		at(p, "extra");
		close(open(p, O_WRONLY | O_CREAT, 0600));
	}
	check("first", first, &first_st, 5, first_text);
	check("deep", deep, &deep_st, 4, deep_text);
	/* The mapping and the fd are one file still. */
	if (pwrite(first, "L", 1, 0) != 1 || map[0] != 'L')
		fail("first: a write through the fd does not show in its shared mapping");
	/* Only the other names: the link remaps' names are gone. */
	DIR *d = opendir(dir);
	struct dirent *e;
	char names[1024] = "";
	while (d && (e = readdir(d))) {
		size_t used = strlen(names);
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "other") && strcmp(e->d_name, "keep") &&
		    used + strlen(e->d_name) + 2 < sizeof(names)) {
			names[used] = ' ';
			strcpy(names + used + 1, e->d_name);
		}
	}
	if (d)
		closedir(d);
	if (names[0])
		fail("l/ holds more than keep and other:%s", names);
	return wl_done();
}
