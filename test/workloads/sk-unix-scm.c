/*
 * Unix sockets, the rest (like CRIU's zdtm scm0x, sk-unix-rel,
 * sk-unix-dgram-ghost): files in flight, relative and deleted names.
 * Set up before ready, never read until the check:
 *   a/b stream pair: "pipe" sent a->b with the read end of a pipe
 *     (12 bytes, seed 1, in the pipe; its read end closed here, so only
 *     the queue holds it; the write end kept at pw);
 *   c/d datagram pair: four datagrams c->d: "file" with a regular file
 *     (CWD/data, O_RDWR, at offset 3), "pair" with both ends e/f of a
 *     stream pair closed here (7 bytes, seed 2, queued e->f), "none", and
 *     "epoll" with an epoll (closed here) watching y of the datagram pair
 *     x/y for EPOLLIN with data 77;
 *   g/h seqpacket pair: g sent over h to itself ("self");
 *   i/j and k/l stream pairs: k sent over j to i ("k"), i sent over l to k
 *     ("i"), then k closed (a cycle: i's queue holds k, k's holds i);
 *   a datagram socket bound to the relative name "rel" in CWD/sub (the
 *     cwd changed for the bind and back), mode 0604, and a datagram
 *     socket connected to it as "sub/rel";
 *   a datagram socket bound to CWD/gone/dsk, 1 datagram of 9 bytes queued,
 *     a datagram socket connected to it, then the name and its directory
 *     removed; a stream listener bound to CWD/repl, its name removed and
 *     a regular file "keep" made there;
 *   peers closed: m of the stream pair m/n sent 5 bytes (seed 3) and was
 *     closed; q of the seqpacket pair o/q sent the record "rec" and was
 *     closed;
 *   a datagram socket bound to CWD/self and connected to itself, "me"
 *     queued to itself.
 * After: b gets "pipe" and a pipe whose 12 bytes are there, then what is
 * written to pw; d gets "file" with the file at offset 3 (reads "a-file"
 * from there), "pair" with two sockets, the second with its 7 bytes, which
 * talk both ways, then "none" without files; g gets "self" and a socket
 * kcmp calls g itself; i gets "k" and a socket, from which comes "i" and i
 * itself; "rel" is rel's name (getsockname), sub/rel its file with mode
 * 0604, and the connected socket reaches it; gone/dsk is the name of the
 * socket, which has its datagram, gone/ does not exist, and the connected
 * socket reaches it; the listener is named CWD/repl and CWD/repl is the
 * regular file "keep"; d's "epoll" brings an epoll that reports y readable
 * with data 77 once x sent to y; n reads its 5 bytes then end of file, o
 * its record then 0; the self-connected socket reads "me", and what it
 * sends itself.
 *
 * Sabotage: 1 takes d's first datagram; 2 removes sub/rel; 3 takes g's
 * message; 4 makes the directory gone again; 5 reads a byte from n.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#define KCMP_FILE 0
#define MAXFDS 4

static void send_fds(int sk, const char *data, const int *fds, int n)
{
	char cbuf[CMSG_SPACE(sizeof(int) * MAXFDS)] = { 0 };
	struct iovec iov = { .iov_base = (void *)data, .iov_len = strlen(data) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (n) {
		m.msg_control = cbuf;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
	}
	if (sendmsg(sk, &m, 0) != (ssize_t)strlen(data))
		fail("sendmsg %s: %s", data, strerror(errno));
}

/* Receives one message: it must be `want`, with `nfds` files (returned in fds). */
static void recv_fds(int sk, const char *want, int *fds, int nfds, const char *what)
{
	char buf[64] = { 0 }, cbuf[CMSG_SPACE(sizeof(int) * MAXFDS)] = { 0 };
	struct iovec iov = { .iov_base = buf, .iov_len = strlen(want) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	for (int n = 0; n < nfds; n++)
		fds[n] = -1;
	ssize_t got = recvmsg(sk, &m, MSG_DONTWAIT);
	if (got != (ssize_t)strlen(want) || memcmp(buf, want, strlen(want))) {
		fail("%s: received \"%.*s\" (%zd), expected \"%s\"", what, got > 0 ? (int)got : 0, buf, got, want);
		return;
	}
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	int have = c && c->cmsg_type == SCM_RIGHTS ? (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int)) : 0;
	if (have != nfds) {
		fail("%s: %d files came with \"%s\", expected %d", what, have, want, nfds);
		return;
	}
	memcpy(fds, CMSG_DATA(c), sizeof(int) * nfds);
}

static int same(int x, int y)
{
	return syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, x, y) == 0;
}

static socklen_t name(struct sockaddr_un *a, const char *path)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	snprintf(a->sun_path, sizeof(a->sun_path), "%s", path);
	return offsetof(struct sockaddr_un, sun_path) + strlen(a->sun_path) + 1;
}

static void check_name(int sk, const char *want, const char *what)
{
	struct sockaddr_un got;
	socklen_t l = sizeof(got);
	memset(&got, 0, sizeof(got));
	if (getsockname(sk, (struct sockaddr *)&got, &l) || strcmp(got.sun_path, want))
		fail("%s: name \"%s\", expected \"%s\"", what, got.sun_path, want);
}

