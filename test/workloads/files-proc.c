/*
 * Files under the /proc directory of the workload's own processes and
 * threads (icewm keeps /proc/self/net/dev open), which the kernel names
 * /proc/PID/... with PID as the /proc mount sees the process (outside the
 * tree's PID namespace when it has one, a PID a restore does not keep):
 *   /proc/self/net/dev read 10 bytes in (position 10), then looked up
 *     again, which makes procfs call the open file "(deleted)",
 *   /proc/self/status,
 *   /proc/PID/task/TID/stat of a second thread (named wl-proc-th),
 *   /proc/thread-self/comm of the main thread,
 *   /proc/self itself (O_DIRECTORY),
 * and a child holding its parent's /proc/PID/status (PID from its own
 * status's PPid line, the /proc mount's view), whose working directory is
 * its own /proc directory (/proc/self).
 * After: each fd's link is the path under the process's (thread's) PID as
 * /proc names it now, and reads the restored process's file: status gives
 * this process's Name and NSpid, the thread's stat its TID and name, comm
 * "files-proc", status through the directory fd this process's NSpid, the
 * child's fd its parent's NSpid (last: getppid()), the child's working
 * directory is its own /proc directory again; net/dev is at position
 * 10 and shows the same header and interfaces as a fresh open.
 *
 * Sabotage: 1 puts /proc/1/status (another process) at the status fd; 2
 * puts the main thread's stat at the second thread's fd.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREAD_NAME "wl-proc-th"

static int fd_net, fd_status, fd_thread, fd_comm, fd_dir;
static char thread_link[64]; /* "PID/task/TID" of the second thread, as /proc names it */
static pthread_mutex_t named = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t named_cond = PTHREAD_COND_INITIALIZER;

static void *thread_main(void *arg)
{
	sigset_t term;
	(void)arg;
	/* SIGTERM is the main thread's to take. */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &term, NULL);
	prctl(PR_SET_NAME, THREAD_NAME);
	pthread_mutex_lock(&named);
	ssize_t n = readlink("/proc/thread-self", thread_link, sizeof(thread_link) - 1);
	thread_link[n < 0 ? 0 : n] = 0;
	pthread_cond_signal(&named_cond);
	pthread_mutex_unlock(&named);
	for (;;)
		pause();
	return NULL;
}

/* What /proc calls this process (readlink /proc/self): its PID as the /proc mount sees it. */
static void proc_self(char *buf, size_t cap)
{
	ssize_t n = readlink("/proc/self", buf, cap - 1);
	buf[n < 0 ? 0 : n] = 0;
}

/* The text of an fd from offset 0. */
static ssize_t read_fd(int fd, char *buf, size_t cap)
{
	ssize_t n = pread(fd, buf, cap - 1, 0);
	buf[n < 0 ? 0 : n] = 0;
	return n;
}

/* The value of "Key:" in a status text ("" if absent). */
static const char *field(const char *text, const char *key, char *out, size_t cap)
{
	size_t kl = strlen(key);
	out[0] = 0;
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, key, kl) || p[kl] != ':')
			continue;
		const char *v = p + kl + 1, *eol = strchrnul(v, '\n');
		while (*v == '\t' || *v == ' ')
			v++;
		size_t l = (size_t)(eol - v) < cap ? (size_t)(eol - v) : cap - 1;
		memcpy(out, v, l);
		out[l] = 0;
		break;
	}
	return out;
}

static void check_link(const char *who, int fd, const char *want)
{
	char p[64], link[PATH_MAX];
	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(p, link, sizeof(link) - 1);
	link[n < 0 ? 0 : n] = 0;
	if (strcmp(link, want))
		fail("%s: fd %d names '%s', expected '%s'", who, fd, link, want);
}

/* A status text read through an fd must be the one of the process whose status is `fresh`. */
static void check_status(const char *what, const char *text, const char *fresh)
{
	char a[256], b[256];
	if (strcmp(field(text, "Name", a, sizeof(a)), field(fresh, "Name", b, sizeof(b))))
		fail("%s: Name is '%s', expected '%s'", what, a, b);
	if (strcmp(field(text, "NSpid", a, sizeof(a)), field(fresh, "NSpid", b, sizeof(b))))
		fail("%s: NSpid is '%s', expected '%s'", what, a, b);
}

/* The header lines and the interface names of a net/dev text, one per line. */
static void net_summary(const char *text, char *out, size_t cap)
{
	size_t o = 0;
	int line = 0;
	out[0] = 0;
	for (const char *p = text; p && *p; line++) {
		const char *eol = strchrnul(p, '\n');
		const char *end = line < 2 ? eol : memchr(p, ':', eol - p);
		if (!end)
			end = eol;
		while (*p == ' ' && p < end)
			p++;
		size_t l = end - p;
		if (o + l + 2 < cap) {
			memcpy(out + o, p, l);
			o += l;
			out[o++] = '\n';
			out[o] = 0;
		}
		p = *eol ? eol + 1 : NULL;
	}
}

