/* The shared protocol code of the workloads: see lib.h. */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/kcmp.h>
#include <unistd.h>

volatile sig_atomic_t wl_term;
const char *wl_name = "workload";
static const char *status_path;
static char failures[16384];
static size_t failures_len;
static int nfailures;
static double waited, last_tick;

static void on_term(int sig)
{
	(void)sig;
	wl_term = 1;
}

/* STATUSFILE.tmp, then rename: the harness never sees half a verdict. */
static void write_status(const char *text)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", status_path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "%s: cannot write %s: %s\n", wl_name, tmp, strerror(errno));
		_exit(2);
	}
	size_t n = strlen(text);
	if (write(fd, text, n) != (ssize_t)n || close(fd) || rename(tmp, status_path)) {
		fprintf(stderr, "%s: cannot write %s: %s\n", wl_name, status_path, strerror(errno));
		_exit(2);
	}
}

void wl_init(int argc, char **argv, const char *name)
{
	wl_name = name;
	if (argc < 2) {
		fprintf(stderr, "usage: %s STATUSFILE [args]\n", argv[0]);
		exit(2);
	}
	status_path = argv[1];
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* The first printf allocates stdio's buffer: do it now, not while checking. */
	printf("%s: pid %d starting\n", wl_name, (int)getpid());
}

