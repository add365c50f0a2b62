/*
 * Netlink sockets (like CRIU's zdtm sk-netlink, and more):
 *   route: NETLINK_ROUTE raw, autobound by bind() with RTMGRP_LINK and
 *     RTMGRP_IPV4_IFADDR, joined to groups 33 and 36 (RTNLGRP_BRVLAN,
 *     RTNLGRP_STATS: above the 32 of sockaddr_nl), NETLINK_EXT_ACK,
 *     NETLINK_GET_STRICT_CHK, NETLINK_CAP_ACK, SO_RCVBUF 300000;
 *   route2: NETLINK_ROUTE datagram, autobound after route (a negative
 *     port id), O_NONBLOCK;
 *   uev: NETLINK_KOBJECT_UEVENT datagram bound to a chosen port id and
 *     group 1 (the kernel's uevents), with a locked classic BPF filter that
 *     lets in only messages starting "crst" (so no uevent of the machine
 *     can queue in it), shared with a child process;
 *   usr: NETLINK_USERSOCK bound to a chosen port id and group 5,
 *     NETLINK_PKTINFO, NETLINK_NO_ENOBUFS, NETLINK_BROADCAST_ERROR,
 *     SO_PASSCRED;
 *   conn: NETLINK_USERSOCK connected to usr's port id (autobound by connect);
 *   grp: NETLINK_USERSOCK never bound, joined to group 7 by
 *     NETLINK_ADD_MEMBERSHIP (no port id);
 *   mconn: NETLINK_USERSOCK connected to usr's port id and group 7;
 *   plain: NETLINK_GENERIC, neither bound nor connected; audit: NETLINK_AUDIT, likewise;
 *   flight: NETLINK_USERSOCK bound to a chosen port id and group 3, sent in
 *     a unix datagram socket's queue (SCM_RIGHTS) and closed: only the queue holds it.
 * After: getsockname (port id, groups) and getpeername of each as before,
 * NETLINK_LIST_MEMBERSHIPS, SO_TYPE, SO_PROTOCOL, F_GETFL, the NETLINK_*
 * options, SO_RCVBUF, SO_PASSCRED, the filter (instructions and lock);
 * kcmp says the child's uev is the parent's. Then each works: route and
 * route2 get their RTM_GETLINK reply for lo (addressed to their port id);
 * a "crst" message sent to uevent group 1 reaches uev and an "xxxx" one
 * does not; conn's message reaches usr; mconn's reaches usr (unicast) and
 * grp (group 7), usr's with NETLINK_PKTINFO; a message to group 5 reaches
 * usr; plain gets nlctrl's answer to CTRL_CMD_GETFAMILY; flight comes out
 * of the queue bound as it was, and a message to its port id reaches it.
 *
 * Other modes, set up alone (for dumps crest refuses: the process runs on):
 * "queued", a NETLINK_USERSOCK socket with a message sent to it and not
 * read (still there after).
 *
 * Sabotage: 1 route leaves group 33; 2 NETLINK_PKTINFO cleared on usr;
 * 3 conn disconnected; 4 uev replaced by a new socket (autobound, no filter);
 * 5 grp leaves group 7.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

static int nl(int type, int proto)
{
	int fd = socket(AF_NETLINK, type, proto);
	if (fd < 0)
		fail("socket(AF_NETLINK, %d, %d): %s", type, proto, strerror(errno));
	return fd;
}

static void nl_bind(int fd, unsigned pid, unsigned groups, const char *what)
{
	struct sockaddr_nl a = { .nl_family = AF_NETLINK, .nl_pid = pid, .nl_groups = groups };
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)))
		fail("%s: bind to port id %u, groups %#x: %s", what, pid, groups, strerror(errno));
}

static void nl_connect(int fd, unsigned pid, unsigned groups, const char *what)
{
	struct sockaddr_nl a = { .nl_family = AF_NETLINK, .nl_pid = pid, .nl_groups = groups };
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)))
		fail("%s: connect to port id %u, groups %#x: %s", what, pid, groups, strerror(errno));
}

static void setopt(int fd, int level, int name, int v, const char *what)
{
	if (setsockopt(fd, level, name, &v, sizeof(v)))
		fail("%s: setsockopt %d/%d: %s", what, level, name, strerror(errno));
}

/* What is checked of each socket after the restore, recorded at setup. */
struct sk {
	const char *name;
	int fd;
	struct sockaddr_nl name_nl, peer_nl;
	int has_peer;
	unsigned members[4];
	int type, proto, flags, rcvbuf, passcred;
	int nlopt[13];
};

