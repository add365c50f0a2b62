/*
 * A task of the tree in a network namespace of its own (nested: not the
 * root's). The root forks:
 *   - "inner": unshare(CLONE_NEWNET), loopback up, an address 10.213.0.7 on
 *     alias lo:7, a TCP listener on it, an abstract unix listener
 *     "\0crest-nested-ROOTPID", a unix socketpair with bytes queued; and a
 *     child of its own ("inner-child"), born in that namespace;
 *   - "outer": a child that stays in the root's namespace.
 * After SIGTERM the root tells inner to check (over a pipe) and collects
 * its failures; it checks itself that outer is in its own namespace and
 * that the abstract name is not reachable from it (it lives in inner's).
 * Inner checks: its namespace is not the root's, inner-child shares it, lo
 * is up and lo:7 has 10.213.0.7, the listener belongs to its namespace
 * (SIOCGSKNS) and accepts a connection with data both ways, the abstract
 * listener accepts a connection made from its namespace, the socketpair
 * gives its bytes. Children tell their namespace's inode over pipes (the
 * workload may run in a PID namespace under the host's /proc).
 *
 * Inner also keeps a TCP socket it made before the unshare, which must
 * still be in the root's namespace.
 *
 * Sabotage: 1 inner takes lo down before checking; 2 inner moves to a new
 * namespace before checking; 3 the root binds the abstract name in its own
 * namespace, so its connect is answered; 4 inner puts its listener (of its
 * own namespace) in place of the socket made before the unshare.
 *
 * With argv[2] "tcp", inner also holds an established TCP connection to its
 * listener with 4 bytes unread each way, read and extended after restore.
 * With argv[2] "orphan", inner also keeps a socket of a namespace it left
 * for another, which no task is in: crest refuses that by name.
 *
 * With argv[2] "veth", the caller has put a veth pair between the two
 * namespaces after start: "vin" in inner's with 10.217.0.2/24, its peer in
 * the root's, where 10.217.0.1 is (on the peer or a bridge it is a port
 * of). After restore the root listens on 10.217.0.1 and tells inner the
 * port; inner checks vin is up with its address and connects over the pair
 * with a byte, which the root then accepts and reads.
 *
 * Always: inner's namespace is owned by inner's user namespace (NS_GET_USERNS),
 * as the kernel makes it (crest's own namespace without a user namespace of
 * the tree's own, the tree's with one).
 *
 * Sabotage 5 (mode veth): inner takes vin down before checking.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SIOCGSKNS
#define SIOCGSKNS 0x894C
#endif
#ifndef NS_GET_USERNS
#define NS_GET_USERNS _IO(0xb7, 0x1)
#endif

#define ADDR "10.213.0.7"
#define QUEUED "hello-nested"
#define VETH_IN "vin"
#define VETH_ADDR "10.217.0.2"
#define VETH_PEER_ADDR "10.217.0.1"

static int go[2], res[2], setup[2], ask_out[2], ans_out[2], ask_kid[2], ans_kid[2], vport[2];
static int orphan, tcp, veth;

/* The caller's own network namespace (its /proc/self: the workload may run in a PID namespace under the host's /proc). */
static ino_t ns_ino(void)
{
	struct stat st;
	return stat("/proc/self/ns/net", &st) ? 0 : st.st_ino;
}

/* A child that answers, once asked (a byte on ask), with its namespace's inode (on ans); then idles. */
static void answer_and_idle(int ask, int ans)
{
	char b;
	ssize_t n;
	do
		n = read(ask, &b, 1);
	while (n < 0 && errno == EINTR);
	ino_t mine = ns_ino();
	if (n == 1 && write(ans, &mine, sizeof(mine)) != sizeof(mine))
		_exit(3);
	for (;;)
		pause();
}

/* Asks such a child for its namespace's inode; 0 if it does not answer. */
static ino_t ask(int *askp, int *ansp)
{
	ino_t ino = 0;
	ssize_t n;
	if (write(askp[1], "?", 1) != 1)
		return 0;
	do
		n = read(ansp[0], &ino, sizeof(ino));
	while (n < 0 && errno == EINTR);
	return n == sizeof(ino) ? ino : 0;
}

