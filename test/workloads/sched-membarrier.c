/*
 * membarrier registrations, which belong to the address space: every
 * REGISTER command the kernel offers (global expedited, private expedited,
 * private expedited sync-core and rseq). After the checkpoint
 * MEMBARRIER_CMD_GET_REGISTRATIONS must give the same mask, and each
 * registered barrier must run (an unregistered one fails with EPERM).
 *
 * Sabotage: 1 = the barriers checked as if none had been registered after
 * the checkpoint (a fresh mm's answer).
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <linux/membarrier.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CMD_GET_REGISTRATIONS (1 << 9)

static int membarrier(int cmd)
{
	return (int)syscall(SYS_membarrier, cmd, 0, 0);
}

static const struct {
	const char *name;
	int reg, run;
} cmds[] = {
	{ "GLOBAL_EXPEDITED", MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, MEMBARRIER_CMD_GLOBAL_EXPEDITED },
	{ "PRIVATE_EXPEDITED", MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, MEMBARRIER_CMD_PRIVATE_EXPEDITED },
	{ "PRIVATE_EXPEDITED_SYNC_CORE", MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE,
	  MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE },
	{ "PRIVATE_EXPEDITED_RSEQ", MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ },
};
#define NCMDS (int)(sizeof(cmds) / sizeof(cmds[0]))

int main(int argc, char **argv)
{
	wl_init(argc, argv, "sched-membarrier");
	int supported = membarrier(MEMBARRIER_CMD_QUERY), registered = 0;
	if (supported < 0)
		fail("membarrier is not supported: %d", errno);
	for (int i = 0; i < NCMDS; i++) {
		if (!(supported & cmds[i].reg))
			continue;
		if (membarrier(cmds[i].reg))
			fail("REGISTER_%s failed: %d", cmds[i].name, errno);
		else
			registered |= cmds[i].reg;
	}
	int before = membarrier(CMD_GET_REGISTRATIONS);
	printf("sched-membarrier: registered %#x, the kernel says %#x\n", registered, before);

	wl_ready();
	wl_wait();

	int now = membarrier(CMD_GET_REGISTRATIONS);
	if (wl_sabotage() == 1)
		registered = 0, now = 0;
	if (before >= 0 && now != before)
		fail("GET_REGISTRATIONS is %#x, expected %#x", now, before);
	for (int i = 0; i < NCMDS; i++) {
		if (!(supported & cmds[i].reg))
			continue;
		int r = membarrier(cmds[i].run), want = registered & cmds[i].reg ? 0 : -1;
		if (r != want)
			fail("%s barrier: %d (errno %d), expected %d", cmds[i].name, r, r ? errno : 0, want);
	}
	return wl_done();
}