static void reaches(int from, int to, const char *what)
{
	char c = 0;
	if (send(from, "R", 1, 0) != 1 || recv(to, &c, 1, MSG_DONTWAIT) != 1 || c != 'R')
		fail("%s: a datagram sent does not arrive (%s)", what, strerror(errno));
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "sk-unix-scm");
	char cwd[200];
	if (!getcwd(cwd, sizeof(cwd)))
		fail("getcwd: %s", strerror(errno));
	int a, b, c, d, e, f, g, h, i, j, k, l, p[2];
	wl_unix_pair(SOCK_STREAM, &a, &b);
	wl_unix_pair(SOCK_DGRAM, &c, &d);
	wl_unix_pair(SOCK_STREAM, &e, &f);
	wl_unix_pair(SOCK_SEQPACKET, &g, &h);
	wl_unix_pair(SOCK_STREAM, &i, &j);
	wl_unix_pair(SOCK_STREAM, &k, &l);
	if (pipe(p))
		fail("pipe: %s", strerror(errno));
	wl_pattern_write(p[1], 12, 1);
	send_fds(a, "pipe", &p[0], 1);
	close(p[0]);
	int pw = p[1];
	int file = open("data", O_RDWR | O_CREAT, 0600);
	if (file < 0 || write(file, "my-a-file", 9) != 9 || lseek(file, 3, SEEK_SET) != 3)
		fail("data: %s", strerror(errno));
	send_fds(c, "file", &file, 1);
	close(file);
	wl_pattern_write(e, 7, 2);
	int ef[2] = { e, f };
	send_fds(c, "pair", ef, 2);
	close(e);
	close(f);
	send_fds(c, "none", NULL, 0);
	int x, y, ep = epoll_create1(0);
	wl_unix_pair(SOCK_DGRAM, &x, &y);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 77 };
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, y, &ev))
		fail("epoll: %s", strerror(errno));
	send_fds(c, "epoll", &ep, 1);
	close(ep);
	send_fds(h, "self", &g, 1);
	send_fds(j, "k", &k, 1);
	send_fds(l, "i", &i, 1);
	close(k);

	struct sockaddr_un an;
	socklen_t al;
	int rel = socket(AF_UNIX, SOCK_DGRAM, 0), relc = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (mkdir("sub", 0755) || chdir("sub"))
		fail("sub: %s", strerror(errno));
	al = name(&an, "rel");
	if (bind(rel, (struct sockaddr *)&an, al) || chmod("rel", 0604) || chdir(cwd))
		fail("bind rel: %s", strerror(errno));
	al = name(&an, "sub/rel");
	if (connect(relc, (struct sockaddr *)&an, al))
		fail("connect to sub/rel: %s", strerror(errno));

	char gone[256], dsk[300], repl[300];
	snprintf(gone, sizeof(gone), "%s/gone", cwd);
	snprintf(dsk, sizeof(dsk), "%s/dsk", gone);
	snprintf(repl, sizeof(repl), "%s/repl", cwd);
	int ds = socket(AF_UNIX, SOCK_DGRAM, 0), dc = socket(AF_UNIX, SOCK_DGRAM, 0), ls = socket(AF_UNIX, SOCK_STREAM, 0);
	if (mkdir(gone, 0755))
		fail("mkdir gone: %s", strerror(errno));
	al = name(&an, dsk);
	if (bind(ds, (struct sockaddr *)&an, al) || connect(dc, (struct sockaddr *)&an, al) || send(dc, "ghostdata", 9, 0) != 9)
		fail("bind gone/dsk: %s", strerror(errno));
	if (unlink(dsk) || rmdir(gone))
		fail("remove gone/dsk: %s", strerror(errno));
	al = name(&an, repl);
	int kf = -1;
	if (bind(ls, (struct sockaddr *)&an, al) || listen(ls, 1) || unlink(repl) ||
	    (kf = open(repl, O_WRONLY | O_CREAT | O_EXCL, 0644)) < 0 || write(kf, "keep", 4) != 4)
		fail("repl: %s", strerror(errno));
	close(kf);

	int m, n, o, q;
	wl_unix_pair(SOCK_STREAM, &m, &n);
	wl_unix_pair(SOCK_SEQPACKET, &o, &q);
	wl_pattern_write(m, 5, 3);
	send_fds(q, "rec", NULL, 0);
	close(m);
	close(q);
	char self[300];
	snprintf(self, sizeof(self), "%s/self", cwd);
	int me = socket(AF_UNIX, SOCK_DGRAM, 0);
	al = name(&an, self);
	if (bind(me, (struct sockaddr *)&an, al) || connect(me, (struct sockaddr *)&an, al) || send(me, "me", 2, 0) != 2)
		fail("self: %s", strerror(errno));

	wl_ready();
	wl_wait();

	int fds[MAXFDS];
	char buf[64];
	switch (wl_sabotage()) {
	case 1: recv(d, buf, sizeof(buf), MSG_DONTWAIT); break;
	case 2: unlink("sub/rel"); break;
	case 3: recv(g, buf, sizeof(buf), MSG_DONTWAIT); break;
	case 4: mkdir(gone, 0755); break;
	case 5: recv(n, buf, 1, MSG_DONTWAIT); break;
	}

	/* A pipe in flight. */
	recv_fds(b, "pipe", fds, 1, "b");
	struct stat st;
	if (fds[0] >= 0) {
		if (fstat(fds[0], &st) || !S_ISFIFO(st.st_mode))
			fail("b: the file in flight is not a pipe");
		fcntl(fds[0], F_SETFL, O_NONBLOCK);
		if (write(pw, "+", 1) != 1)
			fail("the pipe's write end: %s", strerror(errno));
		char pb[13];
		ssize_t got = read(fds[0], pb, sizeof(pb));
		if (got != 13 || pb[12] != '+')
			fail("the pipe in flight: %zd bytes, expected 12 and the one written after", got);
		else {
			int q[2];
			if (pipe(q) == 0) {
				write(q[1], pb, 12);
				close(q[1]);
				wl_pattern_check(q[0], 12, 1, "the pipe in flight");
				close(q[0]);
			}
		}
	}
	/* A regular file, then a socket pair only in flight, then nothing. */
	recv_fds(d, "file", fds, 1, "d");
	if (fds[0] >= 0) {
		char fb[8] = { 0 };
		if (lseek(fds[0], 0, SEEK_CUR) != 3)
			fail("the file in flight: offset %ld, expected 3", (long)lseek(fds[0], 0, SEEK_CUR));
		if (read(fds[0], fb, 6) != 6 || strcmp(fb, "a-file"))
			fail("the file in flight reads \"%s\", expected \"a-file\"", fb);
		if ((fcntl(fds[0], F_GETFL) & O_ACCMODE) != O_RDWR)
			fail("the file in flight is not open for reading and writing");
	}
	recv_fds(d, "pair", fds, 2, "d");
	if (fds[0] >= 0 && fds[1] >= 0) {
		fcntl(fds[1], F_SETFL, O_NONBLOCK);
		wl_pattern_check(fds[1], 7, 2, "the pair in flight");
		wl_ping_pong(fds[0], fds[1], "the pair in flight");
	}
	recv_fds(d, "none", fds, 0, "d");
	recv_fds(d, "epoll", fds, 1, "d");
	if (fds[0] >= 0) {
		struct epoll_event got = { 0 };
		if (send(x, "E", 1, 0) != 1 || epoll_wait(fds[0], &got, 1, 0) != 1 || got.data.u64 != 77 || !(got.events & EPOLLIN))
			fail("the epoll in flight: no event with data 77 for y (%s)", strerror(errno));
	}
	/* A socket passed over itself. */
	recv_fds(g, "self", fds, 1, "g");
	if (fds[0] >= 0 && !same(fds[0], g))
		fail("g: the socket in flight is not g itself");
	/* A cycle. */
	recv_fds(i, "k", fds, 1, "i");
	if (fds[0] >= 0) {
		int kk = fds[0];
		recv_fds(kk, "i", fds, 1, "k (received from i)");
		if (fds[0] >= 0 && !same(fds[0], i))
			fail("k: the socket in flight is not i");
		wl_ping_pong(kk, l, "k/l");
	}
	wl_ping_pong(i, j, "i/j");
	/* A relative name. */
	check_name(rel, "rel", "rel");
	if (stat("sub/rel", &st) || !S_ISSOCK(st.st_mode) || (st.st_mode & 0777) != 0604)
		fail("sub/rel: no socket with mode 0604 there");
	reaches(relc, rel, "sub/rel");
	/* Deleted names. */
	check_name(ds, dsk, "gone/dsk");
	char gb[16];
	if (recv(ds, gb, sizeof(gb), MSG_DONTWAIT) != 9 || memcmp(gb, "ghostdata", 9))
		fail("gone/dsk: its datagram is not there");
	if (access(gone, F_OK) == 0 || errno != ENOENT)
		fail("%s exists after the restore", gone);
	reaches(dc, ds, "gone/dsk");
	check_name(ls, repl, "repl");
	char kb[8] = { 0 };
	int kr = open(repl, O_RDONLY);
	if (kr < 0 || read(kr, kb, sizeof(kb)) != 4 || strcmp(kb, "keep"))
		fail("repl: the file made over the removed name reads \"%s\", expected \"keep\"", kb);
	/* Peers closed. */
	fcntl(n, F_SETFL, O_NONBLOCK);
	wl_pattern_check(n, 5, 3, "n, whose peer was closed");
	if (read(n, buf, 1) != 0)
		fail("n: no end of file after its data");
	recv_fds(o, "rec", fds, 0, "o, whose peer was closed");
	if (recv(o, buf, sizeof(buf), MSG_DONTWAIT) != 0)
		fail("o: no end of file after its record");
	/* Connected to itself. */
	check_name(me, self, "self");
	if (recv(me, buf, sizeof(buf), MSG_DONTWAIT) != 2 || memcmp(buf, "me", 2))
		fail("self: its datagram is not there");
	reaches(me, me, "self");
	return wl_done();
}
