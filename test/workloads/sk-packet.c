/*
 * Packet sockets (like CRIU's zdtm packet_sock, packet_sock_mmap,
 * packet_sock_spkt, and more), on lo with EtherTypes of the IEEE's local
 * experimental range, which nothing else on the machine sends:
 *   raw: SOCK_RAW bound to lo, protocol 0x88b5, PACKET_AUXDATA,
 *     PACKET_ORIGDEV, TPACKET_V2, PACKET_COPY_THRESH (read back through
 *     PACKET_DIAG), a classic BPF filter that lets all in,
 *     SO_RCVBUF 200000, O_NONBLOCK, shared with a child process;
 *   dgram: SOCK_DGRAM bound to lo, protocol 0x88b6, SO_BINDTODEVICE lo,
 *     PACKET_IGNORE_OUTGOING, PACKET_RESERVE 8, memberships on lo:
 *     PACKET_MR_PROMISC twice, PACKET_MR_ALLMULTI, PACKET_MR_UNICAST
 *     02:00:00:00:00:01;
 *   fan1, fan2: SOCK_DGRAM on lo, protocol 0x88b7, one fanout group
 *     (PACKET_FANOUT_HASH with PACKET_FANOUT_FLAG_ROLLOVER);
 *   ring: SOCK_RAW, protocol 0 (receives nothing), TPACKET_V2,
 *     PACKET_RESERVE 32, PACKET_TX_HAS_OFF, a receive ring (2 blocks of
 *     4096, frames of 2048) and a send ring (1 block), both mapped;
 *   ring3: SOCK_DGRAM, protocol 0, a TPACKET_V3 receive ring (2 blocks of
 *     8192, 50 ms block timeout), not mapped;
 *   opts: SOCK_RAW, protocol 0, PACKET_VNET_HDR_SZ 12, PACKET_QDISC_BYPASS,
 *     PACKET_LOSS, PACKET_TIMESTAMP SOF_TIMESTAMPING_RAW_HARDWARE;
 *   spkt: SOCK_PACKET, protocol 0x88b9, bound to lo; spkt0: SOCK_PACKET,
 *     protocol 0, not bound.
 * After: getsockname (family, protocol, ifindex; the device name for
 * SOCK_PACKET), SO_TYPE, F_GETFL, every option set, the filter, kcmp of
 * the child's raw; each socket receives a frame sent on lo with its
 * protocol (raw the whole frame with its PACKET_AUXDATA, dgram the payload,
 * exactly one of fan1/fan2, spkt the whole frame), and only then; the
 * memberships hold lo's promiscuity and allmulti counts until dropped as
 * often as they were added (IFLA_PROMISCUITY, IFLA_ALLMULTI); ring is still
 * mapped where it was, and once bound to lo (0x88b8), the frame sent lands
 * in its first slot, read through that mapping; ring3 maps at its whole
 * size only.
 *
 * Other modes, set up alone (for dumps crest refuses: the process runs on):
 * "queued", a frame queued to a socket bound to lo (still there after);
 * "ring", a frame in an unmapped receive ring (still there after);
 * "ring-used", an unmapped receive ring one frame of which was read and
 * handed back (still so after); "ring-mapped", a mapped receive ring
 * holding a frame (still there after); "fanout-bpf", a fanout group
 * steered by a classic BPF program (PACKET_FANOUT_CBPF; still in it after).
 *
 * Sabotage: 1 PACKET_AUXDATA cleared on raw; 2 raw bound to 0x88ba;
 * 3 dgram leaves PACKET_MR_PROMISC once; 4 ring's mapping unmapped;
 * 5 raw's filter detached; 6 PACKET_COPY_THRESH cleared on raw.
 */
#define _GNU_SOURCE
#include "lib.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/packet_diag.h>
#include <linux/sock_diag.h>
#include <linux/rtnetlink.h>
#include <linux/net_tstamp.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef PACKET_VNET_HDR_SZ
#define PACKET_VNET_HDR_SZ 24
#endif
#define P_RAW 0x88b5
#define P_DGRAM 0x88b6
#define P_FAN 0x88b7
#define P_RING 0x88b8
#define P_SPKT 0x88b9

