/*
 * Restartable sequences (zdtm transition/rseq01's case): the main thread and
 * three more threads run, from ready to SIGTERM, one rseq critical section after
 * another in glibc's registered rseq area, each section a long busy loop, so
 * that a checkpoint almost always stops each of them inside one. A section
 * the kernel aborts (preemption, a signal, migration) resumes at its abort
 * handler and is counted; one that runs to its end reads (struct
 * rseq).rseq_cs as its last instruction inside, which must still point at
 * its descriptor. A section that ends with the field cleared ran without
 * the kernel's protection: what a restore gives a thread it lets go on
 * inside a section whose rseq_cs it lost (the kernel clears the field when
 * the dumper first runs code in the thread).
 *
 * After SIGTERM: no section of any thread ended with the field cleared,
 * and the area is still registered (rseq() again says EBUSY).
 *
 * Sabotage: 1 = the main thread clears the field inside one more section.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A few ms of a busy loop per section. */
#define SPINS 5000000UL

struct runner {
	char name[16];
	_Atomic unsigned long completed, aborted;
	/* what a section found in rseq_cs at its end, and what it had armed */
	uint64_t lost_field, lost_armed;
	_Atomic int lost;
};

/* The main thread and three more: more busy threads than this machine has
 * CPUs, so that a thread is often seized preempted, with the kernel's rseq
 * work for it still due (run on crest's first syscall in it). */
#define THREADS 4
static struct runner runners[THREADS];
static _Atomic int started;

static struct rseq *my_rseq(void)
{
	return (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
}

/*
 * One pass through the critical section [1, 2): returns 1 if the kernel
 * aborted it, else 0 with *armed the descriptor it put in rseq_cs and
 * *field what rseq_cs held at the section's last instruction.
 */
static int section(struct rseq *rs, int clear, uint64_t *armed, uint64_t *field)
{
	int aborted;
	uint64_t a, f;
	__asm__ __volatile__(
		".pushsection __rseq_cs, \"aw\"\n\t"
		".balign 32\n\t"
		"3:\n\t"
		".long 0, 0\n\t"		/* version, flags */
		".quad 1f, 2f - 1f, 4f\n\t"	/* start_ip, post_commit_offset, abort_ip */
		".popsection\n\t"
		"leaq 3b(%%rip), %[a]\n\t"
		"movq %[a], 8(%[rs])\n\t"	/* rseq_cs = &descriptor */
		"1:\n\t"
		"movq %[spins], %%rcx\n\t"
		"5:\n\t"
		"decq %%rcx\n\t"
		"jnz 5b\n\t"
		"testl %[clear], %[clear]\n\t"
		"jz 6f\n\t"
		"movq $0, 8(%[rs])\n\t"
		"6:\n\t"
		"movq 8(%[rs]), %[f]\n\t"	/* the last instruction inside */
		"2:\n\t"
		"xorl %[ab], %[ab]\n\t"
		"jmp 7f\n\t"
		".pushsection __rseq_failure, \"ax\"\n\t"
		".byte 0x0f, 0xb9, 0x3d\n\t"	/* nopl RSEQ_SIG(%rip): the signature before the handler */
		".long 0x53053053\n\t"
		"4:\n\t"
		"movl $1, %[ab]\n\t"
		"jmp 7f\n\t"
		".popsection\n\t"
		"7:\n\t"
		: [ab] "=&r"(aborted), [a] "=&r"(a), [f] "=&r"(f)
		: [rs] "r"(rs), [spins] "r"(SPINS), [clear] "r"(clear)
		: "rcx", "memory", "cc");
	*armed = a;
	*field = f;
	return aborted;
}

/* One section; returns whether it ran to its end. */
static int run(struct runner *me, int clear)
{
	uint64_t armed, field;
	if (section(my_rseq(), clear, &armed, &field)) {
		me->aborted++;
		return 0;
	}
	me->completed++;
	if (field != armed && !me->lost) {
		me->lost_field = field;
		me->lost_armed = armed;
		me->lost = 1;
	}
	return 1;
}

static void check_registered(struct runner *me)
{
	errno = 0;
	long r = syscall(SYS_rseq, my_rseq(), __rseq_size < 32 ? 32 : __rseq_size, 0, RSEQ_SIG);
	if (r != -1 || errno != EBUSY)
		fail("%s: its rseq area is not registered any more (rseq() gives %ld, errno %d, not EBUSY)", me->name, r, errno);
}

static void *other(void *arg)
{
	struct runner *me = arg;
	started++;
	while (!wl_term)
		run(me, 0);
	check_registered(me);
	return NULL;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "rseq-cs");
	if (!__rseq_size) {
		fail("glibc registered no rseq area (glibc.pthread.rseq=0?)");
		return wl_done();
	}
	pthread_t th[THREADS];
	snprintf(runners[0].name, sizeof(runners[0].name), "main thread");
	for (int i = 1; i < THREADS; i++) {
		snprintf(runners[i].name, sizeof(runners[i].name), "thread %d", i);
		if (pthread_create(&th[i], NULL, other, &runners[i])) {
			fail("cannot start thread %d", i);
			return wl_done();
		}
	}
	while (started < THREADS - 1)
		usleep(1000);
	wl_ready();
	while (!wl_should_stop())
		run(&runners[0], 0);
	if (wl_sabotage() == 1)
		while (!run(&runners[0], 1))
			;
	for (int i = 1; i < THREADS; i++)
		pthread_join(th[i], NULL);
	check_registered(&runners[0]);
	for (int i = 0; i < THREADS; i++) {
		struct runner *r = &runners[i];
		printf("%s: %s: %lu sections ran to their end, %lu were aborted\n", wl_name, r->name, (unsigned long)r->completed,
		       (unsigned long)r->aborted);
		if (r->lost)
			fail("%s: a critical section ran to its end with rseq_cs 0x%lx, armed with 0x%lx: the kernel had lost it", r->name,
			     (unsigned long)r->lost_field, (unsigned long)r->lost_armed);
	}
	return wl_done();
}