static socklen_t abstract_addr(struct sockaddr_un *a, pid_t root)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	int n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "crest-nested-%d", root);
	return offsetof(struct sockaddr_un, sun_path) + 1 + n;
}

/* inner's failures go to the root, one line each. */
static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(res[1], line, n) < 0)
		_exit(3);
}

static int ifreq_ioctl(int fd, unsigned long req, const char *name, struct ifreq *ifr)
{
	memset(ifr->ifr_name, 0, sizeof(ifr->ifr_name));
	strncpy(ifr->ifr_name, name, IFNAMSIZ - 1);
	return ioctl(fd, req, ifr);
}

/* inner's namespace belongs to the user namespace inner is in. */
static void check_owner(void)
{
	struct stat user, owner;
	int net = open("/proc/self/ns/net", O_RDONLY);
	int own = net < 0 ? -1 : ioctl(net, NS_GET_USERNS);
	if (own < 0 || fstat(own, &owner) || stat("/proc/self/ns/user", &user))
		report("inner: the owner of its network namespace (NS_GET_USERNS): %s", strerror(errno));
	else if (owner.st_ino != user.st_ino)
		report("inner: its network namespace is owned by user:[%lu], expected its own user namespace user:[%lu]", (unsigned long)owner.st_ino,
		       (unsigned long)user.st_ino);
	if (own >= 0)
		close(own);
	if (net >= 0)
		close(net);
}

/* Mode veth: vin up with its address, and a connection over it to the root's listener (port from the root) with a byte. */
static void check_veth(int ctl)
{
	struct ifreq ifr;
	unsigned short port = 0;
	ssize_t n;
	do
		n = read(vport[0], &port, sizeof(port));
	while (n < 0 && errno == EINTR);
	if (wl_sabotage() == 5 && !ifreq_ioctl(ctl, SIOCGIFFLAGS, VETH_IN, &ifr)) {
		ifr.ifr_flags &= ~IFF_UP;
		ifreq_ioctl(ctl, SIOCSIFFLAGS, VETH_IN, &ifr);
	}
	if (ifreq_ioctl(ctl, SIOCGIFFLAGS, VETH_IN, &ifr))
		report("inner: %s: SIOCGIFFLAGS: %s", VETH_IN, strerror(errno));
	else if (!(ifr.ifr_flags & IFF_UP))
		report("inner: %s is down (flags %#x), expected up", VETH_IN, ifr.ifr_flags);
	if (ifreq_ioctl(ctl, SIOCGIFADDR, VETH_IN, &ifr))
		report("inner: %s has no address: %s", VETH_IN, strerror(errno));
	else {
		char got[INET_ADDRSTRLEN] = "?";
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr, got, sizeof(got));
		if (strcmp(got, VETH_ADDR))
			report("inner: %s has %s, expected %s", VETH_IN, got, VETH_ADDR);
	}
	if (n != sizeof(port) || !port) {
		report("inner: the root has no listener on %s to connect to over the veth pair", VETH_PEER_ADDR);
		return;
	}
	struct sockaddr_in pa = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, VETH_PEER_ADDR, &pa.sin_addr);
	int c = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tmo = { .tv_sec = 2 };
	setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof(tmo));
	if (connect(c, (struct sockaddr *)&pa, sizeof(pa)))
		report("inner: connect over the veth pair to %s:%d: %s", VETH_PEER_ADDR, port, strerror(errno));
	else if (write(c, "v", 1) != 1)
		report("inner: write over the veth pair: %s", strerror(errno));
	/* Left open: the root reads the byte after inner has exited. */
}

static void inner_child(void)
{
	/* The root reads inner's report to its end: only inner holds the pipe. */
	close(res[1]);
	close(go[0]);
	close(setup[1]);
	answer_and_idle(ask_kid[0], ans_kid[1]);
}

