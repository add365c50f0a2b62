/*
 * FPU, SSE and AVX state continue bit-exact when a checkpoint interrupts
 * the middle of a computation. One inline-asm loop runs from ready until
 * SIGTERM with everything live in registers:
 *   - all 16 ymm registers, each a different start value, each iteration
 *     += a per-lane delta (vpaddq, all 256 bits);
 *   - all 8 x87 registers: a counter (+= 1.0 per iteration), 1.0, and six
 *     80-bit constants with full 64-bit mantissas; the x87 control word set
 *     to round-toward-zero;
 *   - MXCSR with round-toward-zero, FTZ, DAZ and two sticky exception flags;
 *   - r12 (the iteration counter), rbx and r13-r15 (constants).
 * The updates are deterministic, so after the loop every register must equal
 * a recomputation from the iteration count (kept three times: r12, st(0)
 * and ymm0's lane 0; two must agree). Each update is a bijection (x -> x + d),
 * so a difference in any bit persists to the end: checking once after the
 * loop catches what checking every iteration would, and leaves the loop
 * nothing but register work.
 * The loop also polls clock_gettime (a raw syscall, which keeps every vector
 * register) every 2^20 iterations to time out after 120 s (WL_TIMEOUT_S).
 * AVX2 is required; AVX-512 state (zmm16-31, opmasks) is not exercised.
 *
 * Sabotage (the SIGTERM handler flips one bit in the interrupted register
 * state saved on its signal frame, which sigreturn loads back, exactly like a
 * restore that got one bit wrong):
 *   1 = ymm7 bit 168 (upper half), 2 = ymm12 bit 3 (xmm half), 3 = st(5)
 *   mantissa bit 17, 4 = MXCSR bit 13 (rounding), 5 = r14 bit 9, 6 = x87
 *   control word bit 11, 7 = st(0) bit 0 (the x87 counter), 8 = the upper
 *   half of ymm3 cleared (a restore that forgot YMM state), 9 = r12 bit 20
 *   (the iteration counter).
 */
#define _GNU_SOURCE
#include "lib.h"
#include <cpuid.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>

struct state {
	uint64_t ymm_init[16][4];
	uint64_t ymm_out[16][4];
	uint64_t delta[4];
	unsigned char x87_in[6][16]; /* 80-bit values, 16 bytes apart */
	unsigned char x87_out[8][16]; /* st(0) .. st(7) as the loop left them */
	uint64_t gpr_out[5]; /* r12 rbx r13 r14 r15 */
	uint64_t ts[2];
	uint64_t last_sec, waited_sec;
	uint32_t mxcsr_in, mxcsr_out, mxcsr_saved, timed_out;
	uint16_t fcw_in, fcw_out, fcw_saved;
} __attribute__((aligned(32)));

static struct state s;
static const uint64_t gpr_const[4] = { 0xbbbbbbbb0000bbbbULL, 0x1313131313131313ULL, 0x1414141414141414ULL,
				       0x1515151515151515ULL };
static const char *gpr_name[5] = { "r12", "rbx", "r13", "r14", "r15" };
static int sabotage;
static unsigned ymm_hi_offset = 576; /* of the YMM_Hi128 component in the xsave area */

static void on_term(int sig, siginfo_t *si, void *ucv)
{
	(void)sig, (void)si;
	ucontext_t *uc = ucv;
	struct _libc_fpstate *fp = uc->uc_mcontext.fpregs;
	unsigned char *xsave = (unsigned char *)fp;
	switch (sabotage) {
	case 1:
		xsave[ymm_hi_offset + 7 * 16 + 5] ^= 1; /* ymm7 lane 2 bit 40 = bit 168 */
		break;
	case 2:
		fp->_xmm[12].element[0] ^= 1u << 3;
		break;
	case 3:
		fp->_st[5].significand[1] ^= 1u << 1; /* mantissa bit 17 */
		break;
	case 4:
		fp->mxcsr ^= 1u << 13;
		break;
	case 5:
		uc->uc_mcontext.gregs[REG_R14] ^= 1LL << 9;
		break;
	case 6:
		fp->cwd ^= 1u << 11;
		break;
	case 7:
		fp->_st[0].significand[0] ^= 1;
		break;
	case 8:
		memset(xsave + ymm_hi_offset + 3 * 16, 0, 16);
		break;
	case 9:
		uc->uc_mcontext.gregs[REG_R12] ^= 1LL << 20;
		break;
	}
	wl_term = 1;
}