static const int NLOPTS[] = { NETLINK_PKTINFO, NETLINK_BROADCAST_ERROR, NETLINK_NO_ENOBUFS, NETLINK_LISTEN_ALL_NSID,
			      NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK };
#define NNLOPTS (sizeof(NLOPTS) / sizeof(NLOPTS[0]))

static void look(struct sk *s)
{
	socklen_t l = sizeof(s->name_nl);
	memset(&s->name_nl, 0, sizeof(s->name_nl));
	memset(&s->peer_nl, 0, sizeof(s->peer_nl));
	if (getsockname(s->fd, (struct sockaddr *)&s->name_nl, &l))
		s->name_nl.nl_family = 0xffff;
	l = sizeof(s->peer_nl);
	s->has_peer = getpeername(s->fd, (struct sockaddr *)&s->peer_nl, &l) == 0;
	memset(s->members, 0, sizeof(s->members));
	l = sizeof(s->members);
	if (getsockopt(s->fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, s->members, &l))
		s->members[0] = 0xdeadbeef;
	s->type = wl_sockopt_int(s->fd, SOL_SOCKET, SO_TYPE);
	s->proto = wl_sockopt_int(s->fd, SOL_SOCKET, SO_PROTOCOL);
	s->flags = fcntl(s->fd, F_GETFL);
	s->rcvbuf = wl_sockopt_int(s->fd, SOL_SOCKET, SO_RCVBUF);
	s->passcred = wl_sockopt_int(s->fd, SOL_SOCKET, SO_PASSCRED);
	for (size_t i = 0; i < NNLOPTS; i++)
		s->nlopt[i] = wl_sockopt_int(s->fd, SOL_NETLINK, NLOPTS[i]);
}

static void compare(struct sk *want)
{
	struct sk now = *want;
	look(&now);
	const char *n = want->name;
	if (now.name_nl.nl_pid != want->name_nl.nl_pid || now.name_nl.nl_groups != want->name_nl.nl_groups)
		fail("%s: bound to port id %d groups %#x, expected port id %d groups %#x", n, (int)now.name_nl.nl_pid,
		     now.name_nl.nl_groups, (int)want->name_nl.nl_pid, want->name_nl.nl_groups);
	if (now.has_peer != want->has_peer || now.peer_nl.nl_pid != want->peer_nl.nl_pid || now.peer_nl.nl_groups != want->peer_nl.nl_groups)
		fail("%s: connected %d to port id %u groups %#x, expected %d to %u groups %#x", n, now.has_peer, now.peer_nl.nl_pid,
		     now.peer_nl.nl_groups, want->has_peer, want->peer_nl.nl_pid, want->peer_nl.nl_groups);
	if (memcmp(now.members, want->members, sizeof(now.members)))
		fail("%s: NETLINK_LIST_MEMBERSHIPS %#x %#x, expected %#x %#x", n, now.members[0], now.members[1], want->members[0], want->members[1]);
	if (now.type != want->type || now.proto != want->proto)
		fail("%s: SO_TYPE %d SO_PROTOCOL %d, expected %d %d", n, now.type, now.proto, want->type, want->proto);
	if (now.flags != want->flags)
		fail("%s: F_GETFL %#x, expected %#x", n, now.flags, want->flags);
	if (now.rcvbuf != want->rcvbuf)
		fail("%s: SO_RCVBUF %d, expected %d", n, now.rcvbuf, want->rcvbuf);
	if (now.passcred != want->passcred)
		fail("%s: SO_PASSCRED %d, expected %d", n, now.passcred, want->passcred);
	for (size_t i = 0; i < NNLOPTS; i++)
		if (now.nlopt[i] != want->nlopt[i])
			fail("%s: netlink option %d is %d, expected %d", n, NLOPTS[i], now.nlopt[i], want->nlopt[i]);
}