static void inner(pid_t root)
{
	ino_t root_ns = ns_ino();
	if (pipe(ask_kid) || pipe(ans_kid))
		_exit(2);
	/* A socket made before the unshare: it stays in the root's namespace. */
	int early = socket(AF_INET, SOCK_STREAM, 0);
	if (early < 0)
		_exit(2);
	/* Mode "orphan": a socket of a namespace no task stays in (made in one, then the task moves on to another). */
	if (orphan && (unshare(CLONE_NEWNET) || socket(AF_INET, SOCK_STREAM, 0) < 0))
		_exit(2);
	if (unshare(CLONE_NEWNET)) {
		perror("unshare(CLONE_NEWNET)");
		_exit(2);
	}
	int ctl = socket(AF_INET, SOCK_DGRAM, 0);
	struct ifreq ifr;
	if (ctl < 0 || ifreq_ioctl(ctl, SIOCGIFFLAGS, "lo", &ifr)) {
		perror("lo flags");
		_exit(2);
	}
	ifr.ifr_flags |= IFF_UP;
	if (ifreq_ioctl(ctl, SIOCSIFFLAGS, "lo", &ifr)) {
		perror("lo up");
		_exit(2);
	}
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	memset(&ifr.ifr_addr, 0, sizeof(ifr.ifr_addr));
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, ADDR, &sin->sin_addr);
	if (ifreq_ioctl(ctl, SIOCSIFADDR, "lo:7", &ifr)) {
		perror("lo:7 address");
		_exit(2);
	}

	int lis = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in la = { .sin_family = AF_INET };
	inet_pton(AF_INET, ADDR, &la.sin_addr);
	socklen_t len = sizeof(la);
	if (lis < 0 || bind(lis, (struct sockaddr *)&la, sizeof(la)) || listen(lis, 4) || getsockname(lis, (struct sockaddr *)&la, &len)) {
		perror("tcp listener");
		_exit(2);
	}

	/* Mode "tcp": an established connection inside the namespace, with bytes in flight both ways (needs --tcp-established). */
	int est_c = -1, est_a = -1;
	if (tcp) {
		est_c = socket(AF_INET, SOCK_STREAM, 0);
		if (est_c < 0 || connect(est_c, (struct sockaddr *)&la, sizeof(la)) || (est_a = accept(lis, NULL, NULL)) < 0 ||
		    write(est_c, "ping", 4) != 4 || write(est_a, "pong", 4) != 4) {
			perror("tcp connection");
			_exit(2);
		}
	}

	struct sockaddr_un ua;
	socklen_t ualen = abstract_addr(&ua, root);
	int ulis = socket(AF_UNIX, SOCK_STREAM, 0);
	if (ulis < 0 || bind(ulis, (struct sockaddr *)&ua, ualen) || listen(ulis, 4)) {
		perror("abstract unix listener");
		_exit(2);
	}

	int pair[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) || write(pair[0], QUEUED, strlen(QUEUED)) != (ssize_t)strlen(QUEUED)) {
		perror("socketpair");
		_exit(2);
	}

	pid_t kid = fork();
	if (kid == 0)
		inner_child();
	if (kid < 0 || write(setup[1], &kid, sizeof(kid)) != sizeof(kid))
		_exit(2);

	/* Wait for the root's word (it sends its own namespace's inode). */
	ino_t now_root;
	ssize_t n;
	do
		n = read(go[0], &now_root, sizeof(now_root));
	while (n < 0 && errno == EINTR);
	if (n != sizeof(now_root))
		_exit(2);

	if (wl_sabotage() == 1) {
		ifreq_ioctl(ctl, SIOCGIFFLAGS, "lo", &ifr);
		ifr.ifr_flags &= ~IFF_UP;
		ifreq_ioctl(ctl, SIOCSIFFLAGS, "lo", &ifr);
	}
	if (wl_sabotage() == 2)
		unshare(CLONE_NEWNET);

	ino_t mine = ns_ino(), kid_ns = ask(ask_kid, ans_kid);
	if (kid_ns != mine)
		report("inner-child: net:[%lu], expected inner's net:[%lu]", (unsigned long)kid_ns, (unsigned long)mine);
	if (mine == now_root || mine == root_ns)
		report("inner: network namespace net:[%lu] is the root's (net:[%lu], at start net:[%lu])", (unsigned long)mine, (unsigned long)now_root,
		       (unsigned long)root_ns);

	struct stat st;
	int ctl2 = socket(AF_INET, SOCK_DGRAM, 0);
	if (ifreq_ioctl(ctl2, SIOCGIFFLAGS, "lo", &ifr))
		report("inner: lo: SIOCGIFFLAGS: %s", strerror(errno));
	else if (!(ifr.ifr_flags & IFF_UP))
		report("inner: lo is down (flags %#x), expected up", ifr.ifr_flags);
	if (ifreq_ioctl(ctl2, SIOCGIFADDR, "lo:7", &ifr))
		report("inner: lo:7 has no address: %s", strerror(errno));
	else {
		char got[INET_ADDRSTRLEN] = "?";
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr, got, sizeof(got));
		if (strcmp(got, ADDR))
			report("inner: lo:7 has %s, expected %s", got, ADDR);
	}

	check_owner();
	if (veth)
		check_veth(ctl2);

	if (wl_sabotage() == 4)
		dup2(lis, early);
	int early_ns = ioctl(early, SIOCGSKNS);
	if (early_ns < 0 || fstat(early_ns, &st))
		report("inner: SIOCGSKNS on the socket made before the unshare: %s", strerror(errno));
	else if (st.st_ino != now_root)
		report("inner: the socket made before the unshare is in net:[%lu], expected the root's net:[%lu]", (unsigned long)st.st_ino, (unsigned long)now_root);

	int skns = ioctl(lis, SIOCGSKNS);
	if (skns < 0 || fstat(skns, &st))
		report("inner: SIOCGSKNS on the TCP listener: %s", strerror(errno));
	else if (st.st_ino != mine)
		report("inner: the TCP listener is in net:[%lu], the task in net:[%lu]", (unsigned long)st.st_ino, (unsigned long)mine);

	int c = socket(AF_INET, SOCK_STREAM, 0);
	/* A broken namespace may leave the SYN unanswered: the connect gives up after 2 s. */
	struct timeval tmo = { .tv_sec = 2 };
	setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof(tmo));
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo));
	if (connect(c, (struct sockaddr *)&la, sizeof(la)))
		report("inner: connect to the TCP listener %s:%d: %s", ADDR, ntohs(la.sin_port), strerror(errno));
	else {
		int a = accept(lis, NULL, NULL);
		char b = 0;
		if (a < 0 || write(c, "x", 1) != 1 || read(a, &b, 1) != 1 || b != 'x' || write(a, "y", 1) != 1 || read(c, &b, 1) != 1 || b != 'y')
			report("inner: data over the accepted TCP connection: %s", strerror(errno));
	}

	int uc = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(uc, (struct sockaddr *)&ua, ualen))
		report("inner: connect to the abstract listener @%s from its namespace: %s", ua.sun_path + 1, strerror(errno));
	else if (accept(ulis, NULL, NULL) < 0)
		report("inner: accept on the abstract listener: %s", strerror(errno));

	if (tcp) {
		char b4[5] = "";
		struct timeval t2 = { .tv_sec = 2 };
		setsockopt(est_a, SOL_SOCKET, SO_RCVTIMEO, &t2, sizeof(t2));
		setsockopt(est_c, SOL_SOCKET, SO_RCVTIMEO, &t2, sizeof(t2));
		if (read(est_a, b4, 4) != 4 || strcmp(b4, "ping"))
			report("inner: the established connection's accepted end read \"%s\", expected \"ping\"", b4);
		memset(b4, 0, sizeof(b4));
		if (read(est_c, b4, 4) != 4 || strcmp(b4, "pong"))
			report("inner: the established connection's connecting end read \"%s\", expected \"pong\"", b4);
		memset(b4, 0, sizeof(b4));
		if (write(est_c, "more", 4) != 4 || read(est_a, b4, 4) != 4 || strcmp(b4, "more"))
			report("inner: the established connection carries no new data after the restore (%s)", strerror(errno));
	}

	char buf[64] = "";
	fcntl(pair[1], F_SETFL, O_NONBLOCK);
	n = read(pair[1], buf, sizeof(buf) - 1);
	if (n != (ssize_t)strlen(QUEUED) || memcmp(buf, QUEUED, n))
		report("inner: the socketpair gave %zd bytes \"%s\", expected \"%s\"", n, n > 0 ? buf : "", QUEUED);
	_exit(0);
}

