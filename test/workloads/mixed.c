/*
 * A little of everything a restore builds, for the restore fault tests
 * (test/cr/restore-faults.test.ts) and the fuzzer's image sets: started with
 * `crest run --ns ipc` (its own IPC namespace), dumped with --file-locks and
 * --tcp-established. In its directory:
 *   `data`, 4096 bytes of a pattern, O_RDWR at position 1234;
 *   `lock`, held with flock LOCK_EX;
 *   a pipe with 3000 bytes queued (both ends held, read end O_NONBLOCK);
 *   a unix stream socketpair with 500 bytes queued one way;
 *   a unix stream listener bound to `sock`, a client connected to it and
 *   accepted, 100 bytes queued client -> server;
 *   a SysV shared memory segment (key 0x5eed, 8 KiB of a pattern, attached)
 *   and a semaphore set (key 0x5eee, one semaphore, value 7);
 *   with argv[2] `tcp`: a TCP listener on 127.0.0.1 with a connection to it
 *   accepted, 2000 bytes queued each way;
 *   a child holding the pipe pair `ask`/`answer`: asked after SIGTERM, it
 *   answers `y` and exits 0.
 * After: each queue exactly, the file's position and contents, the flock still
 * excluding a new description, the socket file still a socket, the segment's
 * contents and the semaphore's value, the child's answer and exit status.
 *
 * Sabotage: 1 reads a byte of the pipe, 2 drops the flock.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define SHM_SIZE 8192

static void die(const char *what)
{
	fail("%s: %s", what, strerror(errno));
	wl_done();
	exit(1);
}

static void nonblock(int fd)
{
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
		die("O_NONBLOCK");
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "mixed");
	int tcp = argc > 2 && !strcmp(argv[2], "tcp");

	char buf[4096];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i * 7 + 3);
	int data = open("data", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (data < 0 || write(data, buf, sizeof(buf)) != (ssize_t)sizeof(buf) || lseek(data, 1234, SEEK_SET) != 1234)
		die("data");
	int lock = open("lock", O_RDWR | O_CREAT, 0600);
	if (lock < 0 || flock(lock, LOCK_EX) < 0)
		die("lock");

	int p[2];
	if (pipe(p) < 0)
		die("pipe");
	wl_pattern_write(p[1], 3000, 1);
	nonblock(p[0]);

	int sp[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) < 0)
		die("socketpair");
	wl_pattern_write(sp[0], 500, 2);
	nonblock(sp[1]);

	struct sockaddr_un un = { .sun_family = AF_UNIX, .sun_path = "sock" };
	int lis = socket(AF_UNIX, SOCK_STREAM, 0), cli = socket(AF_UNIX, SOCK_STREAM, 0);
	if (lis < 0 || cli < 0 || bind(lis, (void *)&un, sizeof(un)) < 0 || listen(lis, 4) < 0 || connect(cli, (void *)&un, sizeof(un)) < 0)
		die("unix listener");
	int srv = accept(lis, NULL, NULL);
	if (srv < 0)
		die("accept");
	wl_pattern_write(cli, 100, 3);
	nonblock(srv);

	int shm = shmget(0x5eed, SHM_SIZE, IPC_CREAT | 0600);
	unsigned char *seg = shm < 0 ? NULL : shmat(shm, NULL, 0);
	if (!seg || seg == (void *)-1)
		die("shm");
	for (size_t i = 0; i < SHM_SIZE; i++)
		seg[i] = (unsigned char)(i * 31 + 5);
	int sem = semget(0x5eee, 1, IPC_CREAT | 0600);
	if (sem < 0 || semctl(sem, 0, SETVAL, 7) < 0)
		die("sem");

	int tl = -1, tc = -1, ts = -1;
	if (tcp) {
		struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t len = sizeof(in);
		tl = socket(AF_INET, SOCK_STREAM, 0);
		tc = socket(AF_INET, SOCK_STREAM, 0);
		if (tl < 0 || tc < 0 || bind(tl, (void *)&in, sizeof(in)) < 0 || listen(tl, 4) < 0 ||
		    getsockname(tl, (void *)&in, &len) < 0 || connect(tc, (void *)&in, sizeof(in)) < 0)
			die("tcp");
		ts = accept(tl, NULL, NULL);
		if (ts < 0)
			die("tcp accept");
		wl_pattern_write(tc, 2000, 4);
		wl_pattern_write(ts, 2000, 5);
		nonblock(tc);
		nonblock(ts);
	}

	int ask[2], answer[2];
	if (pipe(ask) < 0 || pipe(answer) < 0)
		die("child pipes");
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		char c;
		while (read(ask[0], &c, 1) != 1)
			if (errno != EINTR)
				_exit(3);
		_exit(write(answer[1], "y", 1) == 1 ? 0 : 4);
	}
	close(ask[0]);
	close(answer[1]);

	wl_ready();
	wl_wait();

	if (wl_sabotage() == 1 && read(p[0], buf, 1) != 1)
		fail("sabotage: cannot read the pipe");
	if (wl_sabotage() == 2)
		flock(lock, LOCK_UN);

	wl_pattern_check(p[0], 3000, 1, "pipe");
	wl_pattern_check(sp[1], 500, 2, "socketpair");
	wl_pattern_check(srv, 100, 3, "unix connection");
	if (tcp) {
		wl_pattern_check(ts, 2000, 4, "tcp client -> server");
		wl_pattern_check(tc, 2000, 5, "tcp server -> client");
	}

	off_t pos = lseek(data, 0, SEEK_CUR);
	if (pos != 1234)
		fail("data: position %lld, expected 1234", (long long)pos);
	char back[4096];
	if (pread(data, back, sizeof(back), 0) != (ssize_t)sizeof(back) || memcmp(back, buf, sizeof(buf)))
		fail("data: contents changed");
	int other = open("lock", O_RDWR);
	if (other < 0)
		fail("lock: cannot open: %s", strerror(errno));
	else if (flock(other, LOCK_EX | LOCK_NB) == 0 || errno != EWOULDBLOCK)
		fail("lock: a new description could flock it (the lock is lost)");
	struct stat st;
	if (stat("sock", &st) < 0 || !S_ISSOCK(st.st_mode))
		fail("sock: not a socket file any more");
	for (size_t i = 0; i < SHM_SIZE; i++)
		if (seg[i] != (unsigned char)(i * 31 + 5)) {
			fail("shm: byte %zu is %u", i, seg[i]);
			break;
		}
	if (shmget(0x5eed, 0, 0) != shm)
		fail("shm: key 0x5eed is id %d, expected %d", shmget(0x5eed, 0, 0), shm);
	int v = semctl(sem, 0, GETVAL);
	if (v != 7)
		fail("sem: value %d, expected 7", v);

	int status;
	if (write(ask[1], "?", 1) != 1)
		fail("cannot ask the child: %s", strerror(errno));
	char c = 0;
	if (read(answer[0], &c, 1) != 1 || c != 'y')
		fail("the child did not answer");
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("the child ended with status 0x%x", status);
	return wl_done();
}