/* RTM_GETLINK for lo on a NETLINK_ROUTE socket: the reply must come back to its port id. */
static void getlink(int fd, unsigned portid, const char *what)
{
	struct {
		struct nlmsghdr h;
		struct ifinfomsg i;
	} req = { .h = { .nlmsg_len = sizeof(req), .nlmsg_type = RTM_GETLINK, .nlmsg_flags = NLM_F_REQUEST, .nlmsg_seq = 4242 },
		  .i = { .ifi_family = AF_UNSPEC, .ifi_index = 1 } };
	if (send(fd, &req, sizeof(req), 0) != sizeof(req)) {
		fail("%s: send RTM_GETLINK: %s", what, strerror(errno));
		return;
	}
	char buf[16384];
	for (int tries = 0; tries < 50; tries++) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 2000) != 1)
			break;
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; n > 0 && NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_seq != 4242)
				continue; /* a notification of the groups it is in */
			if (h->nlmsg_type != RTM_NEWLINK)
				fail("%s: RTM_GETLINK answered with message type %d", what, h->nlmsg_type);
			else if (h->nlmsg_pid != portid)
				fail("%s: the RTM_GETLINK reply is for port id %d, expected %d", what, (int)h->nlmsg_pid, (int)portid);
			else if (((struct ifinfomsg *)NLMSG_DATA(h))->ifi_index != 1)
				fail("%s: the RTM_GETLINK reply is for ifindex %d", what, ((struct ifinfomsg *)NLMSG_DATA(h))->ifi_index);
			return;
		}
	}
	fail("%s: no reply to RTM_GETLINK", what);
}

/* Sends text from fd (to its destination, or to `to` if given). */
static void say(int fd, const struct sockaddr_nl *to, const char *text, const char *what)
{
	char buf[NLMSG_SPACE(64)] = { 0 };
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	h->nlmsg_len = NLMSG_LENGTH(strlen(text) + 1);
	h->nlmsg_type = NLMSG_MIN_TYPE + 1;
	strcpy(NLMSG_DATA(h), text);
	ssize_t r = to ? sendto(fd, buf, h->nlmsg_len, 0, (const struct sockaddr *)to, sizeof(*to)) : send(fd, buf, h->nlmsg_len, 0);
	if (r != (ssize_t)h->nlmsg_len)
		fail("%s: send '%s': %s", what, text, strerror(errno));
}

/* Sends raw bytes (a uevent-like message, not a netlink header). */
static void say_raw(int fd, const struct sockaddr_nl *to, const char *text, const char *what)
{
	if (sendto(fd, text, strlen(text) + 1, 0, (const struct sockaddr *)to, sizeof(*to)) != (ssize_t)strlen(text) + 1)
		fail("%s: send '%s': %s", what, text, strerror(errno));
}

/* Expects one message with `text` (after a netlink header unless raw); with pktinfo, its group. */
static void hear(int fd, const char *text, int raw, int group, const char *what)
{
	char buf[4096], cbuf[256];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 2000) != 1) {
		fail("%s: nothing came ('%s' expected)", what, text);
		return;
	}
	ssize_t n = recvmsg(fd, &m, MSG_DONTWAIT);
	const char *got = raw ? buf : (const char *)NLMSG_DATA((struct nlmsghdr *)buf);
	if (n <= 0 || strcmp(got, text)) {
		fail("%s: got %zd bytes '%.40s', expected '%s'", what, n, n > 0 ? got : "", text);
		return;
	}
	if (group >= 0) {
		int seen = -1;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
			if (c->cmsg_level == SOL_NETLINK && c->cmsg_type == NETLINK_PKTINFO)
				seen = (int)((struct nl_pktinfo *)CMSG_DATA(c))->group;
		if (seen != group)
			fail("%s: NETLINK_PKTINFO says group %d, expected %d", what, seen, group);
	}
}