static int lo;

static int pk(int type, int proto)
{
	int fd = socket(AF_PACKET, type, htons(proto));
	if (fd < 0)
		fail("socket(AF_PACKET, %d, %#x): %s", type, proto, strerror(errno));
	return fd;
}

static void pk_bind(int fd, int proto, const char *what)
{
	struct sockaddr_ll a = { .sll_family = AF_PACKET, .sll_protocol = htons(proto), .sll_ifindex = lo };
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)))
		fail("%s: bind to lo, protocol %#x: %s", what, proto, strerror(errno));
}

static void setopt(int fd, int level, int name, int v, const char *what)
{
	if (setsockopt(fd, level, name, &v, sizeof(v)))
		fail("%s: setsockopt %d/%d = %d: %s", what, level, name, v, strerror(errno));
}

static void want_opt(int fd, int level, int name, int want, const char *what)
{
	int v = wl_sockopt_int(fd, level, name);
	if (v != want)
		fail("%s: option %d/%d is %d, expected %d", what, level, name, v, want);
}

static void membership(int fd, int op, int type, int alen, const char *what)
{
	struct packet_mreq m = { .mr_ifindex = lo, .mr_type = type, .mr_alen = alen, .mr_address = { 2, 0, 0, 0, 0, 1 } };
	if (setsockopt(fd, SOL_PACKET, op, &m, sizeof(m)))
		fail("%s: %s membership type %d: %s", what, op == PACKET_ADD_MEMBERSHIP ? "add" : "drop", type, strerror(errno));
}

/* An Ethernet frame to lo's address (all zeros) with `proto` and a text payload, sent on lo. */
static size_t frame(char *buf, int proto, const char *text)
{
	memset(buf, 0, 14);
	buf[12] = (char)(proto >> 8);
	buf[13] = (char)proto;
	strcpy(buf + 14, text);
	return 14 + strlen(text) + 1;
}

static void send_frame(int proto, const char *text)
{
	static int tx = -1;
	if (tx < 0)
		tx = pk(SOCK_RAW, 0);
	char buf[256];
	size_t n = frame(buf, proto, text);
	struct sockaddr_ll a = { .sll_family = AF_PACKET, .sll_ifindex = lo, .sll_halen = 6 };
	if (sendto(tx, buf, n, 0, (struct sockaddr *)&a, sizeof(a)) != (ssize_t)n)
		fail("send a frame of protocol %#x: %s", proto, strerror(errno));
}

static int readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, ms) == 1;
}

