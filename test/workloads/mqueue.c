/*
 * POSIX message queues of the tree's own IPC namespace, started with `crest
 * run --ns pid,ipc,mnt`: the root raises the namespace's fs/mqueue/msg_max
 * and sets msg_default, mounts its mqueue file system at D/mq, and makes
 *   /crest-a  maxmsg 16 (above the kernel's default msg_max 10), msgsize
 *             300, mode 0640, owner 1000:1001, six messages of priorities
 *             0, 3, 9 and sizes 1..300 bytes; held by a child with mq_open
 *             O_RDWR|O_NONBLOCK and by the root O_WRONLY (blocking);
 *   /crest-b  maxmsg 4, msgsize 64, mode 0604, three messages; held by the
 *             root read-only through open(2) of D/mq/crest-b;
 *   /crest-c  empty, no fd, default attributes (maxmsg = msg_default 7),
 *             mode 0600, group 1002;
 *   /crest-d  full (maxmsg 1, "first"), and a process blocked in mq_send
 *             of "late" to it: after the checkpoint "first" comes out, then
 *             "late" (the dump, taking "first" out and putting it back,
 *             must not have let it in), and the sender ends.
 * After the checkpoint: the same three names in D/mq, each queue's mode,
 * owner, maxmsg, msgsize, message count and QSIZE; every message of a and b
 * in the order mq_receive gives them (highest priority first, oldest first
 * within one) with its priority and bytes; each fd's access mode and
 * O_NONBLOCK (mq_flags too); the read-only fd cannot send; every fd still
 * sends and receives.
 * With "notify": the root registers for a notification on /crest-c
 * (mq_notify, SIGEV_NONE), which crest refuses; after the refused dump it is
 * still registered (NOTIFY_PID 1) and everything above is as it was.
 * With "host" (started without namespaces, which crest refuses): only a
 * queue /crest-host-PID of crest's own IPC namespace, held open, checked
 * after the refused dump to still hold its message, and removed at the end.
 * Sabotage: 1 takes one message out of /crest-b, 2 makes /crest-c mode
 * 0666, 3 makes the child's fd of /crest-a blocking, 4 takes "first" out
 * of /crest-d (the blocked sender's "late" then gets in).
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mqueue.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

static void sysctl(const char *name, const char *value)
{
	char p[256];
	snprintf(p, sizeof(p), "/proc/sys/fs/mqueue/%s", name);
	FILE *f = fopen(p, "w");
	if (!f || fprintf(f, "%s\n", value) < 0 || fclose(f))
		wl_die(p);
}

struct m {
	unsigned prio;
	size_t len;
	char seed;
};

/* The messages of a and b as sent, and in the order they come out. */
static const struct m msgs_a[] = { { 3, 1, 'a' }, { 0, 300, 'b' }, { 9, 17, 'c' }, { 3, 250, 'd' }, { 0, 2, 'e' }, { 9, 64, 'f' } };
static const int order_a[] = { 2, 5, 0, 3, 1, 4 };
static const struct m msgs_b[] = { { 1, 64, 'x' }, { 5, 5, 'y' }, { 1, 33, 'z' } };
static const int order_b[] = { 1, 0, 2 };

static void body(const struct m *m, char *out)
{
	for (size_t i = 0; i < m->len; i++)
		out[i] = (char)(m->seed + i * 7);
}

static void send_all(mqd_t q, const struct m *ms, int n, const char *name)
{
	char buf[512];
	for (int i = 0; i < n; i++) {
		body(&ms[i], buf);
		if (mq_send(q, buf, ms[i].len, ms[i].prio))
			wl_die(name);
	}
}

/* Receives the n messages expected (ms in the order `order`) and then finds the queue empty; `rcv` receives one. */
static void check_messages(const char *name, mqd_t q, const struct m *ms, const int *order, int n, long msgsize)
{
	char buf[512], want[512];
	struct timespec past = { 0, 0 };
	for (int i = 0; i < n; i++) {
		const struct m *m = &ms[order[i]];
		unsigned prio = 0;
		ssize_t got = mq_timedreceive(q, buf, msgsize, &prio, &past);
		if (got < 0) {
			fail("%s: message %d (priority %u, %zu bytes) missing: %s", name, i, m->prio, m->len, strerror(errno));
			return;
		}
		body(m, want);
		if (prio != m->prio || (size_t)got != m->len || memcmp(buf, want, m->len))
			fail("%s: message %d is priority %u, %zd bytes (hash %llx); expected priority %u, %zu bytes (hash %llx)", name, i, prio, got,
			     (unsigned long long)wl_hash(buf, got), m->prio, m->len, (unsigned long long)wl_hash(want, m->len));
	}
	if (mq_timedreceive(q, buf, msgsize, NULL, &past) >= 0)
		fail("%s: a message more than the %d expected", name, n);
}

