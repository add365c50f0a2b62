/*
 * An X client that draws through MIT-SHM, as X applications do: it speaks
 * the X protocol itself over the server's unix socket (no Xlib, so no X
 * headers are needed to build it), with DISPLAY=:N naming the server. It is
 * meant to run in the same checkpointed tree as its X server (test/vnc/):
 * the SysV segment is attached by both, and marked for removal (IPC_RMID)
 * once the server has attached it, so that only the two attachments keep it.
 *
 *   x11-shm STATUS DIR
 *
 * Sets up: a 240x160 window titled "crest-shm", a pixmap, a segment of two
 * 240x160x32-bit images attached read-write by the server (ShmAttach) and by
 * itself, then removed. It checks the round trip once at ready and again
 * after SIGTERM: a pattern written into the segment is put into the pixmap
 * with ShmPutImage (the server reads the client's memory), read back with
 * the core GetImage (through the socket) and with ShmGetImage into the
 * segment's second image (the server writes the client's memory): all three
 * must be equal. IPC_STAT must say the segment is still marked for removal
 * (SHM_DEST) and attached twice, and /proc/self/maps must show it.
 *
 * While it waits it draws: the window is filled (ShmPutImage) with the
 * colour in DIR/color (hex RRGGBB) whenever it gets SIGUSR1, and then writes
 * "painted RRGGBB" to DIR/painted; a strip along the bottom shows a counter,
 * redrawn every 50 ms (the ticks let a viewer measure how long the picture
 * stood still); keys typed into the window (ASCII, Return as a newline) are
 * appended to DIR/typed.
 *
 * It does not time out as other workloads do: it lives as long as its X
 * server (EOF on the connection ends it, with a FAIL).
 *
 * Sabotage: 1 replaces its attachment with a segment of its own at the
 * same address (the server's is then another one).
 */
#define _GNU_SOURCE
#include "lib.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define W 240
#define H 160
#define STRIP 12
#define IMG_BYTES (W * H * 4)

static int xfd;
static uint16_t seq;
static uint32_t rid_base, rid_mask, rid_next = 1;
static uint32_t root, root_visual, win, pixmap, gc, shmseg;
static uint8_t root_depth, shm_major, min_keycode, max_keycode, keysyms_per_keycode;
static uint32_t *keymap;
static int shmid = -1;
static uint8_t *shm;
static uint32_t colour = 0x808080, ticks;
static const char *dir;
static int typed_fd = -1;
static volatile sig_atomic_t usr1;

static void on_usr1(int sig)
{
	(void)sig;
	usr1 = 1;
}

static void die(const char *what)
{
	fail("%s", what);
	exit(wl_done());
}

static void xwrite(const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t w = write(xfd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("writing to the X server failed");
		b += w;
		n -= w;
	}
}

