/*
 * PID, IPC and UTS namespaces with SysV IPC, started with `crest run --ns
 * pid,ipc,uts`: the root is PID 1 and sets a host and domain name; a shared
 * memory segment is attached by it and its child at the same address,
 * another is attached and already marked for removal, a third exists
 * unattached; two semaphore sets hold values; a message queue holds
 * messages of several types. After the checkpoint every object has its id,
 * key, owner, mode, size and contents, the removed segment is still marked,
 * the messages come out in order, the child still sees the parent's writes,
 * and the PIDs and names inside the namespaces are what they were; the id
 * asked for the next semaphore set (kernel.sem_next_id, set last) is still
 * asked for; the last page of the first segment, made read-only with
 * mprotect (one attach, two VMAs), is still read-only ("r--s" in
 * /proc/self/maps) and the rest still writable.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

#define HOST "crest-ns-host"
#define DOMAIN "crest.test"

union semun {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
};

struct msg {
	long mtype;
	char text[256];
};

static const struct { long type; const char *text; } msgs[] = {
	{ 3, "third type first" }, { 1, "one" }, { 2, "a longer message of type two, to have different sizes" }, { 1, "one again" },
};

/* The /proc/self/maps lines of the mappings from p to p + 64 KiB (address and permissions only). */
static void sysv_maps(char *out, size_t cap, unsigned char *p)
{
	static char maps[65536];
	size_t n = 0;
	out[0] = 0;
	if (wl_read_into("/proc/self/maps", maps, sizeof(maps)) < 0)
		return;
	for (char *line = strtok(maps, "\n"); line; line = strtok(NULL, "\n")) {
		unsigned long a, b;
		char perms[8];
		if (sscanf(line, "%lx-%lx %7s", &a, &b, perms) == 3 && a >= (unsigned long)p && b <= (unsigned long)p + 64 * 1024)
			n += snprintf(out + n, cap - n, "%lx-%lx %s\n", a, b, perms);
	}
}

