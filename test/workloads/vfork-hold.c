/*
 * A tree crest cannot freeze: the root vforks and its child never execs or
 * exits, so the root sleeps in the kernel's vfork wait, which no ptrace
 * interrupt ends. The child writes "ready" (raw syscalls only: it runs on
 * the root's memory) and pauses until killed; the root then resumes and
 * writes "PASS: resumed" (a failed dump must leave it able to).
 *
 * No sabotage: the test itself checks that the root carries on.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static void put(const char *path, const char *text)
{
	int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) {
		syscall(SYS_write, fd, text, strlen(text));
		syscall(SYS_close, fd);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	pid_t c = vfork();
	if (c == 0) {
		put(argv[1], "ready\n");
		for (;;)
			syscall(SYS_pause);
	}
	put(argv[1], c > 0 ? "PASS: resumed\n" : "FAIL: vfork\n");
	return 0;
}