static void quiet(int fd, const char *what)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 300) != 0)
		fail("%s: something came that should not have", what);
}

/* CTRL_CMD_GETFAMILY "nlctrl" on a NETLINK_GENERIC socket: the reply comes from GENL_ID_CTRL. */
static void genl_ask(int fd, const char *what)
{
	struct {
		struct nlmsghdr h;
		struct genlmsghdr g;
		struct nlattr a;
		char name[8];
	} req = { .h = { .nlmsg_len = sizeof(req), .nlmsg_type = GENL_ID_CTRL, .nlmsg_flags = NLM_F_REQUEST, .nlmsg_seq = 77 },
		  .g = { .cmd = CTRL_CMD_GETFAMILY, .version = 1 },
		  .a = { .nla_len = NLA_HDRLEN + 7, .nla_type = CTRL_ATTR_FAMILY_NAME },
		  .name = "nlctrl" };
	if (send(fd, &req, sizeof(req), 0) != sizeof(req)) {
		fail("%s: send CTRL_CMD_GETFAMILY: %s", what, strerror(errno));
		return;
	}
	char buf[8192];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n = poll(&p, 1, 2000) == 1 ? recv(fd, buf, sizeof(buf), MSG_DONTWAIT) : -1;
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	if (n < (ssize_t)sizeof(*h) || h->nlmsg_type != GENL_ID_CTRL || h->nlmsg_seq != 77)
		fail("%s: CTRL_CMD_GETFAMILY answered %zd bytes, type %d", what, n, n > 0 ? h->nlmsg_type : -1);
}

