// The stub process a restore starts from: a static program with no libc that
// only waits to be seized. crest builds the restored tasks out of it by remote
// control, and finds the syscall gadget below by its marker.
__asm__(
	".text\n"
	".globl _start\n"
	"_start:\n"
	"1:	mov $34, %eax\n" // pause()
	"	syscall\n"
	"	jmp 1b\n"
	".ascii \"crest-syscall-gadget:\"\n"
	"	syscall\n"
	"	int3\n");
