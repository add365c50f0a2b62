/*
 * A fanotify group (like CRIU's zdtm fanotify00): FAN_CLASS_NOTIF with
 * O_RDONLY|O_LARGEFILE event fds, non-blocking; an inode mark on watched.txt
 * (FAN_MODIFY|FAN_CLOSE_WRITE), an ignored mask on a directory that survives
 * modification (FAN_MARK_IGNORED_SURV_MODIFY), and a mount mark on the mount
 * of its directory (FAN_OPEN). After: the fdinfo lines of the group and its
 * marks are the ones it had, and writing and closing watched.txt gives a
 * FAN_CLOSE_WRITE event for it.
 *
 * Sabotage: 1 removes the inode mark before the checks.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

/* The fanotify lines of fd's fdinfo (the group and its marks). */
static char *marks(int fd)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	char *all = wl_read_file(path, NULL);
	if (!all)
		return strdup("");
	char *out = calloc(1, strlen(all) + 1);
	for (char *l = strtok(all, "\n"); l; l = strtok(NULL, "\n"))
		if (!strncmp(l, "fanotify", 8))
			strcat(strcat(out, l), "\n");
	free(all);
	return out;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "fds-fanotify");
	int w = open("watched.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (w < 0 || mkdir("ignored", 0755))
		fail("setup: %s", strerror(errno));
	close(w);
	int fd = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY | O_LARGEFILE);
	if (fd < 0 || fanotify_mark(fd, FAN_MARK_ADD, FAN_MODIFY | FAN_CLOSE_WRITE, AT_FDCWD, "watched.txt") ||
	    fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY, FAN_MODIFY, AT_FDCWD, "ignored") ||
	    fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN, AT_FDCWD, "."))
		fail("fanotify setup: %s", strerror(errno));
	char *before = marks(fd);
	/* Nothing queued at the dump (events queued then are not kept, as with criu). */
	char drain[4096];
	while (read(fd, drain, sizeof(drain)) > 0)
		;
	wl_ready();
	wl_wait();
	if (wl_sabotage())
		fanotify_mark(fd, FAN_MARK_REMOVE, FAN_MODIFY | FAN_CLOSE_WRITE, AT_FDCWD, "watched.txt");
	while (read(fd, drain, sizeof(drain)) > 0)
		;
	char *after = marks(fd);
	wl_compare_lines("fanotify fdinfo", before, after);
	w = open("watched.txt", O_WRONLY);
	if (w < 0 || write(w, "x", 1) != 1)
		fail("write watched.txt: %s", strerror(errno));
	struct stat want;
	fstat(w, &want);
	close(w);
	int got = 0;
	ssize_t n = read(fd, drain, sizeof(drain));
	for (struct fanotify_event_metadata *m = (void *)drain; n > 0 && FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
		struct stat st;
		if ((m->mask & FAN_CLOSE_WRITE) && m->fd >= 0 && !fstat(m->fd, &st) && st.st_ino == want.st_ino)
			got = 1;
		if (m->fd >= 0)
			close(m->fd);
	}
	if (!got)
		fail("no FAN_CLOSE_WRITE event for watched.txt (read %zd bytes)", n);
	return wl_done();
}
