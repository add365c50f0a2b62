/*
 * FPU, SSE and AVX state continue bit-exact when a checkpoint interrupts
 * the middle of a computation: all 16 ymm registers, the x87 stack, MXCSR
 * (non-default rounding) and r12-r15 stay live in one asm loop that runs
 * until SIGTERM; afterwards every lane must equal what the iteration count
 * says.
 */
#include "lib.h"
#include <stdio.h>
#include <string.h>

static uint64_t ymm_init[16][4] __attribute__((aligned(32)));
static const uint64_t delta[4] __attribute__((aligned(32))) = { 1, 3, 0x10001, 0x8000000000000001ULL };
static uint64_t ymm_out[16][4] __attribute__((aligned(32)));

int main(int argc, char **argv)
{
	wl_init(argc, argv, "fpu");
	if (!__builtin_cpu_supports("avx2")) {
		fail("this CPU has no AVX2");
		return wl_done();
	}
	for (int r = 0; r < 16; r++)
		for (int l = 0; l < 4; l++)
			ymm_init[r][l] = 0x0123456789abcdefULL * (uint64_t)(r * 4 + l + 1);
	uint32_t mxcsr_in = 0x1f80 | (3u << 13) | (1u << 15) | (1u << 6), mxcsr_out = 0, mxcsr_saved;
	uint64_t count = 0, r13 = 0, r14 = 0, r15 = 0;
	double x87_count = -1, x87_one = -1;
	__asm__ volatile("stmxcsr %0" : "=m"(mxcsr_saved));
	wl_ready();
	__asm__ volatile(
		"ldmxcsr %[mxin]\n\t"
		"vmovdqa 0(%[init]), %%ymm0\n\t"   "vmovdqa 32(%[init]), %%ymm1\n\t"
		"vmovdqa 64(%[init]), %%ymm2\n\t"  "vmovdqa 96(%[init]), %%ymm3\n\t"
		"vmovdqa 128(%[init]), %%ymm4\n\t" "vmovdqa 160(%[init]), %%ymm5\n\t"
		"vmovdqa 192(%[init]), %%ymm6\n\t" "vmovdqa 224(%[init]), %%ymm7\n\t"
		"vmovdqa 256(%[init]), %%ymm8\n\t" "vmovdqa 288(%[init]), %%ymm9\n\t"
		"vmovdqa 320(%[init]), %%ymm10\n\t" "vmovdqa 352(%[init]), %%ymm11\n\t"
		"vmovdqa 384(%[init]), %%ymm12\n\t" "vmovdqa 416(%[init]), %%ymm13\n\t"
		"vmovdqa 448(%[init]), %%ymm14\n\t" "vmovdqa 480(%[init]), %%ymm15\n\t"
		"fld1\n\t"
		"fldz\n\t"
		"xor %%r12, %%r12\n\t"
		"movabs $0x1313131313131313, %%r13\n\t"
		"movabs $0x1414141414141414, %%r14\n\t"
		"movabs $0x1515151515151515, %%r15\n\t"
		"1:\n\t"
		"vpaddq (%[delta]), %%ymm0, %%ymm0\n\t"   "vpaddq (%[delta]), %%ymm1, %%ymm1\n\t"
		"vpaddq (%[delta]), %%ymm2, %%ymm2\n\t"   "vpaddq (%[delta]), %%ymm3, %%ymm3\n\t"
		"vpaddq (%[delta]), %%ymm4, %%ymm4\n\t"   "vpaddq (%[delta]), %%ymm5, %%ymm5\n\t"
		"vpaddq (%[delta]), %%ymm6, %%ymm6\n\t"   "vpaddq (%[delta]), %%ymm7, %%ymm7\n\t"
		"vpaddq (%[delta]), %%ymm8, %%ymm8\n\t"   "vpaddq (%[delta]), %%ymm9, %%ymm9\n\t"
		"vpaddq (%[delta]), %%ymm10, %%ymm10\n\t" "vpaddq (%[delta]), %%ymm11, %%ymm11\n\t"
		"vpaddq (%[delta]), %%ymm12, %%ymm12\n\t" "vpaddq (%[delta]), %%ymm13, %%ymm13\n\t"
		"vpaddq (%[delta]), %%ymm14, %%ymm14\n\t" "vpaddq (%[delta]), %%ymm15, %%ymm15\n\t"
		"fadd %%st(1), %%st\n\t"
		"inc %%r12\n\t"
		"cmpl $0, %[term]\n\t"
		"je 1b\n\t"
		"vmovdqa %%ymm0, 0(%[out])\n\t"   "vmovdqa %%ymm1, 32(%[out])\n\t"
		"vmovdqa %%ymm2, 64(%[out])\n\t"  "vmovdqa %%ymm3, 96(%[out])\n\t"
		"vmovdqa %%ymm4, 128(%[out])\n\t" "vmovdqa %%ymm5, 160(%[out])\n\t"
		"vmovdqa %%ymm6, 192(%[out])\n\t" "vmovdqa %%ymm7, 224(%[out])\n\t"
		"vmovdqa %%ymm8, 256(%[out])\n\t" "vmovdqa %%ymm9, 288(%[out])\n\t"
		"vmovdqa %%ymm10, 320(%[out])\n\t" "vmovdqa %%ymm11, 352(%[out])\n\t"
		"vmovdqa %%ymm12, 384(%[out])\n\t" "vmovdqa %%ymm13, 416(%[out])\n\t"
		"vmovdqa %%ymm14, 448(%[out])\n\t" "vmovdqa %%ymm15, 480(%[out])\n\t"
		"fstpl %[x87c]\n\t"
		"fstpl %[x87o]\n\t"
		"stmxcsr %[mxout]\n\t"
		"ldmxcsr %[mxsaved]\n\t"
		"vzeroupper\n\t"
		"mov %%r12, %[count]\n\t"
		"mov %%r13, %[r13]\n\t"
		"mov %%r14, %[r14]\n\t"
		"mov %%r15, %[r15]\n\t"
		: [count] "=m"(count), [r13] "=m"(r13), [r14] "=m"(r14), [r15] "=m"(r15), [x87c] "=m"(x87_count),
		  [x87o] "=m"(x87_one), [mxout] "=m"(mxcsr_out)
		: [init] "r"(ymm_init), [delta] "r"(delta), [out] "r"(ymm_out), [term] "m"(wl_term), [mxin] "m"(mxcsr_in),
		  [mxsaved] "m"(mxcsr_saved)
		: "r12", "r13", "r14", "r15", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
		  "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "st", "st(1)", "memory", "cc");
	if (wl_sabotage())
		ymm_out[7][2] ^= 1ULL << 40;
	printf("fpu: %llu iterations\n", (unsigned long long)count);
	if (count < 2)
		fail("the loop ran only %llu times", (unsigned long long)count);
	for (int r = 0; r < 16; r++)
		for (int l = 0; l < 4; l++) {
			uint64_t want = ymm_init[r][l] + count * delta[l];
			if (ymm_out[r][l] != want)
				fail("ymm%d lane %d is %016llx, expected %016llx after %llu iterations", r, l,
				     (unsigned long long)ymm_out[r][l], (unsigned long long)want, (unsigned long long)count);
		}
	if (x87_count != (double)count || x87_one != 1.0)
		fail("x87 stack holds %.17g and %.17g, expected %llu and 1", x87_count, x87_one, (unsigned long long)count);
	if (mxcsr_out != mxcsr_in)
		fail("MXCSR is %#x, expected %#x", mxcsr_out, mxcsr_in);
	if (r13 != 0x1313131313131313ULL || r14 != 0x1414141414141414ULL || r15 != 0x1515151515151515ULL)
		fail("r13-r15 are %llx %llx %llx", (unsigned long long)r13, (unsigned long long)r14, (unsigned long long)r15);
	return wl_done();
}