static void xread(void *p, size_t n)
{
	uint8_t *b = p;
	while (n) {
		ssize_t r = read(xfd, b, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("the X server closed the connection");
		b += r;
		n -= r;
	}
}

static uint32_t new_id(void)
{
	return rid_base | (rid_next++ & rid_mask);
}

/* A request: its words (the length is filled in) and an optional tail. */
static void request(uint8_t *req, size_t len, const void *tail, size_t tail_len)
{
	size_t total = len + ((tail_len + 3) & ~3u);
	uint16_t words = total / 4;
	memcpy(req + 2, &words, 2);
	xwrite(req, len);
	if (tail_len) {
		static const uint8_t zero[4];
		xwrite(tail, tail_len);
		xwrite(zero, ((tail_len + 3) & ~3u) - tail_len);
	}
	seq++;
}

static void handle_event(const uint8_t *ev);

/* Reads until the reply to the last request; events on the way are handled. Returns the reply's extra bytes (malloc'ed) and fills the 32-byte head. */
static uint8_t *reply(uint8_t head[32])
{
	for (;;) {
		xread(head, 32);
		if (head[0] == 0) {
			uint32_t bad;
			memcpy(&bad, head + 4, 4);
			fail("X error %u (request %u.%u, value 0x%x)", head[1], head[10], head[8] | head[9] << 8, bad);
			exit(wl_done());
		}
		if (head[0] != 1) {
			handle_event(head);
			continue;
		}
		uint32_t extra;
		memcpy(&extra, head + 4, 4);
		uint8_t *more = malloc(extra * 4 + 1);
		xread(more, extra * 4);
		return more;
	}
}

/* A round trip: every request before it has been handled by the server. */
static void sync_server(void)
{
	uint8_t req[4] = { 43, 0 }, head[32];
	request(req, 4, NULL, 0);
	free(reply(head));
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

static void connect_display(void)
{
	const char *d = getenv("DISPLAY");
	if (!d || d[0] != ':')
		die("DISPLAY must be :N (a local X server)");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/tmp/.X11-unix/X%d", atoi(d + 1));
	xfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (xfd < 0 || connect(xfd, (struct sockaddr *)&sa, sizeof(sa)))
		die("cannot connect to the X server's socket");
	uint8_t setup[12] = { 'l', 0, 11, 0, 0, 0 };
	xwrite(setup, sizeof(setup));
	uint8_t head[8];
	xread(head, 8);
	uint16_t extra;
	memcpy(&extra, head + 6, 2);
	uint8_t *s = malloc(extra * 4);
	xread(s, extra * 4);
	if (head[0] != 1)
		die("the X server refused the connection");
	memcpy(&rid_base, s + 4, 4);
	memcpy(&rid_mask, s + 8, 4);
	uint16_t vendor_len;
	memcpy(&vendor_len, s + 16, 2);
	uint8_t nformats = s[21];
	if (s[22] != 0)
		die("the X server's images are not LSBFirst");
	min_keycode = s[26];
	max_keycode = s[27];
	size_t at = 32 + ((vendor_len + 3) & ~3u);
	int bpp24 = 0;
	for (int i = 0; i < nformats; i++, at += 8)
		if (s[at] == 24 && s[at + 1] == 32)
			bpp24 = 1;
	memcpy(&root, s + at, 4);
	memcpy(&root_visual, s + at + 32, 4);
	root_depth = s[at + 38];
	if (root_depth != 24 || !bpp24)
		die("the X server's root is not 24-bit with 32 bits per pixel");
	free(s);
}

static void query_shm(void)
{
	uint8_t req[8] = { 98, 0 }, head[32];
	put16(req + 4, 7);
	request(req, 8, "MIT-SHM", 7);
	free(reply(head));
	if (!head[8])
		die("the X server has no MIT-SHM extension");
	shm_major = head[9];
}

static void keyboard_map(void)
{
	uint8_t req[8] = { 101, 0 }, head[32];
	req[4] = min_keycode;
	req[5] = max_keycode - min_keycode + 1;
	request(req, 8, NULL, 0);
	keymap = (uint32_t *)reply(head);
	keysyms_per_keycode = head[1];
}

static void create_window(void)
{
	uint8_t req[40] = { 1, 24 };
	win = new_id();
	put32(req + 4, win);
	put32(req + 8, root);
	put16(req + 12, 40);
	put16(req + 14, 40);
	put16(req + 16, W);
	put16(req + 18, H);
	put16(req + 22, 1); /* InputOutput */
	put32(req + 28, 0x2 | 0x800); /* background-pixel, event-mask */
	put32(req + 32, 0);
	put32(req + 36, 0x1 | 0x4 | 0x8000); /* KeyPress, ButtonPress, Exposure */
	request(req, 40, NULL, 0);

	static const char title[] = "crest-shm";
	uint8_t prop[24] = { 18, 0 };
	put32(prop + 4, win);
	put32(prop + 8, 39); /* WM_NAME */
	put32(prop + 12, 31); /* STRING */
	prop[16] = 8;
	put32(prop + 20, sizeof(title) - 1);
	request(prop, 24, title, sizeof(title) - 1);

	uint8_t gcreq[16] = { 55, 0 };
	gc = new_id();
	put32(gcreq + 4, gc);
	put32(gcreq + 8, win);
	request(gcreq, 16, NULL, 0);

	uint8_t pm[16] = { 53, 24 };
	pixmap = new_id();
	put32(pm + 4, pixmap);
	put32(pm + 8, win);
	put16(pm + 12, W);
	put16(pm + 14, H);
	request(pm, 16, NULL, 0);

	uint8_t map[8] = { 8, 0 };
	put32(map + 4, win);
	request(map, 8, NULL, 0);
}

static void attach_shm(void)
{
	shmid = shmget(IPC_PRIVATE, 2 * IMG_BYTES, IPC_CREAT | 0600);
	if (shmid < 0)
		die("shmget failed");
	shm = shmat(shmid, NULL, 0);
	if (shm == (void *)-1)
		die("shmat failed");
	uint8_t req[16] = { shm_major, 1 };
	shmseg = new_id();
	put32(req + 4, shmseg);
	put32(req + 8, shmid);
	request(req, 16, NULL, 0);
	sync_server();
	/* As X clients do once the server has it: the two attachments keep it alive. */
	if (shmctl(shmid, IPC_RMID, NULL))
		die("IPC_RMID failed");
}

/* ShmPutImage of a w x h image at `offset` in the segment (rows of W pixels) to (x, y) of `to`. */
static void shm_put(uint32_t to, uint32_t offset, int w, int h, int x, int y)
{
	uint8_t req[40] = { shm_major, 3 };
	put32(req + 4, to);
	put32(req + 8, gc);
	put16(req + 12, W);
	put16(req + 14, h);
	put16(req + 20, w);
	put16(req + 22, h);
	put16(req + 24, x);
	put16(req + 26, y);
	req[28] = 24;
	req[29] = 2; /* ZPixmap */
	put32(req + 32, shmseg);
	put32(req + 36, offset);
	request(req, 40, NULL, 0);
}

static void fill(uint32_t offset, int rows, uint32_t pixel)
{
	uint32_t *p = (uint32_t *)(shm + offset);
	for (int i = 0; i < rows * W; i++)
		p[i] = pixel;
}

/* The strip: 16 blocks showing the tick counter's bits. */
static void draw_strip(void)
{
	uint32_t off = (H - STRIP) * W * 4;
	uint32_t *p = (uint32_t *)(shm + off);
	for (int y = 0; y < STRIP; y++)
		for (int x = 0; x < W; x++)
			p[y * W + x] = (ticks >> (x * 16 / W)) & 1 ? 0xffffff : 0x000000;
	shm_put(win, off, W, STRIP, 0, H - STRIP);
}

static void paint(void)
{
	fill(0, H - STRIP, colour);
	shm_put(win, 0, W, H - STRIP, 0, 0);
	draw_strip();
}

static void handle_event(const uint8_t *ev)
{
	switch (ev[0] & 0x7f) {
	case 2: { /* KeyPress */
		uint16_t state;
		memcpy(&state, ev + 28, 2);
		uint8_t code = ev[1];
		if (code < min_keycode || code > max_keycode || typed_fd < 0)
			break;
		uint32_t *syms = keymap + (code - min_keycode) * keysyms_per_keycode;
		uint32_t sym = (state & 1) && keysyms_per_keycode > 1 && syms[1] ? syms[1] : syms[0];
		/* Return, Linefeed (what xdotool types for a newline) and KP_Enter end a line. */
		char c = sym >= 0x20 && sym <= 0x7e ? (char)sym : sym == 0xff0d || sym == 0xff0a || sym == 0xff8d ? '\n' : 0;
		if (c && write(typed_fd, &c, 1) != 1)
			fail("cannot record a key in %s/typed", dir);
		break;
	}
	case 12: /* Expose */
		paint();
		break;
	}
}

/* The round trip through the segment, at ready and after the checkpoints. */
static void check_shm(const char *when)
{
	uint32_t *img = (uint32_t *)shm, *back = (uint32_t *)(shm + IMG_BYTES);
	uint32_t seed = (uint32_t)wl_hash(when, strlen(when));
	for (int i = 0; i < W * H; i++) {
		seed = seed * 1103515245u + 12345u;
		img[i] = seed >> 8 & 0xffffff;
	}
	memset(back, 0, IMG_BYTES);
	shm_put(pixmap, 0, W, H, 0, 0);

	uint8_t get[20] = { 73, 2 }, head[32];
	put32(get + 4, pixmap);
	put16(get + 12, W);
	put16(get + 14, H);
	put32(get + 16, 0xffffffff);
	request(get, 20, NULL, 0);
	uint32_t *core = (uint32_t *)reply(head);
	int bad = 0;
	for (int i = 0; i < W * H; i++)
		if ((core[i] & 0xffffff) != img[i] && bad++ < 1)
			fail("%s: pixel %d of the pixmap is %06x by GetImage, %06x was put there with ShmPutImage", when, i, core[i] & 0xffffff, img[i]);
	free(core);

	uint8_t sget[32] = { shm_major, 4 };
	put32(sget + 4, pixmap);
	put16(sget + 12, W);
	put16(sget + 14, H);
	put32(sget + 16, 0xffffffff);
	sget[20] = 2;
	put32(sget + 24, shmseg);
	put32(sget + 28, IMG_BYTES);
	request(sget, 32, NULL, 0);
	free(reply(head));
	for (int i = 0; i < W * H; i++)
		if ((back[i] & 0xffffff) != img[i] && bad++ < 2)
			fail("%s: pixel %d read back with ShmGetImage is %06x, expected %06x", when, i, back[i] & 0xffffff, img[i]);

	struct shmid_ds ds;
	if (shmctl(shmid, IPC_STAT, &ds))
		fail("%s: IPC_STAT of segment %d: %s", when, shmid, strerror(errno));
	else if (!(ds.shm_perm.mode & SHM_DEST) || ds.shm_nattch != 2)
		fail("%s: segment %d has mode 0%o and %lu attachments, expected SHM_DEST and 2 (this client and the server)", when, shmid,
		     ds.shm_perm.mode, (unsigned long)ds.shm_nattch);
	char maps[65536], want[64];
	snprintf(want, sizeof(want), "%lx-", (unsigned long)shm);
	if (wl_read_into("/proc/self/maps", maps, sizeof(maps)) < 0 || !strstr(maps, want))
		fail("%s: the segment is not mapped at %p", when, (void *)shm);
	paint();
}

static void repaint_from_file(void)
{
	char path[4096], text[16] = { 0 };
	snprintf(path, sizeof(path), "%s/color", dir);
	if (wl_read_into(path, text, sizeof(text)) < 6)
		return;
	colour = strtoul(text, NULL, 16) & 0xffffff;
	paint();
	sync_server();
	snprintf(path, sizeof(path), "%s/painted", dir);
	char tmp[4200], line[32];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int n = snprintf(line, sizeof(line), "painted %06x\n", colour);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, line, n) != n || close(fd) || rename(tmp, path))
		fail("cannot write %s", path);
}