static void check_attr(const char *name, mqd_t q, long flags, long maxmsg, long msgsize, long curmsgs)
{
	struct mq_attr a;
	if (mq_getattr(q, &a)) {
		fail("%s: mq_getattr: %s", name, strerror(errno));
		return;
	}
	if (a.mq_flags != flags || a.mq_maxmsg != maxmsg || a.mq_msgsize != msgsize || a.mq_curmsgs != curmsgs)
		fail("%s: flags %#lx maxmsg %ld msgsize %ld curmsgs %ld; expected %#lx %ld %ld %ld", name, a.mq_flags, a.mq_maxmsg, a.mq_msgsize,
		     a.mq_curmsgs, flags, maxmsg, msgsize, curmsgs);
}

static void check_fl(const char *name, int fd, int want)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (fl & (O_ACCMODE | O_NONBLOCK)) != want)
		fail("%s: status flags %#x; expected access mode and O_NONBLOCK %#x", name, fl < 0 ? fl : fl & (O_ACCMODE | O_NONBLOCK), want);
}

static void check_stat(const char *rel, mode_t mode, uid_t uid, gid_t gid)
{
	struct stat st;
	if (stat(wl_path(rel), &st)) {
		fail("%s: %s", rel, strerror(errno));
		return;
	}
	if ((st.st_mode & 07777) != mode || st.st_uid != uid || st.st_gid != gid)
		fail("%s: mode %o owner %u:%u; expected %o %u:%u", rel, st.st_mode & 07777, st.st_uid, st.st_gid, mode, uid, gid);
}

/* "QSIZE:N ..." of a queue's file. */
static long qsize(const char *rel)
{
	char text[256];
	long n = -1;
	if (wl_read_into(wl_path(rel), text, sizeof(text)) < 0 || sscanf(text, "QSIZE:%ld", &n) != 1)
		return -1;
	return n;
}

/* Sends one message on wq and receives it back on rq. */
static void round_trip(const char *name, mqd_t wq, mqd_t rq, long msgsize)
{
	char buf[512];
	unsigned prio = 0;
	struct timespec past = { 0, 0 };
	if (mq_send(wq, "still works", 11, 4)) {
		fail("%s: send after restore: %s", name, strerror(errno));
		return;
	}
	ssize_t n = mq_timedreceive(rq, buf, msgsize, &prio, &past);
	if (n != 11 || prio != 4 || memcmp(buf, "still works", 11))
		fail("%s: received %zd bytes, priority %u after restore (%s)", name, n, prio, n < 0 ? strerror(errno) : "");
}

