/*
 * inotify (like CRIU's zdtm inotify04): an inotify fd (IN_NONBLOCK) whose
 * watches do not start at wd 1 (two added and removed first): directory "d"
 * (IN_CREATE | IN_DELETE) at wd 3, file "f" (IN_MODIFY) at wd 5 (wd 4 added
 * and removed between), directory "e" (IN_ATTRIB | IN_ONESHOT |
 * IN_EXCL_UNLINK) at wd 6. A dup of the fd shares it; the fd's async I/O
 * owner is the process (F_SETOWN_EX) with SIGUSR2 (F_SETSIG), O_ASYNC off.
 * Nothing is queued (crest, like CRIU, does not keep unread events).
 * After: O_NONBLOCK; the fdinfo watch lines (wd, ino, sdev, mask, handle)
 * are the same; the dup is the same description (kcmp); owner and signal
 * are the same; nothing to read;
 * creating and removing d/new gives IN_CREATE and IN_DELETE on wd 3 named
 * "new", writing f gives IN_MODIFY on wd 5, chmod of e gives IN_ATTRIB then
 * IN_IGNORED on wd 6 (one-shot); the next watch added gets wd 7.
 *
 * With argv[2] "deleted" it watches a file it holds open but unlinked (zdtm
 * inotify00's case): after the restore (the watch back on the file's ghost,
 * as criu puts it) a write to the open file is reported by the watch.
 *
 * Sabotage: 1 removes the watch on f; 2 changes the mask of d to IN_CREATE;
 * 3 clears the owner.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define KCMP_FILE 0
#define DIR_MASK (IN_CREATE | IN_DELETE)
#define E_MASK (IN_ATTRIB | IN_ONESHOT | IN_EXCL_UNLINK)

/* The "inotify wd:" lines of fd's fdinfo, in buf. */
static void watch_lines(int fd, char *buf, size_t cap)
{
	char path[64], text[8192];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	buf[0] = 0;
	if (wl_read_into(path, text, sizeof(text)) < 0) {
		fail("read %s", path);
		return;
	}
	size_t used = 0;
	for (char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		size_t n = strcspn(l, "\n");
		if (strncmp(l, "inotify wd:", 11) || used + n + 2 > cap)
			continue;
		memcpy(buf + used, l, n);
		used += n;
		buf[used++] = '\n';
		buf[used] = 0;
	}
}

static int add(int fd, const char *path, unsigned mask)
{
	int wd = inotify_add_watch(fd, path, mask);
	if (wd < 0)
		fail("inotify_add_watch %s: %s", path, strerror(errno));
	return wd;
}

struct want {
	int wd;
	unsigned mask;
	const char *name;
};

/* Reads the queue and fail()s unless it holds exactly `n` events as in `w`. */
static void expect(int fd, const struct want *w, int n, const char *after)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t len = read(fd, buf, sizeof(buf));
	if (len < 0 && errno == EAGAIN && n == 0)
		return;
	if (len < 0) {
		fail("after %s: read: %s, expected %d event(s)", after, strerror(errno), n);
		return;
	}
	int i = 0;
	for (char *p = buf; p < buf + len; i++) {
		struct inotify_event *ev = (struct inotify_event *)p;
		p += sizeof(*ev) + ev->len;
		if (i >= n) {
			fail("after %s: extra event wd %d mask %#x", after, ev->wd, ev->mask);
			continue;
		}
		const char *name = ev->len ? ev->name : "";
		if (ev->wd != w[i].wd || ev->mask != w[i].mask || strcmp(name, w[i].name))
			fail("after %s: event %d is wd %d mask %#x \"%s\", expected wd %d mask %#x \"%s\"", after, i, ev->wd,
			     ev->mask, name, w[i].wd, w[i].mask, w[i].name);
	}
	if (i < n)
		fail("after %s: %d event(s), expected %d", after, i, n);
}