/* One frame (whole, or the payload on SOCK_DGRAM) with `text`, from lo, with `proto`. */
static void hear(int fd, int whole, int proto, const char *text, const char *what)
{
	char buf[2048], cbuf[256], want[256];
	struct sockaddr_ll from = { 0 };
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct msghdr m = { .msg_name = &from, .msg_namelen = sizeof(from), .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	if (!readable(fd, 2000)) {
		fail("%s: no frame came ('%s' expected)", what, text);
		return;
	}
	ssize_t n = recvmsg(fd, &m, MSG_DONTWAIT);
	size_t wn = frame(want, proto, text);
	const char *w = whole ? want : want + 14;
	size_t len = whole ? wn : wn - 14;
	if (n < (ssize_t)len || memcmp(buf, w, len))
		fail("%s: got %zd bytes, expected the %zu of '%s'", what, n, len, text);
	else if (from.sll_family == AF_PACKET && (from.sll_ifindex != lo || ntohs(from.sll_protocol) != proto))
		fail("%s: the frame came from ifindex %d with protocol %#x, expected %d and %#x", what, from.sll_ifindex, ntohs(from.sll_protocol), lo, proto);
}

static void quiet(int fd, const char *what)
{
	if (readable(fd, 200))
		fail("%s: a frame came that should not have", what);
}

/* lo's promiscuity and allmulti counts (IFLA_PROMISCUITY, IFLA_ALLMULTI of RTM_GETLINK). */
static void lo_counts(int *promisc, int *allmulti)
{
	*promisc = *allmulti = -1;
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	struct {
		struct nlmsghdr h;
		struct ifinfomsg i;
	} req = { .h = { .nlmsg_len = sizeof(req), .nlmsg_type = RTM_GETLINK, .nlmsg_flags = NLM_F_REQUEST, .nlmsg_seq = 1 },
		  .i = { .ifi_family = AF_UNSPEC, .ifi_index = lo } };
	char buf[16384];
	ssize_t n = send(fd, &req, sizeof(req), 0) == sizeof(req) ? recv(fd, buf, sizeof(buf), 0) : -1;
	close(fd);
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	if (n <= 0 || !NLMSG_OK(h, (size_t)n) || h->nlmsg_type != RTM_NEWLINK) {
		fail("RTM_GETLINK of lo: no answer");
		return;
	}
	int len = (int)IFLA_PAYLOAD(h);
	for (struct rtattr *a = IFLA_RTA(NLMSG_DATA(h)); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		if (a->rta_type == IFLA_PROMISCUITY)
			*promisc = *(int *)RTA_DATA(a);
		if (a->rta_type == IFLA_ALLMULTI)
			*allmulti = *(int *)RTA_DATA(a);
	}
}

/* PACKET_COPY_THRESH cannot be read back but through the kernel's PACKET_DIAG_INFO: the socket's, by inode (-1 if not listed). */
static int copy_thresh(int fd)
{
	struct stat st;
	if (fstat(fd, &st))
		return -1;
	int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	struct {
		struct nlmsghdr h;
		struct packet_diag_req r;
	} req = { .h = { .nlmsg_len = sizeof(req), .nlmsg_type = SOCK_DIAG_BY_FAMILY, .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1 },
		  .r = { .sdiag_family = AF_PACKET, .pdiag_show = PACKET_SHOW_INFO } };
	int found = -1;
	static char buf[65536];
	if (send(nl, &req, sizeof(req), 0) == sizeof(req)) {
		for (int done = 0; !done;) {
			ssize_t n = recv(nl, buf, sizeof(buf), 0);
			if (n <= 0)
				break;
			for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
				if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
					done = 1;
					break;
				}
				struct packet_diag_msg *m = NLMSG_DATA(h);
				if (m->pdiag_ino != st.st_ino)
					continue;
				int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*m)));
				for (struct rtattr *a = (struct rtattr *)(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len))
					if (a->rta_type == PACKET_DIAG_INFO)
						found = (int)((struct packet_diag_info *)RTA_DATA(a))->pdi_copy_thresh;
			}
		}
	}
	close(nl);
	return found;
}

static struct tpacket_req3 ring_req(unsigned block, unsigned nr, unsigned frame_size)
{
	struct tpacket_req3 r = { .tp_block_size = block, .tp_block_nr = nr, .tp_frame_size = frame_size, .tp_frame_nr = block / frame_size * nr };
	return r;
}

static void set_ring(int fd, int opt, struct tpacket_req3 r, const char *what)
{
	if (setsockopt(fd, SOL_PACKET, opt, &r, sizeof(r)))
		fail("%s: setsockopt %s: %s", what, opt == PACKET_RX_RING ? "PACKET_RX_RING" : "PACKET_TX_RING", strerror(errno));
}

/* Whether /proc/self/maps has `addr` mapping the socket fd's inode. */
static int mapped_at(void *addr, int fd)
{
	struct stat st;
	char maps[65536], want[64];
	if (fstat(fd, &st) || wl_read_into("/proc/self/maps", maps, sizeof(maps)) < 0)
		return 0;
	snprintf(want, sizeof(want), "%lx-", (unsigned long)addr);
	for (char *l = maps; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		unsigned long ino = 0;
		if (!strncmp(l, want, strlen(want)) && sscanf(l, "%*s %*s %*s %*s %lu", &ino) == 1 && ino == st.st_ino)
			return 1;
	}
	return 0;
}

