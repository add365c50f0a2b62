/*
 * Pipes with data in flight, both ends in different processes: the root
 * feeds pipe A (resized to 1 MiB, 300 KiB queued) to child 1, which feeds
 * pipe B (20 KiB queued, read end non-blocking) to child 2; the root also
 * keeps a pipe with both ends and data, an empty one, and a FIFO with data.
 * After the checkpoint each reader reads back exactly what was queued, in
 * order, and checks its pipe's size and flags; the children report through
 * their exit status.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define A_BYTES (300 * 1024)
#define B_BYTES (20 * 1024)
#define C_BYTES 5000
#define F_BYTES 4096

static void child2(int b_read)
{
	wl_wait();
	if (!(fcntl(b_read, F_GETFL) & O_NONBLOCK))
		fail("pipe B's read end lost O_NONBLOCK");
	wl_pattern_check(b_read, B_BYTES, 2, "pipe B");
	_exit(wl_done());
}

static void child1(int a_read, int b_write)
{
	wl_pattern_write(b_write, B_BYTES, 2);
	wl_ready();
	wl_wait();
	if (fcntl(a_read, F_GETPIPE_SZ) != 1 << 20)
		fail("pipe A has size %d, expected %d", fcntl(a_read, F_GETPIPE_SZ), 1 << 20);
	wl_pattern_check(a_read, A_BYTES, 1, "pipe A");
	_exit(wl_done());
}

int main(int argc, char **argv)
{
	char status1[4096], status2[4096];
	wl_init(argc, argv, "pipes");
	snprintf(status1, sizeof(status1), "%s.child1", argv[1]);
	snprintf(status2, sizeof(status2), "%s.child2", argv[1]);
	int a[2], b[2], c[2], d[2];
	if (pipe(a) || pipe(b) || pipe(c) || pipe2(d, O_NONBLOCK))
		fail("pipe");
	if (fcntl(a[1], F_SETPIPE_SZ, 1 << 20) != 1 << 20)
		fail("cannot resize pipe A");
	fcntl(b[0], F_SETFL, O_NONBLOCK);
	wl_pattern_write(a[1], A_BYTES, 1);
	wl_pattern_write(c[1], C_BYTES, 3);
	if (mkfifo("fifo", 0600))
		fail("mkfifo");
	int f = open("fifo", O_RDWR | O_NONBLOCK);
	wl_pattern_write(f, F_BYTES, 4);

	char *childargv[] = { argv[0], status2, NULL };
	pid_t p2 = fork();
	if (p2 == 0) {
		wl_init(2, childargv, "pipes-child2");
		close(a[1]), close(a[0]), close(b[1]);
		child2(b[0]);
	}
	childargv[1] = status1;
	pid_t p1 = fork();
	if (p1 == 0) {
		wl_init(2, childargv, "pipes-child1");
		close(a[1]), close(b[0]);
		child1(a[0], b[1]);
	}
	close(a[0]), close(b[0]), close(b[1]);
	/* Wait until child 1 has queued its data in pipe B. */
	for (int i = 0; i < 500 && !wl_read_file(status1, NULL); i++)
		usleep(1000);
	usleep(100 * 1000);
	printf("pipes: children %d and %d\n", p1, p2);
	wl_ready();
	wl_wait();
	if (wl_sabotage()) {
		char x;
		if (read(c[0], &x, 1) != 1)
			fail("sabotage read");
	}
	close(a[1]); /* child 1 sees the end of pipe A */
	kill(p1, SIGTERM);
	kill(p2, SIGTERM);
	fcntl(c[0], F_SETFL, O_NONBLOCK);
	wl_pattern_check(c[0], C_BYTES, 3, "pipe C (both ends here)");
	wl_pattern_check(d[0], 0, 0, "the empty pipe");
	wl_pattern_check(f, F_BYTES, 4, "the FIFO");
	struct stat st;
	if (stat("fifo", &st) || !S_ISFIFO(st.st_mode))
		fail("fifo is no longer a FIFO");
	int s;
	const pid_t kids[2] = { p1, p2 };
	const char *files[2] = { status1, status2 };
	for (int i = 0; i < 2; i++) {
		if (waitpid(kids[i], &s, 0) != kids[i] || !WIFEXITED(s) || WEXITSTATUS(s)) {
			char *why = wl_read_file(files[i], NULL);
			fail("child %d: %s", kids[i], why ? why : "no report");
		}
	}
	return wl_done();
}
