/* The simplest workload: a counter that keeps counting (and printing) across a checkpoint. */
#define _GNU_SOURCE
#include "lib.h"
#include <stdio.h>
#include <time.h>

int main(int argc, char **argv)
{
	wl_init(argc, argv, "loop");
	unsigned long count = 0, at_ready;
	struct timespec tick = { 0, 10 * 1000 * 1000 };
	for (int i = 0; i < 10; i++, count++)
		nanosleep(&tick, NULL);
	at_ready = count;
	wl_ready();
	while (!wl_should_stop()) {
		nanosleep(&tick, NULL);
		if (++count % 100 == 0)
			printf("loop: %lu\n", count);
	}
	if (wl_sabotage())
		count = at_ready;
	if (count <= at_ready)
		fail("the counter did not move on: %lu at ready, %lu now", at_ready, count);
	printf("loop: counted %lu\n", count);
	return wl_done();
}
