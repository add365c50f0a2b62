/*
 * Holds one file lock, of the kind argv[2] names: "posix" (F_SETLK, a read
 * lock on bytes 10-29), "ofd" (F_OFD_SETLK, a write lock from 100 to EOF),
 * "flock" (LOCK_EX) or "lease" (F_SETLEASE, a read lease). Without
 * --file-locks crest refuses to dump it (as criu does), so this only checks
 * that the process was left as it was: the lock is still its own (the "lock:" line of
 * its fdinfo is unchanged) and the file is still at its position.
 *
 * Sabotage: 1 drops the lock.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static void lock_line(int fd, char *out, size_t cap)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	out[0] = 0;
	if (wl_read_into(path, buf, sizeof(buf)) < 0)
		return;
	char *l = strstr(buf, "lock:");
	if (!l)
		return;
	size_t n = strcspn(l, "\n");
	if (n >= cap)
		n = cap - 1;
	memcpy(out, l, n);
	out[n] = 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "files-locks");
	const char *kind = argc > 2 ? argv[2] : "posix";
	int fd = open("locked", O_RDWR | O_CREAT, 0600);
	if (fd < 0 || write(fd, "0123456789abcdef0123456789abcdef", 32) != 32)
		fail("cannot write the file: %s", strerror(errno));
	int r = -1;
	if (!strcmp(kind, "posix")) {
		struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 20 };
		r = fcntl(fd, F_SETLK, &fl);
	} else if (!strcmp(kind, "ofd")) {
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 0 };
		r = fcntl(fd, F_OFD_SETLK, &fl);
	} else if (!strcmp(kind, "flock")) {
		r = flock(fd, LOCK_EX);
	} else if (!strcmp(kind, "lease")) {
		/* A read lease needs no writer: reopen read-only. */
		close(fd);
		fd = open("locked", O_RDONLY);
		r = fcntl(fd, F_SETLEASE, F_RDLCK);
	} else {
		fail("unknown lock kind %s", kind);
	}
	if (r < 0)
		fail("cannot take the %s lock: %s", kind, strerror(errno));
	lseek(fd, 7, SEEK_SET);
	char before[256], after[256];
	lock_line(fd, before, sizeof(before));
	if (!before[0])
		fail("no lock line in fdinfo after taking the %s lock", kind);
	wl_ready();
	wl_wait();
	if (wl_sabotage()) {
		if (!strcmp(kind, "flock"))
			flock(fd, LOCK_UN);
		else if (!strcmp(kind, "lease"))
			fcntl(fd, F_SETLEASE, F_UNLCK);
		else {
			struct flock fl = { .l_type = F_UNLCK, .l_whence = SEEK_SET };
			fcntl(fd, strcmp(kind, "ofd") ? F_SETLK : F_OFD_SETLK, &fl);
		}
	}
	lock_line(fd, after, sizeof(after));
	if (strcmp(before, after))
		fail("the %s lock is '%s', expected '%s'", kind, after, before);
	if (lseek(fd, 0, SEEK_CUR) != 7)
		fail("the file is at %ld, expected 7", (long)lseek(fd, 0, SEEK_CUR));
	return wl_done();
}
