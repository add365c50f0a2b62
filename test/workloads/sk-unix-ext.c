/*
 * What a tree holds of the world outside it (criu's "External UNIX socket"
 * and --inherit-fd pages). One mode per run:
 *   "stream": fd 3, given by the harness, is one end of a unix stream
 *     socketpair whose other end the harness keeps. After: fd 3 is still a
 *     stream socket, "pong" can be read from it (the harness, which gave
 *     crest a new pair's end for it, queued it there) and "ping" goes out.
 *   "dgram PATH": a datagram socket connected to PATH, bound by the
 *     harness. After: it is still connected to PATH (getpeername), and
 *     "D" sent on it reaches the harness.
 *   "pipe": stdout is a pipe the harness reads. After: fd 1 is still the
 *     write end of a pipe, and "after" goes out on it.
 *
 * Sabotage: 1 closes the object (fd 3, the datagram socket's connection,
 * fd 1) right before the check.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	wl_init(argc, argv, "sk-unix-ext");
	const char *mode = argc > 2 ? argv[2] : "";
	struct sockaddr_un an = { .sun_family = AF_UNIX };
	int sk = -1;
	if (!strcmp(mode, "dgram") && argc > 3) {
		snprintf(an.sun_path, sizeof(an.sun_path), "%s", argv[3]);
		sk = socket(AF_UNIX, SOCK_DGRAM, 0);
		if (connect(sk, (struct sockaddr *)&an, sizeof(an)))
			fail("connect to %s: %s", an.sun_path, strerror(errno));
	} else if (strcmp(mode, "stream") && strcmp(mode, "pipe")) {
		fail("unknown mode %s", mode);
		return wl_done();
	}
	wl_ready();
	wl_wait();

	if (wl_sabotage()) {
		struct sockaddr unspec = { .sa_family = AF_UNSPEC };
		if (sk >= 0)
			connect(sk, &unspec, sizeof(unspec));
		else
			close(!strcmp(mode, "stream") ? 3 : 1);
	}
	if (!strcmp(mode, "stream")) {
		int type = -1;
		socklen_t l = sizeof(type);
		char buf[8] = { 0 };
		if (getsockopt(3, SOL_SOCKET, SO_TYPE, &type, &l) || type != SOCK_STREAM)
			fail("fd 3: not a stream socket (%s)", strerror(errno));
		else if (recv(3, buf, 4, MSG_DONTWAIT) != 4 || strcmp(buf, "pong"))
			fail("fd 3: \"%s\" came in, expected \"pong\"", buf);
		else if (send(3, "ping", 4, 0) != 4)
			fail("fd 3: cannot send: %s", strerror(errno));
	} else if (!strcmp(mode, "dgram")) {
		struct sockaddr_un peer;
		socklen_t l = sizeof(peer);
		memset(&peer, 0, sizeof(peer));
		if (getpeername(sk, (struct sockaddr *)&peer, &l) || strcmp(peer.sun_path, an.sun_path))
			fail("the datagram socket is connected to \"%s\", expected %s (%s)", peer.sun_path, an.sun_path, strerror(errno));
		else if (send(sk, "D", 1, 0) != 1)
			fail("the datagram socket cannot send: %s", strerror(errno));
	} else {
		struct stat st;
		if (fstat(1, &st) || !S_ISFIFO(st.st_mode) || (fcntl(1, F_GETFL) & O_ACCMODE) != O_WRONLY)
			fail("fd 1: not a pipe's write end");
		else if (write(1, "after\n", 6) != 6)
			fail("fd 1: cannot write: %s", strerror(errno));
	}
	return wl_done();
}
