/*
 * A TCP connection to a peer outside the dumped tree, both ends streaming
 * all the time (like CRIU's zdtm socket-tcp with an external peer):
 *
 *   sk-tcp-stream STATUS server [ADDR]      listens on 127.0.0.1 (or ADDR),
 *                                           writes its port to ./port,
 *                                           accepts one connection
 *   sk-tcp-stream STATUS client PORT [ADDR] connects to it (this one is dumped)
 *
 * (With ADDR the server may be the one dumped: in a network namespace of its
 * own, reached over a veth, test/cr/netns.test.ts.)
 *
 * Each end sends a pattern (byte i of seed s is pattern(i, s)), about
 * 200 KB/s, and reads the other's, checking every byte against the pattern
 * as it comes: one unbroken stream each way, no byte lost, repeated or
 * changed, no reset. The server is ready once listening, the client once
 * it has received something. The
 * client, on SIGTERM (after its restore), goes on until it has received at
 * least 64 KB more, then closes the connection and reports. The server is
 * the peer outside the tree: it sees the client vanish into the checkpoint
 * and come back, and must see nothing else: it streams until the client's
 * EOF (a FIN, not a reset), then waits for SIGTERM and reports.
 *
 * Sabotage: 1 the client skips a byte of its stream after SIGTERM.
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
#include <unistd.h>

static unsigned char pat(uint64_t i, unsigned seed)
{
	return (unsigned char)(i * 13 + seed + (i >> 9));
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "sk-tcp-stream");
	signal(SIGPIPE, SIG_IGN);
	int server = argc > 2 && !strcmp(argv[2], "server");
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	const char *addr = server ? (argc > 3 ? argv[3] : NULL) : (argc > 4 ? argv[4] : NULL);
	if (addr && inet_pton(AF_INET, addr, &a.sin_addr) != 1) {
		fail("bad address %s", addr);
		return wl_done();
	}
	int fd;
	if (server) {
		int l = socket(AF_INET, SOCK_STREAM, 0);
		socklen_t len = sizeof(a);
		if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) || getsockname(l, (struct sockaddr *)&a, &len)) {
			fail("listen: %s", strerror(errno));
			return wl_done();
		}
		FILE *f = fopen("port", "w");
		fprintf(f, "%d\n", ntohs(a.sin_port));
		fclose(f);
		wl_ready();
		fd = accept(l, NULL, NULL);
		close(l);
	} else {
		a.sin_port = htons(argc > 3 ? atoi(argv[3]) : 0);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)))
			fd = -1;
	}
	if (fd < 0) {
		fail("no connection: %s", strerror(errno));
		return wl_done();
	}
	fcntl(fd, F_SETFL, O_NONBLOCK);
	unsigned mine = server ? 1 : 2, theirs = server ? 2 : 1;
	uint64_t sent = 0, got = 0, got_at_term = 0;
	int ready = 0, skipped = 0;
	unsigned char buf[8192];
	double last = wl_clock(CLOCK_MONOTONIC), tick = 0;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN | (wl_clock(CLOCK_MONOTONIC) - tick >= 0.01 ? POLLOUT : 0) };
		poll(&p, 1, 10);
		if (wl_term && !got_at_term)
			got_at_term = got + 1;
		if (!server && wl_term && got >= got_at_term + 65536)
			break;
		if (!wl_term)
			wl_should_stop();
		else if (wl_clock(CLOCK_MONOTONIC) - last > 30) {
			fail("nothing more came for 30 s after SIGTERM (%llu bytes in all)", (unsigned long long)got);
			break;
		}
		if (p.revents & (POLLERR | POLLHUP)) {
			int err = 0;
			socklen_t l = sizeof(err);
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
			fail("the connection broke (%s) after %llu bytes received, %llu sent", strerror(err), (unsigned long long)got, (unsigned long long)sent);
			break;
		}
		if (p.revents & POLLIN) {
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r == 0) {
				/* The client ends the stream once it is done; anything else ending it is a failure. */
				if (!server)
					fail("EOF after %llu bytes", (unsigned long long)got);
				break;
			}
			if (r < 0 && errno != EAGAIN && errno != EINTR) {
				fail("read: %s after %llu bytes", strerror(errno), (unsigned long long)got);
				break;
			}
			for (ssize_t i = 0; i < r; i++)
				if (buf[i] != pat(got + (uint64_t)i, theirs)) {
					fail("byte %llu is %u, expected %u", (unsigned long long)(got + (uint64_t)i), buf[i], pat(got + (uint64_t)i, theirs));
					return wl_done();
				}
			if (r > 0) {
				got += (uint64_t)r;
				last = wl_clock(CLOCK_MONOTONIC);
			}
		}
		if (!ready && !server && got > 0 && sent > 0) {
			ready = 1;
			wl_ready();
		}
		/* About 200 KB/s: 2 KB a 10 ms tick, so that the windows stay open and both ends always have data on the way. */
		double now = wl_clock(CLOCK_MONOTONIC);
		if (p.revents & POLLOUT && now - tick >= 0.01) {
			tick = now;
			size_t n = 2048;
			if (wl_term && wl_sabotage() == 1 && !skipped && !server) {
				sent++;
				skipped = 1;
			}
			for (size_t i = 0; i < n; i++)
				buf[i] = pat(sent + i, mine);
			ssize_t w = write(fd, buf, n);
			if (w > 0)
				sent += (uint64_t)w;
		}
	}
	if (!server && !wl_failures()) {
		/* Ends its stream, and reads the server's to its end: the server closes on our EOF. */
		shutdown(fd, SHUT_WR);
		for (double t0 = wl_clock(CLOCK_MONOTONIC); wl_clock(CLOCK_MONOTONIC) - t0 < 10;) {
			struct pollfd p = { .fd = fd, .events = POLLIN };
			poll(&p, 1, 100);
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r == 0)
				break;
			if (r < 0 && errno != EAGAIN && errno != EINTR) {
				fail("read after the end: %s", strerror(errno));
				break;
			}
		}
	}
	close(fd);
	if (server && !wl_term)
		wl_wait();
	printf("%s: received %llu bytes, sent %llu\n", server ? "server" : "client", (unsigned long long)got, (unsigned long long)sent);
	return wl_done();
}