static void outer(void)
{
	close(go[0]);
	close(go[1]);
	close(res[0]);
	close(res[1]);
	close(setup[0]);
	close(setup[1]);
	answer_and_idle(ask_out[0], ans_out[1]);
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "netns-nested");
	pid_t root = getpid();
	orphan = argc > 2 && !strcmp(argv[2], "orphan");
	tcp = argc > 2 && !strcmp(argv[2], "tcp");
	veth = argc > 2 && !strcmp(argv[2], "veth");
	if (pipe(go) || pipe(res) || pipe(setup) || pipe(ask_out) || pipe(ans_out) || pipe(vport))
		return 2;
	pid_t in = fork();
	if (in == 0) {
		close(go[1]);
		close(res[0]);
		close(setup[0]);
		inner(root);
	}
	pid_t out = fork();
	if (out == 0)
		outer();
	close(go[0]);
	close(res[1]);
	close(setup[1]);
	pid_t in_child;
	if (in < 0 || out < 0 || read(setup[0], &in_child, sizeof(in_child)) != sizeof(in_child)) {
		fprintf(stderr, "setup failed\n");
		return 2;
	}
	printf("inner %d (child %d), outer %d\n", in, in_child, out);
	wl_ready();
	wl_wait();

	ino_t mine = ns_ino(), out_ns = ask(ask_out, ans_out);
	if (out_ns != mine)
		fail("outer %d: net:[%lu], expected the root's net:[%lu]", out, (unsigned long)out_ns, (unsigned long)mine);

	struct sockaddr_un ua;
	socklen_t ualen = abstract_addr(&ua, root);
	if (wl_sabotage() == 3) {
		int s = socket(AF_UNIX, SOCK_STREAM, 0);
		if (bind(s, (struct sockaddr *)&ua, ualen) || listen(s, 1))
			perror("sabotage 3");
	}
	int uc = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(uc, (struct sockaddr *)&ua, ualen) == 0)
		fail("root: the abstract name @%s answers in the root's namespace, expected it only in inner's", ua.sun_path + 1);
	else if (errno != ECONNREFUSED)
		fail("root: connect to @%s: %s, expected ECONNREFUSED", ua.sun_path + 1, strerror(errno));

	int vlis = -1;
	if (veth) {
		struct sockaddr_in va = { .sin_family = AF_INET };
		socklen_t valen = sizeof(va);
		unsigned short port = 0;
		inet_pton(AF_INET, VETH_PEER_ADDR, &va.sin_addr);
		vlis = socket(AF_INET, SOCK_STREAM, 0);
		if (vlis < 0 || bind(vlis, (struct sockaddr *)&va, sizeof(va)) || listen(vlis, 4) || getsockname(vlis, (struct sockaddr *)&va, &valen))
			fail("root: listen on %s (the address across the veth pair from inner): %s", VETH_PEER_ADDR, strerror(errno));
		else
			port = ntohs(va.sin_port);
		if (write(vport[1], &port, sizeof(port)) != sizeof(port))
			fail("root: cannot tell inner the port: %s", strerror(errno));
	}

	if (write(go[1], &mine, sizeof(mine)) != sizeof(mine))
		fail("root: cannot tell inner to check: %s", strerror(errno));
	close(go[1]);
	char lines[4096];
	size_t got = 0;
	ssize_t n;
	while (got < sizeof(lines) - 1 && ((n = read(res[0], lines + got, sizeof(lines) - 1 - got)) > 0 || (n < 0 && errno == EINTR)))
		if (n > 0)
			got += n;
	lines[got] = 0;
	for (char *l = strtok(lines, "\n"); l; l = strtok(NULL, "\n"))
		fail("%s", l);
	int status = 0;
	if (waitpid(in, &status, 0) != in || !WIFEXITED(status) || WEXITSTATUS(status))
		fail("inner %d: ended with status %#x, expected exit 0", in, status);
	if (vlis >= 0) {
		/* inner's connection is queued, its byte with it (or nothing came over the pair). */
		fcntl(vlis, F_SETFL, O_NONBLOCK);
		int a = accept(vlis, NULL, NULL);
		char b = 0;
		if (a < 0)
			fail("root: no connection from inner over the veth pair: %s", strerror(errno));
		else if (read(a, &b, 1) != 1 || b != 'v')
			fail("root: the connection over the veth pair gave no byte 'v' (%s)", strerror(errno));
	}
	kill(in_child, SIGKILL);
	kill(out, SIGKILL);
	waitpid(out, NULL, 0);
	return wl_done();
}
