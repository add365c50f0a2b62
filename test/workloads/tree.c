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
#include <sys/wait.h>
#include <unistd.h>

struct member {
	const char *name;
	pid_t pid, ppid, pgid, sid;
};

static struct member m[16];
static int nm;

static void record(const char *name, pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	char *stat = wl_read_file(path, NULL);
	pid_t ppid = 0;
	if (stat)
		sscanf(strrchr(stat, ')') + 4, "%d", &ppid);
	m[nm++] = (struct member){ name, pid, ppid, getpgid(pid), getsid(pid) };
	free(stat);
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
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", pid, pid);
	char *list = wl_read_file(path, NULL);
	if (!list)
		return;
	for (char *t = strtok(list, " \n"); t; t = strtok(NULL, " \n")) {
		pid_t c = atoi(t);
		fn(c);
	}
	free(list);
}

static int nkids;
static pid_t kids[32];
static void collect(pid_t p)
{
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
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/stat", m[i].pid);
		char *stat = wl_read_file(path, NULL);
		if (!stat) {
			fail("%s (%d) is gone", m[i].name, m[i].pid);
			continue;
		}
		sscanf(strrchr(stat, ')') + 4, "%d", &now.ppid);
		free(stat);
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
		snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", m[i].pid, shared);
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