double wl_clock(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void wl_ready(void)
{
	last_tick = wl_clock(CLOCK_MONOTONIC);
	printf("%s: ready\n", wl_name);
	write_status("ready\n");
}

void wl_timeout(void)
{
	printf("%s: FAIL timeout: no SIGTERM within %d s\n", wl_name, WL_TIMEOUT_S);
	write_status("FAIL: timeout\n");
	exit(1);
}

void wl_count_wait(double d)
{
	/* A restore may make CLOCK_MONOTONIC jump (another machine, another boot):
	 * a step that is negative or longer than any wait slice is not counted. */
	if (d > 0 && d < 5)
		waited += d;
	if (waited > WL_TIMEOUT_S)
		wl_timeout();
}

int wl_should_stop(void)
{
	if (wl_term)
		return 1;
	double now = wl_clock(CLOCK_MONOTONIC);
	wl_count_wait(now - last_tick);
	last_tick = now;
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
	nfailures++;
	printf("%s: FAIL %s\n", wl_name, line);
	if (failures_len < sizeof(failures) - 1) {
		int n = snprintf(failures + failures_len, sizeof(failures) - failures_len, "%s\n", line);
		failures_len += (size_t)n;
		if (failures_len >= sizeof(failures))
			failures_len = sizeof(failures) - 1;
	}
}

int wl_failures(void)
{
	return nfailures;
}

int wl_done(void)
{
	static char text[sizeof(failures) + 16];
	if (nfailures)
		snprintf(text, sizeof(text), "FAIL: %s", failures);
	else
		snprintf(text, sizeof(text), "PASS\n");
	if (nfailures)
		printf("%s: FAIL (%d differences)\n", wl_name, nfailures);
	else
		printf("%s: PASS\n", wl_name);
	write_status(text);
	return nfailures ? 1 : 0;
}

int wl_sabotage(void)
{
	const char *s = getenv("CREST_WL_SABOTAGE");
	if (!s || !*s)
		return 0;
	int n = atoi(s);
	if (n == 0 && strcmp(s, "0"))
		n = 1;
	return n < 0 ? 1 : n;
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

ssize_t wl_read_into(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t n = 0;
	for (;;) {
		if (n == cap - 1) {
			char extra;
			ssize_t r = read(fd, &extra, 1);
			if (r < 0 && errno == EINTR)
				continue;
			close(fd);
			buf[n] = 0;
			return r == 0 ? (ssize_t)n : -1;
		}
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			close(fd);
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = 0;
	return (ssize_t)n;
}

/* Is the line [line, line+len) one of the lines of text? */
static int has_line(const char *text, const char *line, size_t len)
{
	for (const char *p = text; *p;) {
		const char *eol = strchr(p, '\n');
		size_t l = eol ? (size_t)(eol - p) : strlen(p);
		if (l == len && !memcmp(p, line, len))
			return 1;
		if (!eol)
			break;
		p = eol + 1;
	}
	return 0;
}

void wl_compare_lines(const char *what, const char *before, const char *after)
{
	if (!strcmp(before, after))
		return;
	const char *sides[2][2] = { { before, after }, { after, before } };
	for (int s = 0; s < 2; s++)
		for (const char *p = sides[s][0]; *p;) {
			const char *eol = strchr(p, '\n');
			size_t l = eol ? (size_t)(eol - p) : strlen(p);
			if (l && !has_line(sides[s][1], p, l))
				fail("%s: %s '%.*s'", what, s ? "now has" : "lost", (int)l, p);
			if (!eol)
				break;
			p = eol + 1;
		}
}

const char *wl_status_field(const char *key, char *buf, size_t cap)
{
	static char status[16384];
	buf[0] = 0;
	if (wl_read_into("/proc/self/status", status, sizeof(status)) < 0)
		return buf;
	size_t kl = strlen(key);
	for (char *p = status; *p;) {
		char *eol = strchr(p, '\n');
		if (!strncmp(p, key, kl) && p[kl] == ':') {
			char *v = p + kl + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			size_t l = eol ? (size_t)(eol - v) : strlen(v);
			if (l >= cap)
				l = cap - 1;
			memcpy(buf, v, l);
			buf[l] = 0;
			return buf;
		}
		if (!eol)
			break;
		p = eol + 1;
	}
	return buf;
}

unsigned char wl_pattern_byte(size_t i, unsigned seed)
{
	return (unsigned char)(i * 13 + seed + (i >> 9));
}

void wl_pattern_write(int fd, size_t n, unsigned seed)
{
	unsigned char buf[4096];
	for (size_t done = 0; done < n;) {
		size_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);
		for (size_t i = 0; i < k; i++)
			buf[i] = wl_pattern_byte(done + i, seed);
		ssize_t w = write(fd, buf, k);
		if (w <= 0) {
			fail("write: %s", strerror(errno));
			return;
		}
		done += (size_t)w;
	}
}

void wl_pattern_check(int fd, size_t want, unsigned seed, const char *what)
{
	unsigned char buf[4096];
	size_t got = 0;
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno != EAGAIN) {
			fail("%s: read: %s after %zu bytes", what, strerror(errno), got);
			return;
		}
		if (r <= 0)
			break;
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] != wl_pattern_byte(got + (size_t)i, seed)) {
				fail("%s: byte %zu is %u, expected %u", what, got + (size_t)i, buf[i], wl_pattern_byte(got + (size_t)i, seed));
				return;
			}
		got += (size_t)r;
	}
	if (got != want)
		fail("%s: read %zu bytes, expected %zu", what, got, want);
}

static const uint64_t WORDS_SEED = 88172645463325252ULL;

static inline uint64_t words_next(uint64_t *x)
{
	*x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
	return *x | 1;
}

void wl_words_fill(uint64_t *mem, size_t words)
{
	uint64_t x = WORDS_SEED;
	for (size_t i = 0; i < words; i++)
		mem[i] = words_next(&x);
}

uint64_t *wl_words_map(size_t mib, size_t *words)
{
	*words = mib << 17;
	uint64_t *mem = mmap(NULL, *words * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mib == 0 || mem == MAP_FAILED) {
		fail("cannot map %zu MiB", mib);
		return NULL;
	}
	wl_words_fill(mem, *words);
	return mem;
}

void wl_words_check(const uint64_t *mem, size_t words)
{
	uint64_t x = WORDS_SEED;
	size_t bad = 0;
	for (size_t i = 0; i < words; i++) {
		uint64_t want = words_next(&x);
		if (mem[i] != want && bad++ < 8)
			fail("word %zu (address %p) is %016llx, expected %016llx", i, (const void *)&mem[i],
			     (unsigned long long)mem[i], (unsigned long long)want);
	}
	if (bad > 8)
		fail("%zu of %zu words differ in all", bad, words);
}

