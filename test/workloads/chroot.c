/*
 * A chrooted child (like CRIU's zdtm chroot and chroot-file): the child
 * opens outside.txt, chroots into jail/ (a directory of the workload's),
 * changes directory to /sub there and opens /inside.txt; its program stays
 * mapped from outside the jail. The parent, not chrooted, keeps the status
 * protocol. After SIGTERM the child checks, and sends its verdict up a pipe:
 * its working directory is /sub, its root is the jail (same device and
 * inode, /inside.txt there, /outside.txt not), both fds read their files.
 *
 * Sabotage: 1 makes the child leave /sub for / before it checks.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static void put(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		fail("write %s: %s", path, strerror(errno));
	close(fd);
}

/* The child's checks, one line each to out. */
static void check(FILE *out, int outside, int inside, struct stat *jail, int sabotage)
{
	char buf[64] = "";
	struct stat st;
	if (sabotage && chdir("/"))
		fprintf(out, "chdir /: %s\n", strerror(errno));
	if (!getcwd(buf, sizeof(buf)) || strcmp(buf, "/sub"))
		fprintf(out, "working directory '%s', expected '/sub'\n", buf);
	if (stat("/", &st) || st.st_dev != jail->st_dev || st.st_ino != jail->st_ino)
		fprintf(out, "root is %lu:%lu, expected the jail %lu:%lu\n", (unsigned long)st.st_dev, (unsigned long)st.st_ino,
			(unsigned long)jail->st_dev, (unsigned long)jail->st_ino);
	if (access("/inside.txt", R_OK))
		fprintf(out, "/inside.txt: %s\n", strerror(errno));
	if (!access("/outside.txt", F_OK))
		fprintf(out, "/outside.txt is reachable from the jail\n");
	ssize_t n = pread(outside, buf, sizeof(buf) - 1, 0);
	buf[n < 0 ? 0 : n] = 0;
	if (strcmp(buf, "outside"))
		fprintf(out, "outside fd reads '%s'\n", buf);
	n = pread(inside, buf, sizeof(buf) - 1, 0);
	buf[n < 0 ? 0 : n] = 0;
	if (strcmp(buf, "inside"))
		fprintf(out, "inside fd reads '%s'\n", buf);
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "chroot");
	if (mkdir("jail", 0755) || mkdir("jail/sub", 0755))
		fail("mkdir jail: %s", strerror(errno));
	put("jail/inside.txt", "inside");
	put("outside.txt", "outside");
	int verdict[2], ready[2];
	if (pipe(verdict) || pipe(ready))
		fail("pipe: %s", strerror(errno));
	pid_t child = fork();
	if (child == 0) {
		signal(SIGTERM, on_term);
		close(verdict[0]);
		close(ready[0]);
		int outside = open("outside.txt", O_RDONLY);
		struct stat jail;
		if (outside < 0 || stat("jail", &jail) || chroot("jail") || chdir("/sub"))
			_exit(2);
		int inside = open("/inside.txt", O_RDONLY);
		if (inside < 0 || write(ready[1], "r", 1) != 1)
			_exit(3);
		while (!stop)
			pause();
		FILE *out = fdopen(verdict[1], "w");
		check(out, outside, inside, &jail, wl_sabotage());
		fclose(out);
		_exit(0);
	}
	close(verdict[1]);
	close(ready[1]);
	char c;
	if (read(ready[0], &c, 1) != 1)
		fail("the child did not get into its jail");
	wl_ready();
	wl_wait();
	kill(child, SIGTERM);
	char line[512];
	FILE *in = fdopen(verdict[0], "r");
	while (in && fgets(line, sizeof(line), in)) {
		line[strcspn(line, "\n")] = 0;
		fail("chrooted child: %s", line);
	}
	int st;
	if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st))
		fail("chrooted child ended with status 0x%x", st);
	return wl_done();
}