static int queued_mode(void)
{
	int s = nl(SOCK_RAW, NETLINK_USERSOCK), t = nl(SOCK_RAW, NETLINK_USERSOCK);
	nl_bind(s, 0, 0, "queued");
	struct sockaddr_nl a;
	socklen_t l = sizeof(a);
	getsockname(s, (struct sockaddr *)&a, &l);
	say(t, &a, "still here", "the sender");
	wl_ready();
	wl_wait();
	hear(s, "still here", 0, -1, "the queued message");
	return wl_done();
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "sk-netlink");
	if (argc > 2) {
		if (!strcmp(argv[2], "queued"))
			return queued_mode();
		fail("unknown mode %s", argv[2]);
		return wl_done();
	}
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	unsigned uev_port = 0x43000000u | ((unsigned)rand() & 0xffffff), usr_port = 0x44000000u | ((unsigned)rand() & 0xffffff);

	struct sk s[] = {
		{ .name = "route", .fd = nl(SOCK_RAW, NETLINK_ROUTE) },
		{ .name = "route2", .fd = nl(SOCK_DGRAM, NETLINK_ROUTE) },
		{ .name = "uev", .fd = nl(SOCK_DGRAM, NETLINK_KOBJECT_UEVENT) },
		{ .name = "usr", .fd = nl(SOCK_RAW, NETLINK_USERSOCK) },
		{ .name = "conn", .fd = nl(SOCK_RAW, NETLINK_USERSOCK) },
		{ .name = "grp", .fd = nl(SOCK_RAW, NETLINK_USERSOCK) },
		{ .name = "mconn", .fd = nl(SOCK_RAW, NETLINK_USERSOCK) },
		{ .name = "plain", .fd = nl(SOCK_RAW, NETLINK_GENERIC) },
		{ .name = "audit", .fd = nl(SOCK_RAW, NETLINK_AUDIT) },
	};
	enum { ROUTE, ROUTE2, UEV, USR, CONN, GRP, MCONN, PLAIN, AUDIT, N };
	int route = s[ROUTE].fd, route2 = s[ROUTE2].fd, uev = s[UEV].fd, usr = s[USR].fd;

	nl_bind(route, 0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR, "route");
	setopt(route, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, RTNLGRP_BRVLAN, "route");
	setopt(route, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, RTNLGRP_STATS, "route");
	setopt(route, SOL_NETLINK, NETLINK_EXT_ACK, 1, "route");
	setopt(route, SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1, "route");
	setopt(route, SOL_NETLINK, NETLINK_CAP_ACK, 1, "route");
	setopt(route, SOL_SOCKET, SO_RCVBUF, 300000, "route");
	nl_bind(route2, 0, 0, "route2");
	fcntl(route2, F_SETFL, O_NONBLOCK);

	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x63727374 /* "crst" */, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, 0xffff),
		BPF_STMT(BPF_RET | BPF_K, 0),
	};
	struct sock_fprog prog = { .len = 4, .filter = code };
	if (setsockopt(uev, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)))
		fail("uev: SO_ATTACH_FILTER: %s", strerror(errno));
	setopt(uev, SOL_SOCKET, SO_LOCK_FILTER, 1, "uev");
	nl_bind(uev, uev_port, 1, "uev");

	nl_bind(usr, usr_port, 1 << 4, "usr");
	setopt(usr, SOL_NETLINK, NETLINK_PKTINFO, 1, "usr");
	setopt(usr, SOL_NETLINK, NETLINK_NO_ENOBUFS, 1, "usr");
	setopt(usr, SOL_NETLINK, NETLINK_BROADCAST_ERROR, 1, "usr");
	setopt(usr, SOL_SOCKET, SO_PASSCRED, 1, "usr");
	nl_connect(s[CONN].fd, usr_port, 0, "conn");
	setopt(s[GRP].fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, 7, "grp");
	nl_connect(s[MCONN].fd, usr_port, 1 << 6, "mconn");

	for (int i = 0; i < N; i++)
		look(&s[i]);
	/* What the kernel gave by itself must be what the test means. */
	if (s[ROUTE2].name_nl.nl_pid == 0 || s[CONN].name_nl.nl_pid == 0 || s[GRP].name_nl.nl_pid != 0 || s[GRP].members[0] != 1u << 6)
		fail("setup: route2 port id %d, conn %d, grp %d with groups %#x", (int)s[ROUTE2].name_nl.nl_pid, (int)s[CONN].name_nl.nl_pid,
		     (int)s[GRP].name_nl.nl_pid, s[GRP].members[0]);
	if (s[ROUTE].members[1] != ((1u << (RTNLGRP_BRVLAN - 33)) | (1u << (RTNLGRP_STATS - 33))))
		fail("setup: route's groups above 32 are %#x", s[ROUTE].members[1]);
	printf("sk-netlink: port ids route %d route2 %d uev %d usr %d conn %d mconn %d\n", (int)s[ROUTE].name_nl.nl_pid,
	       (int)s[ROUTE2].name_nl.nl_pid, (int)uev_port, (int)usr_port, (int)s[CONN].name_nl.nl_pid, (int)s[MCONN].name_nl.nl_pid);

	/* A socket only a unix socket's queue holds (in flight, SCM_RIGHTS). */
	unsigned flight_port = 0x45000000u | ((unsigned)rand() & 0xffffff);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv))
		fail("socketpair: %s", strerror(errno));
	int flight = nl(SOCK_RAW, NETLINK_USERSOCK);
	nl_bind(flight, flight_port, 1 << 2, "flight");
	{
		char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
		struct iovec iov = { .iov_base = "f", .iov_len = 1 };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &flight, sizeof(int));
		if (sendmsg(sv[0], &m, 0) != 1)
			fail("send the netlink socket in flight: %s", strerror(errno));
		close(flight);
	}

	pid_t child = wl_fork_holder();
	wl_ready();
	wl_wait();

	struct sockaddr_nl unspec = { .nl_family = AF_UNSPEC };
	switch (wl_sabotage()) {
	case 1: setopt(route, SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, RTNLGRP_BRVLAN, "sabotage"); break;
	case 2: setopt(usr, SOL_NETLINK, NETLINK_PKTINFO, 0, "sabotage"); break;
	case 3: connect(s[CONN].fd, (struct sockaddr *)&unspec, sizeof(unspec)); break;
	case 4: {
		int fresh = nl(SOCK_DGRAM, NETLINK_KOBJECT_UEVENT);
		nl_bind(fresh, 0, 1, "sabotage");
		dup2(fresh, uev);
		close(fresh);
		break;
	}
	case 5: setopt(s[GRP].fd, SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, 7, "sabotage"); break;
	}
	for (int i = 0; i < N; i++)
		compare(&s[i]);
	struct sock_filter got[8];
	socklen_t gl = 8;
	if (getsockopt(uev, SOL_SOCKET, SO_GET_FILTER, got, &gl) || gl != 4 || memcmp(got, code, sizeof(code)))
		fail("uev: its filter has %u instructions%s, expected the 4 attached", gl, gl == 4 ? " (different ones)" : "");
	if (wl_sockopt_int(uev, SOL_SOCKET, SO_LOCK_FILTER) != 1)
		fail("uev: SO_LOCK_FILTER is %d, expected 1", wl_sockopt_int(uev, SOL_SOCKET, SO_LOCK_FILTER));
	wl_holder_done(child, uev, "uev");

	getlink(route, s[ROUTE].name_nl.nl_pid, "route");
	getlink(route2, s[ROUTE2].name_nl.nl_pid, "route2");
	int sender = nl(SOCK_RAW, NETLINK_KOBJECT_UEVENT);
	struct sockaddr_nl g1 = { .nl_family = AF_NETLINK, .nl_groups = 1 };
	say_raw(sender, &g1, "xxxx@filtered out", "uevent sender");
	say_raw(sender, &g1, "crst@let in", "uevent sender");
	hear(uev, "crst@let in", 1, -1, "uev");
	quiet(uev, "uev after its message");
	say(s[CONN].fd, NULL, "from conn", "conn");
	hear(usr, "from conn", 0, 0, "usr (unicast from conn)");
	say(s[MCONN].fd, NULL, "from mconn", "mconn");
	/* The unicast copy of a message to a group carries that group. */
	hear(usr, "from mconn", 0, 7, "usr (unicast from mconn)");
	hear(s[GRP].fd, "from mconn", 0, -1, "grp (group 7 from mconn)");
	/* A message to a group goes to a port id too (no kernel socket takes port id 0 here): the sender's own. */
	int usender = nl(SOCK_RAW, NETLINK_USERSOCK);
	nl_bind(usender, 0, 0, "group sender");
	struct sockaddr_nl g5 = { .nl_family = AF_NETLINK, .nl_groups = 1 << 4 };
	socklen_t g5l = sizeof(g5);
	getsockname(usender, (struct sockaddr *)&g5, &g5l);
	g5.nl_groups = 1 << 4;
	say(usender, &g5, "to group 5", "group sender");
	hear(usr, "to group 5", 0, 5, "usr (group 5)");
	genl_ask(s[PLAIN].fd, "plain");
	{
		char cbuf[CMSG_SPACE(sizeof(int))] = { 0 }, x;
		struct iovec iov = { .iov_base = &x, .iov_len = 1 };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
		int got = -1;
		if (recvmsg(sv[1], &m, MSG_DONTWAIT) != 1 || !CMSG_FIRSTHDR(&m))
			fail("flight: the netlink socket in flight is gone");
		else
			memcpy(&got, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(int));
		struct sockaddr_nl a = { 0 };
		socklen_t l = sizeof(a);
		if (got >= 0 && (getsockname(got, (struct sockaddr *)&a, &l) || a.nl_family != AF_NETLINK || a.nl_pid != flight_port || a.nl_groups != 1 << 2))
			fail("flight: the socket received is bound to port id %u groups %#x, expected %u and %#x", a.nl_pid, a.nl_groups, flight_port, 1 << 2);
		else if (got >= 0) {
			struct sockaddr_nl to = { .nl_family = AF_NETLINK, .nl_pid = flight_port };
			say(usender, &to, "to flight", "flight's sender");
			hear(got, "to flight", 0, -1, "flight");
		}
	}
	return wl_done();
}
