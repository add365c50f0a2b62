/*
 * A process whose main thread has called pthread_exit while another thread
 * runs on (zdtm pthread02's case): /proc shows the leader as a zombie, yet
 * the process lives. crest refuses it by name; the thread left must carry
 * on untouched: it writes "ready", then waits for SIGTERM (which it alone
 * can take) and writes its verdict.
 *
 * Sabotage: none (the test checks the refusal and that the thread answers).
 */
#define _GNU_SOURCE
#include "lib.h"
#include <pthread.h>
#include <signal.h>

static void *worker(void *arg)
{
	(void)arg;
	wl_ready();
	wl_wait();
	_exit(wl_done());
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "leader-exit");
	pthread_t t;
	if (pthread_create(&t, NULL, worker, NULL)) {
		fail("pthread_create failed");
		return wl_done();
	}
	pthread_exit(NULL);
}
