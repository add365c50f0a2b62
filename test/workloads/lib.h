/*
 * The protocol every workload follows (like CRIU's ZDTM):
 *
 *   wl_init(argc, argv, "name");   argv[1] is the status file; SIGTERM handler
 *   ... set up state, record what is expected ...
 *   wl_ready();                    "ready\n" to the status file (atomically)
 *   wl_wait();                     sleep until SIGTERM (or loop on wl_should_stop())
 *   ... compare everything, fail("what: is X, expected Y") per difference ...
 *   return wl_done();              "PASS\n" or "FAIL: ...\n" one line each; exit code 0/1
 *
 * Meanwhile the harness dumps, kills, restores the process and sends SIGTERM.
 * Waiting more than 120 s for SIGTERM writes "FAIL: timeout" and exits 1.
 */
#ifndef CREST_WL_LIB_H
#define CREST_WL_LIB_H
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#ifndef WL_TIMEOUT_S
#define WL_TIMEOUT_S 120
#endif

/* Set to 1 by the SIGTERM handler. */
extern volatile sig_atomic_t wl_term;
/* The workload's name (the prefix of its output lines). */
extern const char *wl_name;

/* argv[1] is the status file; installs the SIGTERM handler, line-buffers stdout. */
void wl_init(int argc, char **argv, const char *name);
/* Writes "ready" to the status file: all state is in place. Starts the 120 s clock. */
void wl_ready(void);
/* Sleeps (ppoll with SIGTERM unblocked, 1 s slices) until SIGTERM; on timeout, wl_timeout(). */
void wl_wait(void);
/* For workloads that keep working: true once SIGTERM arrived; calls wl_timeout() after 120 s. */
int wl_should_stop(void);
/* Counts d seconds (clamped: clock jumps across a restore are not waiting) towards the timeout. */
void wl_count_wait(double d);
/* Writes "FAIL: timeout" and exits 1. */
void wl_timeout(void) __attribute__((noreturn));

/* Records one difference; any call turns the verdict into FAIL. */
void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* How many differences were recorded so far. */
int wl_failures(void);
/* Writes PASS, or FAIL with every difference, to the status file; returns the exit code. */
int wl_done(void);

/*
 * CREST_WL_SABOTAGE=N (N >= 1; any other non-empty value counts as 1): the
 * workload corrupts item N of its own state right before checking, which
 * shows that the check for it can fail. 0 when unset. Each workload lists its
 * items in its header comment and in docs/workloads.md.
 */
int wl_sabotage(void);

/* FNV-1a, 64 bits. */
uint64_t wl_hash(const void *p, size_t n);
/* A clock in seconds. */
double wl_clock(clockid_t clk);
/* Reads a whole file into a malloc'ed, NUL-terminated buffer (NULL on error).
 * Setup only: it allocates. */
char *wl_read_file(const char *path, size_t *len);
/* Reads a file into buf (NUL-terminated, at most cap-1 bytes); returns its length,
 * -1 on error or if it does not fit. Never allocates. */
ssize_t wl_read_into(const char *path, char *buf, size_t cap);
/* fail()s for each line of `before` missing from `after` ("lost") and each line
 * of `after` not in `before` ("now has"). Never allocates. */
void wl_compare_lines(const char *what, const char *before, const char *after);
/* The value of "Key:" in /proc/self/status, copied into buf (empty if absent). */
const char *wl_status_field(const char *key, char *buf, size_t cap);
/* Byte i of the pattern wl_pattern_write(seed) writes. */
unsigned char wl_pattern_byte(size_t i, unsigned seed);
/* Writes n bytes of a pattern (byte i depends on i and seed) to fd, for data in flight. */
void wl_pattern_write(int fd, size_t n, unsigned seed);
/* Reads fd until EOF (or EAGAIN on a non-blocking fd) and fail()s unless it
 * gives exactly the `want` bytes wl_pattern_write(seed) wrote. */
void wl_pattern_check(int fd, size_t want, unsigned seed, const char *what);
/* Fills `words` 64-bit words with a non-zero pseudo-random pattern (xorshift64, every word odd). */
void wl_words_fill(uint64_t *mem, size_t words);
/* mib MiB of private anonymous memory filled with that pattern (*words of it), or NULL after fail(). */
uint64_t *wl_words_map(size_t mib, size_t *words);
/* fail()s naming the first 8 words (and the count) that no longer hold wl_words_fill's pattern. */
void wl_words_check(const uint64_t *mem, size_t words);

/* Field n of /proc/PID/stat, numbered as proc(5) does (7 is tty_nr); (unsigned long)-1 if unreadable. */
unsigned long wl_stat_field(pid_t pid, int n);

/* For setup that cannot go on: "NAME: what: strerror(errno)" to stderr, exit 2 (no verdict). */
void wl_die(const char *what) __attribute__((noreturn));
/* The workload's directory, for wl_path: the workload fills it (getcwd) before the first wl_path. */
extern char wl_dir[PATH_MAX];
/* wl_dir/rel, in one of 4 static buffers used in turn (so up to 4 at once in one call). */
const char *wl_path(const char *rel);
/* mount(2), or wl_die(target). */
void wl_mount(const char *src, const char *target, const char *type, unsigned long flags, const char *data);
/*
 * For a workload started in a mount namespace of its own (crest run --ns mnt),
 * which it sets up as a container runtime does: everything private, a bind of
 * the host's root at wl_dir/newroot with proc at /proc, devtmpfs at /dev and a
 * devpts of its own (newinstance) at /dev/pts, pivoted to; stdin /dev/null,
 * stdout and stderr wl_dir/out.log (both through the new root); then the
 * program runs itself again from there (execv argv, WL_MNTNS_INSIDE=1 in its
 * environment), as a runtime execs the container's program once inside.
 */
void wl_container_root(char **argv) __attribute__((noreturn));

/* An int socket option's value, or -errno. */
int wl_sockopt_int(int fd, int level, int name);
/* A connected pair of AF_UNIX sockets of `type` in *x, *y (fail()s if it cannot). */
void wl_unix_pair(int type, int *x, int *y);
/* fail()s unless a byte sent x -> y and one sent y -> x both arrive (recv MSG_DONTWAIT). */
void wl_ping_pong(int x, int y, const char *what);
/* A child that keeps every fd it inherited and sleeps until killed (SIGTERM
 * kills it), so that the descriptions are shared with another task. */
pid_t wl_fork_holder(void);
/* fail()s unless the holder's fd `fd` is still the parent's description of
 * that fd (kcmp), then kills and reaps the holder. */
void wl_holder_done(pid_t holder, int fd, const char *what);
#endif
