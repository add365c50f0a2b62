/*
 * A process tree: the root (a session leader and child subreaper) with
 * children in its group, in groups of their own, in a new session; a group
 * whose leader has exited (its member now the root's child); zombies that
 * exited with a code and by a signal; a grandchild; and a file description
 * all of them share. After the checkpoint the root checks every PID's
 * parent, group and session, collects the zombies' statuses and sees a seek
 * through the shared description in every process.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

struct member {
	const char *name;
	pid_t pid, ppid, pgid, sid;
};

#define MEMBERS_MAX 32
static struct member m[MEMBERS_MAX];
static int nm;

/*
 * In a PID namespace of its own (crest run --ns pid) the tree still sees
 * the host's /proc, which names processes by their PIDs out there: PIDs of
 * this namespace go through these two on their way into and out of /proc.
 */

/* The PID /proc calls pid (a PID of this namespace) by: the "Pid:" of a pidfd's fdinfo; -1 if pid is gone. */
static pid_t proc_pid(pid_t pid)
{
	int fd = syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		return -1;
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	char *info = wl_read_file(path, NULL);
	close(fd);
	const char *at = info ? strstr(info, "\nPid:") : NULL;
	pid_t out = at ? (pid_t)strtol(at + 5, NULL, 10) : 0;
	free(info);
	return out > 0 ? out : -1;
}

/* The words of the NSpid line of /proc/PATH/status (the PIDs from /proc's namespace down to the process's own). */
static int nspids(const char *dir, pid_t out[8])
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%s/status", dir);
	char *status = wl_read_file(path, NULL);
	const char *at = status ? strstr(status, "\nNSpid:") : NULL;
	int n = 0;
	if (at) {
		char *p = (char *)at + 7, *end;
		for (long v; n < 8 && (v = strtol(p, &end, 10), end != p); p = end)
			out[n++] = v;
	}
	free(status);
	return n;
}

/* The PID in this namespace of the process /proc calls procpid: 0 if it is outside (as getppid() says then). */
static pid_t ns_pid(pid_t procpid)
{
	pid_t self[8], them[8];
	char dir[16];
	int level = nspids("self", self) - 1;
	snprintf(dir, sizeof(dir), "%d", procpid);
	if (level < 0 || nspids(dir, them) <= level)
		return level < 0 ? procpid : 0;
	return them[level];
}

/* pid's parent (in this namespace), -1 if pid is gone. */
static pid_t parent_of(pid_t pid)
{
	char path[64];
	pid_t p = proc_pid(pid);
	snprintf(path, sizeof(path), "/proc/%d/stat", p);
	char *stat = p > 0 ? wl_read_file(path, NULL) : NULL;
	if (!stat)
		return -1;
	pid_t ppid = 0;
	sscanf(strrchr(stat, ')') + 4, "%d", &ppid);
	free(stat);
	return ppid > 0 ? ns_pid(ppid) : 0;
}

static void record(const char *name, pid_t pid)
{
	if (nm == MEMBERS_MAX) {
		fail("more than %d processes in the tree (%s %d)", MEMBERS_MAX, name, pid);
		return;
	}
	pid_t ppid = parent_of(pid);
	m[nm++] = (struct member){ name, pid, ppid < 0 ? 0 : ppid, getpgid(pid), getsid(pid) };
}

/* A child that waits forever (the root kills it at the end). */
static void idle(void)
{
	for (;;)
		pause();
}

/* Forks and runs fn in the child; the child never returns. */
static pid_t spawn(void (*fn)(void))
{
	pid_t p = fork();
	if (p == 0) {
		fn();
		_exit(0);
	}
	return p;
}

static int sync_pipe[2];
static void ready_and_idle(void)
{
	char c = 1;
	if (write(sync_pipe[1], &c, 1) != 1)
		_exit(3);
	idle();
}

static void own_group(void)
{
	setpgid(0, 0);
	spawn(ready_and_idle); /* a member of this group */
	ready_and_idle();
}

static void group_then_exit(void)
{
	setpgid(0, 0);
	spawn(ready_and_idle); /* stays in the group after its leader is gone */
	_exit(0);
}

static void new_session(void)
{
	setsid();
	pid_t p = fork();
	if (p == 0) {
		setpgid(0, 0); /* a session leader's child in another group */
		ready_and_idle();
	}
	ready_and_idle();
}

static void setsid_after_fork(void)
{
	spawn(ready_and_idle); /* stays in the root's session (zdtm's session03) */
	if (setsid() < 0)
		_exit(4);
	ready_and_idle();
}

/* A session whose member's parent exited: the member is the root's now (zdtm's session00). */
static void session_with_orphan(void)
{
	if (setsid() < 0)
		_exit(4);
	pid_t mid = fork();
	if (mid == 0) {
		spawn(ready_and_idle);
		_exit(0);
	}
	if (waitpid(mid, NULL, 0) != mid)
		_exit(5);
	ready_and_idle();
}

/* The same, and then the session's leader exits too (zdtm's session02). */
static void session_left_behind(void)
{
	if (setsid() < 0)
		_exit(4);
	spawn(ready_and_idle);
	_exit(0);
}

static void with_grandchild(void)
{
	spawn(ready_and_idle);
	ready_and_idle();
}

