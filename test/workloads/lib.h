/*
 * The protocol every workload follows (like CRIU's ZDTM): set up state,
 * wl_ready(), wl_wait() for SIGTERM while crest dumps and restores the
 * process, then check everything and wl_done() with the verdict.
 */
#ifndef CREST_WL_LIB_H
#define CREST_WL_LIB_H
#include <signal.h>
#include <stdint.h>
#include <stddef.h>

/* Set by the SIGTERM handler. */
extern volatile sig_atomic_t wl_term;

/* argv[1] is the status file; installs the SIGTERM handler. */
void wl_init(int argc, char **argv, const char *name);
/* Writes "ready" to the status file: all state is in place. */
void wl_ready(void);
/* Sleeps until SIGTERM (at most 120 s, then FAIL: timeout). */
void wl_wait(void);
/* True once SIGTERM has arrived or the timeout passed (for workloads that keep working). */
int wl_should_stop(void);
/* Records a difference; the first call turns the verdict into FAIL. */
void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Writes PASS or FAIL with every difference, returns the exit code. */
int wl_done(void);
/* CREST_WL_SABOTAGE=1: the workload corrupts one piece of its own state before checking, to prove its checks can fail. */
int wl_sabotage(void);

/* FNV-1a over a buffer. */
uint64_t wl_hash(const void *p, size_t n);
/* Reads a whole file into a malloc'ed, NUL-terminated buffer (NULL on error). */
char *wl_read_file(const char *path, size_t *len);
#endif