int main(int argc, char **argv)
{
	char status_child[4096];
	wl_init(argc, argv, "mqueue");
	snprintf(status_child, sizeof(status_child), "%s.child", argv[1]);
	if (!getcwd(wl_dir, sizeof(wl_dir)))
		wl_die("getcwd");
	if (argc > 2 && !strcmp(argv[2], "host")) {
		char name[64], buf[64];
		unsigned prio = 0;
		struct timespec past = { 0, 0 };
		snprintf(name, sizeof(name), "/crest-host-%d", getpid());
		struct mq_attr ah = { .mq_maxmsg = 2, .mq_msgsize = 16 };
		mqd_t q = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &ah);
		if (q < 0 || mq_send(q, "host", 4, 2))
			wl_die("host queue");
		wl_ready();
		wl_wait();
		if (mq_timedreceive(q, buf, sizeof(buf), &prio, &past) != 4 || prio != 2 || memcmp(buf, "host", 4))
			fail("%s: its message is gone", name);
		mq_unlink(name);
		return wl_done();
	}
	if (getpid() != 1)
		fail("not PID 1 of its own namespace (pid %d): start it with crest run --ns pid,ipc,mnt", getpid());
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		wl_die("make / private");
	sysctl("msg_max", "32");
	sysctl("msg_default", "7");
	if (mkdir(wl_path("mq"), 0755) || mount("mqueue", wl_path("mq"), "mqueue", 0, NULL))
		wl_die("mount mqueue");

	struct mq_attr aa = { .mq_maxmsg = 16, .mq_msgsize = 300 }, ab = { .mq_maxmsg = 4, .mq_msgsize = 64 };
	umask(0);
	mqd_t qa = mq_open("/crest-a", O_RDWR | O_CREAT | O_EXCL, 0640, &aa);
	mqd_t qb = mq_open("/crest-b", O_WRONLY | O_CREAT | O_EXCL, 0604, &ab);
	mqd_t qc = mq_open("/crest-c", O_RDONLY | O_CREAT | O_EXCL, 0600, NULL);
	if (qa < 0 || qb < 0 || qc < 0)
		wl_die("mq_open");
	if (fchown(qa, 1000, 1001) || fchown(qc, 0, 1002))
		wl_die("fchown");
	send_all(qa, msgs_a, 6, "send to /crest-a");
	send_all(qb, msgs_b, 3, "send to /crest-b");
	mq_close(qa);
	mq_close(qb);
	mq_close(qc);

	/* /crest-d full (maxmsg 1), and a process blocked sending to it: the dump must not let its message in. */
	struct mq_attr ad = { .mq_maxmsg = 1, .mq_msgsize = 16 };
	mqd_t qd = mq_open("/crest-d", O_WRONLY | O_CREAT | O_EXCL, 0600, &ad);
	if (qd < 0 || mq_send(qd, "first", 5, 0))
		wl_die("/crest-d");
	pid_t sender = fork();
	if (sender == 0) {
		sigset_t term;
		sigemptyset(&term);
		sigaddset(&term, SIGTERM);
		sigprocmask(SIG_BLOCK, &term, NULL);
		/* Blocks (the queue is full) until the root takes "first" out after the checkpoint. */
		_exit(mq_send(qd, "late", 4, 1) ? 3 : 0);
	}
	mq_close(qd);
	for (int t = 0; t < 2000; t++) {
		char p[64], sc[64] = "";
		snprintf(p, sizeof(p), "/proc/%d/syscall", sender);
		if (wl_read_into(p, sc, sizeof(sc)) > 0 && !strncmp(sc, "242 ", 4))
			break;
		usleep(1000);
	}

	pid_t child = fork();
	if (child == 0) {
		char *cargv[] = { argv[0], status_child, NULL };
		wl_init(2, cargv, "mqueue-child");
		mqd_t q = mq_open("/crest-a", O_RDWR | O_NONBLOCK);
		if (q < 0)
			wl_die("child mq_open");
		wl_ready();
		wl_wait();
		if (wl_sabotage() == 3)
			fcntl(q, F_SETFL, 0);
		check_fl("the child's fd of /crest-a", q, O_RDWR | O_NONBLOCK);
		check_attr("/crest-a through the child's fd", q, O_NONBLOCK, 16, 300, 6);
		char buf[512];
		check_messages("/crest-a", q, msgs_a, order_a, 6, 300);
		/* Only on a non-blocking fd (a blocking one, already failed above, would wait forever). */
		if ((fcntl(q, F_GETFL) & O_NONBLOCK) && (mq_receive(q, buf, 300, NULL) >= 0 || errno != EAGAIN))
			fail("the child's fd of /crest-a: a receive on the empty queue did not say EAGAIN (%s)", strerror(errno));
		round_trip("the child's fd of /crest-a", q, q, 300);
		_exit(wl_done());
	}
	for (int t = 0; t < 2000 && !wl_read_file(status_child, NULL); t++)
		usleep(1000);

	mqd_t wa = mq_open("/crest-a", O_WRONLY);
	int rb = open(wl_path("mq/crest-b"), O_RDONLY);
	if (wa < 0 || rb < 0)
		wl_die("open the root's fds");
	int notify = argc > 2 && !strcmp(argv[2], "notify");
	if (notify) {
		struct sigevent ev = { .sigev_notify = SIGEV_NONE };
		mqd_t n = mq_open("/crest-c", O_RDONLY);
		if (n < 0 || mq_notify(n, &ev))
			wl_die("mq_notify");
		/* Kept open: closing it would remove the registration. */
	}
	long qsize_a = qsize("mq/crest-a"), qsize_b = qsize("mq/crest-b");
	printf("mqueue: child %d, fds %d %d, QSIZE %ld %ld\n", child, wa, rb, qsize_a, qsize_b);
	wl_ready();
	wl_wait();
	char buf[512];
	if (wl_sabotage() == 1)
		mq_receive(rb, buf, 64, NULL);
	if (wl_sabotage() == 2)
		chmod(wl_path("mq/crest-c"), 0666);
	if (wl_sabotage() == 4) {
		mqd_t sd = mq_open("/crest-d", O_RDONLY | O_NONBLOCK);
		mq_receive(sd, buf, 16, NULL);
		mq_close(sd);
		usleep(100000); /* the sender's "late" gets in */
	}

	/* The file system: names, modes, owners, QSIZE. */
	struct dirent **list;
	char names[256] = "";
	int nn = scandir(wl_path("mq"), &list, NULL, alphasort);
	for (int i = 0; i < nn; i++)
		if (list[i]->d_name[0] != '.' && strlen(names) + strlen(list[i]->d_name) + 2 < sizeof(names))
			strcat(strcat(names, list[i]->d_name), " ");
	if (strcmp(names, "crest-a crest-b crest-c crest-d "))
		fail("the queues in mq are \"%s\"; expected crest-a crest-b crest-c crest-d", names);
	check_stat("mq/crest-a", 0640, 1000, 1001);
	check_stat("mq/crest-b", 0604, 0, 0);
	check_stat("mq/crest-c", 0600, 0, 1002);
	if (qsize("mq/crest-a") != qsize_a || qsize("mq/crest-b") != qsize_b)
		fail("QSIZE of a, b: %ld %ld; expected %ld %ld", qsize("mq/crest-a"), qsize("mq/crest-b"), qsize_a, qsize_b);
	mqd_t c = mq_open("/crest-c", O_RDONLY | O_NONBLOCK);
	if (c < 0)
		fail("/crest-c: %s", strerror(errno));
	else
		check_attr("/crest-c", c, O_NONBLOCK, 7, 8192, 0);

	if (notify) {
		char text[256];
		int pid = 0;
		if (wl_read_into(wl_path("mq/crest-c"), text, sizeof(text)) < 0 || !strstr(text, "NOTIFY_PID:") || sscanf(strstr(text, "NOTIFY_PID:"), "NOTIFY_PID:%d", &pid) != 1 || pid != 1)
			fail("/crest-c: the notification of process 1 is gone (NOTIFY_PID %d)", pid);
	}

	/* The root's fds, then b's messages. */
	check_fl("the root's fd of /crest-a", wa, O_WRONLY);
	check_attr("/crest-a through the root's fd", wa, 0, 16, 300, 6);
	check_fl("the root's fd of /crest-b (opened through D/mq)", rb, O_RDONLY);
	check_attr("/crest-b through the root's fd", rb, 0, 4, 64, 3);
	if (mq_send(rb, "x", 1, 0) == 0 || errno != EBADF)
		fail("the read-only fd of /crest-b could send (or not EBADF: %s)", strerror(errno));
	check_messages("/crest-b", rb, msgs_b, order_b, 3, 64);
	mqd_t wb = mq_open("/crest-b", O_WRONLY | O_NONBLOCK);
	if (wb < 0)
		fail("/crest-b: open for writing: %s", strerror(errno));
	else
		round_trip("/crest-b, received on the root's read-only fd", wb, rb, 64);

	/* The child checks a's messages and its fd. */
	kill(child, SIGTERM);
	int st;
	if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st)) {
		char *why = wl_read_file(status_child, NULL);
		fail("child: %s", why ? why : "no report");
	}
	/* /crest-d: still only "first"; taking it out lets the blocked sender's "late" in. */
	mqd_t rd = mq_open("/crest-d", O_RDONLY);
	if (rd < 0) {
		fail("/crest-d: %s", strerror(errno));
	} else {
		check_attr("/crest-d", rd, 0, 1, 16, 1);
		unsigned prio = 9;
		struct timespec past = { 0, 0 }, soon;
		ssize_t n = mq_timedreceive(rd, buf, 16, &prio, &past);
		if (n != 5 || prio != 0 || memcmp(buf, "first", 5))
			fail("/crest-d: the first message is %zd bytes, priority %u; expected 'first', 0", n, prio);
		clock_gettime(CLOCK_REALTIME, &soon);
		soon.tv_sec += 10;
		n = mq_timedreceive(rd, buf, 16, &prio, &soon);
		if (n != 4 || prio != 1 || memcmp(buf, "late", 4))
			fail("/crest-d: the blocked sender's message is %zd bytes, priority %u (%s); expected 'late', 1", n, prio, n < 0 ? strerror(errno) : "");
	}
	int sst;
	if (waitpid(sender, &sst, 0) != sender || !WIFEXITED(sst) || WEXITSTATUS(sst))
		fail("the blocked sender ended with status %#x", sst);
	mqd_t ra = mq_open("/crest-a", O_RDONLY | O_NONBLOCK);
	if (ra < 0)
		fail("/crest-a: open for reading: %s", strerror(errno));
	else
		round_trip("the root's write-only fd of /crest-a", wa, ra, 300);
	return wl_done();
}