int main(int argc, char **argv)
{
	wl_init(argc, argv, "x11-shm");
	if (argc < 3)
		die("usage: x11-shm STATUS DIR");
	dir = argv[2];
	char path[4096];
	snprintf(path, sizeof(path), "%s/typed", dir);
	typed_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (typed_fd < 0)
		die("cannot open DIR/typed");
	struct sigaction sa = { .sa_handler = on_usr1 };
	sigaction(SIGUSR1, &sa, NULL);

	connect_display();
	query_shm();
	keyboard_map();
	create_window();
	attach_shm();
	check_shm("at ready");
	repaint_from_file();
	sync_server();
	wl_ready();

	sigset_t none;
	sigemptyset(&none);
	struct timespec step = { 0, 50 * 1000 * 1000 };
	while (!wl_term) {
		struct pollfd p = { .fd = xfd, .events = POLLIN };
		int n = ppoll(&p, 1, &step, &none);
		if (n > 0) {
			uint8_t ev[32];
			xread(ev, 32);
			if (ev[0] == 0) {
				fail("X error %u", ev[1]);
				return wl_done();
			}
			handle_event(ev);
			continue;
		}
		if (usr1) {
			usr1 = 0;
			repaint_from_file();
		}
		ticks++;
		draw_strip();
		sync_server();
	}
	if (wl_sabotage() == 1) {
		/* What a restore that gave the client a copy of its own would have left. */
		int copy = shmget(IPC_PRIVATE, 2 * IMG_BYTES, IPC_CREAT | 0600);
		shmdt(shm);
		if (copy < 0 || shmat(copy, shm, 0) != shm)
			fail("sabotage: cannot attach a copy at %p", (void *)shm);
		shmctl(copy, IPC_RMID, NULL);
	}
	check_shm("after the checkpoints");
	return wl_done();
}