unsigned long wl_stat_field(pid_t pid, int n)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (wl_read_into(path, buf, sizeof(buf)) < 0)
		return (unsigned long)-1;
	/* After the comm, which may hold spaces: field 3 on. */
	char *p = strrchr(buf, ')') + 2;
	for (int i = 3; i < n; i++)
		p = strchr(p, ' ') + 1;
	return strtoul(p, NULL, 10);
}

void wl_die(const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", wl_name, what, strerror(errno));
	exit(2);
}

char wl_dir[PATH_MAX];

const char *wl_path(const char *rel)
{
	static char buf[4][PATH_MAX];
	static int n;
	char *b = buf[n++ % 4];
	snprintf(b, PATH_MAX, "%.3000s/%.1000s", wl_dir, rel);
	return b;
}

void wl_mount(const char *src, const char *target, const char *type, unsigned long flags, const char *data)
{
	if (mount(src, target, type, flags, data))
		wl_die(target);
}

void wl_container_root(char **argv)
{
	wl_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	if (mkdir(wl_path("newroot"), 0755))
		wl_die("mkdir newroot");
	wl_mount("/", wl_path("newroot"), NULL, MS_BIND, NULL);
	char nr[PATH_MAX - 16];
	snprintf(nr, sizeof(nr), "%.4000s/newroot", wl_dir);
	char p[PATH_MAX + 16];
	snprintf(p, sizeof(p), "%s/proc", nr);
	wl_mount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	snprintf(p, sizeof(p), "%s/dev", nr);
	wl_mount("devtmpfs", p, "devtmpfs", MS_NOSUID, NULL);
	snprintf(p, sizeof(p), "%s/dev/pts", nr);
	wl_mount("devpts", p, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620");
	if (chdir(nr) || syscall(SYS_pivot_root, ".", ".") || umount2(".", MNT_DETACH) || chdir(wl_dir))
		wl_die("pivot_root");
	/* The program runs from the new root (its mappings are the new mounts' files), its stdio too. */
	int in = open("/dev/null", O_RDONLY), out = open(wl_path("out.log"), O_WRONLY | O_APPEND | O_CREAT, 0644);
	if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
		wl_die("stdio");
	close(in);
	close(out);
	setenv("WL_MNTNS_INSIDE", "1", 1);
	execv(argv[0], argv);
	wl_die("execv");
}

int wl_sockopt_int(int fd, int level, int name)
{
	int v = -1;
	socklen_t l = sizeof(v);
	if (getsockopt(fd, level, name, &v, &l))
		return -errno;
	return v;
}

void wl_unix_pair(int type, int *x, int *y)
{
	int sv[2];
	if (socketpair(AF_UNIX, type, 0, sv))
		fail("socketpair(%d): %s", type, strerror(errno));
	*x = sv[0];
	*y = sv[1];
}

void wl_ping_pong(int x, int y, const char *what)
{
	char c = 0;
	if (send(x, "!", 1, 0) != 1 || recv(y, &c, 1, MSG_DONTWAIT) != 1 || c != '!')
		fail("%s: a byte sent one way came out as %#x, expected '!'", what, c);
	c = 0;
	if (send(y, "?", 1, 0) != 1 || recv(x, &c, 1, MSG_DONTWAIT) != 1 || c != '?')
		fail("%s: a byte sent the other way came out as %#x, expected '?'", what, c);
}

pid_t wl_fork_holder(void)
{
	pid_t holder = fork();
	if (holder == 0) {
		signal(SIGTERM, SIG_DFL);
		for (;;)
			pause();
	}
	return holder;
}

void wl_holder_done(pid_t holder, int fd, const char *what)
{
	if (syscall(SYS_kcmp, getpid(), holder, KCMP_FILE, fd, fd) != 0)
		fail("%s: the child's fd is no longer the parent's socket (kcmp)", what);
	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);
}
