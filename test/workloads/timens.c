/*
 * Clocks across a restore (time namespaces): CLOCK_REALTIME, CLOCK_MONOTONIC
 * and CLOCK_BOOTTIME read every 20 ms from ready to SIGTERM. argv[2] is the
 * pause in ms the harness keeps between the dump and the restore. Checked:
 * the largest step of CLOCK_REALTIME is at least the pause (the workload was
 * really away that long); at that step, CLOCK_MONOTONIC and CLOCK_BOOTTIME
 * went on from where they were: not backwards, and forward by at most that
 * step minus the pause (+ 100 ms), as a restore whose clocks continue from
 * the dump gives (criu's time namespace semantics); no other step of either
 * is negative.
 *
 * Sabotage: 1 = the monotonic step is the realtime one (the host's clock
 * shown as is); 2 = the boottime step goes back by 1 s.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv)
{
	wl_init(argc, argv, "timens");
	double pause = argc > 2 ? atof(argv[2]) / 1000 : 3;
	struct timespec tick = { 0, 20 * 1000 * 1000 };
	double rt = wl_clock(CLOCK_REALTIME), mono = wl_clock(CLOCK_MONOTONIC), boot = wl_clock(CLOCK_BOOTTIME);
	double max_rt = 0, mono_at = 0, boot_at = 0, min_mono = 1e9, min_boot = 1e9;
	printf("timens: monotonic %.3f, boottime %.3f at ready\n", mono, boot);
	wl_ready();
	do {
		nanosleep(&tick, NULL);
		double r = wl_clock(CLOCK_REALTIME), m = wl_clock(CLOCK_MONOTONIC), b = wl_clock(CLOCK_BOOTTIME);
		if (r - rt > max_rt) {
			max_rt = r - rt;
			mono_at = m - mono;
			boot_at = b - boot;
		}
		if (m - mono < min_mono)
			min_mono = m - mono;
		if (b - boot < min_boot)
			min_boot = b - boot;
		rt = r, mono = m, boot = b;
	} while (!wl_should_stop());
	if (wl_sabotage() == 1)
		mono_at = max_rt;
	if (wl_sabotage() == 2)
		boot_at = -1;
	printf("timens: largest realtime step %.3f s; monotonic %.3f s, boottime %.3f s then; smallest steps %.3f, %.3f\n", max_rt,
	       mono_at, boot_at, min_mono, min_boot);
	if (max_rt < pause)
		fail("the largest realtime step is %.3f s, expected at least the pause, %.3f s", max_rt, pause);
	const char *names[2] = { "CLOCK_MONOTONIC", "CLOCK_BOOTTIME" };
	double at[2] = { mono_at, boot_at }, min[2] = { min_mono, min_boot };
	for (int i = 0; i < 2; i++) {
		if (at[i] < 0)
			fail("%s went back by %.3f s across the restore", names[i], -at[i]);
		else if (at[i] > max_rt - pause + 0.1)
			fail("%s jumped %.3f s across the restore, expected at most %.3f s (the realtime step %.3f s less the pause %.3f s, + 0.1 s)",
			     names[i], at[i], max_rt - pause + 0.1, max_rt, pause);
		if (min[i] < 0 && at[i] >= 0)
			fail("%s went back by %.3f s", names[i], -min[i]);
	}
	return wl_done();
}