/* Normal 80-bit values with every mantissa bit in use. */
static void make_x87_constants(void)
{
	for (int i = 0; i < 6; i++) {
		uint64_t mant = 0x8000000000000000ULL | (0x0123456789abcdefULL * (uint64_t)(2 * i + 3));
		uint16_t se = (uint16_t)((0x3fff + 7 * i - 20) | (i & 1 ? 0x8000 : 0));
		memcpy(s.x87_in[i], &mant, 8);
		memcpy(s.x87_in[i] + 8, &se, 2);
	}
}

static void print80(char *out, size_t n, const unsigned char *v)
{
	snprintf(out, n, "%02x%02x:%02x%02x%02x%02x%02x%02x%02x%02x", v[9], v[8], v[7], v[6], v[5], v[4], v[3], v[2], v[1],
		 v[0]);
}

#define OFF(f) [f] "i"(offsetof(struct state, f))

static void run_loop(void)
{
	__asm__ volatile(
		"ldmxcsr %c[mxcsr_in](%[s])\n\t"
		"fldcw %c[fcw_in](%[s])\n\t"
		"vmovdqa %c[ymm_init]+0(%[s]), %%ymm0\n\t"    "vmovdqa %c[ymm_init]+32(%[s]), %%ymm1\n\t"
		"vmovdqa %c[ymm_init]+64(%[s]), %%ymm2\n\t"   "vmovdqa %c[ymm_init]+96(%[s]), %%ymm3\n\t"
		"vmovdqa %c[ymm_init]+128(%[s]), %%ymm4\n\t"  "vmovdqa %c[ymm_init]+160(%[s]), %%ymm5\n\t"
		"vmovdqa %c[ymm_init]+192(%[s]), %%ymm6\n\t"  "vmovdqa %c[ymm_init]+224(%[s]), %%ymm7\n\t"
		"vmovdqa %c[ymm_init]+256(%[s]), %%ymm8\n\t"  "vmovdqa %c[ymm_init]+288(%[s]), %%ymm9\n\t"
		"vmovdqa %c[ymm_init]+320(%[s]), %%ymm10\n\t" "vmovdqa %c[ymm_init]+352(%[s]), %%ymm11\n\t"
		"vmovdqa %c[ymm_init]+384(%[s]), %%ymm12\n\t" "vmovdqa %c[ymm_init]+416(%[s]), %%ymm13\n\t"
		"vmovdqa %c[ymm_init]+448(%[s]), %%ymm14\n\t" "vmovdqa %c[ymm_init]+480(%[s]), %%ymm15\n\t"
		/* x87: st(7)..st(2) = x87_in[5]..x87_in[0], st(1) = 1.0, st(0) = 0 (the counter) */
		"fldt %c[x87_in]+80(%[s])\n\t" "fldt %c[x87_in]+64(%[s])\n\t" "fldt %c[x87_in]+48(%[s])\n\t"
		"fldt %c[x87_in]+32(%[s])\n\t" "fldt %c[x87_in]+16(%[s])\n\t" "fldt %c[x87_in]+0(%[s])\n\t"
		"fld1\n\t"
		"fldz\n\t"
		"xor %%r12, %%r12\n\t"
		"movabs $0xbbbbbbbb0000bbbb, %%rbx\n\t"
		"movabs $0x1313131313131313, %%r13\n\t"
		"movabs $0x1414141414141414, %%r14\n\t"
		"movabs $0x1515151515151515, %%r15\n\t"
		"1:\n\t"
		"vpaddq %c[delta](%[s]), %%ymm0, %%ymm0\n\t"   "vpaddq %c[delta](%[s]), %%ymm1, %%ymm1\n\t"
		"vpaddq %c[delta](%[s]), %%ymm2, %%ymm2\n\t"   "vpaddq %c[delta](%[s]), %%ymm3, %%ymm3\n\t"
		"vpaddq %c[delta](%[s]), %%ymm4, %%ymm4\n\t"   "vpaddq %c[delta](%[s]), %%ymm5, %%ymm5\n\t"
		"vpaddq %c[delta](%[s]), %%ymm6, %%ymm6\n\t"   "vpaddq %c[delta](%[s]), %%ymm7, %%ymm7\n\t"
		"vpaddq %c[delta](%[s]), %%ymm8, %%ymm8\n\t"   "vpaddq %c[delta](%[s]), %%ymm9, %%ymm9\n\t"
		"vpaddq %c[delta](%[s]), %%ymm10, %%ymm10\n\t" "vpaddq %c[delta](%[s]), %%ymm11, %%ymm11\n\t"
		"vpaddq %c[delta](%[s]), %%ymm12, %%ymm12\n\t" "vpaddq %c[delta](%[s]), %%ymm13, %%ymm13\n\t"
		"vpaddq %c[delta](%[s]), %%ymm14, %%ymm14\n\t" "vpaddq %c[delta](%[s]), %%ymm15, %%ymm15\n\t"
		"fadd %%st(1), %%st\n\t"
		"inc %%r12\n\t"
		"testl $0xfffff, %%r12d\n\t"
		"jnz 2f\n\t"
		/* every 2^20 iterations: clock_gettime(CLOCK_MONOTONIC) by a raw syscall
		 * (clobbers rax rcx r11 only), whole seconds added up, jumps ignored */
		"mov $228, %%eax\n\t"
		"mov $1, %%edi\n\t"
		"lea %c[ts](%[s]), %%rsi\n\t"
		"syscall\n\t"
		"mov %c[ts](%[s]), %%rax\n\t"
		"mov %%rax, %%rcx\n\t"
		"sub %c[last_sec](%[s]), %%rax\n\t"
		"mov %%rcx, %c[last_sec](%[s])\n\t"
		"cmp $5, %%rax\n\t"
		"ja 2f\n\t"
		"add %%rax, %c[waited_sec](%[s])\n\t"
		"cmpq %[timeout], %c[waited_sec](%[s])\n\t"
		"jae 3f\n\t"
		"2:\n\t"
		"cmpl $0, %[term]\n\t"
		"je 1b\n\t"
		"jmp 4f\n\t"
		"3:\n\t"
		"movl $1, %c[timed_out](%[s])\n\t"
		"4:\n\t"
		"vmovdqa %%ymm0, %c[ymm_out]+0(%[s])\n\t"    "vmovdqa %%ymm1, %c[ymm_out]+32(%[s])\n\t"
		"vmovdqa %%ymm2, %c[ymm_out]+64(%[s])\n\t"   "vmovdqa %%ymm3, %c[ymm_out]+96(%[s])\n\t"
		"vmovdqa %%ymm4, %c[ymm_out]+128(%[s])\n\t"  "vmovdqa %%ymm5, %c[ymm_out]+160(%[s])\n\t"
		"vmovdqa %%ymm6, %c[ymm_out]+192(%[s])\n\t"  "vmovdqa %%ymm7, %c[ymm_out]+224(%[s])\n\t"
		"vmovdqa %%ymm8, %c[ymm_out]+256(%[s])\n\t"  "vmovdqa %%ymm9, %c[ymm_out]+288(%[s])\n\t"
		"vmovdqa %%ymm10, %c[ymm_out]+320(%[s])\n\t" "vmovdqa %%ymm11, %c[ymm_out]+352(%[s])\n\t"
		"vmovdqa %%ymm12, %c[ymm_out]+384(%[s])\n\t" "vmovdqa %%ymm13, %c[ymm_out]+416(%[s])\n\t"
		"vmovdqa %%ymm14, %c[ymm_out]+448(%[s])\n\t" "vmovdqa %%ymm15, %c[ymm_out]+480(%[s])\n\t"
		"fstpt %c[x87_out]+0(%[s])\n\t"   "fstpt %c[x87_out]+16(%[s])\n\t"
		"fstpt %c[x87_out]+32(%[s])\n\t"  "fstpt %c[x87_out]+48(%[s])\n\t"
		"fstpt %c[x87_out]+64(%[s])\n\t"  "fstpt %c[x87_out]+80(%[s])\n\t"
		"fstpt %c[x87_out]+96(%[s])\n\t"  "fstpt %c[x87_out]+112(%[s])\n\t"
		"fnstcw %c[fcw_out](%[s])\n\t"
		"fldcw %c[fcw_saved](%[s])\n\t"
		"stmxcsr %c[mxcsr_out](%[s])\n\t"
		"ldmxcsr %c[mxcsr_saved](%[s])\n\t"
		"vzeroupper\n\t"
		"mov %%r12, %c[gpr_out]+0(%[s])\n\t"
		"mov %%rbx, %c[gpr_out]+8(%[s])\n\t"
		"mov %%r13, %c[gpr_out]+16(%[s])\n\t"
		"mov %%r14, %c[gpr_out]+24(%[s])\n\t"
		"mov %%r15, %c[gpr_out]+32(%[s])\n\t"
		:
		: [s] "r"(&s), [term] "m"(wl_term), [timeout] "i"(WL_TIMEOUT_S), OFF(ymm_init), OFF(ymm_out),
		  OFF(delta), OFF(x87_in), OFF(x87_out), OFF(gpr_out), OFF(ts), OFF(last_sec), OFF(waited_sec),
		  OFF(mxcsr_in), OFF(mxcsr_out), OFF(mxcsr_saved), OFF(timed_out), OFF(fcw_in), OFF(fcw_out), OFF(fcw_saved)
		: "rax", "rbx", "rcx", "rdi", "rsi", "r11", "r12", "r13", "r14", "r15", "xmm0", "xmm1", "xmm2", "xmm3",
		  "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "st",
		  "st(1)", "st(2)", "st(3)", "st(4)", "st(5)", "st(6)", "st(7)", "memory", "cc");
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "fpu");
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("avx2")) {
		fail("this CPU has no AVX2: the fpu workload needs it");
		return wl_done();
	}
	unsigned a, b, c, d;
	if (__get_cpuid_count(0xd, 2, &a, &b, &c, &d) && a == 256)
		ymm_hi_offset = b;
	sabotage = wl_sabotage();
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_term;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGTERM, &sa, NULL);

	for (int r = 0; r < 16; r++)
		for (int l = 0; l < 4; l++)
			s.ymm_init[r][l] = 0x0123456789abcdefULL * (uint64_t)(r * 4 + l + 1) + ((uint64_t)r << 56);
	const uint64_t delta[4] = { 1, 3, 0x10001, 0x8000000000000001ULL };
	memcpy(s.delta, delta, sizeof(delta));
	make_x87_constants();
	/* masks as by default, round toward zero, FTZ, DAZ, sticky ZE and PE */
	s.mxcsr_in = 0x1f80 | (3u << 13) | (1u << 15) | (1u << 6) | (1u << 2) | (1u << 5);
	s.fcw_in = 0x037f | (3u << 10); /* default, rounding toward zero */
	__asm__ volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(s.mxcsr_saved), "=m"(s.fcw_saved));
	printf("fpu: ymm0-15, st(0)-st(7), MXCSR %#x, FCW %#x, r12-r15 and rbx live in one loop%s\n", s.mxcsr_in,
	       s.fcw_in, __builtin_cpu_supports("avx512f") ? " (AVX-512 present, not used)" : "");

	wl_ready();
	run_loop();
	if (s.timed_out)
		wl_timeout();

	/* The iteration count, three times: r12, st(0), and lane 0 of ymm0 (delta 1). Two must agree. */
	uint64_t c_r12 = s.gpr_out[0], c_ymm = s.ymm_out[0][0] - s.ymm_init[0][0], c_x87 = ~0ULL;
	long double x87_count;
	memcpy(&x87_count, s.x87_out[0], 10);
	if (x87_count >= 0 && x87_count < 18446744073709551616.0L)
		c_x87 = (uint64_t)x87_count;
	uint64_t count = c_r12 == c_x87 || c_r12 == c_ymm ? c_r12 : c_x87 == c_ymm ? c_x87 : c_r12;
	if (c_r12 != count)
		fail("r12 (the iteration counter) is %llu, but st(0) and ymm0 say %llu iterations", (unsigned long long)c_r12,
		     (unsigned long long)count);
	printf("fpu: %llu iterations\n", (unsigned long long)count);
	for (int r = 0; r < 16; r++)
		for (int l = 0; l < 4; l++) {
			uint64_t want = s.ymm_init[r][l] + count * s.delta[l];
			if (s.ymm_out[r][l] != want)
				fail("ymm%d lane %d (bits %d-%d) is %016llx, expected %016llx after %llu iterations", r, l,
				     l * 64, l * 64 + 63, (unsigned long long)s.ymm_out[r][l], (unsigned long long)want,
				     (unsigned long long)count);
		}
	unsigned char want80[8][16];
	memset(want80, 0, sizeof(want80));
	long double cnt = (long double)count, one = 1.0L;
	memcpy(want80[0], &cnt, 10);
	memcpy(want80[1], &one, 10);
	for (int i = 0; i < 6; i++)
		memcpy(want80[2 + i], s.x87_in[i], 10);
	for (int i = 0; i < 8; i++)
		if (memcmp(s.x87_out[i], want80[i], 10)) {
			char got[32], want[32];
			print80(got, sizeof(got), s.x87_out[i]);
			print80(want, sizeof(want), want80[i]);
			fail("st(%d) is %s, expected %s%s", i, got, want, i == 0 ? " (the x87 iteration counter)" : "");
		}
	if (s.fcw_out != s.fcw_in)
		fail("x87 control word is %#x, expected %#x", s.fcw_out, s.fcw_in);
	if (s.mxcsr_out != s.mxcsr_in)
		fail("MXCSR is %#x, expected %#x", s.mxcsr_out, s.mxcsr_in);
	for (int i = 1; i < 5; i++)
		if (s.gpr_out[i] != gpr_const[i - 1])
			fail("%s is %016llx, expected %016llx", gpr_name[i], (unsigned long long)s.gpr_out[i],
			     (unsigned long long)gpr_const[i - 1]);
	return wl_done();
}
