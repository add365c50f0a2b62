/*
 * Unix sockets (like CRIU's zdtm sockets00/sk-unix-*): socketpairs of each
 * type with data in flight, set up before ready and never read:
 *   a/b stream: 50000 bytes (seed 1) a->b, 3000 bytes (seed 2) b->a;
 *   c/d stream: 500 bytes (seed 3) c->d, then shutdown(c, SHUT_WR);
 *   e/f datagram: three datagrams of 1, 700 and 4000 bytes e->f;
 *   g/h seqpacket: two records of 10 and 2000 bytes h->g;
 *   options: SO_SNDBUF 65536 on a, SO_RCVTIMEO 3.5 s on b, SO_PASSCRED on
 *   l (nothing queued to it), O_NONBLOCK on e; an unconnected datagram socket u;
 *   a child holds j of the pair i/j (100 bytes, seed 5, queued i->j) and
 *   shares k of the pair k/l with the parent (one description in both);
 *   a stream listener bound to CWD/lsn (mode 0640, backlog 5) with one
 *   accepted connection (123 bytes, seed 6, to the server end; 7 bytes,
 *   seed 7, to the client), and a datagram socket bound to an abstract name
 *   with two datagrams (5 and 300 bytes) from a sender since closed; a
 *   connection to the listener not accepted yet; a datagram socket
 *   connected to the abstract one.
 * After: every queue gives exactly its data (datagrams and records with
 * their sizes, in order), then nothing; d gets EOF after its 500 bytes and
 * can still write to c; each pair still talks both ways; options, SO_TYPE
 * and F_GETFL are as before; kcmp says the child's k is the parent's; the
 * child, woken by SIGUSR1, reads its 100 bytes and answers 'K'; the
 * listener has its name, its file its mode, and accepts a new connection;
 * the accepted connection has its data and talks; the abstract socket has
 * its name, its two datagrams, and receives what is sent to it; the waiting
 * connection is accepted and talks; the connected datagram socket reaches
 * the abstract one.
 *
 * Other modes, each set up alone and checked after (for dumps crest
 * refuses: the process runs on): "listen", a stream socket bound to the
 * relative name "sock" and listening, with a connection not accepted yet
 * (still accepted after); "tcp", a TCP socket
 * listening on 127.0.0.1 (same port, still accepts); "scm", a pipe's read end
 * in flight in a stream socketpair (still received, still a pipe); "creds",
 * a datagram queued to a socket with SO_PASSCRED (still received);
 * "peekoff", 10 bytes queued in a stream socket with SO_PEEK_OFF 3 (still
 * 3, the 10 bytes still there).
 *
 * Sabotage: 1 reads a byte from b; 2 clears SO_PASSCRED on l; 3 takes a
 * datagram from f; 4 sends one more byte a->b.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define KCMP_FILE 0

static void dgram(int fd, size_t n)
{
	char buf[4096];
	for (size_t i = 0; i < n; i++)
		buf[i] = (char)(i * 7 + n);
	if (send(fd, buf, n, 0) != (ssize_t)n)
		fail("send a %zu-byte packet: %s", n, strerror(errno));
}

static void check_dgram(int fd, size_t n, const char *what)
{
	char buf[8192];
	ssize_t got = recv(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);
	if (got != (ssize_t)n) {
		fail("%s: a packet of %zd bytes, expected %zu (%s)", what, got, n, got < 0 ? strerror(errno) : "");
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (buf[i] != (char)(i * 7 + n)) {
			fail("%s: byte %zu of the %zu-byte packet differs", what, i, n);
			return;
		}
}

static void check_empty(int fd, const char *what)
{
	char c;
	ssize_t got = recv(fd, &c, 1, MSG_DONTWAIT);
	if (got >= 0 || errno != EAGAIN)
		fail("%s: more queued than expected (recv gives %zd)", what, got);
}

static int opt(int fd, int name)
{
	int v = -1;
	socklen_t l = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, name, &v, &l))
		fail("getsockopt %d: %s", name, strerror(errno));
	return v;
}

static volatile sig_atomic_t woken;
static void on_usr1(int s)
{
	(void)s;
	woken = 1;
}

static int child_main(int j)
{
	sigset_t none;
	sigemptyset(&none);
	while (!woken)
		sigsuspend(&none);
	int bad = 0;
	char buf[200];
	ssize_t got = recv(j, buf, sizeof(buf), MSG_DONTWAIT);
	if (got != 100) {
		printf("child: %zd bytes queued, expected 100\n", got);
		bad = 1;
	} else {
		int p[2];
		if (pipe(p) == 0) {
			write(p[1], buf, 100);
			close(p[1]);
			wl_pattern_check(p[0], 100, 5, "child's queue");
			if (wl_failures()) {
				printf("child: the 100 bytes differ\n");
				bad = 1;
			}
		}
	}
	if (send(j, "K", 1, 0) != 1)
		bad = 1;
	return bad;
}

static int single(const char *mode)
{
	int fd = -1, peer = -1;
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t inlen = sizeof(in);
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	int p[2] = { -1, -1 };
	if (!strcmp(mode, "listen")) {
		strcpy(un.sun_path, "sock");
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (bind(fd, (struct sockaddr *)&un, sizeof(un)) || listen(fd, 4))
			fail("bind and listen: %s", strerror(errno));
		peer = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(peer, (struct sockaddr *)&un, sizeof(un)))
			fail("connect: %s", strerror(errno));
	} else if (!strcmp(mode, "tcp")) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (bind(fd, (struct sockaddr *)&in, sizeof(in)) || listen(fd, 4) || getsockname(fd, (struct sockaddr *)&in, &inlen))
			fail("bind and listen: %s", strerror(errno));
	} else if (!strcmp(mode, "creds")) {
		int on = 1;
		wl_unix_pair(SOCK_DGRAM, &fd, &peer);
		setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on));
		dgram(peer, 10);
	} else if (!strcmp(mode, "peekoff")) {
		int off = 3;
		wl_unix_pair(SOCK_STREAM, &fd, &peer);
		dgram(peer, 10);
		if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off)))
			fail("SO_PEEK_OFF: %s", strerror(errno));
	} else if (!strcmp(mode, "scm")) {
		wl_unix_pair(SOCK_STREAM, &fd, &peer);
		if (pipe(p))
			fail("pipe: %s", strerror(errno));
		char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
		struct iovec iov = { .iov_base = "x", .iov_len = 1 };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &p[0], sizeof(int));
		if (sendmsg(peer, &m, 0) != 1)
			fail("sendmsg: %s", strerror(errno));
		close(p[0]);
	} else {
		fail("unknown mode %s", mode);
		return wl_done();
	}
	wl_ready();
	wl_wait();
	if (!strcmp(mode, "creds")) {
		check_dgram(fd, 10, "the datagram with credentials");
		return wl_done();
	}
	if (!strcmp(mode, "peekoff")) {
		if (opt(fd, SO_PEEK_OFF) != 3)
			fail("SO_PEEK_OFF %d, expected 3", opt(fd, SO_PEEK_OFF));
		check_dgram(fd, 10, "the stream data behind the peek offset");
		return wl_done();
	}
	if (!strcmp(mode, "scm")) {
		char cbuf[CMSG_SPACE(sizeof(int))] = { 0 }, x;
		struct iovec iov = { .iov_base = &x, .iov_len = 1 };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
		struct stat st;
		int got = -1;
		if (recvmsg(fd, &m, MSG_DONTWAIT) != 1 || !CMSG_FIRSTHDR(&m))
			fail("the fd in flight is gone");
		else
			memcpy(&got, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(int));
		if (got >= 0 && (fstat(got, &st) || !S_ISFIFO(st.st_mode)))
			fail("the fd received is not a pipe");
		return wl_done();
	}
	int c = socket(!strcmp(mode, "tcp") ? AF_INET : AF_UNIX, SOCK_STREAM, 0);
	int r = !strcmp(mode, "tcp") ? connect(c, (struct sockaddr *)&in, sizeof(in)) : connect(c, (struct sockaddr *)&un, sizeof(un));
	if (r)
		fail("connect to the listener: %s", strerror(errno));
	else if (accept(fd, NULL, NULL) < 0)
		fail("the listener does not accept: %s", strerror(errno));
	return wl_done();
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "sk-unix");
	if (argc > 2)
		return single(argv[2]);
	int a, b, c, d, e, f, g, h, i, j, k, l;
	wl_unix_pair(SOCK_STREAM, &a, &b);
	wl_unix_pair(SOCK_STREAM, &c, &d);
	wl_unix_pair(SOCK_DGRAM, &e, &f);
	wl_unix_pair(SOCK_SEQPACKET, &g, &h);
	wl_unix_pair(SOCK_STREAM, &i, &j);
	wl_unix_pair(SOCK_STREAM, &k, &l);
	int sndbuf = 65536, one = 1;
	struct timeval tmo = { 3, 500000 };
	setsockopt(a, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	setsockopt(b, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo));
	setsockopt(l, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
	fcntl(e, F_SETFL, O_NONBLOCK);
	int u = socket(AF_UNIX, SOCK_DGRAM, 0);
	struct sockaddr_un lname = { .sun_family = AF_UNIX }, aname = { .sun_family = AF_UNIX };
	if (!getcwd(lname.sun_path, sizeof(lname.sun_path) - 8))
		fail("getcwd: %s", strerror(errno));
	strcat(lname.sun_path, "/lsn");
	int lsn = socket(AF_UNIX, SOCK_STREAM, 0), cli = socket(AF_UNIX, SOCK_STREAM, 0), srv = -1;
	if (bind(lsn, (struct sockaddr *)&lname, sizeof(lname)) || chmod(lname.sun_path, 0640) || listen(lsn, 5) ||
	    connect(cli, (struct sockaddr *)&lname, sizeof(lname)) || (srv = accept(lsn, NULL, NULL)) < 0)
		fail("listener: %s", strerror(errno));
	wl_pattern_write(cli, 123, 6);
	int pend = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(pend, (struct sockaddr *)&lname, sizeof(lname)))
		fail("connect without accept: %s", strerror(errno));
	wl_pattern_write(srv, 7, 7);
	int abs = socket(AF_UNIX, SOCK_DGRAM, 0);
	socklen_t alen = offsetof(struct sockaddr_un, sun_path) + 1 +
		snprintf(aname.sun_path + 1, sizeof(aname.sun_path) - 1, "crest-sk-unix-%d", getpid());
	if (bind(abs, (struct sockaddr *)&aname, alen))
		fail("bind the abstract name: %s", strerror(errno));
	int sender = socket(AF_UNIX, SOCK_DGRAM, 0);
	char small[300] = { 0 };
	for (size_t n = 0; n < sizeof(small); n++)
		small[n] = (char)(n * 7 + 300);
	if (sendto(sender, "\x05\x0c\x13\x1a\x21", 5, 0, (struct sockaddr *)&aname, alen) != 5 ||
	    sendto(sender, small, sizeof(small), 0, (struct sockaddr *)&aname, alen) != (ssize_t)sizeof(small))
		fail("send to the abstract name: %s", strerror(errno));
	close(sender);
	int dcli = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (connect(dcli, (struct sockaddr *)&aname, alen))
		fail("connect to the abstract name: %s", strerror(errno));
	int fds[] = { a, b, c, d, e, f, g, h, i, k, l, u };
	const int nfds = sizeof(fds) / sizeof(fds[0]);
	int fl[sizeof(fds) / sizeof(fds[0])], types[sizeof(fds) / sizeof(fds[0])];
	int sndbuf_a = opt(a, SO_SNDBUF);
	wl_pattern_write(a, 50000, 1);
	wl_pattern_write(b, 3000, 2);
	wl_pattern_write(c, 500, 3);
	shutdown(c, SHUT_WR);
	dgram(e, 1);
	dgram(e, 700);
	dgram(e, 4000);
	dgram(h, 10);
	dgram(h, 2000);
	wl_pattern_write(i, 100, 5);
	signal(SIGUSR1, on_usr1);
	pid_t child = fork();
	if (child == 0) {
		signal(SIGTERM, SIG_IGN);
		close(i);
		exit(child_main(j));
	}
	close(j);
	for (int n = 0; n < nfds; n++) {
		fl[n] = fcntl(fds[n], F_GETFL);
		types[n] = opt(fds[n], SO_TYPE);
	}
	wl_ready();
	wl_wait();

	char x;
	switch (wl_sabotage()) {
	case 1: recv(b, &x, 1, 0); break;
	case 2: one = 0; setsockopt(l, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)); break;
	case 3: recv(f, &x, 1, 0); break;
	case 4: send(a, "+", 1, 0); break;
	}
	for (int n = 0; n < nfds; n++) {
		if (fcntl(fds[n], F_GETFL) != fl[n])
			fail("socket fd %d: F_GETFL %#x, expected %#x", fds[n], fcntl(fds[n], F_GETFL), fl[n]);
		if (opt(fds[n], SO_TYPE) != types[n])
			fail("socket fd %d: SO_TYPE %d, expected %d", fds[n], opt(fds[n], SO_TYPE), types[n]);
	}
	if (opt(a, SO_SNDBUF) != sndbuf_a)
		fail("a: SO_SNDBUF %d, expected %d", opt(a, SO_SNDBUF), sndbuf_a);
	struct timeval t = { 0, 0 };
	socklen_t tl = sizeof(t);
	getsockopt(b, SOL_SOCKET, SO_RCVTIMEO, &t, &tl);
	if (t.tv_sec != 3 || t.tv_usec != 500000)
		fail("b: SO_RCVTIMEO %ld.%06ld, expected 3.500000", (long)t.tv_sec, (long)t.tv_usec);
	if (opt(l, SO_PASSCRED) != 1)
		fail("l: SO_PASSCRED %d, expected 1", opt(l, SO_PASSCRED));

	fcntl(b, F_SETFL, fl[1] | O_NONBLOCK);
	fcntl(a, F_SETFL, fl[0] | O_NONBLOCK);
	wl_pattern_check(b, 50000, 1, "a->b");
	wl_pattern_check(a, 3000, 2, "b->a");
	fcntl(a, F_SETFL, fl[0]);
	fcntl(b, F_SETFL, fl[1]);
	char buf[600];
	ssize_t got = recv(d, buf, sizeof(buf), MSG_DONTWAIT);
	int p[2];
	if (got != 500)
		fail("c->d: %zd bytes, expected 500", got);
	else if (pipe(p) == 0) {
		write(p[1], buf, 500);
		close(p[1]);
		wl_pattern_check(p[0], 500, 3, "c->d");
		close(p[0]);
	}
	if ((got = recv(d, buf, 1, MSG_DONTWAIT)) != 0)
		fail("c->d: no EOF after the data (recv gives %zd)", got);
	if (send(d, "0123456789", 10, 0) != 10 || recv(c, buf, sizeof(buf), MSG_DONTWAIT) != 10)
		fail("d->c: d cannot write to c any more");
	check_dgram(f, 1, "e->f");
	check_dgram(f, 700, "e->f");
	check_dgram(f, 4000, "e->f");
	check_empty(f, "e->f");
	check_dgram(g, 10, "h->g");
	check_dgram(g, 2000, "h->g");
	check_empty(g, "h->g");
	wl_ping_pong(a, b, "a/b");
	wl_ping_pong(e, f, "e/f");
	wl_ping_pong(g, h, "g/h");
	wl_ping_pong(k, l, "k/l");
	if (syscall(SYS_kcmp, getpid(), child, KCMP_FILE, k, k) != 0)
		fail("the child's k is not the parent's description");
	kill(child, SIGUSR1);
	struct pollfd pf = { .fd = i, .events = POLLIN };
	if (poll(&pf, 1, 10000) != 1 || recv(i, &x, 1, 0) != 1 || x != 'K')
		fail("the child did not answer");
	struct sockaddr_un got_name;
	socklen_t gl = sizeof(got_name);
	struct stat st;
	if (getsockname(lsn, (struct sockaddr *)&got_name, &gl) || strcmp(got_name.sun_path, lname.sun_path))
		fail("listener: name %s, expected %s", got_name.sun_path, lname.sun_path);
	if (stat(lname.sun_path, &st) || !S_ISSOCK(st.st_mode) || (st.st_mode & 0777) != 0640)
		fail("listener's file: mode %o, expected a socket with 0640", st.st_mode);
	int acc = accept(lsn, NULL, NULL);
	if (acc < 0)
		fail("the connection waiting at the dump is not there: %s", strerror(errno));
	else
		wl_ping_pong(pend, acc, "the connection accepted after the restore");
	int cli2 = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(cli2, (struct sockaddr *)&lname, sizeof(lname)) || accept(lsn, NULL, NULL) < 0)
		fail("the listener does not take a new connection: %s", strerror(errno));
	fcntl(srv, F_SETFL, O_NONBLOCK);
	fcntl(cli, F_SETFL, O_NONBLOCK);
	wl_pattern_check(srv, 123, 6, "client->server");
	wl_pattern_check(cli, 7, 7, "server->client");
	wl_ping_pong(cli, srv, "the accepted connection");
	gl = sizeof(got_name);
	if (getsockname(abs, (struct sockaddr *)&got_name, &gl) || gl != alen || memcmp(&got_name, &aname, alen))
		fail("the abstract socket lost its name (length %u, expected %u)", gl, alen);
	check_dgram(abs, 5, "to the abstract name");
	check_dgram(abs, 300, "to the abstract name");
	check_empty(abs, "to the abstract name");
	if (send(dcli, "D", 1, 0) != 1 || recv(abs, &x, 1, MSG_DONTWAIT) != 1 || x != 'D')
		fail("the socket connected to the abstract name does not reach it: %s", strerror(errno));
	int to_abs = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (sendto(to_abs, "@", 1, 0, (struct sockaddr *)&aname, alen) != 1 || recv(abs, &x, 1, MSG_DONTWAIT) != 1)
		fail("the abstract socket does not receive: %s", strerror(errno));
	int status = -1;
	waitpid(child, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail("the child exited with status %#x", status);
	return wl_done();
}