/*
 * argv[2] "dead": holds /proc/PID/status of a child it has reaped since (its
 * link "(deleted)" and the path gone); after, the
 * fd still fails to read with ESRCH.
 */
static int dead(void)
{
	int p[2];
	char name[32] = { 0 }, path[64];
	if (pipe(p))
		fail("pipe: %s", strerror(errno));
	pid_t child = fork();
	if (child == 0) {
		proc_self(name, sizeof(name));
		if (write(p[1], name, sizeof(name)) != sizeof(name))
			_exit(1);
		pause();
		_exit(0);
	}
	if (read(p[0], name, sizeof(name)) != sizeof(name))
		fail("the child did not say its PID");
	snprintf(path, sizeof(path), "/proc/%s/status", name);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		fail("open %s: %s", path, strerror(errno));
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	wl_ready();
	wl_wait();
	char buf[64];
	if (pread(fd, buf, sizeof(buf), 0) >= 0 || errno != ESRCH)
		fail("%s of the reaped child: read gives %s, expected ESRCH", path, strerror(errno));
	return wl_done();
}

int main(int argc, char **argv)
{
	static char text[16384], fresh[16384], a[4096], b[4096];
	char self[32], path[PATH_MAX], child_status[PATH_MAX];
	wl_init(argc, argv, "files-proc");
	snprintf(child_status, sizeof(child_status), "%s.child", argv[1]);
	for (int fd = 3; fd < 1024; fd++)
		close(fd); /* inherited fds are not ours */
	if (argc > 2 && !strcmp(argv[2], "dead"))
		return dead();

	pthread_t th;
	pthread_mutex_lock(&named);
	if (pthread_create(&th, NULL, thread_main, NULL))
		fail("pthread_create failed");
	while (!thread_link[0])
		pthread_cond_wait(&named_cond, &named);
	pthread_mutex_unlock(&named);

	fd_net = open("/proc/self/net/dev", O_RDONLY);
	if (fd_net < 0 || read(fd_net, a, 10) != 10)
		fail("open and read /proc/self/net/dev: %s", strerror(errno));
	/* A new lookup makes procfs drop the dentry the fd holds: its link now ends in " (deleted)", as icewm's does. */
	struct stat sb;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd_net);
	if (stat("/proc/self/net/dev", &sb) || readlink(path, a, sizeof(a)) < 0 || !strstr(a, " (deleted)"))
		fail("setup: /proc/self/net/dev was looked up again, yet its fd's link is not '... (deleted)'");
	fd_status = open("/proc/self/status", O_RDONLY);
	snprintf(path, sizeof(path), "/proc/%s/stat", thread_link);
	fd_thread = open(path, O_RDONLY);
	fd_comm = open("/proc/thread-self/comm", O_RDONLY);
	fd_dir = open("/proc/self", O_RDONLY | O_DIRECTORY);
	if (fd_status < 0 || fd_thread < 0 || fd_comm < 0 || fd_dir < 0)
		fail("setup: open a /proc file: %s", strerror(errno));

	pid_t child = fork();
	if (child == 0) {
		char *childargv[] = { argv[0], child_status, NULL };
		wl_init(2, childargv, "files-proc-child");
		/* Its parent's status, under the PID /proc knows the parent by. */
		wl_read_into("/proc/self/status", text, sizeof(text));
		snprintf(path, sizeof(path), "/proc/%s/status", field(text, "PPid", a, sizeof(a)));
		int fd = open(path, O_RDONLY);
		if (fd < 0)
			fail("child: open %s: %s", path, strerror(errno));
		/* Its working directory is its own /proc directory. */
		if (chdir("/proc/self"))
			fail("child: chdir /proc/self: %s", strerror(errno));
		wl_wait();
		char cwd[PATH_MAX], self[32];
		proc_self(self, sizeof(self));
		snprintf(b, sizeof(b), "/proc/%s", self);
		ssize_t cl = readlink("/proc/self/cwd", cwd, sizeof(cwd) - 1);
		cwd[cl < 0 ? 0 : cl] = 0;
		if (strcmp(cwd, b))
			fail("child: its working directory is '%s', expected its own /proc directory '%s'", cwd, b);
		if (wl_read_into("status", text, sizeof(text)) < 0 || !strstr(text, "\nPPid:\t"))
			fail("child: status in its working directory cannot be read");
		else if (strcmp(field(text, "NSpid", a, sizeof(a)), (wl_read_into("/proc/self/status", path, sizeof(path)), field(path, "NSpid", cwd, sizeof(cwd)))))
			fail("child: status in its working directory has NSpid '%s', its own is '%s'", a, cwd);
		wl_read_into("/proc/self/status", text, sizeof(text));
		snprintf(path, sizeof(path), "/proc/%s/status", field(text, "PPid", a, sizeof(a)));
		check_link("child", fd, path);
		read_fd(fd, text, sizeof(text));
		snprintf(b, sizeof(b), "%d", getppid());
		field(text, "NSpid", a, sizeof(a));
		const char *last = strrchr(a, '\t') ? strrchr(a, '\t') + 1 : a;
		if (strcmp(field(text, "Name", path, sizeof(path)), "files-proc") || strcmp(last, b))
			fail("child: its parent's status fd reads Name '%s' NSpid '%s', expected 'files-proc' and last %s", path, a, b);
		_exit(wl_done());
	}

	wl_ready();
	wl_wait();
	switch (wl_sabotage()) {
	case 1:
		dup2(open("/proc/1/status", O_RDONLY), fd_status);
		break;
	case 2:
		dup2(open("/proc/thread-self/stat", O_RDONLY), fd_thread);
		break;
	}

	proc_self(self, sizeof(self));
	char tlink[64];
	/* The second thread's TID now, as /proc names it: the one task of ours that is not the leader. */
	tlink[0] = 0;
	snprintf(path, sizeof(path), "/proc/%s/task", self);
	int tasks = open(path, O_RDONLY | O_DIRECTORY);
	if (tasks >= 0) {
		char dents[4096];
		long n = syscall(SYS_getdents64, tasks, dents, sizeof(dents));
		for (long off = 0; off < n;) {
			struct { unsigned long long ino; long long off; unsigned short reclen; unsigned char type; char name[]; } *d = (void *)(dents + off);
			if (d->name[0] != '.' && strcmp(d->name, self))
				snprintf(tlink, sizeof(tlink), "%s/task/%s", self, d->name);
			off += d->reclen;
		}
		close(tasks);
	}
	if (!tlink[0])
		fail("the second thread is gone from /proc/%s/task", self);

	wl_read_into("/proc/self/status", fresh, sizeof(fresh));

	/* Looked up since it was opened (by crest, or by the check of another fd), it may read " (deleted)". */
	snprintf(path, sizeof(path), "/proc/%s/net/dev", self);
	snprintf(a, sizeof(a), "/proc/self/fd/%d", fd_net);
	ssize_t ln = readlink(a, b, sizeof(b) - 1);
	b[ln < 0 ? 0 : ln] = 0;
	if (strcmp(b, path) && (strncmp(b, path, strlen(path)) || strcmp(b + strlen(path), " (deleted)")))
		fail("net/dev: fd %d names '%s', expected '%s' (or with ' (deleted)')", fd_net, b, path);
	off_t pos = lseek(fd_net, 0, SEEK_CUR);
	if (pos != 10)
		fail("/proc/self/net/dev: at position %lld, expected 10", (long long)pos);
	read_fd(fd_net, text, sizeof(text));
	wl_read_into("/proc/self/net/dev", a, sizeof(a));
	net_summary(text, b, sizeof(b));
	net_summary(a, path, sizeof(path));
	if (strcmp(b, path))
		fail("/proc/self/net/dev reads header and interfaces '%s', a fresh open '%s'", b, path);

	snprintf(path, sizeof(path), "/proc/%s/status", self);
	check_link("status", fd_status, path);
	read_fd(fd_status, text, sizeof(text));
	check_status("/proc/self/status fd", text, fresh);

	snprintf(path, sizeof(path), "/proc/%s/stat", tlink);
	check_link("the second thread's stat", fd_thread, path);
	read_fd(fd_thread, text, sizeof(text));
	snprintf(a, sizeof(a), "%s (" THREAD_NAME ") ", strrchr(tlink, '/') + 1);
	if (strncmp(text, a, strlen(a)))
		fail("the second thread's stat fd reads '%.40s', expected it to start with '%s'", text, a);

	snprintf(path, sizeof(path), "/proc/%s/task/%s/comm", self, self);
	check_link("the main thread's comm", fd_comm, path);
	read_fd(fd_comm, text, sizeof(text));
	if (strcmp(text, "files-proc\n"))
		fail("the main thread's comm fd reads '%s', expected 'files-proc'", text);

	snprintf(path, sizeof(path), "/proc/%s", self);
	check_link("/proc/self directory", fd_dir, path);
	int st = openat(fd_dir, "status", O_RDONLY);
	if (st < 0) {
		fail("openat(/proc/self fd, status): %s", strerror(errno));
	} else {
		read_fd(st, text, sizeof(text));
		check_status("status under the /proc/self directory fd", text, fresh);
		close(st);
	}

	kill(child, SIGTERM);
	int ws;
	if (waitpid(child, &ws, 0) != child || !WIFEXITED(ws) || WEXITSTATUS(ws)) {
		char *why = wl_read_file(child_status, NULL);
		fail("child %d: %s", child, why ? why : "no report");
	}
	return wl_done();
}
