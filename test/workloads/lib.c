#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

volatile sig_atomic_t wl_term;
static const char *status_path;
static const char *wl_name;
static char failures[16384];
static size_t failures_len;
static int failed;
static struct timespec started;

static void on_term(int sig)
{
	(void)sig;
	wl_term = 1;
}

static void write_status(const char *text)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", status_path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		_exit(2);
	size_t n = strlen(text);
	if (write(fd, text, n) != (ssize_t)n)
		_exit(2);
	close(fd);
	if (rename(tmp, status_path))
		_exit(2);
}

void wl_init(int argc, char **argv, const char *name)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s STATUSFILE [args]\n", argv[0]);
		exit(2);
	}
	status_path = argv[1];
	wl_name = name;
	clock_gettime(CLOCK_MONOTONIC, &started);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
}

void wl_ready(void)
{
	printf("%s: ready\n", wl_name);
	write_status("ready\n");
}

static double elapsed(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - started.tv_sec) + (double)(now.tv_nsec - started.tv_nsec) / 1e9;
}

int wl_should_stop(void)
{
	if (wl_term)
		return 1;
	if (elapsed() > 120) {
		fail("timeout: no SIGTERM within 120 s");
		return 1;
	}
	return 0;
}

void wl_wait(void)
{
	sigset_t unblocked;
	sigprocmask(SIG_SETMASK, NULL, &unblocked);
	sigdelset(&unblocked, SIGTERM);
	while (!wl_should_stop()) {
		struct timespec ts = { 1, 0 };
		ppoll(NULL, 0, &ts, &unblocked);
	}
}

void fail(const char *fmt, ...)
{
	va_list ap;
	char line[1024];
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	failed = 1;
	printf("%s: FAIL %s\n", wl_name, line);
	failures_len += snprintf(failures + failures_len, sizeof(failures) - failures_len, "%s\n", line);
	if (failures_len >= sizeof(failures))
		failures_len = sizeof(failures) - 1;
}

int wl_done(void)
{
	char text[sizeof(failures) + 16];
	if (failed)
		snprintf(text, sizeof(text), "FAIL: %s", failures);
	else
		snprintf(text, sizeof(text), "PASS\n");
	printf("%s: %s", wl_name, failed ? "FAIL\n" : "PASS\n");
	write_status(text);
	return failed ? 1 : 0;
}

int wl_sabotage(void)
{
	const char *s = getenv("CREST_WL_SABOTAGE");
	return s && *s && strcmp(s, "0");
}

uint64_t wl_hash(const void *p, size_t n)
{
	const unsigned char *b = p;
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	return h;
}

char *wl_read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap + 1);
	for (;;) {
		if (n == cap) {
			cap *= 2;
			buf = realloc(buf, cap + 1);
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = 0;
	if (len)
		*len = n;
	return buf;
}
