/*
 * The simplest workload: a counter incremented every 10 ms (nanosleep),
 * printed to stdout once a second; after SIGTERM it must have moved on from
 * where it was at ready (and not by more ticks than 10 ms periods of wall
 * time passed). Used by the demo and the failure tests.
 *
 * Sabotage: 1 = the counter is set back to its value at ready.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <stdio.h>
#include <time.h>

int main(int argc, char **argv)
{
	wl_init(argc, argv, "loop");
	unsigned long count = 0;
	struct timespec tick = { 0, 10 * 1000 * 1000 };
	for (int i = 0; i < 10; i++, count++)
		nanosleep(&tick, NULL);
	unsigned long at_ready = count;
	double wall_ready = wl_clock(CLOCK_REALTIME), mono_ready = wl_clock(CLOCK_MONOTONIC), last_print = mono_ready;
	printf("loop: counter at %lu\n", count);
	wl_ready();
	do { /* at least one tick after ready, however soon SIGTERM comes */
		nanosleep(&tick, NULL);
		count++;
		double now = wl_clock(CLOCK_MONOTONIC);
		/* once a second; a restore may shift the monotonic clock, so re-sync on jumps */
		if (now - last_print >= 1 || now < last_print) {
			printf("loop: %lu\n", count);
			last_print = now;
		}
	} while (!wl_should_stop());
	if (wl_sabotage())
		count = at_ready;
	/* Time since ready: the larger of the two clocks (either may be off after a restore on another machine). */
	double wall = wl_clock(CLOCK_REALTIME) - wall_ready, mono = wl_clock(CLOCK_MONOTONIC) - mono_ready;
	if (mono > wall)
		wall = mono;
	printf("loop: counted %lu (%lu at ready, %.1f s ago)\n", count, at_ready, wall);
	if (count <= at_ready)
		fail("the counter did not move on: it is %lu, expected more than %lu (its value at ready)", count, at_ready);
	/* Nor can it have counted faster than one tick per 10 ms of wall time (it may count slower: downtime). */
	else if (wall >= 0 && (double)(count - at_ready) > wall / 0.010 + 2)
		fail("the counter jumped: it is %lu, %lu at ready %.3f s ago, expected at most %lu", count, at_ready, wall,
		     at_ready + (unsigned long)(wall / 0.010) + 2);
	return wl_done();
}