static void wait_ready(int n)
{
	for (int i = 0; i < n; i++) {
		char c;
		if (read(sync_pipe[0], &c, 1) != 1)
			fail("a child did not start");
	}
}

static void descendants(pid_t pid, void (*fn)(pid_t))
{
	char path[96];
	pid_t p = proc_pid(pid);
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", p, p);
	char *list = p > 0 ? wl_read_file(path, NULL) : NULL;
	if (!list)
		return;
	for (char *t = strtok(list, " \n"); t; t = strtok(NULL, " \n")) {
		pid_t c = ns_pid(atoi(t));
		fn(c);
	}
	free(list);
}

static int nkids;
static pid_t kids[32];
static void collect(pid_t p)
{
	if (nkids == (int)(sizeof(kids) / sizeof(kids[0])))
		fail("more than %d children to collect (%d)", nkids, p);
	else
		kids[nkids++] = p;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "tree");
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	int shared = open("shared.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (write(shared, "0123456789abcdef", 16) != 16)
		fail("write shared.dat");
	lseek(shared, 5, SEEK_SET);
	if (pipe(sync_pipe))
		fail("pipe");
	pid_t same = spawn(with_grandchild);
	pid_t grp = spawn(own_group);
	pid_t orphaned = spawn(group_then_exit);
	pid_t sess = spawn(new_session);
	pid_t later = spawn(setsid_after_fork);
	pid_t orphaner = spawn(session_with_orphan);
	pid_t gone = spawn(session_left_behind);
	pid_t z_code = fork();
	if (z_code == 0)
		_exit(7);
	pid_t z_sig = fork();
	if (z_sig == 0) {
		signal(SIGUSR1, SIG_DFL);
		raise(SIGUSR1);
		_exit(1);
	}
	/* same, its grandchild, grp, its member, orphan member, sess, its child, later, its child, orphaner, its orphan, gone's orphan */
	wait_ready(12);
	int st;
	if (waitpid(gone, &st, 0) != gone)
		fail("could not reap %d", gone);
	/* The group leader that exited: reap it, so its member is ours (we are a subreaper). */
	if (waitpid(orphaned, &st, 0) != orphaned)
		fail("could not reap %d", orphaned);
	usleep(100 * 1000);
	record("root", getpid());
	record("child in the root's group", same);
	record("group leader", grp);
	record("session leader", sess);
	record("session leader after forking", later);
	record("session leader whose child's child is the root's", orphaner);
	record("zombie with code 7", z_code);
	record("zombie killed by SIGUSR1", z_sig);
	descendants(getpid(), collect);
	for (int i = 0; i < nkids; i++) {
		pid_t k = kids[i];
		if (k == same || k == grp || k == sess || k == later || k == orphaner || k == z_code || k == z_sig)
			continue;
		pid_t sid = getsid(k);
		record(sid == orphaner ? "the root's orphan in a living leader's session" : sid == gone ? "the root's orphan in a session whose leader exited"
									     : "orphaned member of a leaderless group",
		       k);
	}
	nkids = 0;
	descendants(same, collect);
	descendants(grp, collect);
	descendants(sess, collect);
	descendants(later, collect);
	descendants(orphaner, collect);
	for (int i = 0; i < nkids; i++)
		record("grandchild", kids[i]);
	printf("tree: %d processes\n", nm);
	wl_ready();
	wl_wait();
	if (wl_sabotage())
		setpgid(same, grp);

	for (int i = 0; i < nm; i++) {
		struct member now = m[i];
		now.ppid = parent_of(m[i].pid);
		if (now.ppid < 0) {
			fail("%s (%d) is gone", m[i].name, m[i].pid);
			continue;
		}
		now.pgid = getpgid(m[i].pid);
		now.sid = getsid(m[i].pid);
		if (now.ppid != m[i].ppid || now.pgid != m[i].pgid || now.sid != m[i].sid)
			fail("%s %d: parent %d group %d session %d, was %d %d %d", m[i].name, m[i].pid, now.ppid, now.pgid,
			     now.sid, m[i].ppid, m[i].pgid, m[i].sid);
	}
	/* The zombies still hold their exit statuses for us. */
	if (waitpid(z_code, &st, WNOHANG) != z_code || !WIFEXITED(st) || WEXITSTATUS(st) != 7)
		fail("zombie %d: status %#x, expected exit code 7", z_code, st);
	if (waitpid(z_sig, &st, WNOHANG) != z_sig || !WIFSIGNALED(st) || WTERMSIG(st) != SIGUSR1)
		fail("zombie %d: status %#x, expected killed by SIGUSR1", z_sig, st);
	/* One file description in every process: a seek here shows everywhere. */
	lseek(shared, 11, SEEK_SET);
	for (int i = 1; i < nm; i++) {
		if (m[i].pid == z_code || m[i].pid == z_sig)
			continue;
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", proc_pid(m[i].pid), shared);
		char *info = wl_read_file(path, NULL);
		if (!info || atoi(info + 4) != 11)
			fail("%s %d does not share the file description (pos: %s)", m[i].name, m[i].pid, info ? info + 4 : "none");
		free(info);
	}
	for (int i = 1; i < nm; i++)
		kill(m[i].pid, SIGKILL);
	while (wait(NULL) > 0 || errno == EINTR)
		;
	return wl_done();
}