int main(int argc, char **argv)
{
	char status_child[4096];
	wl_init(argc, argv, "sysv");
	snprintf(status_child, sizeof(status_child), "%s.child", argv[1]);
	if (getpid() != 1)
		fail("not PID 1 of its own namespace (pid %d): start it with crest run", getpid());
	if (sethostname(HOST, strlen(HOST)) || setdomainname(DOMAIN, strlen(DOMAIN)))
		fail("cannot set names: %s", strerror(errno));
	/* An IPC sysctl of this namespace only. */
	FILE *mm = fopen("/proc/sys/kernel/msgmax", "w");
	if (!mm || fprintf(mm, "12345\n") < 0 || fclose(mm))
		fail("cannot set kernel.msgmax");

	int a = shmget(0x1234, 64 * 1024, IPC_CREAT | 0640);
	int b = shmget(IPC_PRIVATE, 8192, IPC_CREAT | 0600);
	int c = shmget(0x5678, 4096, IPC_CREAT | 0604);
	unsigned char *pa = shmat(a, NULL, 0), *pb = shmat(b, NULL, 0);
	if (a < 0 || b < 0 || c < 0 || pa == (void *)-1 || pb == (void *)-1)
		fail("shm setup: %s", strerror(errno));
	for (int i = 0; i < 64 * 1024; i++)
		pa[i] = (unsigned char)(i * 13);
	memset(pb, 0x5b, 8192);
	shmctl(b, IPC_RMID, NULL); /* marked for removal, still attached */
	unsigned char *pc = shmat(c, NULL, 0);
	memcpy(pc, "unattached later", 17);
	shmdt(pc);

	int s1 = semget(0x4242, 5, IPC_CREAT | 0660), s2 = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);
	unsigned short v1[5] = { 0, 1, 7, 300, 32767 /* SEMVMX */ }, v2[2] = { 9, 8 };
	union semun arg = { .array = v1 };
	if (semctl(s1, 0, SETALL, arg))
		fail("semctl SETALL: %s", strerror(errno));
	arg.array = v2;
	semctl(s2, 0, SETALL, arg);

	int q = msgget(0x7777, IPC_CREAT | 0620);
	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		struct msg m = { .mtype = msgs[i].type };
		strcpy(m.text, msgs[i].text);
		if (msgsnd(q, &m, strlen(m.text) + 1, 0))
			fail("msgsnd: %s", strerror(errno));
	}

	pid_t child = fork();
	if (child == 0) {
		char *cargv[] = { argv[0], status_child, NULL };
		wl_init(2, cargv, "sysv-child");
		pid_t me = getpid();
		wl_ready();
		wl_wait();
		if (getpid() != me)
			fail("child pid is %d, was %d", getpid(), me);
		for (int t = 0; t < 2000 && pa[100] != 0xee; t++)
			usleep(1000);
		if (pa[100] != 0xee)
			fail("the parent's write to segment %d is not visible in the child", a);
		_exit(wl_done());
	}
	for (int t = 0; t < 2000 && !wl_read_file(status_child, NULL); t++)
		usleep(1000);
	/* One attach split in two VMAs: its last page read-only (the kernel counts each VMA as an attach). */
	if (mprotect(pa + 60 * 1024, 4096, PROT_READ))
		fail("mprotect: %s", strerror(errno));
	char maps_before[8192];
	sysv_maps(maps_before, sizeof(maps_before), pa);
	struct shmid_ds before[3];
	int ids[3] = { a, b, c };
	for (int i = 0; i < 3; i++)
		shmctl(ids[i], IPC_STAT, &before[i]);
	printf("sysv: shm %d %d %d, sem %d %d, msg %d, child %d\n", a, b, c, s1, s2, q, child);
	/* The next semaphore set's id, asked for and not used yet. */
	FILE *ni = fopen("/proc/sys/kernel/sem_next_id", "w");
	if (!ni || fprintf(ni, "4242\n") < 0 || fclose(ni))
		fail("cannot set kernel.sem_next_id");
	wl_ready();
	wl_wait();
	if (wl_sabotage())
		pa[7] ^= 1;

	if (getpid() != 1)
		fail("root is PID %d in its namespace, was 1", getpid());
	char name[128] = "";
	char maps_after[8192];
	sysv_maps(maps_after, sizeof(maps_after), pa);
	wl_compare_lines("SysV mappings of the first segment", maps_before, maps_after);
	char *next = wl_read_file("/proc/sys/kernel/sem_next_id", NULL);
	if (!next || atoi(next) != 4242)
		fail("kernel.sem_next_id is %s, was 4242", next ? next : "unreadable");
	char *msgmax = wl_read_file("/proc/sys/kernel/msgmax", NULL);
	if (!msgmax || atoi(msgmax) != 12345)
		fail("kernel.msgmax is %s, was 12345", msgmax ? msgmax : "unreadable");
	gethostname(name, sizeof(name));
	if (strcmp(name, HOST))
		fail("hostname is '%s', was '%s'", name, HOST);
	getdomainname(name, sizeof(name));
	if (strcmp(name, DOMAIN))
		fail("domain name is '%s', was '%s'", name, DOMAIN);
	for (int i = 0; i < 3; i++) {
		struct shmid_ds now;
		if (shmctl(ids[i], IPC_STAT, &now)) {
			fail("segment %d is gone: %s", ids[i], strerror(errno));
			continue;
		}
		if (now.shm_perm.__key != before[i].shm_perm.__key || now.shm_perm.mode != before[i].shm_perm.mode ||
		    now.shm_segsz != before[i].shm_segsz || now.shm_perm.uid != before[i].shm_perm.uid ||
		    now.shm_nattch != before[i].shm_nattch)
			fail("segment %d: key %#x mode %#o size %zu nattch %lu, was %#x %#o %zu %lu", ids[i], now.shm_perm.__key,
			     now.shm_perm.mode, now.shm_segsz, now.shm_nattch, before[i].shm_perm.__key, before[i].shm_perm.mode,
			     before[i].shm_segsz, before[i].shm_nattch);
	}
	for (int i = 0; i < 64 * 1024; i++)
		if (pa[i] != (unsigned char)(i * 13)) {
			fail("segment %d byte %d changed", a, i);
			break;
		}
	for (int i = 0; i < 8192; i++)
		if (pb[i] != 0x5b) {
			fail("the removed segment %d changed at %d", b, i);
			break;
		}
	pc = shmat(c, NULL, SHM_RDONLY);
	if (pc == (void *)-1 || strcmp((char *)pc, "unattached later"))
		fail("segment %d lost its contents", c);
	unsigned short g1[5], g2[2];
	arg.array = g1;
	semctl(s1, 0, GETALL, arg);
	arg.array = g2;
	semctl(s2, 0, GETALL, arg);
	if (memcmp(g1, v1, sizeof(v1)) || memcmp(g2, v2, sizeof(v2)))
		fail("semaphore values changed: %u %u %u %u %u / %u %u", g1[0], g1[1], g1[2], g1[3], g1[4], g2[0], g2[1]);
	if (semget(0x4242, 0, 0) != s1 || msgget(0x7777, 0) != q || shmget(0x1234, 0, 0) != a)
		fail("keys no longer find the same ids");
	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		struct msg m;
		ssize_t n = msgrcv(q, &m, sizeof(m.text), 0, IPC_NOWAIT);
		if (n < 0 || m.mtype != msgs[i].type || strcmp(m.text, msgs[i].text))
			fail("message %zu: type %ld '%s', expected %ld '%s'", i, n < 0 ? -1 : m.mtype, n < 0 ? "" : m.text, msgs[i].type,
			     msgs[i].text);
	}
	pa[100] = 0xee;
	kill(child, SIGTERM);
	int st;
	if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st)) {
		char *why = wl_read_file(status_child, NULL);
		fail("child: %s", why ? why : "no report");
	}
	shmctl(a, IPC_RMID, NULL);
	shmctl(c, IPC_RMID, NULL);
	return wl_done();
}