/* A TPACKET_V2 receive ring of `fd` bound to lo (P_RAW) with one frame sent into it; `map` keeps it mapped. */
static void *filled_ring(int fd, int map)
{
	setopt(fd, SOL_PACKET, PACKET_VERSION, TPACKET_V2, "ring");
	set_ring(fd, PACKET_RX_RING, ring_req(4096, 2, 2048), "ring");
	pk_bind(fd, P_RAW, "ring");
	send_frame(P_RAW, "in the ring");
	if (!readable(fd, 2000))
		fail("ring: the frame did not arrive");
	void *mem = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (mem == MAP_FAILED)
		fail("ring: mmap: %s", strerror(errno));
	if (map)
		return mem;
	munmap(mem, 8192);
	return NULL;
}

static struct tpacket2_hdr *slot0(int fd)
{
	void *mem = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (mem == MAP_FAILED) {
		fail("ring: mmap after: %s", strerror(errno));
		return NULL;
	}
	return mem;
}

static int single(const char *mode)
{
	int fd = pk(SOCK_RAW, 0);
	void *mem = NULL;
	if (!strcmp(mode, "queued")) {
		pk_bind(fd, P_RAW, "queued");
		send_frame(P_RAW, "queued");
	} else if (!strcmp(mode, "ring") || !strcmp(mode, "ring-used")) {
		filled_ring(fd, 0);
		if (!strcmp(mode, "ring-used")) {
			struct tpacket2_hdr *h = slot0(fd);
			if (h)
				h->tp_status = TP_STATUS_KERNEL;
			munmap(h, 8192);
		}
	} else if (!strcmp(mode, "ring-mapped")) {
		mem = filled_ring(fd, 1);
	} else if (!strcmp(mode, "fanout-bpf")) {
		pk_bind(fd, P_FAN, "fanout-bpf");
		setopt(fd, SOL_PACKET, PACKET_FANOUT, (getpid() & 0xffff) | (PACKET_FANOUT_CBPF << 16), "fanout-bpf");
		struct sock_filter code[] = { BPF_STMT(BPF_RET | BPF_K, 0) };
		struct sock_fprog prog = { .len = 1, .filter = code };
		if (setsockopt(fd, SOL_PACKET, PACKET_FANOUT_DATA, &prog, sizeof(prog)))
			fail("PACKET_FANOUT_DATA: %s", strerror(errno));
	} else {
		fail("unknown mode %s", mode);
		return wl_done();
	}
	wl_ready();
	wl_wait();
	if (!strcmp(mode, "queued")) {
		hear(fd, 1, P_RAW, "queued", "the queued frame");
	} else if (!strcmp(mode, "fanout-bpf")) {
		if (((unsigned)wl_sockopt_int(fd, SOL_PACKET, PACKET_FANOUT) >> 16 & 0xff) != PACKET_FANOUT_CBPF)
			fail("fanout-bpf: PACKET_FANOUT is %#x", wl_sockopt_int(fd, SOL_PACKET, PACKET_FANOUT));
	} else {
		struct tpacket2_hdr *h = mem ? mem : slot0(fd);
		int used = !strcmp(mode, "ring-used");
		if (h && (used ? h->tp_status != TP_STATUS_KERNEL || !h->tp_len : !(h->tp_status & TP_STATUS_USER)))
			fail("%s: slot 0 has status %#x, length %u", mode, h->tp_status, h->tp_len);
	}
	return wl_done();
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "sk-packet");
	lo = (int)if_nametoindex("lo");
	if (argc > 2)
		return single(argv[2]);

	int raw = pk(SOCK_RAW, 0), dgram = pk(SOCK_DGRAM, 0), fan1 = pk(SOCK_DGRAM, 0), fan2 = pk(SOCK_DGRAM, 0);
	int ring = pk(SOCK_RAW, 0), ring3 = pk(SOCK_DGRAM, 0), opts = pk(SOCK_RAW, 0);
	int spkt = socket(AF_PACKET, SOCK_PACKET, htons(P_SPKT)), spkt0 = socket(AF_PACKET, SOCK_PACKET, 0);
	if (spkt < 0 || spkt0 < 0)
		fail("socket(SOCK_PACKET): %s", strerror(errno));

	struct sock_filter all[] = { BPF_STMT(BPF_RET | BPF_K, 0x40000) };
	struct sock_fprog prog = { .len = 1, .filter = all };
	if (setsockopt(raw, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)))
		fail("raw: SO_ATTACH_FILTER: %s", strerror(errno));
	setopt(raw, SOL_PACKET, PACKET_AUXDATA, 1, "raw");
	setopt(raw, SOL_PACKET, PACKET_ORIGDEV, 1, "raw");
	setopt(raw, SOL_PACKET, PACKET_VERSION, TPACKET_V2, "raw");
	setopt(raw, SOL_PACKET, PACKET_COPY_THRESH, 1, "raw");
	setopt(raw, SOL_SOCKET, SO_RCVBUF, 200000, "raw");
	pk_bind(raw, P_RAW, "raw");
	fcntl(raw, F_SETFL, O_NONBLOCK);

	if (setsockopt(dgram, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3))
		fail("dgram: SO_BINDTODEVICE: %s", strerror(errno));
	setopt(dgram, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1, "dgram");
	setopt(dgram, SOL_PACKET, PACKET_RESERVE, 8, "dgram");
	membership(dgram, PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC, 0, "dgram");
	membership(dgram, PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC, 0, "dgram");
	membership(dgram, PACKET_ADD_MEMBERSHIP, PACKET_MR_ALLMULTI, 0, "dgram");
	membership(dgram, PACKET_ADD_MEMBERSHIP, PACKET_MR_UNICAST, 6, "dgram");
	pk_bind(dgram, P_DGRAM, "dgram");

	int fanout = (0x5000 | (getpid() & 0xfff)) | ((PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_ROLLOVER) << 16);
	pk_bind(fan1, P_FAN, "fan1");
	pk_bind(fan2, P_FAN, "fan2");
	setopt(fan1, SOL_PACKET, PACKET_FANOUT, fanout, "fan1");
	setopt(fan2, SOL_PACKET, PACKET_FANOUT, fanout, "fan2");

	setopt(ring, SOL_PACKET, PACKET_VERSION, TPACKET_V2, "ring");
	setopt(ring, SOL_PACKET, PACKET_RESERVE, 32, "ring");
	setopt(ring, SOL_PACKET, PACKET_TX_HAS_OFF, 1, "ring");
	set_ring(ring, PACKET_RX_RING, ring_req(4096, 2, 2048), "ring");
	set_ring(ring, PACKET_TX_RING, ring_req(4096, 1, 2048), "ring");
	char *mem = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, ring, 0);
	if (mem == MAP_FAILED)
		fail("ring: mmap: %s", strerror(errno));

	setopt(ring3, SOL_PACKET, PACKET_VERSION, TPACKET_V3, "ring3");
	struct tpacket_req3 r3 = ring_req(8192, 2, 2048);
	r3.tp_retire_blk_tov = 50;
	set_ring(ring3, PACKET_RX_RING, r3, "ring3");

	setopt(opts, SOL_PACKET, PACKET_VNET_HDR_SZ, 12, "opts");
	setopt(opts, SOL_PACKET, PACKET_QDISC_BYPASS, 1, "opts");
	setopt(opts, SOL_PACKET, PACKET_LOSS, 1, "opts");
	setopt(opts, SOL_PACKET, PACKET_TIMESTAMP, SOF_TIMESTAMPING_RAW_HARDWARE, "opts");

	struct sockaddr sa = { .sa_family = AF_PACKET };
	strcpy(sa.sa_data, "lo");
	if (bind(spkt, &sa, sizeof(sa)))
		fail("spkt: bind to lo: %s", strerror(errno));

	int fds[] = { raw, dgram, fan1, fan2, ring, ring3, opts, spkt, spkt0 };
	const char *names[] = { "raw", "dgram", "fan1", "fan2", "ring", "ring3", "opts", "spkt", "spkt0" };
	enum { N = sizeof(fds) / sizeof(fds[0]) };
	struct sockaddr_storage addr[N];
	socklen_t alen[N];
	int types[N], fl[N];
	for (int i = 0; i < N; i++) {
		alen[i] = sizeof(addr[i]);
		memset(&addr[i], 0, sizeof(addr[i]));
		getsockname(fds[i], (struct sockaddr *)&addr[i], &alen[i]);
		types[i] = wl_sockopt_int(fds[i], SOL_SOCKET, SO_TYPE);
		fl[i] = fcntl(fds[i], F_GETFL);
	}
	int raw_rcvbuf = wl_sockopt_int(raw, SOL_SOCKET, SO_RCVBUF);

	pid_t child = wl_fork_holder();
	wl_ready();
	wl_wait();

	switch (wl_sabotage()) {
	case 1: setopt(raw, SOL_PACKET, PACKET_AUXDATA, 0, "sabotage"); break;
	case 2: pk_bind(raw, 0x88ba, "sabotage"); break;
	case 3: membership(dgram, PACKET_DROP_MEMBERSHIP, PACKET_MR_PROMISC, 0, "sabotage"); break;
	case 4: munmap(mem, 3 * 4096); break;
	case 5: setopt(raw, SOL_SOCKET, SO_DETACH_FILTER, 0, "sabotage"); break;
	case 6: setopt(raw, SOL_PACKET, PACKET_COPY_THRESH, 0, "sabotage"); break;
	}

	for (int i = 0; i < N; i++) {
		struct sockaddr_storage now;
		socklen_t l = sizeof(now);
		memset(&now, 0, sizeof(now));
		getsockname(fds[i], (struct sockaddr *)&now, &l);
		if (l != alen[i] || memcmp(&now, &addr[i], l))
			fail("%s: getsockname differs (%u bytes, expected %u)%s", names[i], l, alen[i],
			     types[i] == SOCK_PACKET ? "" : ": protocol or device changed");
		if (wl_sockopt_int(fds[i], SOL_SOCKET, SO_TYPE) != types[i])
			fail("%s: SO_TYPE %d, expected %d", names[i], wl_sockopt_int(fds[i], SOL_SOCKET, SO_TYPE), types[i]);
		if (fcntl(fds[i], F_GETFL) != fl[i])
			fail("%s: F_GETFL %#x, expected %#x", names[i], fcntl(fds[i], F_GETFL), fl[i]);
	}
	if (strcmp(((struct sockaddr *)&addr[7])->sa_data, "lo") || ((struct sockaddr *)&addr[8])->sa_data[0])
		fail("spkt: bound to '%s', spkt0 to '%s' at ready", ((struct sockaddr *)&addr[7])->sa_data, ((struct sockaddr *)&addr[8])->sa_data);
	want_opt(raw, SOL_PACKET, PACKET_AUXDATA, 1, "raw");
	want_opt(raw, SOL_PACKET, PACKET_ORIGDEV, 1, "raw");
	want_opt(raw, SOL_PACKET, PACKET_VERSION, TPACKET_V2, "raw");
	want_opt(raw, SOL_SOCKET, SO_RCVBUF, raw_rcvbuf, "raw");
	if (copy_thresh(raw) != 1)
		fail("raw: PACKET_COPY_THRESH (PACKET_DIAG_INFO) is %d, expected 1", copy_thresh(raw));
	struct sock_filter got[4];
	socklen_t gl = 4;
	if (getsockopt(raw, SOL_SOCKET, SO_GET_FILTER, got, &gl) || gl != 1 || memcmp(got, all, sizeof(all)))
		fail("raw: its filter has %u instructions, expected the 1 attached", gl);
	wl_holder_done(child, raw, "raw");
	char dev[IFNAMSIZ] = "";
	socklen_t dl = sizeof(dev);
	if (getsockopt(dgram, SOL_SOCKET, SO_BINDTODEVICE, dev, &dl) || strcmp(dev, "lo"))
		fail("dgram: SO_BINDTODEVICE is '%s', expected 'lo'", dev);
	want_opt(dgram, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1, "dgram");
	want_opt(dgram, SOL_PACKET, PACKET_RESERVE, 8, "dgram");
	want_opt(fan1, SOL_PACKET, PACKET_FANOUT, fanout, "fan1");
	want_opt(fan2, SOL_PACKET, PACKET_FANOUT, fanout, "fan2");
	want_opt(ring, SOL_PACKET, PACKET_VERSION, TPACKET_V2, "ring");
	want_opt(ring, SOL_PACKET, PACKET_RESERVE, 32, "ring");
	want_opt(ring, SOL_PACKET, PACKET_TX_HAS_OFF, 1, "ring");
	want_opt(ring3, SOL_PACKET, PACKET_VERSION, TPACKET_V3, "ring3");
	want_opt(opts, SOL_PACKET, PACKET_VNET_HDR_SZ, 12, "opts");
	want_opt(opts, SOL_PACKET, PACKET_VNET_HDR, 1, "opts");
	want_opt(opts, SOL_PACKET, PACKET_QDISC_BYPASS, 1, "opts");
	want_opt(opts, SOL_PACKET, PACKET_LOSS, 1, "opts");
	want_opt(opts, SOL_PACKET, PACKET_TIMESTAMP, SOF_TIMESTAMPING_RAW_HARDWARE, "opts");

	/* Each receives what comes for it, and nothing before. */
	quiet(raw, "raw");
	quiet(dgram, "dgram");
	quiet(spkt, "spkt");
	send_frame(P_RAW, "to raw");
	hear(raw, 1, P_RAW, "to raw", "raw");
	send_frame(P_DGRAM, "to dgram");
	hear(dgram, 0, P_DGRAM, "to dgram", "dgram");
	send_frame(P_SPKT, "to spkt");
	hear(spkt, 1, P_SPKT, "to spkt", "spkt");
	send_frame(P_FAN, "to the fanout group");
	int got1 = readable(fan1, 500), got2 = readable(fan2, 0);
	if (got1 + got2 != 1)
		fail("fanout: the frame reached fan1 %d and fan2 %d times, expected once in all", got1, got2);

	/* A membership added twice holds lo's promiscuity until dropped twice (the kernel says nothing when none is left). */
	int p0, a0, p1, a1, p2, a2;
	lo_counts(&p0, &a0);
	membership(dgram, PACKET_DROP_MEMBERSHIP, PACKET_MR_PROMISC, 0, "dgram");
	lo_counts(&p1, &a1);
	membership(dgram, PACKET_DROP_MEMBERSHIP, PACKET_MR_PROMISC, 0, "dgram");
	membership(dgram, PACKET_DROP_MEMBERSHIP, PACKET_MR_ALLMULTI, 0, "dgram");
	lo_counts(&p2, &a2);
	if (p1 != p0 || p2 != p0 - 1)
		fail("dgram: lo's promiscuity went %d, %d, %d as PACKET_MR_PROMISC (added twice) was dropped twice, expected %d, %d, %d", p0, p1, p2, p0, p0, p0 - 1);
	if (a2 != a0 - 1)
		fail("dgram: lo's allmulti count went from %d to %d as PACKET_MR_ALLMULTI was dropped, expected %d", a0, a2, a0 - 1);
	membership(dgram, PACKET_DROP_MEMBERSHIP, PACKET_MR_UNICAST, 6, "dgram");

	if (!mapped_at(mem, ring)) {
		fail("ring: no longer mapped at %p", (void *)mem);
	} else {
		pk_bind(ring, P_RING, "ring");
		send_frame(P_RING, "into the ring");
		struct tpacket2_hdr *h = (struct tpacket2_hdr *)mem;
		char want[256];
		size_t n = frame(want, P_RING, "into the ring");
		if (!readable(ring, 2000) || !(h->tp_status & TP_STATUS_USER))
			fail("ring: slot 0 has status %#x after a frame came", h->tp_status);
		else if (h->tp_len != n || memcmp(mem + h->tp_mac, want, n))
			fail("ring: slot 0 holds %u bytes at %u, not the frame of %zu sent", h->tp_len, h->tp_mac, n);
	}
	void *m3 = mmap(NULL, 16384, PROT_READ, MAP_SHARED, ring3, 0), *m3half = mmap(NULL, 8192, PROT_READ, MAP_SHARED, ring3, 0);
	if (m3 == MAP_FAILED || m3half != MAP_FAILED)
		fail("ring3: mapping 16384 bytes %s, 8192 %s: its ring is not 2 blocks of 8192", m3 == MAP_FAILED ? "fails" : "works",
		     m3half == MAP_FAILED ? "fails" : "works");
	return wl_done();
}