/* A watch on a file deleted while open. */
static int deleted(void)
{
	int g = open("g", O_CREAT | O_WRONLY, 0644);
	int fd = inotify_init1(IN_NONBLOCK);
	int wd = add(fd, "g", IN_MODIFY);
	if (g < 0 || fd < 0 || unlink("g"))
		fail("setup: %s", strerror(errno));
	wl_ready();
	wl_wait();
	if (write(g, "x", 1) != 1)
		fail("write g: %s", strerror(errno));
	struct want ev[] = { { wd, IN_MODIFY, "" } };
	expect(fd, ev, 1, "writing the deleted g");
	return wl_done();
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "fds-inotify");
	if (argc > 2 && !strcmp(argv[2], "deleted"))
		return deleted();
	int f = open("f", O_CREAT | O_WRONLY, 0644);
	if (f < 0 || mkdir("d", 0755) || mkdir("e", 0755))
		fail("setup files: %s", strerror(errno));
	int fd = inotify_init1(IN_NONBLOCK);
	if (fd < 0)
		fail("inotify_init1: %s", strerror(errno));
	for (int i = 0; i < 2; i++)
		inotify_rm_watch(fd, add(fd, ".", IN_OPEN));
	int wd_d = add(fd, "d", DIR_MASK);
	inotify_rm_watch(fd, add(fd, ".", IN_OPEN));
	int wd_f = add(fd, "f", IN_MODIFY);
	int wd_e = add(fd, "e", E_MASK);
	if (wd_d != 3 || wd_f != 5 || wd_e != 6)
		fail("setup: wds %d %d %d, expected 3 5 6", wd_d, wd_f, wd_e);
	int dup_fd = dup(fd);
	struct f_owner_ex own = { F_OWNER_PID, getpid() };
	if (fcntl(fd, F_SETOWN_EX, &own) || fcntl(fd, F_SETSIG, SIGUSR2))
		fail("set the owner: %s", strerror(errno));
	/* Drain the IN_IGNORED events of the removed watches. */
	char drain[4096];
	while (read(fd, drain, sizeof(drain)) > 0)
		;
	char before[2048];
	watch_lines(fd, before, sizeof(before));

	wl_ready();
	wl_wait();

	if (wl_sabotage() == 1)
		inotify_rm_watch(fd, wd_f);
	if (wl_sabotage() == 2)
		inotify_add_watch(fd, "d", IN_CREATE);
	if (wl_sabotage() == 3) {
		struct f_owner_ex none = { F_OWNER_PID, 0 };
		fcntl(fd, F_SETOWN_EX, &none);
	}
	if (!(fcntl(fd, F_GETFL) & O_NONBLOCK))
		fail("the inotify fd lost O_NONBLOCK");
	struct f_owner_ex got = { 0, 0 };
	if (fcntl(fd, F_GETOWN_EX, &got) || got.type != F_OWNER_PID || got.pid != getpid())
		fail("the inotify fd's owner is type %d pid %d, expected F_OWNER_PID %d", got.type, got.pid, getpid());
	if (fcntl(fd, F_GETSIG) != SIGUSR2)
		fail("the inotify fd's signal is %d, expected SIGUSR2", fcntl(fd, F_GETSIG));
	char after[2048];
	watch_lines(fd, after, sizeof(after));
	wl_compare_lines("inotify watches", before, after);
	if (syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, fd, dup_fd) != 0)
		fail("the dup is no longer the inotify fd's description");
	expect(fd, NULL, 0, "restore");

	int n = open("d/new", O_CREAT | O_WRONLY, 0644);
	if (n < 0 || close(n) || unlink("d/new"))
		fail("create and remove d/new: %s", strerror(errno));
	struct want dir_events[] = { { 3, IN_CREATE, "new" }, { 3, IN_DELETE, "new" } };
	expect(fd, dir_events, 2, "d/new created and removed");

	if (write(f, "x", 1) != 1)
		fail("write f: %s", strerror(errno));
	struct want file_events[] = { { 5, IN_MODIFY, "" } };
	expect(fd, file_events, 1, "writing f");

	if (chmod("e", 0700))
		fail("chmod e: %s", strerror(errno));
	struct want e_events[] = { { 6, IN_ATTRIB | IN_ISDIR, "" }, { 6, IN_IGNORED, "" } };
	expect(fd, e_events, 2, "chmod e");

	int next = add(fd, ".", IN_OPEN);
	if (next != 7)
		fail("the next watch got wd %d, expected 7", next);
	return wl_done();
}
